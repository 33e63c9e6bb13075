//! Large files are hashed beside the event path, so one object never holds up the others.
//!
//! Hashing is the only step of a verdict whose cost has no bound: a 100 GB sparse file takes
//! about 23 s of BLAKE3 (see `scan::hash`), a 16 TB one an hour. Done inside
//! [`Reconciler::judge`], under the reconciler lock, it stopped every real-time record, the
//! status and the shutdown for that long. So a regular file of at least [`LARGE_FILE`] bytes is
//! handed to one background worker instead ([`Deferred::offer`]): a bounded queue, one path per
//! entry (later events for a queued path merge their hints into it), hashed without any lock
//! held, with a progress counter `fim status` shows and a cancellation flag checked between
//! 1 MiB chunks. Its verdict is committed when the hash is done, under the lock, and only if
//! the file still has the quick metadata (size, times, inode) it was hashed with; otherwise it
//! is looked at again. Events for the path while it is being hashed queue it again after the
//! commit, so nothing that happened during a long hash is lost.
//!
//! One worker, not a pool: the host may have two cores, and the event path needs one. It runs
//! at nice 10 so the event path wins any contention for the CPU.
//!
//! When the daemon stops, the running hash is cancelled and queued paths are dropped without
//! a verdict: their baseline rows are untouched, so the next start-up sweep sees their
//! metadata differ from the baseline (or finds them new) and hashes them then. Nothing is
//! ever committed with a partial hash.
use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::Duration,
};

use crate::{
    change::Detection,
    path_text::display_path,
    scan::{self, ObserveOptions, QuickMeta, ScanError},
    state::FileState,
};

use super::{lock, Hint, ReconcileError, Reconciler, Verdict};

/// Regular files at least this large are hashed by the background worker: about 15 ms of
/// BLAKE3 on one core, less than one coalescing window, so smaller files stay inline.
pub const LARGE_FILE: u64 = 64 << 20;
/// Paths waiting at most; beyond that, paths are hashed inline again (slow, never lost).
const MAX_QUEUED: usize = 4096;
/// A commit that failed (disk full) is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// One path waiting for its hash.
#[derive(Clone, Debug)]
pub(super) struct Job {
    path: PathBuf,
    hint: Hint,
    detection: Detection,
    /// A metadata sweep's job: when the path's quick metadata equals the baseline's by the
    /// time it is hashed (a real-time job hashed it first), the baseline stands and nothing is
    /// read. Events and the full rehash read the file whatever the metadata says.
    trust_baseline: bool,
}

impl Job {
    fn merged_over(self, older: Job) -> Job {
        Job {
            hint: self.hint.merged_over(older.hint),
            trust_baseline: self.trust_baseline && older.trust_baseline,
            ..self
        }
    }
}

/// The file being hashed now.
struct Running {
    path: PathBuf,
    size: u64,
    /// Events that came for the path while it was hashed: it is queued again afterwards.
    again: Option<Job>,
}

#[derive(Default)]
struct Queue {
    order: VecDeque<PathBuf>,
    jobs: HashMap<PathBuf, Job>,
    running: Option<Running>,
}

/// A large file being hashed, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashProgress {
    pub path: PathBuf,
    pub size: u64,
    /// Bytes hashed so far.
    pub done: u64,
}

/// The background hasher's queue, shared by the reconciler (which offers paths), the worker
/// and the daemon (which shows progress and stops it).
#[derive(Default)]
pub struct Deferred {
    queue: Mutex<Queue>,
    wake: Condvar,
    stop: AtomicBool,
    progress: AtomicU64,
}

