//! Nothing leaks through the daemon: a caller may only have monitored what it could read.
//!
//! fimd runs as root, so an owner-group member who adds `/etc/shadow` would otherwise learn its
//! hashes and change times. The check asks the kernel, with the caller's credentials, whether
//! the caller could read the entity's root (and search it, for a directory; for a wildcard
//! entity, every existing match). It runs on a dedicated, short-lived thread that switches its
//! own filesystem credentials (setfsuid, setfsgid and the raw setgroups syscall, all
//! per-thread in the kernel) and then calls `faccessat(AT_EACCESS)`. That is the kernel's own
//! permission check: ACLs, the caller's supplementary groups, capabilities dropped with a
//! non-root fsuid, and LSMs all apply, which re-implementing mode bits would miss. glibc's
//! `setgroups` wrapper is not used because it changes every thread of the process; the raw
//! syscall changes only the checking thread, which exits afterwards, so the daemon's other
//! threads never run with the caller's credentials.
//!
//! Limits: files below a readable directory of a recursive entity are not checked one by one
//! (their content is still never exposed: file-content entities are root-only, and records
//! carry content only for root).
//!
//! On Windows the check is not written yet (it would need AccessCheck against the caller's
//! token): there only SYSTEM and administrators may add or edit entities, and any other
//! owner is refused with [`AccessError::Unchecked`] rather than let fimsvc read on its behalf.
use std::{io, path::PathBuf};

use fim_engine::{
    path_text::display_path,
    policy::{compile, Entity, Policy},
};

use crate::peer::UnixPeer;

/// The credentials a check runs with.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A caller with no local account (a TLS client) has the rights of `nobody`: only what anyone
/// on the machine may read.
pub const NOBODY: Credentials = Credentials {
    uid: 65534,
    gid: 65534,
    groups: Vec::new(),
};

impl From<&UnixPeer> for Credentials {
    fn from(peer: &UnixPeer) -> Self {
        Credentials {
            uid: peer.uid,
            gid: peer.gid,
            groups: peer.groups.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "{who} is not an administrator, and this platform cannot yet check whether it may \
         read {}; only an administrator may add or edit entities here", display_path(.path)
    )]
    Unchecked { path: PathBuf, who: String },
    #[error("{} is not readable by {who}", display_path(.path))]
    Denied { path: PathBuf, who: String },
    #[error("cannot check access to {} as {who}: {source}", display_path(.path))]
    Check {
        path: PathBuf,
        who: String,
        source: io::Error,
    },
}

/// Fails unless `credentials` may read every path the entity would monitor at its top level.
pub fn check_entity(
    entity: &Entity,
    credentials: &Credentials,
    who: &str,
) -> Result<(), AccessError> {
    if cfg!(not(unix)) {
        // Registry keys too: a key only SYSTEM may read (SAM) must not reach an owner either.
        return Err(AccessError::Unchecked {
            path: PathBuf::from(&entity.path),
            who: who.to_string(),
        });
    }
    let mut probe = entity.clone();
    probe.enabled = true;
    let policy = Policy {
        entities: vec![probe],
        settings: Default::default(),
    };
    // An entity that does not compile is refused by the policy validation afterwards, with
    // its own diagnostics; a Windows entity monitors no local file.
    let Ok(compiled) = compile(&policy) else {
        return Ok(());
    };
    let Some(compiled) = compiled.entities.into_iter().next() else {
        return Ok(());
    };
    let mut paths = vec![compiled.root.clone()];
    if let Some(glob) = &compiled.name_glob {
        // The root is the wildcard's directory; the matches are what gets read.
        if let Ok(children) = std::fs::read_dir(&compiled.root) {
            paths.extend(
                children
                    .flatten()
                    .map(|child| child.path())
                    .filter(|path| path.file_name().is_some_and(|name| glob.is_match(name))),
            );
        }
    }
    let credentials = credentials.clone();
    let checked = std::thread::Builder::new()
        .name("fim-access".into())
        .spawn(move || check_as(&credentials, &paths))
        .map_err(|source| AccessError::Check {
            path: compiled.root.clone(),
            who: who.to_string(),
            source,
        })?
        .join()
        .map_err(|_| AccessError::Check {
            path: compiled.root.clone(),
            who: who.to_string(),
            source: io::Error::other("the access check panicked"),
        })?;
    match checked {
        Ok(()) => Ok(()),
        Err((path, None)) => Err(AccessError::Denied {
            path,
            who: who.to_string(),
        }),
        Err((path, Some(source))) => Err(AccessError::Check {
            path,
            who: who.to_string(),
            source,
        }),
    }
}

/// A path refused, and the error when the check itself failed (None: plainly not readable).
pub(crate) type Refusal = (PathBuf, Option<io::Error>);

#[cfg(unix)]
use crate::access_unix::check_as;

/// Never reached: [`check_entity`] refuses first where there is no check.
#[cfg(not(unix))]
fn check_as(_credentials: &Credentials, paths: &[PathBuf]) -> Result<(), Refusal> {
    Err((
        paths.first().cloned().unwrap_or_default(),
        Some(io::Error::from(io::ErrorKind::Unsupported)),
    ))
}
