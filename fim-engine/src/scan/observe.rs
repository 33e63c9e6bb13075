//! One path's [`FileState`]: what the daemon asks after a kernel event, and what the walk asks
//! for every covered path.
//!
//! Symlinks are never followed (lstat, readlink, `l*` xattr calls): the monitored object is the
//! link, and following it would let whoever controls the link steer the scanner. Only regular
//! files are opened (see [`super::hash`]); FIFOs, sockets and devices are described from their
//! metadata alone, since opening them can block or have side effects. When the path is swapped
//! for another file while it is examined, it is examined again from the lstat, a few times.
//! A path longer than PATH_MAX is examined through its parent's descriptor (`super::long`).
use std::{
    fs::{self, Metadata},
    io,
    os::unix::{ffi::OsStringExt, fs::MetadataExt},
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64},
};

use super::{
    budget::ByteBudget,
    hash::{self, HashOutcome, MAX_RETRIES},
    known::join_ns,
    long::SysPath,
    xattrs::{self, SecurityAttrs, Source},
    ScanError,
};
use crate::state::{FileState, FileType};

#[derive(Clone, Copy, Debug, Default)]
pub struct ObserveOptions<'a> {
    /// Keep up to this many bytes of a regular file's content (file-content entities).
    pub keep_content: Option<u64>,
    /// The baseline state: when its quick metadata equals the lstat's, its hash, content, link
    /// target and xattrs are reused and nothing is read (the sweep's shortcut). ctime covers
    /// content, mode, owner and xattr changes, so nothing that matters can differ.
    pub previous: Option<&'a FileState>,
    /// A read budget to respect (scans pass theirs; the daemon's single paths usually don't).
    pub budget: Option<&'a ByteBudget>,
    /// Checked between chunks of a regular file's content: once set, the observation ends
    /// with [`ScanError::Cancelled`] (the daemon is stopping; a large file's hash can take
    /// minutes).
    pub cancel: Option<&'a AtomicBool>,
    /// Bytes of the current regular file hashed so far (reset when a read starts), for status.
    pub progress: Option<&'a AtomicU64>,
    /// Regular files of at least this many bytes are not read: the observation carries their
    /// metadata only and says [`Observation::large`] (the daemon's scans hand them to the
    /// background hasher, so one terabyte file does not hold up a whole rescan).
    pub hash_below: Option<u64>,
}

/// Observes one path without following it. `Ok(None)`: the path does not exist.
/// Err only when the path cannot even be lstat'ed (EACCES on a parent, ENAMETOOLONG, ...);
/// a file that cannot be read is a state with `error` set.
pub fn observe(path: &Path, options: &ObserveOptions<'_>) -> Result<Option<FileState>, ScanError> {
    Ok(observe_with(path, None, options)?.map(|observation| observation.state))
}

pub(super) struct Observation {
    pub state: FileState,
    pub bytes_read: u64,
    /// Not read: a regular file of at least [`ObserveOptions::hash_below`] bytes.
    pub large: bool,
}

impl Observation {
    fn read(state: FileState, bytes_read: u64) -> Self {
        Observation {
            state,
            bytes_read,
            large: false,
        }
    }

    fn large(meta: &Metadata) -> Self {
        Observation {
            state: metadata_state(meta),
            bytes_read: 0,
            large: true,
        }
    }
}

/// `lstat`: the walk's statx (None: lstat here).
pub(super) fn observe_with(
    path: &Path,
    lstat: Option<Metadata>,
    options: &ObserveOptions<'_>,
) -> Result<Option<Observation>, ScanError> {
    let sys = match SysPath::new(path) {
        Ok(sys) => sys,
        Err(error) => return absent_or(error, path),
    };
    let (sys, path) = (sys.get(), path);
    let mut meta = match lstat {
        Some(meta) => meta,
        None => match lstat_path(sys, path)? {
            Some(meta) => meta,
            None => return Ok(None),
        },
    };
    let mut bytes_read = 0;
    let mut restarts = 0;
    loop {
        let mut state = metadata_state(&meta);
        if let Some(previous) = options.previous {
            if reusable(previous, &state, options.keep_content) {
                reuse(&mut state, previous, options.keep_content);
                return Ok(Some(Observation::read(state, bytes_read)));
            }
        }
        let done = match state.file_type {
            FileType::Regular => match hash::hash_regular(sys, Some(&meta), options) {
                HashOutcome::Hashed(hashed) => {
                    bytes_read += hashed.bytes_read;
                    Some(hashed_state(hashed, path))
                }
                HashOutcome::Unreadable(error)
                    if matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
                {
                    return Err(ScanError::OutOfDescriptors {
                        path: path.to_path_buf(),
                        source: error,
                    });
                }
                HashOutcome::Unreadable(error) => {
                    state.error = Some(error.to_string());
                    set_attrs(&mut state, xattrs::read(Source::Path(sys), path));
                    Some(state)
                }
                HashOutcome::Cancelled => return Err(ScanError::Cancelled),
                HashOutcome::Large(meta) => return Ok(Some(Observation::large(&meta))),
                HashOutcome::Replaced | HashOutcome::Vanished => None,
            },
            FileType::Symlink => match fs::read_link(sys) {
                Ok(target) => {
                    state.symlink_target = Some(target.into_os_string().into_vec());
                    set_attrs(&mut state, xattrs::read(Source::Path(sys), path));
                    Some(state)
                }
                // EINVAL: not a symlink any more; ENOENT: gone. Look again.
                Err(error) if is_replaced(&error) => None,
                Err(error) => {
                    state.error = Some(error.to_string());
                    Some(state)
                }
            },
            _ => {
                set_attrs(&mut state, xattrs::read(Source::Path(sys), path));
                Some(state)
            }
        };
        if let Some(state) = done {
            return Ok(Some(Observation::read(state, bytes_read)));
        }
        meta = match lstat_path(sys, path)? {
            Some(meta) => meta,
            None => return Ok(None),
        };
        restarts += 1;
        if restarts > MAX_RETRIES {
            let mut state = metadata_state(&meta);
            state.error = Some("kept being replaced while it was read".to_string());
            state.unstable = true;
            return Ok(Some(Observation::read(state, bytes_read)));
        }
    }
}

