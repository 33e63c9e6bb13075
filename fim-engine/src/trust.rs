//! Which configuration fimd may believe: fimd runs as root, so a policy or state directory
//! that anyone else can change would let them decide what root watches (or ignores).
//!
//! The rule is kept simple so it is easy to reason about: the file (or directory) itself and
//! its parent directory must be owned by root and writable by nobody else; every further
//! ancestor must be owned by root and either not writable by others or sticky (as `/tmp` is:
//! there nobody can rename or remove another user's entries).
//!
//! On Windows the same question is asked of the owner and DACL (`trust_windows.rs`, judged by
//! [`crate::sddl`]): SYSTEM, Administrators, TrustedInstaller and the service's own account
//! play root; directories up the path may let others create entries (the sticky `/tmp` of
//! Windows is `C:\`), never delete or re-permission them.
use std::{fs::Metadata, path::Path};

use crate::platform::NotOnThisPlatform;
#[cfg(unix)]
use crate::trust_unix as platform;
#[cfg(windows)]
use crate::trust_windows as platform;

/// Why a path is not trusted: one line naming the path and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("{0}")]
    Refused(String),
    #[error("cannot check who may change the {what} {path}: {source}")]
    NotOnThisPlatform {
        what: String,
        path: String,
        source: NotOnThisPlatform,
    },
}

/// `what` (e.g. "policy") at `path`, whose metadata (from the opened file, so a swap after the
/// check does not matter) is `metadata`, and the directories above it.
pub fn check_file(what: &str, path: &Path, metadata: &Metadata) -> Result<(), Untrusted> {
    platform::check_file(what, path, metadata)
}

/// Creates a state directory (and missing parents) where none exists: on Windows the last
/// one with a protected DACL for SYSTEM, Administrators and the service's account, since it
/// would otherwise inherit whatever its parent lets users do. An existing one is left alone,
/// for [`check_dir`] to judge.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    platform::create_dir(path)
}

/// The directory `path` itself must be strictly root's; its ancestors may be sticky.
pub fn check_dir(what: &str, path: &Path) -> Result<(), Untrusted> {
    platform::check_dir(what, path)
}
