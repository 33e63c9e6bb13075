//! The daemon's engine loop, shared by every platform: events in, records out.
//!
//! It owns the reconciler (store + policy), coalesces source events, runs the start-up,
//! periodic and gap-triggered scans, follows policy file edits, and survives a full disk by
//! holding what it could not write and rescanning once space returns. The platform binary
//! (fimd on Linux) only starts an event source, hands over its channel, and applies the root
//! lists this loop sends back.
mod database;
mod handle;
mod hashing;
mod policy_audit;
mod policy_file;
mod realtime;
mod scans;
mod schedule;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fim_model::MonitoredObject;
use tokio::sync::{mpsc, watch};

use crate::{
    change::Detection,
    identity::Computer,
    path_text::display_path,
    policy::CompiledPolicy,
    reconcile::{lock, sweep::SweepKind, Coalescer, Hint, Reconciler},
    source::{GapNotice, SourceItem},
};

pub use crate::reconcile::Announcement;
pub use handle::{Command, DaemonHandle, HandleError, LiveStatus};
use hashing::Hasher;
pub use hashing::{saved_hashing, HASHING_META};
pub use policy_audit::{PolicyAuthor, PolicyEdits};
pub use policy_file::{LoadedPolicy, PendingLoad, PolicyChange, PolicySource, PolicyWatcher};
use realtime::{spawn_printer, REALTIME_STEP};
use scans::{Request, Scans};
use schedule::Schedule;

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "fim.db";
pub use database::{ANCHOR_EVERY, MARKER as DATABASE_MARKER, SYSLOG_SOCKET};

/// A root the event source must watch: from the policy (`watch_roots`) or from fimd's
/// `--watch`, the one root type from the policy down to the kernel source's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRoot {
    pub path: PathBuf,
    /// Below the root at any depth; otherwise the root and its direct children.
    pub recursive: bool,
}

impl WatchRoot {
    /// A root watched at any depth.
    pub fn recursive(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            recursive: true,
        }
    }
}

/// Entities whose path is a symbolic link (like /bin -> /usr/bin on merged-/usr systems):
/// links are never followed, so only the link itself is monitored there. Said at start-up
/// and on every reload, so nobody believes a tree is watched through a link.
pub fn symlinked_roots(policy: &CompiledPolicy) -> Vec<String> {
    policy
        .entities
        .iter()
        .filter_map(|entity| {
            let metadata = std::fs::symlink_metadata(&entity.root).ok()?;
            if !metadata.file_type().is_symlink() {
                return None;
            }
            let target = std::fs::read_link(&entity.root)
                .map(|target| display_path(&target))
                .unwrap_or_else(|_| "?".to_string());
            Some(format!(
                "entity {:?}: {} is a symbolic link to {target}; only the link itself is monitored (monitor the target to watch what is behind it)",
                entity.name,
                display_path(&entity.root)
            ))
        })
        .collect()
}