impl Deferred {
    pub fn new() -> Arc<Self> {
        Arc::new(Deferred::default())
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent after any panic (plain inserts and removes): take it over.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the path for background hashing. False: the queue is full (hash it inline).
    pub(super) fn offer(&self, job: Job) -> bool {
        let mut queue = self.queue();
        if self.stopped() {
            // Stopping: not hashed now, and not inline either (that would hold up the exit);
            // the baseline is untouched, so the next start-up sweep looks at it.
            tracing::debug!(path = %display_path(&job.path), "stopping; left to the next start");
            return true;
        }
        if let Some(running) = queue.running.as_mut().filter(|run| run.path == job.path) {
            running.again = Some(match running.again.take() {
                Some(older) => job.merged_over(older),
                None => job,
            });
            return true;
        }
        if let Some(older) = queue.jobs.remove(&job.path) {
            let merged = job.merged_over(older);
            queue.jobs.insert(merged.path.clone(), merged);
            return true;
        }
        if queue.jobs.len() >= MAX_QUEUED {
            return false;
        }
        queue.order.push_back(job.path.clone());
        queue.jobs.insert(job.path.clone(), job);
        self.wake.notify_one();
        true
    }

    /// What is being hashed now (at most one file) and how many paths wait.
    pub fn status(&self) -> (Vec<HashProgress>, u64) {
        let queue = self.queue();
        let running = queue.running.iter().map(|running| HashProgress {
            path: running.path.clone(),
            size: running.size,
            done: self.progress.load(Ordering::Relaxed).min(running.size),
        });
        (running.collect(), queue.jobs.len() as u64)
    }

    /// Cancels the running hash and makes the worker return; queued paths are dropped (see
    /// the module docs for why that loses nothing). Returns how many were dropped.
    pub fn stop(&self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut queue = self.queue();
        let dropped = queue.jobs.len() + usize::from(queue.running.is_some());
        queue.jobs.clear();
        queue.order.clear();
        self.wake.notify_all();
        dropped
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The next job, marked running; None once stopped.
    fn next(&self) -> Option<Job> {
        let mut queue = self.queue();
        loop {
            if self.stopped() {
                return None;
            }
            while let Some(path) = queue.order.pop_front() {
                if let Some(job) = queue.jobs.remove(&path) {
                    self.progress.store(0, Ordering::Relaxed);
                    queue.running = Some(Running {
                        path,
                        size: 0,
                        again: None,
                    });
                    return Some(job);
                }
            }
            queue = self
                .wake
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn set_size(&self, size: u64) {
        if let Some(running) = self.queue().running.as_mut() {
            running.size = size;
        }
    }

    /// The running job is done; what came for it meanwhile (and `retry`) is queued again.
    fn finish(&self, retry: Option<Job>) {
        let mut queue = self.queue();
        let again = queue.running.take().and_then(|running| running.again);
        let next = match (again, retry) {
            (Some(again), Some(retry)) => Some(again.merged_over(retry)),
            (again, retry) => again.or(retry),
        };
        drop(queue);
        if let Some(job) = next {
            if !self.stopped() {
                self.offer(job);
            }
        }
    }

    /// Waits `timeout` unless stopped first.
    fn pause(&self, timeout: Duration) {
        let queue = self.queue();
        if !self.stopped() {
            let _ = self.wake.wait_timeout(queue, timeout);
        }
    }
}

impl Reconciler {
    /// From now on, large files are hashed by [`run_worker`] on `deferred`.
    pub fn hash_large_files_beside(&mut self, deferred: Arc<Deferred>) {
        self.deferred = Some(deferred);
    }

    /// Back to hashing every file inline (the worker could not start).
    pub fn hash_large_files_inline(&mut self) {
        self.deferred = None;
    }

    /// Hands `path` to the background hasher when it is a large regular file (and one runs).
    /// True: its verdict will come from there.
    pub(super) fn defer_if_large(&self, path: &Path, hint: &Hint, detection: Detection) -> bool {
        let Some(deferred) = &self.deferred else {
            return false;
        };
        let large = scan::symlink_metadata(path)
            .is_ok_and(|meta| meta.file_type().is_file() && meta.len() >= LARGE_FILE);
        if !large {
            return false;
        }
        let job = Job {
            path: path.to_path_buf(),
            hint: hint.clone(),
            detection,
            trust_baseline: false,
        };
        offer_or_inline(deferred, job)
    }

    /// Hands a large file a scan met (and did not read) to the background hasher. False: no
    /// hasher runs or its queue is full; the caller hashes it inline.
    pub(super) fn defer_scanned(&self, path: &Path, detection: Detection, full: bool) -> bool {
        let Some(deferred) = &self.deferred else {
            return false;
        };
        let job = Job {
            path: path.to_path_buf(),
            hint: Hint::default(),
            detection,
            trust_baseline: !full,
        };
        offer_or_inline(deferred, job)
    }

    /// Does the daemon hash large files beside (scans may then leave them unread)?
    pub(super) fn hashes_large_files_beside(&self) -> bool {
        self.deferred.is_some()
    }
}

fn offer_or_inline(deferred: &Deferred, job: Job) -> bool {
    let path = job.path.clone();
    if deferred.offer(job) {
        return true;
    }
    tracing::warn!(path = %display_path(&path), "the background hash queue is full; hashing inline");
    false
}

/// The background hasher: runs until [`Deferred::stop`]. Sets its own thread's nice value.
pub fn run_worker(deferred: &Deferred, reconciler: &Mutex<Reconciler>) {
    // Failure only leaves the default priority.
    if crate::platform::lower_thread_priority().is_err() {
        tracing::debug!("cannot lower the background hasher's priority");
    }
    while let Some(job) = deferred.next() {
        let retry = match hash_one(deferred, reconciler, &job) {
            Done::Committed => None,
            Done::Changed => Some(job),
            Done::Failed => {
                deferred.pause(RETRY_AFTER);
                Some(job)
            }
        };
        deferred.finish(retry);
    }
}

enum Done {
    /// Committed, or nothing to commit.
    Committed,
    /// Changed since it was hashed (or the policy did): look again.
    Changed,
    /// Could not be written: look again later.
    Failed,
}

/// Hashes and commits one job.
fn hash_one(deferred: &Deferred, reconciler: &Mutex<Reconciler>, job: &Job) -> Done {
    let path = job.path.as_path();
    let (entity, keep_content, generation, baseline) = {
        let reconciler = lock(reconciler);
        let content_limit = reconciler.policy.settings.content_limit;
        // No longer covered: the policy reload's own scan decides about it.
        let Some(entity) = reconciler.policy.entity_for(path) else {
            return Done::Committed;
        };
        let keep = entity.keep_content.then_some(content_limit);
        let baseline = match job.trust_baseline {
            true => match reconciler.store.get(path) {
                Ok(entry) => entry.map(|entry| entry.state),
                Err(error) => return failed(job, &error.into()),
            },
            false => None,
        };
        (entity.name.clone(), keep, reconciler.generation(), baseline)
    };
    if let Ok(meta) = scan::symlink_metadata(path) {
        deferred.set_size(meta.len());
    }
    let observed = scan::observe(
        path,
        &ObserveOptions {
            keep_content,
            previous: baseline.as_ref(),
            budget: None,
            cancel: Some(&deferred.stop),
            progress: Some(&deferred.progress),
            hash_below: None,
        },
    );
    let after = match observed {
        Ok(after) => after,
        Err(ScanError::Cancelled) => {
            tracing::info!(path = %display_path(path), "hash cancelled; the next start-up scan looks at it again");
            return Done::Committed;
        }
        Err(error) if error.is_transient() => {
            tracing::warn!(path = %display_path(path), "{error}; retrying in {}s", RETRY_AFTER.as_secs());
            return Done::Failed;
        }
        Err(error) => {
            tracing::warn!(path = %display_path(path), "{error}; left to the next sweep");
            return Done::Committed;
        }
    };
    let mut reconciler = lock(reconciler);
    if reconciler.generation() != generation || !still_as_hashed(path, after.as_ref()) {
        return Done::Changed;
    }
    let before = match reconciler.store.get(path) {
        Ok(entry) => entry.map(|entry| entry.state),
        Err(error) => return failed(job, &error.into()),
    };
    let verdict = Verdict {
        path: job.path.clone(),
        entity,
        before,
        after,
        hint: job.hint.clone(),
        own_event: true,
    };
    match reconciler.commit(vec![verdict], job.detection) {
        Ok(_) => Done::Committed,
        Err(error) => failed(job, &error),
    }
}

fn failed(job: &Job, error: &ReconcileError) -> Done {
    tracing::error!(path = %display_path(&job.path), "cannot journal the hashed file: {error}; retrying in {}s", RETRY_AFTER.as_secs());
    Done::Failed
}

/// Is the path still what was hashed (same quick metadata, or still absent)? A change since
/// makes the hash stale; its event may already have been merged away, so the caller looks
/// again rather than count on one.
fn still_as_hashed(path: &Path, hashed: Option<&FileState>) -> bool {
    let now = scan::quick_metadata(path).ok();
    match (now, hashed) {
        (None, None) => true,
        (Some(now), Some(state)) => now == QuickMeta::from(state),
        _ => false,
    }
}
