//! Reconciling a registry entity: read its key (and, when recursive, every key below it),
//! compare each with its baseline, and journal what changed, in one transaction with the new
//! baseline.
//!
//! Registry notifications say only "something under this key changed", never what, so every
//! real-time event for a registry entity is a sweep of its tree. That is cheap because a key's
//! last-write time moves whenever one of its values or direct subkeys changes: a key whose
//! time did not move is listed (for its subkeys and its ACL, which does not move the time) but
//! its values are not read again. Keys in the baseline that the walk no longer meets were
//! deleted with their parent and are reported Removed, values included.
//!
//! As for files, an entity's first sweep baselines silently (there is nothing yet to compare
//! with); from then on every difference is journaled. A key that cannot be read (access
//! denied) keeps its baseline, and its subtree is left alone rather than reported removed.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use fim_model::{Actor, ChangeRecord, Detection};

use super::{lock, sweep::SweepOutcome, Hint, ReconcileError, Reconciler};
use crate::registry::{
    child_key,
    diff::{compare, RecordContext},
    fold, KeyReader, KeyRoot, KeySnapshot, RegistryView,
};

/// What one key-tree reconcile did.
#[derive(Debug, Default)]
pub struct KeySweep {
    pub records: Vec<ChangeRecord>,
    /// Keys read (with or without their values).
    pub keys: u64,
    /// Keys whose values were read because their last-write time moved (or they were new).
    pub keys_read_whole: u64,
    /// Keys that could not be read, each named in the log.
    pub errors: u64,
}

/// Who made the change, when the platform names them (real-time only).
#[derive(Clone, Debug, Default)]
pub struct KeyCause {
    pub actor: Option<Actor>,
    pub operations: Vec<String>,
}

impl Reconciler {
    /// Gives the reconciler the platform's registry (the Windows companion does; fimd has
    /// none, so registry entities are never swept on Linux).
    pub fn set_key_reader(&mut self, reader: Arc<dyn KeyReader>) {
        self.key_reader = Some(reader);
    }

    /// Real-time events for keys: each key's entity tree is swept once, however many of its
    /// keys had events (a notification names only the key it was armed on).
    pub(super) fn reconcile_keys(
        &mut self,
        keys: &[(&str, &Hint)],
        detection: Detection,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        let Some(reader) = self.key_reader.clone() else {
            return Ok(Vec::new());
        };
        let mut roots: Vec<(KeyRoot, KeyCause)> = Vec::new();
        for (key, hint) in keys {
            // A key of an entity, or the key a wildcard entity's notification is armed on
            // (the parent of its keys).
            let root = self.policy.key_root_for(key).or_else(|| {
                let key = fold(&fim_model::object::long_hive_key(key));
                self.policy
                    .registry
                    .iter()
                    .find(|root| fold(&root.key) == key)
            });
            let Some(root) = root.cloned() else {
                tracing::debug!(key, "a registry event for a key no entity covers");
                continue;
            };
            match roots
                .iter_mut()
                .find(|(known, _)| known.entity == root.entity)
            {
                Some((_, cause)) => merge_cause(cause, hint),
                None => {
                    let mut cause = KeyCause::default();
                    merge_cause(&mut cause, hint);
                    roots.push((root, cause));
                }
            }
        }
        let mut records = Vec::new();
        for (root, cause) in roots {
            let sweep = self.reconcile_key_tree(reader.as_ref(), &root, detection, cause)?;
            records.extend(sweep.records);
        }
        Ok(records)
    }

