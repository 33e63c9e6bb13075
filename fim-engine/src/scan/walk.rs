//! The parallel walk behind [`scan`]: every covered path of every target, into a channel.
//!
//! How it works, and why:
//! - Each directory is one rayon job: it opens the directory, reports the directory itself,
//!   and reads its entries in batches of [`BATCH`]. Batches are handed to other jobs so a
//!   single directory of 100k files is still hashed by every worker. Subdirectories become
//!   new jobs, so depth costs heap (a queued job) and never stack: deep trees cannot overflow.
//! - Entries are stat'ed through the directory's fd (`DirEntry::metadata` is `statx` relative
//!   to it, with `AT_SYMLINK_NOFOLLOW`): no path walk per entry, and symlinks never followed.
//!   An entry no target covers is skipped on its `d_type` alone unless it is a directory to
//!   descend into, so ignored files cost nothing but their directory entry. In a full scan a
//!   regular file (by `d_type`) is not stat'ed at all: it is opened, and the fstat the hashing
//!   needs anyway describes it.
//! - Opening files and directories uses full paths while they fit in PATH_MAX (4096 bytes);
//!   deeper ones are opened relative to their parent's descriptor (`super::long`), so a file
//!   hidden below a very deep directory chain is walked like any other.
//! - Sweep mode compares the `statx` result with the target's [`KnownMap`] and reports
//!   `Unchanged` without building a `FileState`: an unchanged tree costs one `statx` per path.
//! - Directories on another filesystem than the root's are reported but not entered (unless
//!   `cross_filesystems`), like `find -xdev`: a mounted backup disk or /proc under a monitored
//!   path must not be walked.
//! - Items travel in batches (one `Vec` per job, up to [`BATCH`] items): a channel send per
//!   path would wake the consumer thread for every path, and on a sweep those wake-ups cost
//!   more than the `statx` itself.
//! - Memory stays bounded: the channel is bounded (workers wait for the consumer), at most
//!   [`QUEUED_BATCHES_PER_WORKER`] batches per worker are queued before a lister processes its
//!   batches itself, and a queued directory job is a path and a `Metadata`.
//! - The pool is dedicated to the scan and dropped with it; the daemon's tokio threads and
//!   rayon's global pool are never used.
use std::{
    fs::{self, DirEntry, Metadata},
    mem,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use crossbeam_channel::Sender;
use rayon::{Scope, ThreadPoolBuilder};
use tracing::{debug, warn};

use super::{
    budget::ByteBudget,
    hash,
    long::SysPath,
    observe::{is_absent, FileObserver, Observation, ObserveOptions, Observer},
    progress::ScanProgress,
    KnownMap, ScanBatch, ScanError, ScanItem, ScanMode, ScanOptions, ScanOutcome, ScanSummary,
    ScanTarget,
};
use crate::{path_text::display_path, policy::CompiledEntity, state::FileType};

/// Directory entries per job.
const BATCH: usize = 128;
/// Entries of one directory, with their paths.
type Batch = Vec<(PathBuf, DirEntry)>;
/// Batches queued per worker before a lister handles its own batches.
const QUEUED_BATCHES_PER_WORKER: usize = 4;

/// Scans every target and sends one [`ScanItem`] per covered path into `sink`, in batches of
/// up to 128 items, in no particular order.
///
/// Blocks until the scan is done, so the receiver must be drained on another thread (the
/// daemon calls this from a blocking thread, not from a tokio worker). Memory held in the
/// channel is its capacity times a batch: a few batches are enough to keep workers busy.
/// `ScanItem::entity` is the target's index in `targets`. Baseline paths that no item names
/// (or, with `report_unchanged: false`, that [`KnownMap::unseen`] lists) are gone, except at
/// or below a path reported `ListFailed` or `Error`. Dropping the receiver, or setting
/// `options.cancel`, stops the scan early (`ScanSummary::cancelled`): then nothing may be
/// inferred removed.
/// Four threads per CPU (4..=32): see `Settings::scan_workers`.
fn automatic_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    (cpus * 4).clamp(4, 32)
}

