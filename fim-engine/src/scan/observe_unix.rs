//! [`FileObserver`] on Unix: one path's [`FileState`], for the reconciler after a kernel event
//! and for the walk's every covered path.
//!
//! Symlinks are never followed (lstat, readlink, `l*` xattr calls). Only regular files are
//! opened (see [`super::hash`]); FIFOs, sockets and devices are described from their
//! metadata alone, since opening them can block or have side effects. When the path is swapped
//! for another file while it is examined, it is examined again from the lstat, a few times.
//! A path longer than PATH_MAX is examined through its parent's descriptor (`super::long`).
use std::{
    fs::{self, Metadata},
    io,
    os::unix::{ffi::OsStringExt, fs::MetadataExt},
    path::Path,
};

use super::{
    hash::MAX_RETRIES,
    hash_unix::{self as hash, HashOutcome},
    long_unix::{self as long, SysPath},
    observe::{absent_or, reusable, reuse, FileObserver, Observation, ObserveOptions, Observer},
    xattrs_unix::{self as xattrs, SecurityAttrs, Source},
    QuickMeta, ScanError,
};
use crate::state::{FileState, FileType};

impl Observer for FileObserver {
    type Name = Path;
    type Glance = Metadata;

    fn glance(&self, path: &Path) -> io::Result<Metadata> {
        long::symlink_metadata(path)
    }

    fn quick(&self, _path: &Path, meta: &Metadata) -> io::Result<QuickMeta> {
        Ok(QuickMeta::from_metadata(meta))
    }

    fn observe(
        &self,
        path: &Path,
        lstat: Option<Metadata>,
        options: &ObserveOptions<'_>,
    ) -> Result<Option<Observation>, ScanError> {
        observe_with(path, lstat, options)
    }

    fn observe_listed_leaf(
        &self,
        path: &Path,
        options: &ObserveOptions<'_>,
    ) -> Result<Option<Observation>, ScanError> {
        observe_regular_entry(path, options)
    }
}

impl FileObserver {
    /// The file system the glanced object is on (st_dev), for "do not cross mounts".
    pub(super) fn device(&self, _path: &Path, meta: &Metadata) -> io::Result<u64> {
        Ok(meta.dev())
    }
}

impl QuickMeta {
    pub fn from_metadata(meta: &Metadata) -> Self {
        QuickMeta {
            file_type: FileType::from_mode(meta.mode()),
            size: meta.size(),
            mtime_ns: join_ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: join_ns(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// `lstat`: the walk's statx (None: lstat here).
fn observe_with(
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
                HashOutcome::Large(meta) => {
                    return Ok(Some(Observation::large(metadata_state(&meta))))
                }
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
fn observe_regular_entry(
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
        HashOutcome::Large(meta) => Ok(Some(Observation::large(metadata_state(&meta)))),
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

pub(crate) fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR)
    )
}

fn is_replaced(error: &io::Error) -> bool {
    is_absent(error) || error.raw_os_error() == Some(libc::EINVAL)
}

/// The metadata part of a state; content fields empty.
fn metadata_state(meta: &Metadata) -> FileState {
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

/// Seconds and nanoseconds as one i64 of nanoseconds since the epoch (saturating).
fn join_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}
