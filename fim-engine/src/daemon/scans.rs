//! Background scans: one at a time on its own thread, the rest queued.
//!
//! One at a time because scans share the disk and the reconciler lock with real-time
//! reconcile; queued requests are merged (a request for all entities absorbs narrower ones of
//! the same kind), so a storm of gap notices cannot queue a rescan per notice. A scan the
//! policy changed under, and a gap or recovery rescan that failed, are queued again: those are
//! the ones whose loss would be silent.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Instant,
};

use crate::{
    change::Detection,
    policy::Settings,
    reconcile::{
        sweep::{sweep, SweepKind, SweepOutcome},
        ReconcileError, Reconciler,
    },
    scan::{ScanMode, ScanOptions},
};

/// A failed rescan is retried this many times before it is left to the next periodic sweep.
const MAX_RETRIES: u32 = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Request {
    /// None: every enabled entity.
    pub(super) only: Option<Vec<String>>,
    pub(super) kind: SweepKind,
    pub(super) detection: Detection,
    pub(super) why: &'static str,
    pub(super) retries: u32,
}

impl Request {
    pub(super) fn new(
        only: Option<Vec<String>>,
        kind: SweepKind,
        detection: Detection,
        why: &'static str,
    ) -> Self {
        Request {
            only,
            kind,
            detection,
            why,
            retries: 0,
        }
    }

    /// Does `self` already do everything `other` asks for?
    fn covers(&self, other: &Request) -> bool {
        let kind = self.kind == other.kind || self.kind == SweepKind::Full;
        let entities = match (&self.only, &other.only) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|name| mine.contains(name)),
        };
        kind && entities && self.detection == other.detection
    }
}

type Running = (Request, JoinHandle<Result<SweepOutcome, ReconcileError>>);

#[derive(Default)]
pub(super) struct Scans {
    running: Option<Running>,
    cancel: Arc<AtomicBool>,
    queued: Vec<Request>,
    disk_full: bool,
}

impl Scans {
    /// Queues a request (merged with what is queued already).
    pub(super) fn request(&mut self, request: Request) {
        if self.queued.iter().any(|queued| queued.covers(&request)) {
            return;
        }
        self.queued.retain(|queued| !request.covers(queued));
        self.queued.push(request);
    }

    /// Collects a finished scan, re-queues what must not be lost, and starts the next one.
    pub(super) fn tick(
        &mut self,
        reconciler: &Arc<Mutex<Reconciler>>,
        settings: &Settings,
        workers: Option<usize>,
    ) {
        self.reap();
        if self.running.is_some() || self.queued.is_empty() {
            return;
        }
        let request = self.queued.remove(0);
        let mut options = ScanOptions::from_settings(settings, ScanMode::Full);
        if let Some(workers) = workers {
            options.workers = workers;
        }
        options.cancel = Some(self.cancel.clone());
        let reconciler = reconciler.clone();
        let job = request.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fim-{}", request.kind.as_str()))
            .spawn(move || run(&reconciler, &job, &options));
        match spawned {
            Ok(handle) => self.running = Some((request, handle)),
            Err(error) => tracing::error!("cannot start the {} scan: {error}", request.why),
        }
    }

    fn reap(&mut self) {
        let Some((_, handle)) = &self.running else {
            return;
        };
        if !handle.is_finished() {
            return;
        }
        let Some((request, handle)) = self.running.take() else {
            return;
        };
        let retry = |mut request: Request, only: Option<Vec<String>>| {
            request.retries += 1;
            request.only = only;
            (request.retries <= MAX_RETRIES).then_some(request)
        };
        let again = match handle.join() {
            Ok(Ok(outcome)) if outcome.superseded => Some(request),
            Ok(Ok(outcome))
                if !outcome.failed.is_empty() && request.detection != Detection::Scan =>
            {
                retry(request, Some(outcome.failed))
            }
            Ok(Ok(_)) => None,
            Ok(Err(error)) if error.is_disk_full() => {
                self.disk_full = true;
                None
            }
            Ok(Err(_)) | Err(_) if request.detection != Detection::Scan => {
                let only = request.only.clone();
                retry(request, only)
            }
            Ok(Err(_)) | Err(_) => None,
        };
        if let Some(request) = again {
            tracing::info!(
                scan = request.why,
                "queueing the {} scan again",
                request.why
            );
            self.queued.insert(0, request);
        }
    }

    /// (a scan is running, how many are queued)
    pub(super) fn depth(&self) -> (bool, usize) {
        (self.running.is_some(), self.queued.len())
    }

    pub(super) fn idle(&self) -> bool {
        self.running.is_none() && self.queued.is_empty()
    }

    pub(super) fn take_disk_full(&mut self) -> bool {
        std::mem::take(&mut self.disk_full)
    }

    pub(super) fn cancel_and_wait(&mut self) {
        self.queued.clear();
        self.cancel.store(true, Ordering::Relaxed);
        if let Some((_, handle)) = self.running.take() {
            let _ = handle.join();
        }
    }
}

fn run(
    reconciler: &Mutex<Reconciler>,
    request: &Request,
    options: &ScanOptions,
) -> Result<SweepOutcome, ReconcileError> {
    let why = request.why;
    let started = Instant::now();
    let result = sweep(
        reconciler,
        request.only.as_deref(),
        request.kind,
        request.detection,
        options,
    );
    match &result {
        Ok(outcome) if outcome.superseded => {
            tracing::info!(
                scan = why,
                "the policy changed during the {why} scan; it will run again"
            )
        }
        Ok(outcome) => tracing::info!(
            scan = why,
            files = outcome.files,
            changes = outcome.changes,
            errors = outcome.errors,
            baselined = ?outcome.baselined,
            missing = ?outcome.missing,
            failed = ?outcome.failed,
            seconds = started.elapsed().as_secs_f64(),
            "{why} scan finished"
        ),
        Err(error) => tracing::error!(scan = why, "{why} scan failed: {error}"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_merge() {
        let mut scans = Scans::default();
        let gap = |names: &[&str]| {
            Request::new(
                Some(names.iter().map(|name| name.to_string()).collect()),
                SweepKind::Metadata,
                Detection::GapRescan,
                "gap rescan",
            )
        };
        scans.request(gap(&["a"]));
        scans.request(gap(&["a"]));
        scans.request(gap(&["b"]));
        assert_eq!(scans.queued.len(), 2);
        scans.request(gap(&["a", "b"]));
        assert_eq!(scans.queued, vec![gap(&["a", "b"])]);
        scans.request(Request::new(
            None,
            SweepKind::Full,
            Detection::GapRescan,
            "gap rescan",
        ));
        assert_eq!(scans.queued.len(), 1);
        assert_eq!(scans.queued[0].only, None);
    }
}
