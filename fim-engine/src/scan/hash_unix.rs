//! Opening and hashing one regular file on Unix without being fooled or hurt by it.
//!
//! The path was lstat'ed as a regular file, but anyone may swap it before we open it, so:
//! - it is opened with `O_NOFOLLOW` (a symlink planted since then fails with ELOOP),
//!   `O_NONBLOCK` (a FIFO planted since then cannot block the open; regular files ignore the
//!   flag), `O_CLOEXEC` (std adds it) and `O_NOATIME` (a scan does not touch access times;
//!   dropped on EPERM, which the kernel returns to non-owners without CAP_FOWNER);
//! - the fd is fstat'ed and must still be a regular file with the lstat's dev/ino, else the
//!   caller lstats again ([`HashOutcome::Replaced`]).
//!
//! A file whose size, mtime or ctime differ between the fstat before and after the read was
//! written meanwhile: it is read again, up to [`MAX_RETRIES`] times, then reported unstable.
//! (A write within the same timestamp tick and at the same size is invisible to this check;
//! the kernel's close-after-write event makes the daemon look again.)
//!
//! Sparse files (fewer blocks allocated than their size) are read around their holes:
//! `SEEK_DATA`/`SEEK_HOLE` find the allocated ranges, only those are `pread`, and the holes are
//! fed to BLAKE3 as zeros from a static buffer. The digest stays the standard BLAKE3 of the
//! whole content (what `b3sum` prints), so a baseline does not depend on how a file is
//! allocated, and a hole filled with written zeros is not a change. Skipping holes is
//! impossible with BLAKE3 itself: every 1 KiB chunk is compressed with its own counter, so no
//! two zero chunks share a value. What skipping the read saves is the kernel zero-filling (and
//! caching) every hole page: measured on this project's 2-core AMD EPYC (AVX-512) host,
//! hashing holes costs 0.23 s per GiB on one thread (BLAKE3 alone), so a 100 GiB hole takes
//! about 23 s and a 16 TiB one (ext4's largest file) about 63 minutes. That is why the daemon
//! hashes large files beside its event path (`reconcile::deferred`), cancellably: `cancel` is
//! checked between 1 MiB chunks and `progress` counts the bytes hashed for `fim status`.
use std::{
    fs::{File, Metadata, OpenOptions},
    io,
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    },
    path::Path,
};

use crate::state::Digest;

use super::{
    budget::ByteBudget,
    hash::{read_dense, with_buffer, ReadResult, Sink, BUFFER_SIZE, MAX_RETRIES},
    observe::ObserveOptions,
};

/// What holes are hashed from (in .bss, and only ever read: it costs no memory).
static ZEROS: [u8; BUFFER_SIZE] = [0; BUFFER_SIZE];

#[allow(
    clippy::large_enum_variant,
    reason = "returned once per file and consumed at once; boxing would only add an allocation"
)]
pub(super) enum HashOutcome {
    Hashed(Hashed),
    /// The path names something else now (another inode, not a regular file): lstat again.
    Replaced,
    /// The path no longer exists.
    Vanished,
    /// It could not be opened or read (EACCES, EIO, ...).
    Unreadable(io::Error),
    /// `cancel` was set while it was read: nothing is known about its content.
    Cancelled,
    /// At least [`ObserveOptions::hash_below`] bytes: not read (its fstat).
    Large(Metadata),
}

pub(super) struct Hashed {
    /// The fstat after the last read: the metadata that goes with `hash`.
    pub meta: Metadata,
    pub hash: Digest,
    pub content: Option<Vec<u8>>,
    pub content_truncated: bool,
    pub unstable: bool,
    /// Bytes hashed (holes included), all attempts included.
    pub bytes_read: u64,
    /// Still open, so the xattrs are read from the same inode.
    pub file: File,
}

/// Hashes the regular file at `path` (see the module docs for the safety rules). With
/// `lstat`, the opened file must be the inode it describes; without (the walk's directory entry
/// said "regular file"), the fstat is the first description of it. `path` is what the
/// syscalls use (see `super::long`).
pub(super) fn hash_regular(
    path: &Path,
    lstat: Option<&Metadata>,
    options: &ObserveOptions<'_>,
) -> HashOutcome {
    let file = match open(path) {
        Ok(file) => file,
        Err(error) => {
            return match error.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => HashOutcome::Vanished,
                // ELOOP: a symlink now; ENXIO: a socket now.
                Some(libc::ELOOP) | Some(libc::ENXIO) => HashOutcome::Replaced,
                _ => HashOutcome::Unreadable(error),
            };
        }
    };
    let mut bytes_read = 0;
    let mut attempt = 0;
    loop {
        let before = match file.metadata() {
            Ok(meta) => meta,
            Err(error) => return HashOutcome::Unreadable(error),
        };
        let other_inode =
            lstat.is_some_and(|lstat| before.dev() != lstat.dev() || before.ino() != lstat.ino());
        if !before.file_type().is_file() || other_inode {
            return HashOutcome::Replaced;
        }
        if options
            .hash_below
            .is_some_and(|limit| before.size() >= limit)
        {
            return HashOutcome::Large(before);
        }
        let read = with_buffer(before.size(), |buffer| {
            read_all(&file, &before, options, buffer)
        });
        let read = match read {
            Ok(Some(read)) => read,
            Ok(None) => return HashOutcome::Cancelled,
            Err(error) => return HashOutcome::Unreadable(error),
        };
        bytes_read += read.bytes;
        let after = match file.metadata() {
            Ok(meta) => meta,
            Err(error) => return HashOutcome::Unreadable(error),
        };
        let stable = same_content_metadata(&before, &after);
        if stable || attempt >= MAX_RETRIES {
            return HashOutcome::Hashed(Hashed {
                meta: after,
                hash: read.hash,
                content: read.content,
                content_truncated: read.content_truncated,
                unstable: !stable,
                bytes_read,
                file,
            });
        }
        attempt += 1;
    }
}

