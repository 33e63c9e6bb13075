//! The daemon's engine loop, shared by every platform: events in, records out.
//!
//! It owns the reconciler (store + policy), coalesces source events, runs the start-up,
//! periodic and gap-triggered scans, follows policy file edits, and survives a full disk by
//! holding what it could not write and rescanning once space returns. The platform binary
//! (fimd on Linux) only starts an event source, hands over its channel, and applies the root
//! lists this loop sends back.
mod policy_file;
mod schedule;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, watch};

use crate::{
    change::{ChangeRecord, Detection},
    identity::Computer,
    path_text::display_path,
    policy::CompiledPolicy,
    reconcile::{
        sweep::{sweep, SweepKind, SweepOutcome},
        Coalescer, Hint, ReconcileError, Reconciler,
    },
    scan::{ScanMode, ScanOptions},
    source::SourceItem,
    store::Store,
};

pub use policy_file::{PolicyChange, PolicySource, PolicyWatcher};
use schedule::Schedule;

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "fim.db";

/// A root the event source must watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRoot {
    pub path: PathBuf,
    /// Below the root at any depth; otherwise the root and its direct children.
    pub recursive: bool,
}

/// The roots that cover a policy: one per entity (a wildcard entity watches its directory).
pub fn watch_roots(policy: &CompiledPolicy) -> Vec<WatchRoot> {
    let mut roots: Vec<WatchRoot> = Vec::new();
    for entity in &policy.entities {
        let root = WatchRoot {
            path: entity.root.clone(),
            recursive: entity.max_depth().is_none(),
        };
        match roots.iter_mut().find(|known| known.path == root.path) {
            Some(known) => known.recursive |= root.recursive,
            None => roots.push(root),
        }
    }
    roots
}

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub policy: PolicySource,
    /// Print every committed record as a JSON line on stdout.
    pub print_records: bool,
    /// Draw no progress bars, the daemon is not interactive.
    pub scan_workers_override: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
}

pub struct Daemon {
    config: DaemonConfig,
    reconciler: Arc<Mutex<Reconciler>>,
    policy: PolicyWatcher,
}

/// Paths that could not be journaled (full disk): kept, with their hints, and retried.
const MAX_HELD_PATHS: usize = 100_000;
const RETRY_EVERY: Duration = Duration::from_secs(5);

impl Daemon {
    /// Opens the store and loads the policy (the built-in default when the file is absent).
    pub fn open(config: DaemonConfig) -> Result<Self, DaemonError> {
        std::fs::create_dir_all(&config.state_dir).map_err(|source| DaemonError::StateDir {
            path: display_path(&config.state_dir),
            source,
        })?;
        let store = Store::open(config.state_dir.join(DATABASE_FILE))?;
        let policy = PolicyWatcher::load(config.policy.clone())?;
        let reconciler =
            Reconciler::new(store, policy.compiled().clone(), Computer::of_this_host());
        Ok(Daemon {
            config,
            reconciler: Arc::new(Mutex::new(reconciler)),
            policy,
        })
    }

    pub fn watch_roots(&self) -> Vec<WatchRoot> {
        watch_roots(self.policy.compiled())
    }

