//! Observing one monitored object: the [`Observer`] interface, and [`observe`], the one entry
//! point the daemon's reconciler uses for a file.
//!
//! There is one implementation per kind of object and platform. Files are [`FileObserver`]:
//! `observe_unix.rs` (lstat, readlink, POSIX ACLs, security xattrs and capabilities, long
//! paths through directory descriptors) and `observe_windows.rs` (one handle opened without
//! following links, `GetFileInformationByHandle` for identity, attributes and times). Registry
//! keys and services get theirs with the Windows event sources. The walk and the reconciler
//! never call a platform's code directly, so a platform is added by implementing this trait.
//!
//! Whatever the platform, the rules are the same: never follow a link (the monitored object
//! is the link, and following it would let whoever controls the link steer the scanner), never
//! open what could block or have side effects, and look again when the object is swapped
//! while it is examined.
use std::{
    io,
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64},
};

use super::{budget::ByteBudget, QuickMeta, ScanError};
use crate::state::{FileState, FileType};

#[cfg(unix)]
pub(crate) use super::observe_unix::is_absent;
#[cfg(windows)]
pub(crate) use super::observe_windows::is_absent;

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

/// What observing one object found.
pub struct Observation {
    pub state: FileState,
    pub bytes_read: u64,
    /// Not read: a regular file of at least [`ObserveOptions::hash_below`] bytes.
    pub large: bool,
}

impl Observation {
    pub(super) fn read(state: FileState, bytes_read: u64) -> Self {
        Observation {
            state,
            bytes_read,
            large: false,
        }
    }

    /// Metadata only: too large to read here.
    pub(super) fn large(state: FileState) -> Self {
        Observation {
            state,
            bytes_read: 0,
            large: true,
        }
    }
}

/// Observing one kind of monitored object on this platform (see the module docs).
pub trait Observer {
    /// How an object of this kind is named (a path for files).
    type Name: ?Sized;
    /// What a cheap look at it says (for files: the lstat, or the walk's directory entry).
    type Glance;

    /// The cheap look: a file's lstat, never following it. Reaches whatever the platform's
    /// names allow (on Linux also paths longer than PATH_MAX).
    fn glance(&self, name: &Self::Name) -> io::Result<Self::Glance>;

    /// The quick metadata a sweep compares with the baseline, from a glance.
    fn quick(&self, name: &Self::Name, glance: &Self::Glance) -> io::Result<QuickMeta>;

    /// Observes `name` without following it, from `glance` when the caller has one.
    /// `Ok(None)`: it does not exist. Err only when it cannot even be looked at (access
    /// denied on a parent, a name too long, ...); an object that cannot be read is a state
    /// with `error` set.
    fn observe(
        &self,
        name: &Self::Name,
        glance: Option<Self::Glance>,
        options: &ObserveOptions<'_>,
    ) -> Result<Option<Observation>, ScanError>;

    /// A full scan's entry that its listing says is a plain leaf (a regular file): observed
    /// without a glance first where the platform can describe it from the opened object.
    fn observe_listed_leaf(
        &self,
        name: &Self::Name,
        options: &ObserveOptions<'_>,
    ) -> Result<Option<Observation>, ScanError> {
        self.observe(name, None, options)
    }
}

/// Files, on this platform: `impl Observer` is in `observe_unix.rs` / `observe_windows.rs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileObserver;

/// Observes one path without following it. `Ok(None)`: the path does not exist.
/// Err only when the path cannot even be lstat'ed (EACCES on a parent, ENAMETOOLONG, ...);
/// a file that cannot be read is a state with `error` set.
pub fn observe(path: &Path, options: &ObserveOptions<'_>) -> Result<Option<FileState>, ScanError> {
    Ok(FileObserver
        .observe(path, None, options)?
        .map(|observation| observation.state))
}

/// The quick metadata of the path now, not following it (is the path still what was seen?).
pub fn quick_metadata(path: &Path) -> io::Result<QuickMeta> {
    FileObserver.quick(path, &FileObserver.glance(path)?)
}

/// May `previous` stand in for reading `now`'s path? Only a complete, stable observation of the
/// same inode with the same quick metadata, holding everything asked for now.
pub(super) fn reusable(previous: &FileState, now: &FileState, keep_content: Option<u64>) -> bool {
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

pub(super) fn reuse(state: &mut FileState, previous: &FileState, keep_content: Option<u64>) {
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

/// "Does not exist" as None, anything else as the error.
pub(super) fn absent_or<T>(error: io::Error, path: &Path) -> Result<Option<T>, ScanError> {
    if is_absent(&error) {
        return Ok(None);
    }
    Err(ScanError::Stat {
        path: path.to_path_buf(),
        source: error,
    })
}