    /// Reconciles `root`'s tree against the registry `reader` reads (see the module docs).
    /// On error nothing was written; the caller retries.
    pub fn reconcile_key_tree(
        &mut self,
        reader: &dyn KeyReader,
        root: &KeyRoot,
        detection: Detection,
        cause: KeyCause,
    ) -> Result<KeySweep, ReconcileError> {
        let report = self.is_baselined(&root.entity)?;
        let mut batch = self.store.batch()?;
        let mut walk = TreeWalk {
            root,
            reader,
            report,
            context: RecordContext {
                computer: &self.computer,
                entity: &root.entity,
                detection,
                actor: cause.actor,
                operations: cause.operations,
            },
            sweep: KeySweep::default(),
            met: HashSet::new(),
            unreadable: Vec::new(),
        };
        // (key, whether it is one of the entity's keys): with a wildcard the named key is
        // only the parent whose matching subkeys are the entity's.
        let mut pending = vec![(root.key.clone(), root.subkeys.is_none())];
        while let Some((key, member)) = pending.pop() {
            walk.visit(&self.store, &mut batch, key, member, &mut pending)?;
        }
        if root.recursive || root.subkeys.is_some() {
            walk.report_gone(&self.store, &mut batch)?;
        }
        let mut sweep = walk.sweep;
        for record in &mut sweep.records {
            self.attribute(record);
            batch.append(record)?;
        }
        batch.commit()?;
        for record in &sweep.records {
            self.announce(record);
        }
        Ok(sweep)
    }
}

/// One reconcile of a key tree in progress.
struct TreeWalk<'a> {
    root: &'a KeyRoot,
    reader: &'a dyn KeyReader,
    /// The entity has its first baseline: differences are records.
    report: bool,
    context: RecordContext<'a>,
    sweep: KeySweep,
    /// Keys the walk met (folded).
    met: HashSet<String>,
    /// Subtrees (folded, with a trailing `\`) of keys that could not be read: their baselines
    /// stay as they are.
    unreadable: Vec<String>,
}

impl TreeWalk<'_> {
    /// Reads one key, compares it with its baseline, writes what changed and queues the
    /// subkeys to visit.
    fn visit(
        &mut self,
        store: &crate::store::Store,
        batch: &mut crate::store::Batch<'_>,
        key: String,
        member: bool,
        pending: &mut Vec<(String, bool)>,
    ) -> Result<(), ReconcileError> {
        let root = self.root;
        self.met.insert(fold(&key));
        let before = match member {
            true => store.key_baseline(&key, root.view)?,
            false => None,
        };
        let baseline = before.as_ref().map(|baseline| &baseline.snapshot);
        let read = match member {
            true => read(self.reader, &key, root.view, baseline),
            // The wildcard's parent: only its subkeys matter, never its values.
            false => self.reader.read_key(&key, root.view, false).map(|quick| {
                quick.map(|snapshot| Read {
                    snapshot,
                    whole: false,
                })
            }),
        };
        let current = match read {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(entity = %root.entity, "cannot read a monitored registry key: {error}");
                self.sweep.errors += 1;
                self.unreadable.push(format!("{}\\", fold(&key)));
                return Ok(());
            }
        };
        self.sweep.keys += 1;
        if current.as_ref().is_some_and(|read| read.whole) {
            self.sweep.keys_read_whole += 1;
        }
        let current = current.map(|read| read.snapshot);
        // Below a member, subkeys are members when the entity is recursive; below the
        // wildcard's parent, the matching ones are.
        let descend = !member || root.recursive;
        if let Some(snapshot) = current.as_ref().filter(|_| descend) {
            // Reversed onto the stack, so keys are visited in name order.
            let subkeys = snapshot.subkeys.values().rev();
            pending.extend(
                subkeys
                    .filter(|name| member || root.admits(name))
                    .map(|name| (child_key(&key, name), true)),
            );
        }
        if !member {
            return Ok(());
        }
        if self.report {
            for change in compare(baseline, current.as_ref()) {
                // Where subkeys are visited, each reports itself (and its values).
                if !(descend && change.is_subkey()) {
                    self.sweep.records.push(change.record(&key, &self.context));
                }
            }
        }
        match &current {
            Some(snapshot) if baseline != Some(snapshot) => {
                batch.put_key(&key, root.view, &root.entity, snapshot)?
            }
            Some(_) => {}
            None if before.is_some() => {
                batch.delete_key(&key, root.view)?;
            }
            None => {}
        }
        Ok(())
    }

    /// Keys below the root that the walk did not meet went with a parent: each is reported
    /// Removed with its values, and its baseline deleted.
    fn report_gone(
        &mut self,
        store: &crate::store::Store,
        batch: &mut crate::store::Batch<'_>,
    ) -> Result<(), ReconcileError> {
        for gone in store.keys_under(&self.root.key, self.root.view)? {
            let folded = fold(&gone.key);
            let skipped = self.met.contains(&folded)
                || self
                    .unreadable
                    .iter()
                    .any(|below| folded.starts_with(below));
            if skipped {
                continue;
            }
            if self.report {
                for change in compare(Some(&gone.snapshot), None) {
                    if !change.is_subkey() {
                        self.sweep
                            .records
                            .push(change.record(&gone.key, &self.context));
                    }
                }
            }
            batch.delete_key(&gone.key, self.root.view)?;
        }
        Ok(())
    }
}