/// Opens, retrying a few times with a short backoff while the process (EMFILE) or the system
/// (ENFILE) is out of descriptors: other scan threads close theirs within milliseconds, and
/// the error says nothing about the file.
fn open(path: &Path) -> io::Result<File> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 0;
    loop {
        match open_once(path) {
            Err(error)
                if attempt + 1 < ATTEMPTS
                    && matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 << attempt));
            }
            result => return result,
        }
    }
}

fn open_once(path: &Path) -> io::Result<File> {
    // std adds O_RDONLY (read(true)) and O_CLOEXEC.
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    match OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NOATIME)
        .open(path)
    {
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
            OpenOptions::new().read(true).custom_flags(flags).open(path)
        }
        result => result,
    }
}

fn same_content_metadata(before: &Metadata, after: &Metadata) -> bool {
    before.size() == after.size()
        && before.mtime() == after.mtime()
        && before.mtime_nsec() == after.mtime_nsec()
        && before.ctime() == after.ctime()
        && before.ctime_nsec() == after.ctime_nsec()
}

/// Hashes the whole file from offset 0 (pread: no seek between attempts). None: cancelled.
fn read_all(
    file: &File,
    before: &Metadata,
    options: &ObserveOptions<'_>,
    buffer: &mut [u8],
) -> io::Result<Option<ReadResult>> {
    let expected = before.size();
    // Fewer blocks than bytes: it has holes (st_blocks counts 512-byte units).
    if before.blocks().saturating_mul(512) < expected {
        let mut sink = Sink::new(expected, options);
        match read_sparse(file, expected, options.budget, buffer, &mut sink) {
            Ok(true) => return Ok(Some(sink.finish())),
            Ok(false) => return Ok(None),
            // The filesystem has no SEEK_DATA: read it all.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) && sink.bytes == 0 => {}
            Err(error) => return Err(error),
        }
    }
    read_dense(file, expected, options, buffer, |file, buffer, offset| {
        file.read_at(buffer, offset)
    })
}

/// `lseek(SEEK_DATA / SEEK_HOLE)`; None: no data (or hole) at or after `offset` (ENXIO).
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: lseek on an fd we own; it only moves the file offset, which pread ignores.
    let found = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if found >= 0 {
        return Ok(Some(found as u64));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        _ => Err(error),
    }
}

/// Hashes `size` bytes, reading only the allocated ranges. False: cancelled. A file that
/// shrinks or grows meanwhile hashes to something, and the caller's fstat check notices.
fn read_sparse(
    file: &File,
    size: u64,
    budget: Option<&ByteBudget>,
    buffer: &mut [u8],
    sink: &mut Sink<'_>,
) -> io::Result<bool> {
    let mut offset = 0;
    while offset < size {
        let data = seek(file, offset, libc::SEEK_DATA)?.map_or(size, |data| data.min(size));
        if !feed_zeros(sink, data.saturating_sub(offset)) {
            return Ok(false);
        }
        offset = data.max(offset);
        if offset >= size {
            break;
        }
        let hole = seek(file, offset, libc::SEEK_HOLE)?.map_or(size, |hole| hole.min(size));
        while offset < hole {
            if sink.cancelled() {
                return Ok(false);
            }
            let want = usize::try_from(hole - offset)
                .unwrap_or(buffer.len())
                .min(buffer.len());
            let read = match file.read_at(&mut buffer[..want], offset) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if read == 0 {
                // Truncated meanwhile: the rest is whatever it is; the fstat check tells.
                return Ok(true);
            }
            sink.feed(&buffer[..read]);
            offset += read as u64;
            if let Some(budget) = budget {
                budget.consume(read as u64);
            }
        }
    }
    Ok(true)
}

/// A hole of `len` bytes. False: cancelled.
fn feed_zeros(sink: &mut Sink<'_>, mut len: u64) -> bool {
    while len > 0 {
        if sink.cancelled() {
            return false;
        }
        let step = len.min(ZEROS.len() as u64) as usize;
        sink.feed(&ZEROS[..step]);
        len -= step as u64;
    }
    true
}
