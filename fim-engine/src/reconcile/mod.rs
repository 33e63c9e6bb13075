//! Reconcile: from "something happened to these paths" to journaled change records.
//!
//! Real-time events only say where to look; the verdict always comes from comparing a fresh
//! observation with the baseline, so a lost, duplicated or misleading event can never invent
//! or hide a change. Each step writes the new baseline rows and the records in one SQLite
//! transaction, and records are announced only after it commits: SIGKILL at any moment leaves
//! either the old baseline (the next scan finds the change again) or both.
pub mod coalesce;
mod deferred;
pub mod keys;
#[cfg(test)]
mod record_tests;
mod retire;
mod services;
mod subtree;
pub mod sweep;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use fim_model::MonitoredObject;
use tokio::sync::broadcast;

use crate::{
    change::{
        file_columns, verdict_fields, ChangeCategory, ChangeRecord, ConfigChangeType, Detection,
    },
    identity::Computer,
    path_text::display_path,
    policy::{CompiledEntity, CompiledPolicy},
    scan::{self, ObserveOptions, ScanError},
    state::{FileState, FileType},
    store::{Store, StoreError},
};

pub use coalesce::{Coalescer, Hint};
pub use deferred::{run_worker, Deferred, HashProgress, LARGE_FILE};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("the scanner thread panicked")]
    ScannerPanicked,
    #[error("cannot list the services: {0}")]
    Services(#[from] crate::service::ServiceError),
}

impl ReconcileError {
    /// The state directory's disk is full: retry later, nothing is lost meanwhile.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, ReconcileError::Store(error) if error.is_disk_full())
    }
}

/// Locks the shared reconciler. A panic while it was held leaves the data as consistent as
/// SQLite made it, so a poisoned lock is taken over rather than propagated.
pub(crate) fn lock(
    reconciler: &std::sync::Mutex<Reconciler>,
) -> std::sync::MutexGuard<'_, Reconciler> {
    reconciler
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One path's verdict before it is written.
struct Verdict {
    path: PathBuf,
    entity: String,
    before: Option<FileState>,
    after: Option<FileState>,
    hint: Hint,
    /// Judged because of its own event (not met below a directory that appeared or vanished).
    own_event: bool,
}

/// What the reconciler announces once a record is committed, and the daemon once kernel
/// events were lost (the affected entities are being rescanned): one ordered stream, which
/// the API's watchers and `--print-records` follow. It lives with the reconciler, which owns
/// the channel.
///
/// A record is shared, not held inline: the channel keeps [`ANNOUNCED`] slots resident from
/// start-up, and a record is 1.8 KB (7.5 MB of slots), while every receiver then gets a
/// pointer, not a deep copy.
#[derive(Clone, Debug)]
pub enum Announcement {
    Record(Arc<ChangeRecord>),
    Gap(crate::source::GapNotice),
}

/// Announcements a receiver may fall behind by before it is told it lagged (and reads the
/// journal instead).
const ANNOUNCED: usize = 4096;

pub struct Reconciler {
    store: Store,
    policy: CompiledPolicy,
    /// Bumped by every policy change: a sweep that started under an older policy stops
    /// before writing anything judged with stale entity definitions.
    generation: u64,
    computer: Computer,
    announce: broadcast::Sender<Announcement>,
    /// Entities whose first baseline is complete (cached from the store's meta).
    baselined: HashSet<String>,
    /// Where large files are hashed without holding up everything else (the daemon's worker);
    /// None: inline.
    deferred: Option<std::sync::Arc<Deferred>>,
    /// The definitions redefined entities had before, until their next scan is done: a path
    /// only the new definition covers gets a silent first baseline (see `retire`).
    previous_definitions: HashMap<String, CompiledEntity>,
    /// Reads registry keys, on a platform that has a registry (see `keys`); None elsewhere.
    key_reader: Option<std::sync::Arc<dyn crate::registry::KeyReader>>,
    /// Lists the services, on Windows (see `services`); None elsewhere.
    service_reader: Option<std::sync::Arc<dyn crate::service::ServiceReader>>,
    /// Who-data for real-time records whose event named nobody (ETW on Windows); None: such
    /// records carry no actor.
    attributor: Option<std::sync::Arc<dyn crate::attribution::Attributor>>,
}

