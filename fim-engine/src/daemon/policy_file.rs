//! Following the policy file: `fim entities ...` edits it, the running daemon notices within a
//! second and applies the change without a restart. A file that does not parse or validate is
//! refused with its location and the previous policy stays in force.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::policy::{self, CompiledPolicy, Entity, Policy, PolicyError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// This file; the built-in default while it does not exist.
    File(PathBuf),
}

/// Which entities a reload added, removed or redefined (path, kind, flags or ignores).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PolicyChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub redefined: Vec<String>,
    /// The settings differ (the compiled entities may not).
    pub settings_changed: bool,
}

impl PolicyChange {
    /// Nothing the engine runs changed (a disabled or Windows entity was edited): the edit
    /// is journaled, and nothing else happens.
    pub fn affects_monitoring(&self) -> bool {
        self.settings_changed
            || !(self.added.is_empty() && self.removed.is_empty() && self.redefined.is_empty())
    }
}

pub struct PolicyWatcher {
    source: PolicySource,
    policy: Policy,
    compiled: CompiledPolicy,
    stamp: Option<(SystemTime, u64, u64)>,
    /// The stamp seen at the previous check (for settling).
    pending: Option<(SystemTime, u64, u64)>,
    /// Refuse a policy that someone other than root can change (the daemon runs as root).
    trusted_only: bool,
    /// Directories no entity may reach (fimd's state directory), applied after each compile.
    excluded: Vec<PathBuf>,
}

pub(super) fn stamp(source: &PolicySource) -> Option<(SystemTime, u64, u64)> {
    let PolicySource::File(path) = source;
    let metadata = std::fs::metadata(path).ok()?;
    let (_, inode) = crate::platform::file_id(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), inode))
}

fn read(source: &PolicySource, trusted_only: bool) -> Result<Policy, PolicyError> {
    let PolicySource::File(path) = source;
    if !path.exists() {
        return Ok(policy::platform_default_policy());
    }
    let parsed = if trusted_only {
        policy::load_trusted(path)?
    } else {
        policy::load(path)?
    };
    for warning in &parsed.warnings {
        tracing::warn!("policy: {warning}");
    }
    Ok(parsed.policy)
}

impl PolicyWatcher {
    pub fn load(source: PolicySource) -> Result<Self, PolicyError> {
        Self::load_with(source, false)
    }

    /// [`PolicyWatcher::load`] that also refuses, now and on every reload, a policy file or
    /// directory that someone other than root can change.
    pub fn load_trusted(source: PolicySource) -> Result<Self, PolicyError> {
        Self::load_with(source, true)
    }

    fn load_with(source: PolicySource, trusted_only: bool) -> Result<Self, PolicyError> {
        let stamp = stamp(&source);
        let policy = read(&source, trusted_only)?;
        let compiled = policy::compile(&policy)?;
        warn_not_monitored(&compiled);
        Ok(PolicyWatcher {
            source,
            policy,
            compiled,
            pending: stamp,
            stamp,
            trusted_only,
            excluded: Vec::new(),
        })
    }

    pub fn compiled(&self) -> &CompiledPolicy {
        &self.compiled
    }

    pub fn source(&self) -> &PolicySource {
        &self.source
    }

    /// Leaves `dir` out of every entity, now and after every reload, with a warning naming
    /// the entities that reached it.
    pub fn exclude(&mut self, dir: &Path) {
        self.excluded.push(dir.to_path_buf());
        exclude_all(&mut self.compiled, &self.excluded);
    }

    /// The policy as written (disabled and Windows entities included).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The version of the file the policy was last loaded from.
    pub(super) fn loaded_stamp(&self) -> super::policy_audit::Stamp {
        self.stamp
    }

    /// The file was written, replaced or removed since the last (re)load, and has stayed the
    /// same since the previous call: an editor that truncates and then writes must not make
    /// the daemon load an empty policy (and drop every baseline) in between.
    pub fn changed(&mut self) -> bool {
        let now = stamp(&self.source);
        let settled = now == self.pending;
        self.pending = now;
        now != self.stamp && settled
    }

    /// A reload, first step: notes the file's version and returns what reading it takes (an
    /// error when the file was removed). Reading and compiling (a second for 20,000 entities)
    /// is [`PendingLoad::load`], on a blocking thread so the event loop keeps running; then
    /// [`PolicyWatcher::finish_reload`] puts the result in force.
    pub fn begin_reload(&mut self) -> Result<PendingLoad, PolicyError> {
        // Taken first: a failed load is not retried until the file changes again.
        let had_file = self.stamp.is_some();
        self.stamp = stamp(&self.source);
        if had_file && self.stamp.is_none() {
            // Deleting the file is far more often an accident than a wish to fall back to the
            // defaults and drop every custom entity's baseline.
            let PolicySource::File(path) = &self.source;
            return Err(PolicyError::Read {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the policy file was removed; write it again (or restart fimd to use the built-in policy)",
                ),
            });
        }
        Ok(PendingLoad {
            source: self.source.clone(),
            trusted_only: self.trusted_only,
        })
    }

    /// Puts a loaded policy in force; None when its entities and settings did not change.
    pub fn finish_reload(&mut self, loaded: LoadedPolicy) -> Option<PolicyChange> {
        let LoadedPolicy {
            policy,
            mut compiled,
        } = loaded;
        if policy == self.policy {
            return None;
        }
        let mut change = diff(&self.policy, &policy);
        change.settings_changed = policy.settings != self.policy.settings;
        exclude_all(&mut compiled, &self.excluded);
        self.policy = policy;
        self.compiled = compiled;
        Some(change)
    }
}

/// A reload's reading and compiling, detached from the watcher so it can run on any thread.
pub struct PendingLoad {
    source: PolicySource,
    trusted_only: bool,
}

/// A policy read and compiled, not yet in force.
pub struct LoadedPolicy {
    policy: Policy,
    compiled: CompiledPolicy,
}

impl PendingLoad {
    /// Reads, parses, validates and compiles (blocking: file I/O and work linear in the
    /// number of entities).
    pub fn load(self) -> Result<LoadedPolicy, PolicyError> {
        let policy = read(&self.source, self.trusted_only)?;
        let compiled = policy::compile(&policy)?;
        warn_not_monitored(&compiled);
        Ok(LoadedPolicy { policy, compiled })
    }
}

/// Says which valid entities this platform does not monitor (none on Unix).
fn warn_not_monitored(compiled: &CompiledPolicy) {
    for warning in &compiled.warnings {
        tracing::warn!("{warning}");
    }
}

fn exclude_all(compiled: &mut CompiledPolicy, excluded: &[PathBuf]) {
    for dir in excluded {
        let touched = compiled.exclude(dir);
        if !touched.is_empty() {
            tracing::warn!(entities = ?touched, "fimd's state directory {} is left out of these entities: fimd never monitors its own database", crate::path_text::display_path(dir));
        }
    }
}

fn diff(old: &Policy, new: &Policy) -> PolicyChange {
    let enabled = |policy: &Policy| -> BTreeMap<String, Entity> {
        policy
            .entities
            .iter()
            .filter(|entity| entity.enabled && entity.kind.is_host_file())
            .map(|entity| (entity.name.clone(), entity.clone()))
            .collect()
    };
    let (old, new) = (enabled(old), enabled(new));
    let mut change = PolicyChange::default();
    for (name, entity) in &new {
        match old.get(name) {
            None => change.added.push(name.clone()),
            Some(previous) if previous != entity => change.redefined.push(name.clone()),
            Some(_) => {}
        }
    }
    change.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
    change
}
