//! The local API socket (the Unix half of the local transport; `pipe_windows.rs` is the
//! Windows one): where it lives and who may connect to it.
//!
//! The file's permissions are the first gate, the roles ([`crate::auth`]) the second: the
//! socket is `root:OWNER_GROUP` mode 0660, and the reader group gets connect access through a
//! POSIX ACL entry (a socket has one group, and there are two roles). Anyone else cannot even
//! connect. A socket left by a crashed daemon is replaced, but only if nothing answers on it
//! (two daemons must not steal each other's socket) and only if it is a socket (a
//! misconfigured path must never delete a regular file).
//!
//! Set-up cannot be raced: the socket's directory must be root's alone (as the state
//! directory must, [`fim_engine::trust`]), and the socket is bound, given its group, mode and
//! ACL inside a fresh 0700 directory next to it, then renamed into place. No chown, chmod or
//! setxattr ever goes through a path someone else could swap for a symlink, and the socket
//! never exists at its public path with the wrong permissions.
use std::{
    ffi::CString,
    fs,
    io::{self, ErrorKind},
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    task::{ready, Context, Poll},
};

use fim_engine::path_text::display_path;
use tokio::net::UnixListener;

use crate::{
    limits::{Accept, LimitedIncoming, Limiter, PeerKey},
    peer::PeerStream,
};

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the API socket directory {}: {source}", display_path(.path))]
    Directory { path: PathBuf, source: io::Error },
    #[error("{} exists and is not a socket; refusing to replace it", display_path(.0))]
    NotASocket(PathBuf),
    #[error("another process is serving the API on {}", display_path(.0))]
    InUse(PathBuf),
    #[error("cannot replace the stale API socket {}: {source}", display_path(.path))]
    Stale { path: PathBuf, source: io::Error },
    #[error("cannot listen on {}: {source}", display_path(.path))]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set the owner and mode of {}: {source}", display_path(.path))]
    Permissions { path: PathBuf, source: io::Error },
    #[error("refusing the API socket: {0}")]
    Untrusted(#[from] fim_engine::trust::Untrusted),
    #[error("cannot move the API socket into place at {}: {source}", display_path(.path))]
    Publish { path: PathBuf, source: io::Error },
}

/// Binds the socket and sets its owner group, mode and reader ACL.
pub fn bind(
    path: &Path,
    owner_gid: Option<u32>,
    reader_gid: Option<u32>,
) -> Result<UnixListener, SocketError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&parent)
            .map_err(|source| SocketError::Directory {
                path: parent.clone(),
                source,
            })?;
    }
    fim_engine::trust::check_dir("API socket directory", &parent)?;
    remove_stale(path)?;
    // A fresh directory of a random name, 0700, created with O_EXCL semantics (never one
    // somebody prepared), removed with whatever is left in it when this returns.
    let staging = tempfile::Builder::new()
        .prefix(".fimd-socket.")
        .tempdir_in(&parent)
        .map_err(|source| SocketError::Directory {
            path: parent.clone(),
            source,
        })?;
    let staged = staging.path().join("api.sock");
    let listener = UnixListener::bind(&staged).map_err(|source| SocketError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let permissions = |source| SocketError::Permissions {
        path: path.to_path_buf(),
        source,
    };
    std::os::unix::fs::chown(&staged, None, owner_gid).map_err(permissions)?;
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o660)).map_err(permissions)?;
    if let Some(reader) = reader_gid.filter(|reader| Some(*reader) != owner_gid) {
        if let Err(error) = grant_group(&staged, reader) {
            tracing::warn!(
                "cannot give group {reader} access to {} ({error}): readers cannot connect",
                display_path(path)
            );
        }
    }
    fs::rename(&staged, path).map_err(|source| SocketError::Publish {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(listener)
}

/// Removes a socket nobody listens on; refuses anything else.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(path.to_path_buf()));
            }
            fs::remove_file(path).map_err(|source| SocketError::Stale {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(SocketError::NotASocket(path.to_path_buf())),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SocketError::Stale {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes the socket at shutdown (if it is still ours: a socket).
pub fn remove(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket()) {
        if let Err(error) = fs::remove_file(path) {
            tracing::debug!("cannot remove {}: {error}", display_path(path));
        }
    }
}

/// Accepted connections with their peer credentials, each admitted by `limiter` (by uid) or
/// closed.
pub fn incoming(listener: UnixListener, limiter: Limiter) -> LimitedIncoming<UnixListener> {
    LimitedIncoming::new(listener, limiter)
}

/// Local connections count against the peer's uid.
impl Accept for UnixListener {
    type Stream = PeerStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(PeerStream, PeerKey)>> {
        let (stream, _) = ready!(UnixListener::poll_accept(self, cx))?;
        let stream = PeerStream::new(stream);
        let peer = stream
            .peer()
            .map_or(PeerKey::Unknown, |peer| PeerKey::Uid(peer.uid));
        Poll::Ready(Ok((stream, peer)))
    }
}

/// POSIX ACL tags and the xattr layout (linux/posix_acl_xattr.h).
const ACL_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;
const READ_WRITE: u16 = 0o6;

/// Sets the ACL `user::rw-,group::rw-,group:GID:rw-,mask::rw-,other::---`.
fn grant_group(path: &Path, gid: u32) -> io::Result<()> {
    let entries = [
        (ACL_USER_OBJ, READ_WRITE, ACL_UNDEFINED_ID),
        (ACL_GROUP_OBJ, READ_WRITE, ACL_UNDEFINED_ID),
        (ACL_GROUP, READ_WRITE, gid),
        (ACL_MASK, READ_WRITE, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ];
    let mut value = ACL_VERSION.to_le_bytes().to_vec();
    for (tag, permissions, id) in entries {
        value.extend_from_slice(&tag.to_le_bytes());
        value.extend_from_slice(&permissions.to_le_bytes());
        value.extend_from_slice(&id.to_le_bytes());
    }
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "a NUL in the socket path"))?;
    // SAFETY: both strings are NUL-terminated and the value is valid for its length.
    let status = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_sockets_are_replaced_live_ones_and_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/fim/fim.sock");
        let live = bind(&path, None, None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(matches!(
            bind(&path, None, None),
            Err(SocketError::InUse(_))
        ));
        drop(live);
        // Nobody listens any more: the stale socket is replaced.
        let _again = bind(&path, None, None).unwrap();
        let file = dir.path().join("not-a-socket");
        fs::write(&file, "keep me").unwrap();
        assert!(matches!(
            bind(&file, None, None),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
    }
}
