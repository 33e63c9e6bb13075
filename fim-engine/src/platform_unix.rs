//! [`crate::platform`] on Unix (Linux): std's Unix extensions and libc.
use std::{
    fs::{self, DirBuilder, File, FileType, OpenOptions, Permissions},
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

pub(crate) fn file_id(path: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

pub(crate) fn is_disk_full_error(code: i32) -> bool {
    code == libc::ENOSPC || code == libc::EDQUOT
}

pub(crate) fn random_bytes(bytes: &mut [u8]) -> io::Result<()> {
    // SAFETY: getrandom(2) into a buffer of the stated length.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if filled == bytes.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn send_log_datagram(socket: &Path, message: &[u8]) -> io::Result<()> {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|out| out.send_to(message, socket))
        .map(drop)
}

pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

pub(crate) fn create_private_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

pub(crate) fn keep_permissions(path: &Path, file: &File) -> io::Result<()> {
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode(),
        Err(_) => 0o644,
    };
    file.set_permissions(Permissions::from_mode(mode))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

pub(crate) fn special_kind(kind: &FileType) -> Option<&'static str> {
    if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_block_device() || kind.is_char_device() {
        Some("a device")
    } else {
        None
    }
}

pub(crate) fn lower_thread_priority() -> io::Result<()> {
    // SAFETY: setpriority on the calling thread (who = 0 with PRIO_PROCESS is this thread on
    // Linux).
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const IOPRIO_WHO_PROCESS: libc::c_long = 1;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;
const IOPRIO_CLASS_SHIFT: libc::c_long = 13;

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, IDLE)`: with `who = 0` the kernel applies it to the
/// calling thread only.
pub(crate) fn set_idle_io_priority() -> io::Result<()> {
    let priority = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT;
    // SAFETY: ioprio_set takes three integers and touches no user memory.
    let result = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            priority,
        )
    };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_priority_applies_to_the_calling_thread() {
        let class = std::thread::spawn(|| {
            set_idle_io_priority().expect("ioprio_set");
            // SAFETY: ioprio_get takes two integers and touches no user memory.
            let value = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
            value >> IOPRIO_CLASS_SHIFT
        })
        .join()
        .expect("thread");
        assert_eq!(class, IOPRIO_CLASS_IDLE);
        // This thread kept its own class.
        // SAFETY: as above.
        let mine = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) };
        assert_ne!(mine >> IOPRIO_CLASS_SHIFT, IOPRIO_CLASS_IDLE);
    }
}