/// The roots that cover a policy: one per entity (a wildcard entity watches its directory).
pub fn watch_roots(policy: &CompiledPolicy) -> Vec<WatchRoot> {
    let mut roots: Vec<WatchRoot> = Vec::new();
    let mut index: HashMap<&Path, usize> = HashMap::new();
    for entity in &policy.entities {
        let recursive = entity.max_depth().is_none();
        match index.get(entity.root.as_path()) {
            Some(&known) => roots[known].recursive |= recursive,
            None => {
                index.insert(&entity.root, roots.len());
                roots.push(WatchRoot {
                    path: entity.root.clone(),
                    recursive,
                });
            }
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
    /// Refuse a policy file or state directory that someone other than root can change
    /// (fimd runs as root; see [`crate::trust`]).
    pub trusted_config_only: bool,
    /// Where the chain head is written every [`database::ANCHOR_EVERY`] (a syslog datagram
    /// socket; [`database::SYSLOG_SOCKET`] normally).
    pub syslog_socket: PathBuf,
    /// How far a workspace has acknowledged the journal, when it is reported to one: the
    /// retention settings then prune only acknowledged records (see `journal_hard_cap_records`).
    pub workspace_acknowledged: Option<crate::store::Acknowledged>,
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
    #[error(transparent)]
    Untrusted(#[from] crate::trust::Untrusted),
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::ReconcileError),
    #[error("the database {path} is damaged ({detail}); fimd will not write into it: move it aside (a new one is started, with a record that history was lost) or restore a backup")]
    Damaged { path: String, detail: String },
}

/// Sets `fim status` values while the daemon runs (see [`Daemon::status_handle`]).
#[derive(Clone)]
pub struct StatusHandle(Arc<Mutex<Reconciler>>);

impl StatusHandle {
    pub fn set(&self, key: &str, value: &str) {
        if let Err(error) = lock(&self.0)
            .store()
            .set_meta(&format!("daemon/{key}"), value)
        {
            tracing::warn!("cannot save status {key}: {error}");
        }
    }
}

pub struct Daemon {
    config: DaemonConfig,
    reconciler: Arc<Mutex<Reconciler>>,
    policy: PolicyWatcher,
    handle: DaemonHandle,
    status: watch::Sender<LiveStatus>,
    commands: mpsc::Receiver<Command>,
    hasher: Hasher,
    edits: Arc<PolicyEdits>,
    database: database::DatabaseWatch,
    /// The registry entities, for a registry event source to follow across reloads.
    key_roots: watch::Sender<Vec<crate::registry::KeyRoot>>,
}

/// API commands waiting for the loop; more is "busy", not unbounded memory.
const COMMAND_QUEUE: usize = 16;

const RETRY_EVERY: Duration = Duration::from_secs(5);
/// How often the journal retention is applied.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl Daemon {
    /// Opens the store and loads the policy (the built-in default when the file is absent).
    pub fn open(config: DaemonConfig) -> Result<Self, DaemonError> {
        crate::trust::create_dir(&config.state_dir).map_err(|source| DaemonError::StateDir {
            path: display_path(&config.state_dir),
            source,
        })?;
        let mut policy = if config.trusted_config_only {
            crate::trust::check_dir("state directory", &config.state_dir)?;
            PolicyWatcher::load_trusted(config.policy.clone())?
        } else {
            PolicyWatcher::load(config.policy.clone())?
        };
        // Canonical, so an entity spelled through a symlink still meets it.
        let state_dir =
            std::fs::canonicalize(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
        policy.exclude(&state_dir);
        let (store, database, lost) = database::open(
            &config.state_dir,
            &config.state_dir.join(DATABASE_FILE),
            &config.syslog_socket,
        )?;
        let computer = Computer::of_this_host();
        let mut reconciler = Reconciler::new(store, policy.compiled().clone(), computer.clone());
        if let Some(lost) = lost {
            database::journal_lost(&mut reconciler, &computer, lost)?;
        }
        // The policy may have changed while fimd was stopped: a renamed entity keeps its rows.
        let adopted = reconciler.adopt_retired_rows()?;
        if adopted > 0 {
            tracing::info!(rows = adopted, "baseline rows of entities no longer in the policy were taken over by the entities that cover them now");
        }
        let hasher = Hasher::attach(&mut reconciler);
        let policy_registry = policy.compiled().registry.clone();
        let (status, status_view) = watch::channel(LiveStatus {
            started: crate::change::Timestamp::now(),
            ..LiveStatus::default()
        });
        let (commands_in, commands) = mpsc::channel(COMMAND_QUEUE);
        let PolicySource::File(policy_path) = &config.policy;
        let edits = Arc::new(PolicyEdits::default());
        journal_policy(&mut reconciler, &policy, &computer, None)?;
        let handle = DaemonHandle {
            edits: edits.clone(),
            database: database_path(&config.state_dir),
            policy: policy_path.clone(),
            computer,
            announcements: reconciler.announcer(),
            status: status_view,
            commands: commands_in,
        };
        Ok(Daemon {
            config,
            reconciler: Arc::new(Mutex::new(reconciler)),
            policy,
            handle,
            status,
            commands,
            hasher,
            edits,
            database,
            key_roots: watch::Sender::new(policy_registry),
        })
    }

    /// Gives the engine the platform's registry, so registry entities are scanned and their
    /// key events reconciled (the Windows companion; fimd has none).
    pub fn set_key_reader(&self, reader: Arc<dyn crate::registry::KeyReader>) {
        lock(&self.reconciler).set_key_reader(reader);
    }

    /// Gives the engine a who-data source for real-time records whose event named nobody
    /// (the Windows companion's ETW session).
    pub fn set_attributor(&self, attributor: Arc<dyn crate::attribution::Attributor>) {
        lock(&self.reconciler).set_attributor(attributor);
    }

    /// Gives the engine the platform's service control manager, so service entities are
    /// scanned and service events reconciled (the Windows companion).
    pub fn set_service_reader(&self, reader: Arc<dyn crate::service::ServiceReader>) {
        lock(&self.reconciler).set_service_reader(reader);
    }

    /// Whether the policy has service entities (the service source runs only then).
    pub fn has_service_entities(&self) -> bool {
        !self.policy.compiled().services.is_empty()
    }

    /// The registry entities of the policy, updated when a reload changes them (for the
    /// registry event source).
    pub fn key_roots(&self) -> watch::Receiver<Vec<crate::registry::KeyRoot>> {
        self.key_roots.subscribe()
    }

    /// For the API layer; valid for as long as the daemon runs.
    pub fn handle(&self) -> DaemonHandle {
        self.handle.clone()
    }

    /// The attach strategy and roots, for status: live (API) and saved (`fim --local status`).
    pub fn set_source(&self, strategy: &str, roots: Vec<PathBuf>) {
        self.set_status("strategy", strategy);
        let shown: Vec<String> = roots.iter().map(|root| display_path(root)).collect();
        self.set_status("roots", &shown.join(" "));
        self.status.send_modify(|status| {
            status.strategy = strategy.to_string();
            status.roots = roots;
        });
    }

    pub fn watch_roots(&self) -> Vec<WatchRoot> {
        watch_roots(self.policy.compiled())
    }

    fn warn_symlinked_roots(&self) {
        for warning in symlinked_roots(self.policy.compiled()) {
            tracing::warn!("{warning}");
        }
    }

    /// Records and gap notices as they are committed or seen.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Announcement> {
        lock(&self.reconciler).subscribe()
    }

    /// Saves a status value for `fim status`.
    pub fn set_status(&self, key: &str, value: &str) {
        self.status_handle().set(key, value);
    }

    /// Sets status values from another task or thread (fimsvc's ETW lost-event poll).
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(self.reconciler.clone())
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
        let mut held: HashMap<MonitoredObject, Hint> = HashMap::new();
        let mut needs_rescan = false;
        let mut last_retry = Instant::now();
        let mut schedule = Schedule::new(&settings, self.last_rehash());
        if self.config.print_records {
            spawn_printer(self.subscribe());
        }
        self.warn_symlinked_roots();
        self.hasher.start(&self.reconciler);
        // Start-up: baseline new entities, sweep the rest for what changed while stopped.
        let mut scans = Scans::default();
        scans.request(Request::new(
            None,
            SweepKind::Metadata,
            Detection::Scan,
            "start-up",
        ));
        self.start_scans(&mut scans);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut stopping = false;
        // A policy being read and compiled off the loop (events keep flowing meanwhile).
        let mut reloading: Option<PolicyLoad> = None;
        // The first tick prunes at once.
        let mut last_prune = Instant::now()
            .checked_sub(PRUNE_EVERY)
            .unwrap_or_else(Instant::now);
        loop {
            let next_due = coalescer.next_due();
            tokio::select! {
                item = events.recv() => match item {
                    Some(SourceItem::Change(event)) => coalescer.push(&event, Instant::now()),
                    Some(SourceItem::Object(event)) => coalescer.push_object(
                        event.object,
                        Hint { operations: vec![event.operation], ..Hint::default() },
                        Instant::now(),
                    ),
                    Some(SourceItem::Gap(gap)) => {
                        self.status.send_modify(|status| {
                            status.gap_notices += 1;
                            status.dropped_events += gap.dropped;
                        });
                        let _ = self.handle.announcements.send(Announcement::Gap(gap.clone()));
                        let names = entities_touching(self.policy.compiled(), &gap);
                        tracing::warn!(dropped = gap.dropped, entities = ?names, "events were lost; rescanning the affected entities now");
                        scans.request(Request::new(Some(names), SweepKind::Metadata, Detection::GapRescan, "gap rescan"));
                        self.start_scans(&mut scans);
                    }
                    None => break,
                },
                loaded = crate::task::finished(&mut reloading) => {
                    reloading = None;
                    if let Some(settings) = self.apply_policy(loaded, &root_updates, &mut scans).await {
                        coalescer.set_window(Duration::from_millis(settings.coalesce_ms));
                        schedule.update(&settings);
                    }
                }
                _ = sleep_until(next_due) => {
                    // One step at a time: events are read between steps, and the rest is due
                    // again at once.
                    let due = coalescer.take_due_at_most(Instant::now(), REALTIME_STEP);
                    self.reconcile(due, &mut held, &mut needs_rescan).await;
                }
                _ = tick.tick() => {
                    self.database.check(&self.reconciler, &self.handle.computer);
                    if last_prune.elapsed() >= PRUNE_EVERY {
                        last_prune = Instant::now();
                        let settings = self.policy.compiled().settings.clone();
                        database::prune(
                            &mut lock(&self.reconciler),
                            &settings,
                            &self.handle.computer,
                            self.config.workspace_acknowledged.as_ref(),
                        );
                    }
                    if self.policy.changed() {
                        self.begin_reload(&mut reloading);
                    }
                    if (!held.is_empty() || needs_rescan) && last_retry.elapsed() >= RETRY_EVERY {
                        last_retry = Instant::now();
                        let retry: Vec<(MonitoredObject, Hint)> = held.drain().collect();
                        self.reconcile(retry, &mut held, &mut needs_rescan).await;
                        if held.is_empty() && needs_rescan && scans.idle() {
                            tracing::info!("the state directory accepts writes again; rescanning everything to recover what could not be recorded");
                            needs_rescan = false;
                            scans.request(Request::new(None, SweepKind::Metadata, Detection::GapRescan, "recovery rescan"));
                        }
                    }
                    if let Some(kind) = schedule.due(Instant::now()) {
                        if scans.idle() {
                            scans.request(Request::new(None, kind, Detection::Scan, kind.as_str()));
                            schedule.started(kind, Instant::now());
                        }
                    }
                    if scans.take_disk_full() {
                        needs_rescan = true;
                    }
                    self.start_scans(&mut scans);
                    let (running, queued) = scans.depth();
                    self.hasher.publish(&self.status, &self.reconciler);
                    self.status.send_modify(|status| {
                        status.coalescing_paths = coalescer.len() as u64;
                        status.held_paths = held.len() as u64;
                        status.queued_events = events.len() as u64;
                        status.scan_running = running;
                        status.scans_queued = queued as u64;
                    });
                }
                Some(command) = self.commands.recv() => match command {
                    Command::Scan { only, full } => {
                        let kind = if full { SweepKind::Full } else { SweepKind::Metadata };
                        scans.request(Request::new(only, kind, Detection::Scan, "requested"));
                        self.start_scans(&mut scans);
                    }
                },
                changed = shutdown.changed(), if !stopping => {
                    if changed.is_err() || *shutdown.borrow() {
                        stopping = true;
                        tracing::info!("stopping: finishing the events already read");
                        self.hasher.cancel();
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
        self.hasher.join(&self.reconciler);
        self.database.anchor(&lock(&self.reconciler));
        Ok(())
    }

    fn start_scans(&self, scans: &mut Scans) {
        scans.tick(
            &self.reconciler,
            &self.policy.compiled().settings,
            self.config.scan_workers_override,
        );
    }

    /// When the last full rehash finished, from the store (so restarts do not postpone it).
    fn last_rehash(&self) -> Option<std::time::SystemTime> {
        let text = lock(&self.reconciler)
            .store()
            .get_meta("last_rehash")
            .ok()??;
        let at = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        Some(at.into())
    }

    /// Starts reading the policy file on a blocking thread, unless a read is under way.
    fn begin_reload(&mut self, reloading: &mut Option<PolicyLoad>) {
        if reloading.is_some() {
            return; // the file is looked at again once this one is applied
        }
        match self.policy.begin_reload() {
            Ok(pending) => *reloading = Some(tokio::task::spawn_blocking(move || pending.load())),
            Err(error) => {
                tracing::error!("the policy was not reloaded, keeping the previous one: {error}")
            }
        }
    }

    /// Applies a policy file read off the loop; returns the new settings when they were
    /// applied.
    async fn apply_policy(
        &mut self,
        loaded: Result<Result<LoadedPolicy, crate::policy::PolicyError>, tokio::task::JoinError>,
        root_updates: &mpsc::Sender<Vec<WatchRoot>>,
        scans: &mut Scans,
    ) -> Option<crate::policy::Settings> {
        let loaded = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => {
                tracing::error!("the policy was not reloaded, keeping the previous one: {error}");
                return None;
            }
            Err(error) => {
                tracing::error!("the policy was not reloaded, keeping the previous one: the reload failed: {error}");
                return None;
            }
        };
        let change = self.policy.finish_reload(loaded)?;
        let author = self.edits.take_for(self.policy.loaded_stamp());
        let computer = self.handle.computer.clone();
        if let Err(error) = journal_policy(
            &mut lock(&self.reconciler),
            &self.policy,
            &computer,
            author.as_ref(),
        ) {
            // Applied anyway: refusing a policy because the journal is full would be worse.
            tracing::error!("the policy change could not be journaled: {error}");
        }
        if !change.affects_monitoring() {
            tracing::info!("policy reloaded; only disabled or other platforms' entities changed");
            return None;
        }
        {
            let mut reconciler = lock(&self.reconciler);
            let previous = |name: &String| {
                let old = &reconciler.policy().entities;
                old.iter().find(|entity| &entity.name == name).cloned()
            };
            let redefined: Vec<_> = change
                .redefined
                .iter()
                .map(|name| (name, previous(name)))
                .collect();
            reconciler.set_policy(self.policy.compiled().clone());
            let retired = change.removed.iter().map(|name| (name, None));
            for (name, previous) in retired.chain(redefined) {
                // Rows another entity covers move to it; the rest wait for the entity to return.
                if let Err(error) = reconciler.retire_entity(name, previous) {
                    tracing::error!("cannot update the baseline of entity {name}: {error}");
                }
            }
            if let Err(error) = reconciler.adopt_retired_rows() {
                tracing::error!("cannot hand retired baseline rows to the new entities: {error}");
            }
        }
        tracing::info!(added = ?change.added, removed = ?change.removed, changed = ?change.redefined, "policy reloaded");
        self.warn_symlinked_roots();
        self.key_roots
            .send_if_modified(|roots| replace_if_changed(roots, &self.policy.compiled().registry));
        // try_send: a source that cannot take root updates (scan-only) must not block the loop.
        if let Err(error) = root_updates.try_send(self.watch_roots()) {
            tracing::warn!("the event source did not take the new roots: {error}");
        }
        let fresh: Vec<String> = change.added.into_iter().chain(change.redefined).collect();
        if !fresh.is_empty() {
            scans.request(Request::new(
                Some(fresh),
                SweepKind::Metadata,
                Detection::Scan,
                "new entities",
            ));
        }
        self.start_scans(scans);
        Some(self.policy.compiled().settings.clone())
    }
}

/// A policy file being read and compiled on a blocking thread.
type PolicyLoad = tokio::task::JoinHandle<Result<LoadedPolicy, crate::policy::PolicyError>>;

/// Where the policy last journaled is kept, to journal what differs from it.
const APPLIED_POLICY: &str = "policy/applied";

/// Journals how the policy differs from the one last journaled (nothing the first time).
fn journal_policy(
    reconciler: &mut Reconciler,
    policy: &PolicyWatcher,
    computer: &crate::identity::Computer,
    author: Option<&PolicyAuthor>,
) -> Result<(), crate::reconcile::ReconcileError> {
    let current = policy.policy();
    let Ok(text) = serde_json::to_string(current) else {
        return Ok(());
    };
    let previous = reconciler.store().get_meta(APPLIED_POLICY)?;
    if previous.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let records = match previous
        .as_deref()
        .map(serde_json::from_str::<crate::policy::Policy>)
    {
        Some(Ok(previous)) => {
            let PolicySource::File(path) = policy.source();
            policy_audit::records(&previous, current, author, path, computer)
        }
        // First start, or a policy saved by a version with other fields: nothing to compare.
        Some(Err(_)) | None => Vec::new(),
    };
    let journaled = reconciler.journal_monitor(records, (APPLIED_POLICY, &text))?;
    for record in &journaled {
        tracing::info!(entity = %record.entity, event = ?record.monitor.as_ref().map(|m| m.event), by = ?author.map(|a| &a.by), "policy change journaled");
    }
    Ok(())
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The enabled entities whose roots lie on, under or above a gap notice's file roots (its
/// registry and service objects arrive with the Windows observers).
fn entities_touching(policy: &CompiledPolicy, gap: &GapNotice) -> Vec<String> {
    policy
        .entities
        .iter()
        .filter(|entity| {
            gap.file_roots()
                .any(|root| entity.root.starts_with(root) || root.starts_with(&entity.root))
        })
        .map(|entity| entity.name.clone())
        .collect()
}

fn replace_if_changed<T: Clone + PartialEq>(current: &mut Vec<T>, next: &[T]) -> bool {
    if current.as_slice() == next {
        return false;
    }
    *current = next.to_vec();
    true
}

/// Where a daemon keeps its state, for `fim` to find.
pub fn database_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DATABASE_FILE)
}
