//! The Unix half of [`crate::access`]: the kernel's own permission check, on a thread that
//! switched its filesystem credentials to the caller's.
use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::access::{Credentials, Refusal};

/// Runs on the dedicated thread: switches its credentials, never back (the thread ends).
pub(crate) fn check_as(credentials: &Credentials, paths: &[PathBuf]) -> Result<(), Refusal> {
    let first = paths.first().cloned().unwrap_or_default();
    let groups: Vec<libc::gid_t> = credentials.groups.clone();
    // SAFETY: the raw syscalls take a count and a pointer valid for that many gids, and plain
    // ids; they change only this thread's credentials.
    let switched = unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0
            && {
                libc::setfsgid(credentials.gid);
                libc::setfsgid(u32::MAX) as u32 == credentials.gid
            }
            && {
                libc::setfsuid(credentials.uid);
                libc::setfsuid(u32::MAX) as u32 == credentials.uid
            }
    };
    if !switched {
        return Err((first, Some(io::Error::last_os_error())));
    }
    for path in paths {
        readable(path).map_err(|error| (path.clone(), error))?;
    }
    Ok(())
}

/// Read (and, for a directory, search) access with this thread's fs credentials. A missing
/// path is judged by its nearest existing ancestor: a caller who cannot look into `/root`
/// must not watch what appears there later.
fn readable(path: &Path) -> Result<(), Option<io::Error>> {
    let mut current = path;
    loop {
        let wanted = if current == path && !current.is_dir() {
            libc::R_OK
        } else {
            libc::R_OK | libc::X_OK
        };
        let text = CString::new(current.as_os_str().as_bytes()).map_err(|_| {
            Some(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a NUL in a path",
            ))
        })?;
        // SAFETY: the path is NUL-terminated; AT_EACCESS checks the effective (fs) ids.
        let status =
            unsafe { libc::faccessat(libc::AT_FDCWD, text.as_ptr(), wanted, libc::AT_EACCESS) };
        if status == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::ENOENT) => match current.parent() {
                Some(parent) if parent != current => current = parent,
                _ => return Err(None),
            },
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOTDIR) => return Err(None),
            _ => return Err(Some(error)),
        }
    }
}