pub fn scan(
    targets: &[ScanTarget<'_>],
    options: &ScanOptions,
    sink: &Sender<ScanBatch>,
) -> Result<ScanSummary, ScanError> {
    let started = Instant::now();
    let workers = match options.workers {
        0 => automatic_workers(),
        workers => workers,
    };
    let idle_io = options.idle_io;
    let pool = ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|index| format!("fim-scan-{index}"))
        .start_handler(move |_| {
            hash::mark_scan_worker();
            if idle_io {
                if let Err(error) = crate::platform::set_idle_io_priority() {
                    warn!(%error, "cannot give the scan worker the idle IO priority");
                }
            }
        })
        .build()?;
    let walk = Walk {
        options,
        sink,
        budget: options.bytes_per_second.map(ByteBudget::new),
        stats: Stats::default(),
        stop: AtomicBool::new(false),
        queued: AtomicUsize::new(0),
        max_queued: workers * QUEUED_BATCHES_PER_WORKER,
        progress: options.progress.clone(),
    };
    pool.scope(|scope| {
        for (index, target) in targets.iter().enumerate() {
            let job = Job {
                index,
                entity: target.entity,
                known: target.known,
                max_depth: target.entity.max_depth(),
                keep_content: target.entity.keep_content.then_some(options.content_limit),
                covers_all: target.entity.recursive
                    && target.entity.name_glob.is_none()
                    && target.entity.ignore.is_empty()
                    && target.entity.excluded.is_empty(),
                root_dev: None,
            };
            let walk = &walk;
            scope.spawn(move |scope| walk.root(scope, job));
        }
    });
    if let Some(progress) = &walk.progress {
        progress.finish();
    }
    let summary = walk.summary(started);
    debug!(?summary, "scan finished");
    Ok(summary)
}

/// One target, as every job of its walk needs it.
#[derive(Clone, Copy)]
struct Job<'a> {
    index: usize,
    entity: &'a CompiledEntity,
    known: Option<&'a KnownMap>,
    max_depth: Option<usize>,
    keep_content: Option<u64>,
    /// Recursive, no glob, no ignores: everything below the root is covered (skips `covers`).
    covers_all: bool,
    /// The root's file system (st_dev; the volume serial on Windows), for staying on it.
    root_dev: Option<u64>,
}

#[derive(Default)]
struct Stats {
    files: AtomicU64,
    directories: AtomicU64,
    unchanged: AtomicU64,
    bytes_hashed: AtomicU64,
    errors: AtomicU64,
    unstable: AtomicU64,
    missing_roots: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Walk<'a> {
    options: &'a ScanOptions,
    sink: &'a Sender<ScanBatch>,
    budget: Option<ByteBudget>,
    stats: Stats,
    stop: AtomicBool,
    queued: AtomicUsize,
    max_queued: usize,
    progress: Option<Arc<dyn ScanProgress>>,
}

