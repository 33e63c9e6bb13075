//! Reconcile: from "something happened to these paths" to journaled change records.
//!
//! Real-time events only say where to look; the verdict always comes from comparing a fresh
//! observation with the baseline, so a lost, duplicated or misleading event can never invent
//! or hide a change. Each step writes the new baseline rows and the records in one SQLite
//! transaction, and records are announced only after it commits: SIGKILL at any moment leaves
//! either the old baseline (the next scan finds the change again) or both.
pub mod coalesce;
mod observe_tree;
pub mod sweep;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use tokio::sync::broadcast;

use crate::{
    change::{
        fields_changed, file_columns, ChangeCategory, ChangeRecord, ConfigChangeType, Detection,
    },
    identity::Computer,
    path_text::display_path,
    policy::{CompiledEntity, CompiledPolicy},
    scan::{self, ObserveOptions, ScanError},
    state::{FileState, FileType},
    store::{Store, StoreError},
};

pub use coalesce::{Coalescer, Hint};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("the scanner thread panicked")]
    ScannerPanicked,
}

impl ReconcileError {
    /// The state directory's disk is full: retry later, nothing is lost meanwhile.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, ReconcileError::Store(error) if error.is_disk_full())
    }
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

pub struct Reconciler {
    store: Store,
    policy: CompiledPolicy,
    computer: Computer,
    announce: broadcast::Sender<ChangeRecord>,
}

impl Reconciler {
    pub fn new(store: Store, policy: CompiledPolicy, computer: Computer) -> Self {
        let (announce, _) = broadcast::channel(4096);
        Reconciler {
            store,
            policy,
            computer,
            announce,
        }
    }

    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    pub fn set_policy(&mut self, policy: CompiledPolicy) {
        self.policy = policy;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Drops an entity's baseline (removed or redefined in the policy).
    pub fn forget_entity(&mut self, name: &str) -> Result<(), ReconcileError> {
        self.store.delete_entity(name)?;
        self.store.delete_meta(&sweep::baselined_key(name))?;
        Ok(())
    }

    /// Records committed from now on, in sequence order. A receiver that lags behind gets
    /// `Lagged` and must catch up from the journal.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeRecord> {
        self.announce.subscribe()
    }

    /// Looks at each path again and journals what really changed. On error nothing of this
    /// step was written; the caller keeps the paths and retries.
    pub fn reconcile_paths(
        &mut self,
        paths: &[(PathBuf, Hint)],
        detection: Detection,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        let mut verdicts = Vec::new();
        for (path, hint) in paths {
            self.judge(path, hint, &mut verdicts)?;
        }
        // A new directory's walk meets paths that have events of their own in this step (mkdir
        // -p, tar x): judge each path once, by its own event where it has one.
        let own: HashSet<&Path> = paths.iter().map(|(path, _)| path.as_path()).collect();
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
        self.commit(unique, detection, true)
    }

    /// Compares one path (and, for directories that appeared or vanished, everything below
    /// it) with the baseline.
    fn judge(
        &self,
        path: &Path,
        hint: &Hint,
        verdicts: &mut Vec<Verdict>,
    ) -> Result<(), ReconcileError> {
        let baseline = self.store.get(path)?;
        let entity = match self.policy.entity_for(path) {
            Some(entity) => entity,
            // Not monitored (a temp file next to a `*.conf`, an ignored name): nothing to say,
            // unless it is in the baseline from an older policy, which the next sweep prunes.
            None => return Ok(()),
        };
        let after = observe_for(entity, path, self.policy.settings.content_limit)?;
        let before = baseline.map(|entry| entry.state);
        let was_dir = before
            .as_ref()
            .is_some_and(|state| state.file_type == FileType::Directory);
        let is_dir = after
            .as_ref()
            .is_some_and(|state| state.file_type == FileType::Directory);
        if was_dir && !is_dir {
            // A directory vanished or was replaced: everything the baseline had below it went
            // with it (to `renamed_to` when it was a rename).
            for below in self.store.paths_under(path)? {
                let Some(old) = self.store.get(&below)? else {
                    continue;
                };
                let renamed_to = hint
                    .renamed_to
                    .as_ref()
                    .and_then(|to| below.strip_prefix(path).ok().map(|rest| to.join(rest)));
                verdicts.push(Verdict {
                    path: below,
                    entity: old.entity,
                    before: Some(old.state),
                    after: None,
                    hint: Hint {
                        renamed_to,
                        ..hint.clone()
                    },
                    own_event: false,
                });
            }
        }
        if is_dir && (!was_dir || hint.renamed_from.is_some()) {
            // A directory appeared (mkdir, or moved in with its content): its content arrives
            // with no events of its own.
            observe_tree::added_below(self, path, hint, verdicts)?;
        }
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
        report: bool,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        if verdicts.is_empty() {
            return Ok(Vec::new());
        }
        let mut records = Vec::new();
        let mut batch = self.store.batch()?;
        for verdict in verdicts {
            let record = if report {
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
                batch.append(&mut record)?;
                records.push(record);
            }
        }
        batch.commit()?;
        for record in &records {
            // No receiver is not an error: nobody is listening yet.
            let _ = self.announce.send(record.clone());
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
            let fields = fields_changed(before, after);
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
    Some(ChangeRecord {
        sequence: 0,
        time_generated: crate::change::now_rfc3339(),
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
            Detection::Scan | Detection::GapRescan => None,
        },
        file: Some(file),
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
        },
    )
}