/// For the walk's full scans: a path whose directory entry says "regular file", observed
/// without an lstat first (the fstat of the opened file describes it), which saves one
/// `statx` per file. Anything unexpected (not a regular file any more, unreadable, a symlink)
/// goes the careful way through [`observe_with`].
pub(super) fn observe_regular_entry(
    path: &Path,
    options: &ObserveOptions<'_>,
) -> Result<Option<Observation>, ScanError> {
    let sys = match SysPath::new(path) {
        Ok(sys) => sys,
        Err(error) => return absent_or(error, path),
    };
    match hash::hash_regular(sys.get(), None, options) {
        HashOutcome::Hashed(hashed) => {
            let bytes_read = hashed.bytes_read;
            let state = hashed_state(hashed, path);
            Ok(Some(Observation::read(state, bytes_read)))
        }
        HashOutcome::Large(meta) => Ok(Some(Observation::large(&meta))),
        HashOutcome::Vanished => Ok(None),
        HashOutcome::Cancelled => Err(ScanError::Cancelled),
        HashOutcome::Replaced | HashOutcome::Unreadable(_) => observe_with(path, None, options),
    }
}

fn hashed_state(hashed: hash::Hashed, path: &Path) -> FileState {
    let mut state = metadata_state(&hashed.meta);
    state.hash = Some(hashed.hash);
    state.content = hashed.content;
    state.content_truncated = hashed.content_truncated;
    state.unstable = hashed.unstable;
    set_attrs(&mut state, xattrs::read(Source::File(&hashed.file), path));
    state
}

/// lstat of `sys` (the syscalls' spelling of `path`); None for "does not exist" (ENOENT, or
/// ENOTDIR: a parent is not a directory).
fn lstat_path(sys: &Path, path: &Path) -> Result<Option<Metadata>, ScanError> {
    match fs::symlink_metadata(sys) {
        Ok(meta) => Ok(Some(meta)),
        Err(error) => absent_or(error, path),
    }
}

/// "Does not exist" as None, anything else as the error.
fn absent_or<T>(error: io::Error, path: &Path) -> Result<Option<T>, ScanError> {
    if is_absent(&error) {
        return Ok(None);
    }
    Err(ScanError::Stat {
        path: path.to_path_buf(),
        source: error,
    })
}

pub(super) fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR)
    )
}

fn is_replaced(error: &io::Error) -> bool {
    is_absent(error) || error.raw_os_error() == Some(libc::EINVAL)
}

/// The metadata part of a state; content fields empty.
pub(super) fn metadata_state(meta: &Metadata) -> FileState {
    FileState {
        file_type: FileType::from_mode(meta.mode()),
        size: meta.size(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: join_ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: join_ns(meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
        dev: meta.dev(),
        nlink: meta.nlink(),
        ..FileState::empty(FileType::Regular)
    }
}

fn set_attrs(state: &mut FileState, attrs: SecurityAttrs) {
    state.acl = attrs.acl;
    state.selinux = attrs.selinux;
    state.capability = attrs.capability;
}

/// May `previous` stand in for reading `now`'s path? Only a complete, stable observation of the
/// same inode with the same quick metadata, holding everything asked for now.
fn reusable(previous: &FileState, now: &FileState, keep_content: Option<u64>) -> bool {
    previous.same_quick_metadata(now)
        && previous.error.is_none()
        && !previous.unstable
        && match now.file_type {
            FileType::Regular => {
                previous.hash.is_some() && (keep_content.is_none() || previous.content.is_some())
            }
            FileType::Symlink => previous.symlink_target.is_some(),
            _ => true,
        }
}

fn reuse(state: &mut FileState, previous: &FileState, keep_content: Option<u64>) {
    state.symlink_target.clone_from(&previous.symlink_target);
    state.hash = previous.hash;
    state.acl.clone_from(&previous.acl);
    state.selinux.clone_from(&previous.selinux);
    state.capability.clone_from(&previous.capability);
    if keep_content.is_some() {
        state.content.clone_from(&previous.content);
        state.content_truncated = previous.content_truncated;
    }
}