    /// Records as they are committed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeRecord> {
        lock(&self.reconciler).subscribe()
    }

    /// Saves a status value for `fim status`.
    pub fn set_status(&self, key: &str, value: &str) {
        if let Err(error) = lock(&self.reconciler)
            .store()
            .set_meta(&format!("daemon/{key}"), value)
        {
            tracing::warn!("cannot save status {key}: {error}");
        }
    }

    /// Runs until `shutdown` turns true and `events` is closed (the source drained).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceItem>,
        root_updates: mpsc::Sender<Vec<WatchRoot>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        let settings = self.policy.compiled().settings.clone();
        let mut coalescer = Coalescer::new(Duration::from_millis(settings.coalesce_ms));
        let mut held: HashMap<PathBuf, Hint> = HashMap::new();
        let mut needs_rescan = false;
        let mut last_retry = Instant::now();
        let mut schedule = Schedule::new(&settings);
        if self.config.print_records {
            spawn_printer(self.subscribe());
        }
        // Start-up: baseline new entities, sweep the rest for what changed while stopped.
        let mut scans = Scans::default();
        scans.start(
            &self,
            None,
            SweepKind::Metadata,
            Detection::Scan,
            "start-up",
        );
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut stopping = false;
        loop {
            let next_due = coalescer.next_due();
            tokio::select! {
                item = events.recv() => match item {
                    Some(SourceItem::Change(event)) => coalescer.push(&event, Instant::now()),
                    Some(SourceItem::Gap(gap)) => {
                        let names = entities_touching(self.policy.compiled(), &gap.roots);
                        tracing::warn!(dropped = gap.dropped, entities = ?names, "events were lost; rescanning the affected entities now");
                        scans.start(&self, Some(names), SweepKind::Metadata, Detection::GapRescan, "gap rescan");
                    }
                    None => break,
                },
                _ = sleep_until(next_due) => {
                    let due = coalescer.take_due(Instant::now());
                    self.reconcile(due, &mut held, &mut needs_rescan).await;
                }
                _ = tick.tick() => {
                    scans.reap();
                    if let Some((only, kind, detection, why)) = scans.next_queued() {
                        scans.start(&self, only, kind, detection, why);
                    }
                    if self.policy.changed() {
                        self.apply_policy(&root_updates, &mut scans).await;
                    }
                    if (!held.is_empty() || needs_rescan) && last_retry.elapsed() >= RETRY_EVERY {
                        last_retry = Instant::now();
                        let retry: Vec<(PathBuf, Hint)> = held.drain().collect();
                        self.reconcile(retry, &mut held, &mut needs_rescan).await;
                        if held.is_empty() && needs_rescan && scans.idle() {
                            tracing::info!("the state directory accepts writes again; rescanning everything to recover what could not be recorded");
                            needs_rescan = false;
                            scans.start(&self, None, SweepKind::Metadata, Detection::Scan, "recovery rescan");
                        }
                    }
                    if let Some(kind) = schedule.due(Instant::now()) {
                        if scans.idle() {
                            scans.start(&self, None, kind, Detection::Scan, kind.as_str());
                            schedule.started(kind, Instant::now());
                        }
                    }
                    if scans.take_disk_full() {
                        needs_rescan = true;
                    }
                }
                changed = shutdown.changed(), if !stopping => {
                    if changed.is_err() || *shutdown.borrow() {
                        stopping = true;
                        tracing::info!("stopping: finishing the events already read");
                    }
                }
            }
        }
        let rest = coalescer.take_all();
        self.reconcile(rest, &mut held, &mut needs_rescan).await;
        if !held.is_empty() {
            tracing::error!(
                paths = held.len(),
                "stopping with changes not journaled (disk full); the next start-up scan will find them"
            );
        }
        scans.cancel_and_wait();
        Ok(())
    }

    async fn reconcile(
        &self,
        due: Vec<(PathBuf, Hint)>,
        held: &mut HashMap<PathBuf, Hint>,
        needs_rescan: &mut bool,
    ) {
        if due.is_empty() {
            return;
        }
        let reconciler = self.reconciler.clone();
        let paths = due.clone();
        let result = tokio::task::spawn_blocking(move || {
            lock(&reconciler).reconcile_paths(&paths, Detection::Realtime)
        })
        .await;
        match result {
            Ok(Ok(_records)) => {}
            Ok(Err(error)) if error.is_disk_full() => {
                if held.is_empty() {
                    tracing::error!("the state directory's disk is full: changes cannot be journaled; holding them and retrying every {}s", RETRY_EVERY.as_secs());
                }
                for (path, hint) in due {
                    if held.len() >= MAX_HELD_PATHS {
                        *needs_rescan = true;
                        break;
                    }
                    held.entry(path).or_insert(hint);
                }
                *needs_rescan = true;
            }
            Ok(Err(error)) => {
                tracing::error!("reconcile failed: {error}; the affected paths will be rescanned");
                *needs_rescan = true;
            }
            Err(join) => {
                tracing::error!("reconcile task failed: {join}");
                *needs_rescan = true;
            }
        }
    }

    async fn apply_policy(
        &mut self,
        root_updates: &mpsc::Sender<Vec<WatchRoot>>,
        scans: &mut Scans,
    ) {
        let change = match self.policy.reload() {
            Ok(Some(change)) => change,
            Ok(None) => return,
            Err(error) => {
                tracing::error!("the policy was not reloaded, keeping the previous one: {error}");
                return;
            }
        };
        {
            let mut reconciler = lock(&self.reconciler);
            reconciler.set_policy(self.policy.compiled().clone());
            for name in change.removed.iter().chain(&change.redefined) {
                // Its next scan makes a fresh, silent baseline.
                if let Err(error) = reconciler.forget_entity(name) {
                    tracing::error!("cannot drop the baseline of entity {name}: {error}");
                }
            }
        }
        tracing::info!(added = ?change.added, removed = ?change.removed, changed = ?change.redefined, "policy reloaded");
        let _ = root_updates.send(self.watch_roots()).await;
        let fresh: Vec<String> = change.added.into_iter().chain(change.redefined).collect();
        if !fresh.is_empty() {
            scans.start(
                self,
                Some(fresh),
                SweepKind::Metadata,
                Detection::Scan,
                "new entities",
            );
        }
    }
}

