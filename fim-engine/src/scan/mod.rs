//! The baseline scanner: turns paths into [`FileState`]s, one at a time or a whole entity at once.
//!
//! Three callers shape it:
//! - the daemon's reconcile loop calls [`observe`] for one path after kernel events; it must be
//!   cheap, never block on a FIFO or device, and never follow a symlink an attacker planted;
//! - periodic whole-entity scans ([`scan`]): the first baseline and the daily rehash
//!   ([`ScanMode::Full`]), and the 15-minute metadata sweep ([`ScanMode::Sweep`]) that only
//!   rehashes paths whose quick metadata ([`QuickMeta`]) differs from the stored baseline, so a
//!   rescan of an unchanged tree costs one `statx` per path;
//! - `fim scan`, which shows its progress ([`ScanProgress`]).
//!
//! Whole-entity scans run on a dedicated rayon pool (never the global one, so the daemon's tokio
//! threads are not starved), under an optional shared read budget ([`ByteBudget`]) and idle IO
//! priority, and stream [`ScanItem`]s into a bounded channel: the caller writes them to the
//! store from one thread, and the bounded channel is what keeps memory flat.
//!
//! Submodules: `observe` (the [`Observer`] interface; one path: `observe_unix` with lstat,
//! readlink, xattrs, `observe_windows` with one handle), `hash` (reading and hashing content;
//! `hash_unix` opens a regular file safely and reads sparse files around their holes),
//! `xattrs_unix` (POSIX ACL decoding), `long_unix` (paths longer than PATH_MAX), `known`
//! (the sweep's baseline view), `budget` (token bucket), `walk` (the parallel walk, through
//! the observer), `progress` (what a scan reports as it goes; the CLI draws it). Files named
//! `*_unix.rs` / `*_windows.rs` are compiled only there.
use std::{
    io,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use crate::{
    path_text::display_path,
    policy::{CompiledEntity, Settings},
    state::FileState,
};

mod budget;
mod hash;
#[cfg(unix)]
mod hash_unix;
mod known;
#[cfg(unix)]
mod known_unix;
#[cfg(windows)]
mod known_windows;
#[cfg(unix)]
mod long_unix;
#[cfg(windows)]
mod long_windows;
mod observe;
#[cfg(unix)]
mod observe_unix;
#[cfg(windows)]
mod observe_windows;
mod progress;
mod walk;
#[cfg(unix)]
mod xattrs_unix;

// The scanner's tests make FIFOs, modes, ACLs, xattrs, capabilities, tmpfs mounts and paths
// beyond PATH_MAX: Unix only. Windows has its own (`observe_windows_tests.rs`).
// (Two attributes, not `all(test, ..)`: clippy's allow-expect-in-tests looks for cfg(test).)
#[cfg(test)]
#[cfg(windows)]
mod observe_windows_tests;
#[cfg(test)]
#[cfg(unix)]
mod tests;

#[cfg(unix)]
use long_unix as long;
#[cfg(windows)]
use long_windows as long;

pub use crate::platform::set_idle_io_priority;
pub use budget::ByteBudget;
pub use known::{KnownMap, QuickMeta};
pub use long::symlink_metadata;
pub use observe::{observe, quick_metadata, FileObserver, Observation, ObserveOptions, Observer};
pub use progress::ScanProgress;
pub use walk::scan;
#[cfg(unix)]
pub use xattrs_unix::decode_posix_acl;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// lstat failed for another reason than "does not exist" (EACCES on a parent, ELOOP, ...).
    #[error("cannot examine {}: {source}", display_path(.path))]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the scan's worker threads: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// `ObserveOptions::cancel` was set while a file was read: its state is unknown.
    #[error("cancelled while reading")]
    Cancelled,
    /// The process (EMFILE) or the system (ENFILE) ran out of descriptors while the file was
    /// opened to hash it, even after a few retries. That says nothing about the file: it is
    /// looked at again, never recorded with this as its state.
    #[error("cannot open {} to hash it: {source}", display_path(.path))]
    OutOfDescriptors {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ScanError {
    /// Out of descriptors: retry soon, record nothing now.
    pub fn is_transient(&self) -> bool {
        matches!(self, ScanError::OutOfDescriptors { .. })
    }
}

/// One entity to scan, with its baseline for sweeps.
#[derive(Clone, Copy, Debug)]
pub struct ScanTarget<'a> {
    pub entity: &'a CompiledEntity,
    /// The entity's baseline. [`ScanMode::Sweep`] reports [`ScanOutcome::Unchanged`] for paths
    /// whose quick metadata equals the entry here; paths not in it are observed in full.
    pub known: Option<&'a KnownMap>,
}

impl<'a> ScanTarget<'a> {
    pub fn new(entity: &'a CompiledEntity) -> Self {
        ScanTarget {
            entity,
            known: None,
        }
    }

    pub fn with_known(entity: &'a CompiledEntity, known: &'a KnownMap) -> Self {
        ScanTarget {
            entity,
            known: Some(known),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScanMode {
    /// Hash every regular file (first baseline, daily rehash).
    #[default]
    Full,
    /// Hash only paths whose quick metadata differs from the target's `known` map.
    Sweep,
}

#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub mode: ScanMode,
    /// Worker threads (0 = number of CPUs).
    pub workers: usize,
    /// Read budget shared by all workers (None = unlimited).
    pub bytes_per_second: Option<u64>,
    /// Give the workers the idle IO priority class.
    pub idle_io: bool,
    /// Descend into other filesystems mounted below an entity's root.
    pub cross_filesystems: bool,
    /// Content kept for file-content entities (`CompiledEntity::keep_content`), in bytes.
    pub content_limit: u64,
    /// Told about every path (the CLI draws its terminal line from it).
    pub progress: Option<Arc<dyn ScanProgress>>,
    /// Send `Unchanged` items (default). Without them a sweep of an unchanged tree sends
    /// nothing; removed paths then come from [`KnownMap::unseen`].
    pub report_unchanged: bool,
    /// Set it to stop the scan early (entity edited, daemon shutting down).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Regular files of at least this many bytes that need reading are not read but sent as
    /// [`ScanOutcome::Large`] (the daemon hashes them beside its event path). None: read all.
    pub defer_large: Option<u64>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions::from_settings(&Settings::default(), ScanMode::Full)
    }
}

impl ScanOptions {
    pub fn from_settings(settings: &Settings, mode: ScanMode) -> Self {
        ScanOptions {
            mode,
            workers: settings.scan_workers,
            bytes_per_second: settings.scan_bytes_per_second,
            idle_io: settings.scan_idle_io,
            cross_filesystems: settings.cross_filesystems,
            content_limit: settings.content_limit,
            progress: None,
            report_unchanged: true,
            cancel: None,
            defer_large: None,
        }
    }
}

/// What [`scan`] sends: several items at once (see its docs).
pub type ScanBatch = Vec<ScanItem>;

/// One covered path found by [`scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanItem {
    /// Index into the `targets` slice given to [`scan`].
    pub entity: usize,
    pub path: PathBuf,
    pub outcome: ScanOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanOutcome {
    /// The path's current state (boxed: a `FileState` is a few hundred bytes and most sweep
    /// items are `Unchanged`).
    State(Box<FileState>),
    /// Sweep only: quick metadata equals the baseline's, nothing was read.
    Unchanged,
    /// The entity's root does not exist (not an error: the policy allows missing paths).
    Missing,
    /// Listed, but gone before it could be examined: treat as absent.
    Vanished,
    /// The path could not be examined (lstat failed): keep its baseline as it is.
    Error(String),
    /// A regular file of at least [`ScanOptions::defer_large`] bytes whose content must be
    /// read (new, or its quick metadata differs from the baseline): left unread for the
    /// caller to hash elsewhere. Its metadata is what the walk saw.
    Large(Box<FileState>),
    /// The directory's own item was sent, but it could not be listed (fully): nothing below
    /// it may be inferred removed from this scan.
    ListFailed(String),
}

/// What a [`scan`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Non-directory paths reported (State or Unchanged).
    pub files: u64,
    /// Directories reported (State or Unchanged).
    pub directories: u64,
    /// Paths reported `Unchanged` (sweep).
    pub unchanged: u64,
    /// Bytes read and hashed (retries included).
    pub bytes_hashed: u64,
    /// Paths that could not be examined, read or listed.
    pub errors: u64,
    /// Files that kept changing while being hashed.
    pub unstable: u64,
    /// Targets whose root does not exist.
    pub missing_roots: u64,
    /// The scan stopped early: `cancel` was set or the receiver was dropped.
    pub cancelled: bool,
    pub elapsed: Duration,
}