impl Reconciler {
    pub fn new(store: Store, policy: CompiledPolicy, computer: Computer) -> Self {
        let (announce, _) = broadcast::channel(ANNOUNCED);
        Reconciler {
            store,
            policy,
            generation: 0,
            computer,
            announce,
            baselined: HashSet::new(),
            deferred: None,
            previous_definitions: HashMap::new(),
            key_reader: None,
            service_reader: None,
            attributor: None,
        }
    }

    /// Gives the reconciler a who-data source (see [`crate::attribution`]).
    pub fn set_attributor(
        &mut self,
        attributor: std::sync::Arc<dyn crate::attribution::Attributor>,
    ) {
        self.attributor = Some(attributor);
    }

    /// Fills the actor of a real-time record that has none, from the who-data source. Scan
    /// records are left alone: what a scan finds happened at an unknown time, and the latest
    /// operation on the object would be a guess.
    fn attribute(&self, record: &mut ChangeRecord) {
        if record.actor.is_some() || record.detected_by != Detection::Realtime {
            return;
        }
        if let Some(attributor) = &self.attributor {
            record.actor = attributor.actor_for(record);
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Has the entity's first baseline completed? Until it has, its changes update the
    /// baseline silently: there is nothing yet to compare with.
    pub fn is_baselined(&mut self, entity: &str) -> Result<bool, ReconcileError> {
        if self.baselined.contains(entity) {
            return Ok(true);
        }
        let done = self
            .store
            .get_meta(&sweep::baselined_key(entity))?
            .is_some();
        if done {
            self.baselined.insert(entity.to_string());
        }
        Ok(done)
    }

    pub(crate) fn mark_baselined(&mut self, entity: &str) -> Result<(), ReconcileError> {
        let now = crate::change::Timestamp::now().to_rfc3339();
        self.store.set_meta(&sweep::baselined_key(entity), &now)?;
        self.baselined.insert(entity.to_string());
        Ok(())
    }

    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    pub fn set_policy(&mut self, policy: CompiledPolicy) {
        self.policy = policy;
        self.generation += 1;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Puts `store` in place of the current one (the database file was restored or
    /// recreated); the old connection is closed.
    pub fn replace_store(&mut self, store: Store) {
        self.store = store;
    }

    /// Closes the current database connection (its -wal and -shm files go with it), leaving
    /// a read-only placeholder until [`Self::replace_store`].
    pub fn close_store(&mut self) {
        match Store::placeholder() {
            Ok(placeholder) => self.store = placeholder,
            Err(error) => tracing::error!("cannot close the database: {error}"),
        }
    }

    /// Journals records the monitor makes about itself (policy changes), with a meta value
    /// they go with, in one transaction; then announces them.
    pub fn journal_monitor(
        &mut self,
        mut records: Vec<ChangeRecord>,
        meta: (&str, &str),
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        let mut batch = self.store.batch()?;
        for record in &mut records {
            batch.append(record)?;
        }
        batch.set_meta(meta.0, meta.1)?;
        batch.commit()?;
        for record in &records {
            self.announce(record);
        }
        Ok(records)
    }

    /// Announces a committed record. No receiver is not an error: nobody is listening yet.
    fn announce(&self, record: &ChangeRecord) {
        let _ = self
            .announce
            .send(Announcement::Record(Arc::new(record.clone())));
    }

    /// Announces a record the store committed itself (a pruning marker).
    pub fn announce_record(&self, record: ChangeRecord) {
        let _ = self.announce.send(Announcement::Record(Arc::new(record)));
    }

    /// Records committed from now on, in sequence order. A receiver that lags behind gets
    /// `Lagged` and must catch up from the journal.
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.announce.subscribe()
    }

    /// The sender announcements go through (the daemon adds gap notices to the same order).
    pub fn announcer(&self) -> broadcast::Sender<Announcement> {
        self.announce.clone()
    }

    /// Looks at each object again and journals what really changed. On error nothing of this
    /// step was written; the caller keeps the objects and retries.
    ///
    /// Files are observed here, registry keys and services through the readers the platform
    /// gives (`keys`, `services`: the Windows companion). Without a reader (fimd) such an
    /// object is refused loudly (an error in the log naming it), never recorded as a change
    /// nobody looked at.
    pub fn reconcile(
        &mut self,
        objects: &[(MonitoredObject, Hint)],
        detection: Detection,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        let mut files = Vec::with_capacity(objects.len());
        let mut keys = Vec::new();
        let mut services: Option<keys::KeyCause> = None;
        for (object, hint) in objects {
            match object {
                MonitoredObject::File(path) => files.push((path.as_path(), hint)),
                MonitoredObject::RegistryKey { key, .. } if self.key_reader.is_some() => {
                    keys.push((key.as_str(), hint))
                }
                // Any service event sweeps the service entities once (see `services`).
                MonitoredObject::Service(_) if self.service_reader.is_some() => {
                    keys::merge_cause(services.get_or_insert_with(Default::default), hint)
                }
                other => tracing::error!(
                    object = %other,
                    "no observer for {:?} objects on this platform: the change was not looked at",
                    other.kind()
                ),
            }
        }
        let mut records = self.reconcile_files(&files, detection)?;
        records.extend(self.reconcile_keys(&keys, detection)?);
        if let (Some(cause), Some(reader)) = (services, self.service_reader.clone()) {
            records.extend(self.reconcile_services(reader.as_ref(), None, detection, cause)?);
        }
        Ok(records)
    }

    fn reconcile_files(
        &mut self,
        paths: &[(&Path, &Hint)],
        detection: Detection,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        let mut verdicts = Vec::new();
        for (path, hint) in paths {
            self.judge(path, hint, detection, &mut verdicts)?;
        }
        // A new directory's walk meets paths that have events of their own in this step (mkdir
        // -p, tar x): judge each path once, by its own event where it has one.
        let own: HashSet<&Path> = paths.iter().map(|(path, _)| *path).collect();
        let mut judged = HashSet::new();
        let mut unique = Vec::with_capacity(verdicts.len());
        for verdict in verdicts.iter().filter(|verdict| verdict.own_event) {
            judged.insert(verdict.path.clone());
        }
        for verdict in verdicts {
            let duplicate = if verdict.own_event {
                false
            } else {
                own.contains(verdict.path.as_path()) || !judged.insert(verdict.path.clone())
            };
            if !duplicate {
                unique.push(verdict);
            }
        }
        self.commit(unique, detection)
    }

    /// Compares one path (and, for directories that appeared or vanished, everything below
    /// it) with the baseline. A large file's verdict comes later, from the background hasher.
    fn judge(
        &self,
        path: &Path,
        hint: &Hint,
        detection: Detection,
        verdicts: &mut Vec<Verdict>,
    ) -> Result<(), ReconcileError> {
        let baseline = self.store.get(path)?;
        let entity = self.policy.entity_for(path);
        // A directory that became a file must have its old subtree judged here, now.
        let was_directory = baseline
            .as_ref()
            .is_some_and(|entry| entry.state.file_type == FileType::Directory);
        if entity.is_some() && !was_directory && self.defer_if_large(path, hint, detection) {
            return Ok(());
        }
        let content_limit = self.policy.settings.content_limit;
        let observed = match entity {
            Some(entity) => observe_for(entity, path, content_limit),
            // Not covered itself, but maybe a directory with covered paths below it.
            None => scan::observe(path, &ObserveOptions::default()),
        };
        // Out of descriptors: the whole batch fails, and the daemon holds and retries it.
        let observed = match observed {
            Err(error) if error.is_transient() => return Err(error.into()),
            other => other,
        };
        let Some(after) = subtree::observe_or_skip(observed, path) else {
            return Ok(());
        };
        let before = baseline.map(|entry| entry.state);
        let dir_of = |state: &Option<FileState>| {
            state
                .as_ref()
                .filter(|state| state.file_type == FileType::Directory)
                .map(|state| (state.dev, state.ino))
        };
        let (was_dir, is_dir) = (dir_of(&before), dir_of(&after));
        let swapped = was_dir.is_some() && is_dir.is_some() && was_dir != is_dir;
        let appeared_or_vanished = was_dir.is_some() != is_dir.is_some();
        if appeared_or_vanished || swapped || (is_dir.is_some() && hint.renamed_from.is_some()) {
            subtree::judge_subtree(self, path, is_dir.is_some(), hint, detection, verdicts)?;
        }
        // Not monitored (a temp file next to a `*.conf`, an ignored name): nothing to say about
        // the path itself.
        let Some(entity) = entity else {
            return Ok(());
        };
        verdicts.push(Verdict {
            path: path.to_path_buf(),
            entity: entity.name.clone(),
            before,
            after,
            hint: hint.clone(),
            own_event: true,
        });
        Ok(())
    }

    /// Writes the verdicts that are changes (and silent baseline refreshes) in one
    /// transaction, then announces the records.
    fn commit(
        &mut self,
        verdicts: Vec<Verdict>,
        detection: Detection,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        if verdicts.is_empty() {
            return Ok(Vec::new());
        }
        let mut reported_entities = HashSet::new();
        for verdict in &verdicts {
            if !reported_entities.contains(&verdict.entity) && self.is_baselined(&verdict.entity)? {
                reported_entities.insert(verdict.entity.clone());
            }
        }
        let mut records = Vec::new();
        let mut batch = self.store.batch()?;
        for verdict in verdicts {
            let record = if self.reported(&verdict, &reported_entities) {
                make_record(&self.computer, &verdict, detection)
            } else {
                None
            };
            match &verdict.after {
                Some(state) if verdict.before.as_ref() != Some(state) => {
                    batch.put(&verdict.path, &verdict.entity, state)?
                }
                Some(_) => {}
                None if verdict.before.is_some() => {
                    batch.delete(&verdict.path)?;
                }
                None => {}
            }
            if let Some(mut record) = record {
                self.attribute(&mut record);
                batch.append(&mut record)?;
                records.push(record);
            }
        }
        batch.commit()?;
        for record in &records {
            self.announce(record);
        }
        Ok(records)
    }
}

/// The record for one verdict, or None when nothing a user cares about changed.
fn make_record(
    computer: &Computer,
    verdict: &Verdict,
    detection: Detection,
) -> Option<ChangeRecord> {
    let (category, fields) = match (&verdict.before, &verdict.after) {
        (None, None) => return None,
        (None, Some(_)) => (ChangeCategory::Added, Vec::new()),
        (Some(_), None) => (ChangeCategory::Removed, Vec::new()),
        (Some(before), Some(after)) => {
            let fields = verdict_fields(before, after);
            if fields.is_empty() {
                return None;
            }
            (ChangeCategory::Modified, fields)
        }
    };
    let mut file = file_columns(
        &verdict.path,
        verdict.before.as_ref(),
        verdict.after.as_ref(),
    );
    file.renamed_from = verdict.hint.renamed_from.as_deref().map(display_path);
    file.renamed_to = verdict.hint.renamed_to.as_deref().map(display_path);
    let mut fields_changed: Vec<String> = fields.into_iter().map(str::to_string).collect();
    // A rename's two ends: the file now has (Added) or no longer has (Removed) this path. A
    // rename over an existing file keeps its path, so that record stays a plain Modified.
    let renamed = file.renamed_from.is_some() || file.renamed_to.is_some();
    if renamed && category != ChangeCategory::Modified {
        fields_changed.push("FileSystemPath".to_string());
    }
    // Listed only when several processes contributed: a single one is the Actor already, and
    // records of one process keep their old shape.
    let hint = &verdict.hint;
    let several = hint.contributors.len() > 1 || hint.contributors_omitted > 0;
    let (contributors, contributors_omitted) = match detection {
        Detection::Realtime if several => (hint.contributors.clone(), hint.contributors_omitted),
        _ => (Vec::new(), 0),
    };
    Some(ChangeRecord {
        sequence: 0,
        time_generated: crate::change::Timestamp::now(),
        computer: computer.name.clone(),
        computer_id: computer.id.clone(),
        config_change_type: ConfigChangeType::Files,
        change_category: category,
        fields_changed,
        entity: verdict.entity.clone(),
        detected_by: detection,
        operations: verdict.hint.operations.clone(),
        actor: match detection {
            Detection::Realtime => verdict.hint.actor.clone(),
            Detection::Scan | Detection::GapRescan | Detection::Monitor => None,
        },
        file: Some(file),
        registry: None,
        service: None,
        contributors,
        contributors_omitted,
        monitor: None,
    })
}

/// Observes a path with the entity's content rule.
pub(crate) fn observe_for(
    entity: &CompiledEntity,
    path: &Path,
    content_limit: u64,
) -> Result<Option<FileState>, ScanError> {
    scan::observe(
        path,
        &ObserveOptions {
            keep_content: entity.keep_content.then_some(content_limit),
            previous: None,
            budget: None,
            cancel: None,
            progress: None,
            hash_below: None,
        },
    )
}