pub(super) fn merge_cause(cause: &mut KeyCause, hint: &Hint) {
    for operation in &hint.operations {
        if !cause.operations.contains(operation) {
            cause.operations.push(operation.clone());
        }
    }
    if hint.actor.is_some() {
        cause.actor = hint.actor.clone();
    }
}

/// A scan's registry part: every registry entity (or those `only` names) swept, each entity's
/// first sweep a silent baseline. Does nothing without a key reader.
pub(super) fn sweep_keys(
    reconciler: &Mutex<Reconciler>,
    only: Option<&[String]>,
    detection: Detection,
    outcome: &mut SweepOutcome,
) -> Result<(), ReconcileError> {
    let (reader, roots) = {
        let reconciler = lock(reconciler);
        let Some(reader) = reconciler.key_reader.clone() else {
            return Ok(());
        };
        let roots: Vec<KeyRoot> = reconciler
            .policy
            .registry
            .iter()
            .filter(|root| only.is_none_or(|names| names.contains(&root.entity)))
            .cloned()
            .collect();
        (reader, roots)
    };
    for root in roots {
        // The lock is taken per entity, so real-time work interleaves with a long scan.
        let mut reconciler = lock(reconciler);
        let first = !reconciler.is_baselined(&root.entity)?;
        match reconciler.reconcile_key_tree(reader.as_ref(), &root, detection, KeyCause::default())
        {
            Ok(sweep) => {
                outcome.keys += sweep.keys;
                outcome.errors += sweep.errors;
                outcome.changes += sweep.records.len() as u64;
                if first {
                    reconciler.mark_baselined(&root.entity)?;
                    outcome.baselined.push(root.entity.clone());
                }
            }
            Err(error) if error.is_disk_full() => return Err(error),
            Err(error) => {
                tracing::error!(entity = %root.entity, "registry scan failed: {error}");
                outcome.errors += 1;
                outcome.failed.push(root.entity.clone());
            }
        }
    }
    Ok(())
}

struct Read {
    snapshot: KeySnapshot,
    /// Its values were read (not copied from the baseline).
    whole: bool,
}

/// Reads `key`: without its values first, then whole unless its last-write time is the
/// baseline's (then the baseline's values are still true).
fn read(
    reader: &dyn KeyReader,
    key: &str,
    view: RegistryView,
    baseline: Option<&KeySnapshot>,
) -> Result<Option<Read>, crate::registry::RegistryError> {
    let Some(mut quick) = reader.read_key(key, view, false)? else {
        return Ok(None);
    };
    if let Some(baseline) = baseline.filter(|baseline| baseline.last_write == quick.last_write) {
        quick.values = baseline.values.clone();
        return Ok(Some(Read {
            snapshot: quick,
            whole: false,
        }));
    }
    Ok(reader.read_key(key, view, true)?.map(|snapshot| Read {
        snapshot,
        whole: true,
    }))
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
