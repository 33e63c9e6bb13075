//! What happens to an entity's baseline when the policy stops covering it, and what a path
//! that comes back is compared with.
//!
//! Disabling an entity, removing it or redefining it must never be a way to launder a change:
//! an owner who disables `/etc/ssh`, plants a key and enables it again must get the key
//! reported. So rows are never dropped when an entity leaves the policy: they stay under the
//! entity's name ("retired"), its "baselined" marker with them. When the entity comes back
//! under the same name, its next scan is an ordinary comparison with those rows (Modified,
//! Added, Removed, all reported). Rows of an entity that left the policy are adopted by any
//! entity that now covers their paths, and a path with a baseline row is always reported when
//! it differs, even during the new owner's first baseline. Only a path never baselined gets a
//! silent first baseline: for a redefined entity, the paths only its new definition covers
//! (recursion turned on, a wider wildcard).
//!
//! Rows an entity still in the policy stops covering (an ignore pattern added, a narrower
//! path) wait aside under [`retired_name`], so removing the pattern again compares the path
//! with its row rather than baselining it afresh.
//!
//! Retired rows cost disk space only; they are what the next `enabled = true` is compared with.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use crate::policy::CompiledEntity;

use super::{ReconcileError, Reconciler, Verdict};

/// A baseline row on the move: path, entity, state.
type Row = (PathBuf, String, crate::state::FileState);

/// Where the rows an entity stopped covering wait. Entity names cannot hold control
/// characters, so this never names a policy entity.
pub(super) fn retired_name(entity: &str) -> String {
    format!("{entity}\u{1}retired")
}

impl Reconciler {
    /// After an entity was removed, disabled or redefined (call after [`Self::set_policy`]):
    /// its rows that another entity now covers move to that entity (they are still its
    /// baseline: a broader entity must not see them as Added); the others stay, retired,
    /// under its name. `previous` is a redefined entity's old definition.
    pub fn retire_entity(
        &mut self,
        name: &str,
        previous: Option<CompiledEntity>,
    ) -> Result<(), ReconcileError> {
        let paths: Vec<PathBuf> = self
            .store
            .quick_map(name)?
            .paths()
            .map(Path::to_path_buf)
            .collect();
        let moves = self.moves_to_covering(paths, name)?;
        self.write_moves(&moves)?;
        if let Some(previous) = previous {
            // Two redefinitions before a scan: the oldest definition is what the rows hold.
            self.previous_definitions
                .entry(name.to_string())
                .or_insert(previous);
        }
        Ok(())
    }

    /// Rows of entities no longer in the policy whose paths a current entity covers move to
    /// it (at start-up and after every reload): a renamed entity keeps its baseline. Returns
    /// how many rows moved.
    pub fn adopt_retired_rows(&mut self) -> Result<usize, ReconcileError> {
        let current: HashSet<&str> = self
            .policy
            .entities
            .iter()
            .map(|entity| entity.name.as_str())
            .collect();
        let retired: Vec<String> = self
            .store
            .entities_in_baseline()?
            .into_iter()
            .filter(|name| !current.contains(name.as_str()))
            .collect();
        let mut moved = 0;
        for name in retired {
            let paths: Vec<PathBuf> = self
                .store
                .quick_map(&name)?
                .paths()
                .map(Path::to_path_buf)
                .collect();
            let moves = self.moves_to_covering(paths, &name)?;
            moved += moves.len();
            self.write_moves(&moves)?;
        }
        Ok(moved)
    }

    /// Rows (path, entity, state) their entity no longer covers: to the entity that covers
    /// each path now, or aside under [`retired_name`] until one does.
    pub(super) fn retire_rows(&mut self, rows: Vec<Row>) -> Result<(), ReconcileError> {
        let moves: Vec<Row> = rows
            .into_iter()
            .map(|(path, from, state)| {
                let owner = match self.policy.entity_for(&path) {
                    Some(entity) => entity.name.clone(),
                    None => retired_name(&from),
                };
                (path, owner, state)
            })
            .collect();
        self.write_moves(&moves)
    }

    /// A scan of `entity` completed: paths its old definition did not cover have their
    /// baseline now.
    pub(super) fn scan_completed(&mut self, entity: &str) {
        self.previous_definitions.remove(entity);
    }

    /// Does this verdict become a record? A path that had a baseline row always does (when
    /// something differs); a new path only once its entity has a baseline, and for a
    /// redefined entity only where the old definition reached.
    pub(super) fn reported(&self, verdict: &Verdict, baselined: &HashSet<String>) -> bool {
        if verdict.before.is_some() {
            return true;
        }
        if !baselined.contains(&verdict.entity) {
            return false;
        }
        match self.previous_definitions.get(&verdict.entity) {
            Some(previous) => previous.covers(&verdict.path),
            None => true,
        }
    }

    /// The rows among `paths` (all of entity `from`) that another entity covers now.
    fn moves_to_covering(
        &self,
        paths: Vec<PathBuf>,
        from: &str,
    ) -> Result<Vec<Row>, ReconcileError> {
        let mut moves = Vec::new();
        for path in paths {
            let owner = match self.policy.entity_for(&path) {
                Some(entity) if entity.name != from => entity.name.clone(),
                _ => continue,
            };
            if let Some(entry) = self.store.get(&path)? {
                moves.push((path, owner, entry.state));
            }
        }
        Ok(moves)
    }

    fn write_moves(&mut self, moves: &[Row]) -> Result<(), ReconcileError> {
        if moves.is_empty() {
            return Ok(());
        }
        let mut batch = self.store.batch()?;
        for (path, owner, state) in moves {
            batch.put(path, owner, state)?;
        }
        batch.commit()?;
        Ok(())
    }
}