fn lock(reconciler: &Mutex<Reconciler>) -> std::sync::MutexGuard<'_, Reconciler> {
    reconciler
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The enabled entities whose roots lie on, under or above the given source roots.
fn entities_touching(policy: &CompiledPolicy, roots: &[PathBuf]) -> Vec<String> {
    policy
        .entities
        .iter()
        .filter(|entity| {
            roots
                .iter()
                .any(|root| entity.root.starts_with(root) || root.starts_with(&entity.root))
        })
        .map(|entity| entity.name.clone())
        .collect()
}

fn spawn_printer(mut records: tokio::sync::broadcast::Receiver<ChangeRecord>) {
    tokio::spawn(async move {
        use std::io::Write as _;
        loop {
            match records.recv().await {
                Ok(record) => {
                    let Ok(line) = serde_json::to_string(&record) else {
                        continue;
                    };
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{line}");
                    let _ = stdout.flush();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        "stdout printer fell behind; {missed} records are only in the journal"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Background scans: at most one runs at a time; requests made meanwhile are queued.
#[derive(Default)]
struct Scans {
    running: Option<std::thread::JoinHandle<Result<SweepOutcome, ReconcileError>>>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    queued: Vec<(Option<Vec<String>>, SweepKind, Detection, &'static str)>,
    disk_full: bool,
}

impl Scans {
    fn start(
        &mut self,
        daemon: &Daemon,
        only: Option<Vec<String>>,
        kind: SweepKind,
        detection: Detection,
        why: &'static str,
    ) {
        if self.running.is_some() {
            self.queued.push((only, kind, detection, why));
            return;
        }
        let reconciler = daemon.reconciler.clone();
        let settings = daemon.policy.compiled().settings.clone();
        let mut options = ScanOptions::from_settings(&settings, ScanMode::Full);
        if let Some(workers) = daemon.config.scan_workers_override {
            options.workers = workers;
        }
        options.cancel = Some(self.cancel.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("fim-{}", kind.as_str()))
            .spawn(move || {
                let started = Instant::now();
                let result = sweep(&reconciler, only.as_deref(), kind, detection, &options);
                match &result {
                    Ok(outcome) => tracing::info!(
                        scan = why,
                        files = outcome.files,
                        changes = outcome.changes,
                        errors = outcome.errors,
                        baselined = ?outcome.baselined,
                        missing = ?outcome.missing,
                        seconds = started.elapsed().as_secs_f64(),
                        "{why} scan finished"
                    ),
                    Err(error) => tracing::error!(scan = why, "{why} scan failed: {error}"),
                }
                result
            });
        match spawned {
            Ok(handle) => self.running = Some(handle),
            Err(error) => tracing::error!("cannot start the {why} scan: {error}"),
        }
    }

    /// Collects a finished scan and starts the next queued one.
    fn reap(&mut self) -> Option<()> {
        let running = self.running.as_ref()?;
        if !running.is_finished() {
            return None;
        }
        if let Some(Ok(Err(error))) = self.running.take().map(|handle| handle.join()) {
            if error.is_disk_full() {
                self.disk_full = true;
            }
        }
        Some(())
    }

    fn next_queued(&mut self) -> Option<(Option<Vec<String>>, SweepKind, Detection, &'static str)> {
        if self.running.is_some() || self.queued.is_empty() {
            return None;
        }
        Some(self.queued.remove(0))
    }

    fn idle(&self) -> bool {
        self.running.is_none() && self.queued.is_empty()
    }

    fn take_disk_full(&mut self) -> bool {
        std::mem::take(&mut self.disk_full)
    }

    fn cancel_and_wait(&mut self) {
        self.queued.clear();
        self.cancel
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(handle) = self.running.take() {
            let _ = handle.join();
        }
    }
}

/// Where a daemon keeps its state, for `fim` to find.
pub fn database_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DATABASE_FILE)
}