impl<'a> Walk<'a> {
    fn root<'s>(&'s self, scope: &Scope<'s>, mut job: Job<'s>) {
        let mut out = self.outbox();
        let out = &mut out;
        let root = &job.entity.root;
        let meta = match fs::symlink_metadata(root) {
            Ok(meta) => meta,
            Err(error) if is_absent(&error) => {
                bump(&self.stats.missing_roots);
                out.push(job.index, root.clone(), ScanOutcome::Missing);
                return;
            }
            Err(error) => {
                bump(&self.stats.errors);
                out.push(
                    job.index,
                    root.clone(),
                    ScanOutcome::Error(error.to_string()),
                );
                return;
            }
        };
        job.root_dev = FileObserver.device(root, &meta).ok();
        let covered = job.entity.covers(root);
        if meta.is_dir() && job.max_depth != Some(0) {
            self.directory(scope, job, root.clone(), meta, covered, 0);
        } else if covered {
            self.report(job, root.clone(), meta, out);
        }
    }

    /// Reports the directory (when covered) and lists it; `depth` is its depth below the root.
    fn directory<'s>(
        &'s self,
        scope: &Scope<'s>,
        job: Job<'s>,
        path: PathBuf,
        meta: Metadata,
        covered: bool,
        depth: usize,
    ) {
        if self.stopped() {
            return;
        }
        let mut out = self.outbox();
        let out = &mut out;
        let listing = SysPath::new(&path).and_then(|sys| fs::read_dir(sys.get()));
        if let Err(error) = &listing {
            if is_absent(error) {
                if covered {
                    out.push(job.index, path, ScanOutcome::Vanished);
                }
                return;
            }
        }
        if covered {
            self.report(job, path.clone(), meta, out);
        }
        let entries = match listing {
            Ok(entries) => entries,
            Err(error) => {
                self.list_failed(job, path, &error, out);
                return;
            }
        };
        let mut batch = Vec::with_capacity(BATCH);
        for entry in entries {
            if self.stopped() {
                return;
            }
            match entry {
                // Joined here, not with `entry.path()`: a long directory is listed through
                // its /proc/self/fd alias, which must not leak into reported paths.
                Ok(entry) => batch.push((path.join(entry.file_name()), entry)),
                Err(error) => {
                    self.list_failed(job, path.clone(), &error, out);
                    break;
                }
            }
            if batch.len() == BATCH {
                let full = mem::replace(&mut batch, Vec::with_capacity(BATCH));
                self.dispatch(scope, job, full, depth + 1);
            }
        }
        if !batch.is_empty() {
            self.entries(scope, job, batch, depth + 1, out);
        }
    }

    fn list_failed(&self, job: Job<'_>, path: PathBuf, error: &std::io::Error, out: &mut Outbox) {
        bump(&self.stats.errors);
        warn!(path = %display_path(&path), %error, "cannot list directory");
        out.push(job.index, path, ScanOutcome::ListFailed(error.to_string()));
    }

    /// Queues a batch for any worker, or handles it here when enough are queued already.
    fn dispatch<'s>(&'s self, scope: &Scope<'s>, job: Job<'s>, batch: Batch, depth: usize) {
        if self.queued.fetch_add(1, Ordering::AcqRel) < self.max_queued {
            scope.spawn(move |scope| {
                self.entries(scope, job, batch, depth, &mut self.outbox());
                self.queued.fetch_sub(1, Ordering::AcqRel);
            });
        } else {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.entries(scope, job, batch, depth, &mut self.outbox());
        }
    }

    /// Entries of one directory, all at `depth` below the root.
    fn entries<'s>(
        &'s self,
        scope: &Scope<'s>,
        job: Job<'s>,
        batch: Batch,
        depth: usize,
        out: &mut Outbox<'s>,
    ) {
        let descend = job.max_depth.is_none_or(|max| depth < max);
        for (path, entry) in batch {
            if self.stopped() {
                return;
            }
            let covered = job.covers_all || job.entity.covers(&path);
            // A full scan opens regular files without a statx first: the fstat describes them.
            if covered
                && self.options.mode == ScanMode::Full
                && entry.file_type().is_ok_and(|kind| kind.is_file())
            {
                self.report_regular(job, path, out);
                continue;
            }
            // Uncovered entries matter only as directories to enter, which d_type tells.
            let wanted = covered || (descend && entry.file_type().is_ok_and(|kind| kind.is_dir()));
            if !wanted {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(error) if is_absent(&error) => {
                    if covered {
                        out.push(job.index, path, ScanOutcome::Vanished);
                    }
                    continue;
                }
                Err(error) if covered => {
                    // It exists: not removed, whatever it is now.
                    if let Some(known) = job.known {
                        known.mark_seen(&path);
                    }
                    bump(&self.stats.errors);
                    out.push(job.index, path, ScanOutcome::Error(error.to_string()));
                    continue;
                }
                // An uncovered directory we meant to enter: covered paths below it are unknown.
                Err(error) => {
                    self.list_failed(job, path, &error, out);
                    continue;
                }
            };
            if meta.is_dir() && descend && self.same_fs(job, &path, &meta) {
                scope.spawn(move |scope| self.directory(scope, job, path, meta, covered, depth));
            } else if covered {
                self.report(job, path, meta, out);
            }
        }
    }

    /// May the walk enter this directory (not another file system, unless allowed)?
    fn same_fs(&self, job: Job<'_>, path: &Path, meta: &Metadata) -> bool {
        self.options.cross_filesystems
            || match (FileObserver.device(path, meta), job.root_dev) {
                (Ok(dev), Some(root_dev)) => dev == root_dev,
                // Not known: enter it (its listing says whether it can be read).
                _ => true,
            }
    }

    /// Sends the item for one covered path: `Unchanged` in a sweep when the quick metadata
    /// matches the baseline, else its observed state.
    fn report(&self, job: Job<'_>, path: PathBuf, meta: Metadata, out: &mut Outbox) {
        if let Some(known) = job.known {
            // Quick metadata that cannot be had only says "look at it".
            let same = match FileObserver.quick(&path, &meta) {
                Ok(quick) => known.see(&path, &quick),
                Err(_) => {
                    known.mark_seen(&path);
                    false
                }
            };
            if same && self.options.mode == ScanMode::Sweep {
                bump(if meta.is_dir() {
                    &self.stats.directories
                } else {
                    &self.stats.files
                });
                bump(&self.stats.unchanged);
                self.progress(0);
                if self.options.report_unchanged {
                    out.push(job.index, path, ScanOutcome::Unchanged);
                }
                return;
            }
        }
        let observed = FileObserver.observe(&path, Some(meta), &self.observe_options(job));
        self.account(job, path, observed, out);
    }

    /// [`Walk::report`] for a regular file in a full scan, without the statx.
    fn report_regular(&self, job: Job<'_>, path: PathBuf, out: &mut Outbox) {
        let observed = FileObserver.observe_listed_leaf(&path, &self.observe_options(job));
        if let (Some(known), Ok(Some(_)) | Err(_)) = (job.known, &observed) {
            known.mark_seen(&path);
        }
        self.account(job, path, observed, out);
    }

    fn observe_options(&self, job: Job<'_>) -> ObserveOptions<'_> {
        ObserveOptions {
            keep_content: job.keep_content,
            previous: None,
            budget: self.budget.as_ref(),
            // A daily rehash meeting a 16 TB file must still stop at SIGTERM.
            cancel: self.options.cancel.as_deref(),
            progress: None,
            hash_below: self.options.defer_large,
        }
    }

    /// Counts an observation and queues its item.
    fn account(
        &self,
        job: Job<'_>,
        path: PathBuf,
        observed: Result<Option<Observation>, ScanError>,
        out: &mut Outbox,
    ) {
        let outcome = match observed {
            Ok(Some(observation)) => {
                let state = observation.state;
                let counter = if state.file_type == FileType::Directory {
                    &self.stats.directories
                } else {
                    &self.stats.files
                };
                bump(counter);
                if state.error.is_some() {
                    bump(&self.stats.errors);
                }
                if state.unstable {
                    bump(&self.stats.unstable);
                }
                self.stats
                    .bytes_hashed
                    .fetch_add(observation.bytes_read, Ordering::Relaxed);
                self.progress(observation.bytes_read);
                if observation.large {
                    ScanOutcome::Large(Box::new(state))
                } else {
                    ScanOutcome::State(Box::new(state))
                }
            }
            Ok(None) => ScanOutcome::Vanished,
            Err(error) => {
                bump(&self.stats.errors);
                ScanOutcome::Error(error.to_string())
            }
        };
        out.push(job.index, path, outcome);
    }

    fn progress(&self, bytes: u64) {
        if let Some(progress) = &self.progress {
            progress.path_done(bytes);
        }
    }

    fn outbox(&self) -> Outbox<'_> {
        Outbox {
            sink: self.sink,
            stop: &self.stop,
            items: Vec::new(),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self
                .options
                .cancel
                .as_ref()
                .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
    }

    fn summary(&self, started: Instant) -> ScanSummary {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ScanSummary {
            files: load(&self.stats.files),
            directories: load(&self.stats.directories),
            unchanged: load(&self.stats.unchanged),
            bytes_hashed: load(&self.stats.bytes_hashed),
            errors: load(&self.stats.errors),
            unstable: load(&self.stats.unstable),
            missing_roots: load(&self.stats.missing_roots),
            cancelled: self.stopped(),
            elapsed: started.elapsed(),
        }
    }
}

/// A job's pending items: sent when [`BATCH`] are gathered and when the job ends (on drop,
/// so no path can forget to flush).
struct Outbox<'w> {
    sink: &'w Sender<ScanBatch>,
    stop: &'w AtomicBool,
    items: Vec<ScanItem>,
}

impl Outbox<'_> {
    fn push(&mut self, entity: usize, path: PathBuf, outcome: ScanOutcome) {
        if self.items.capacity() == 0 {
            self.items.reserve_exact(BATCH);
        }
        self.items.push(ScanItem {
            entity,
            path,
            outcome,
        });
        if self.items.len() >= BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let batch = mem::take(&mut self.items);
        if self.sink.send(batch).is_err() {
            // The receiver is gone: nobody wants the rest.
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Outbox<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
