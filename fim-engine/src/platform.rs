//! What the engine needs from the operating system beyond std, one facade for every platform.
//!
//! The engine is shared by fimd on Linux and the Windows companion, so every call into
//! `std::os::unix`, libc or the Win32 API lives in `platform_unix.rs` or `platform_windows.rs`
//! (the observer, trust checks, user names and the machine id have files of their own, named
//! the same way). A facility a platform does not have yet is an error naming it
//! ([`NotOnThisPlatform`]), never a silent success.
use std::{io, path::Path};

#[cfg(unix)]
use crate::platform_unix as imp;
#[cfg(windows)]
use crate::platform_windows as imp;

/// A facility this platform does not provide (yet): the message names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not available on this platform")]
pub struct NotOnThisPlatform(pub &'static str);

impl NotOnThisPlatform {
    /// As an `io::Error` (kind `Unsupported`), for functions that return one.
    pub fn io(self) -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, self)
    }
}

/// Which file a path names, following symlinks: (device, inode) on Unix, (volume serial, file
/// index) on Windows. Two paths with the same id are the same file.
pub fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    imp::file_id(path)
}

/// Is this OS error number "the file system is full" (ENOSPC, EDQUOT; ERROR_DISK_FULL,
/// ERROR_HANDLE_DISK_FULL)?
pub fn is_disk_full_error(code: i32) -> bool {
    imp::is_disk_full_error(code)
}

/// Fills `bytes` from the system's random source.
pub fn random_bytes(bytes: &mut [u8]) -> io::Result<()> {
    imp::random_bytes(bytes)
}

/// Sends one datagram to the system log socket at `socket` (`/dev/log`).
pub fn send_log_datagram(socket: &Path, message: &[u8]) -> io::Result<()> {
    imp::send_log_datagram(socket, message)
}

/// Creates `dir` and its missing parents, accessible to the owner only where the platform
/// has modes (0700).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    imp::create_private_dir(dir)
}

/// Creates `path`, which must not exist, readable and writable by the owner only where the
/// platform has modes (0600).
pub fn create_private_file(path: &Path) -> io::Result<()> {
    imp::create_private_file(path)
}

/// Writes `bytes` to `path` (replacing it atomically) in a file readable by the owner only
/// (0600 where the platform has modes): keys and certificates. Written beside it and
/// renamed, so a crash leaves the old file or the new one, never half of one.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut name = path.as_os_str().to_os_string();
    name.push(".new");
    let temporary = std::path::PathBuf::from(name);
    match std::fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    create_private_file(&temporary)?;
    let mut file = std::fs::OpenOptions::new().write(true).open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

/// Gives `file` (a rewrite of `path` about to replace it) the permissions of the file at
/// `path`, or the platform's default for a new file (0644 on Unix).
pub fn keep_permissions(path: &Path, file: &std::fs::File) -> io::Result<()> {
    imp::keep_permissions(path, file)
}

/// Makes a rename into `dir` durable (fsync of the directory on Unix; NTFS journals its
/// metadata, and a directory handle cannot be flushed on Windows).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    imp::sync_dir(dir)
}

/// Opens a file for reading without blocking on whatever it turns out to be (O_NONBLOCK: a
/// FIFO swapped in after a check must not hang the reader).
pub fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    imp::open_nonblocking(path)
}

/// What a non-regular file is, in words ("a FIFO", "a device"), for a refusal message.
pub fn special_kind(file_type: &std::fs::FileType) -> Option<&'static str> {
    imp::special_kind(file_type)
}

/// Lowers the calling thread's CPU priority (nice 10 on Linux), for background hashing.
pub fn lower_thread_priority() -> io::Result<()> {
    imp::lower_thread_priority()
}

/// Puts the calling thread in the idle IO class (Linux) or background mode (Windows), so a
/// scan's reads wait for everyone else's.
pub fn set_idle_io_priority() -> io::Result<()> {
    imp::set_idle_io_priority()
}
