//! Every policy change is journaled, in the hash chain, as a record of type `Monitor`.
//!
//! Disabling an entity is the quietest way to stop a FIM from looking, so it must be as
//! visible as a changed file: entity added, edited, enabled, disabled, removed and settings
//! changed, each with the definition before and after and who did it. The API notes its
//! caller when it saves the policy file ([`PolicyEdits::note`]); a reload whose file is the
//! one the API wrote names that caller, any other edit says "policy-file". The policy last
//! applied is kept in the store's meta, so edits made while fimd was stopped are journaled
//! at the next start too.
use std::{path::Path, sync::Mutex, time::SystemTime};

use crate::{
    change::{Actor, ChangeRecord, MonitorColumns, MonitorEvent},
    identity::Computer,
    path_text::display_path,
    policy::{Entity, Policy},
};

/// The policy file's (mtime, size, inode): which version of the file an edit produced.
pub(super) type Stamp = Option<(SystemTime, u64, u64)>;

/// Who changed the policy through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyAuthor {
    /// The calling process, when the caller came over the Unix socket.
    pub actor: Option<Actor>,
    /// The caller as the API names it ("uid 0 (gid 0, pid 42)", a certificate).
    pub by: String,
}

/// The last API edit of the policy file, waiting for the reload that applies it.
#[derive(Debug, Default)]
pub struct PolicyEdits {
    last: Mutex<Option<(Stamp, PolicyAuthor)>>,
}

impl PolicyEdits {
    pub(super) fn note(&self, stamp: Stamp, author: PolicyAuthor) {
        *self.lock() = Some((stamp, author));
    }

    /// The author of the file version `stamp`, if the API wrote exactly that version.
    pub(super) fn take_for(&self, stamp: Stamp) -> Option<PolicyAuthor> {
        match self.lock().take() {
            Some((written, author)) if written == stamp => Some(author),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Stamp, PolicyAuthor)>> {
        // A plain value: consistent after any panic.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One change between two policies, before it becomes a record.
struct Edit {
    event: MonitorEvent,
    entity: String,
    fields: Vec<String>,
    previous: Option<String>,
    current: Option<String>,
}

/// The records for what changed from `previous` to `current` (in policy order: removed
/// entities first, then the current ones, then the settings).
pub(super) fn records(
    previous: &Policy,
    current: &Policy,
    author: Option<&PolicyAuthor>,
    policy_file: &Path,
    computer: &Computer,
) -> Vec<ChangeRecord> {
    edits(previous, current)
        .into_iter()
        .map(|edit| {
            let source = if author.is_some() {
                "api"
            } else {
                "policy-file"
            };
            let columns = MonitorColumns {
                event: edit.event,
                source: source.to_string(),
                by: author.map(|author| author.by.clone()),
                policy_file: Some(display_path(policy_file)),
                previous: edit.previous,
                current: edit.current,
                detail: None,
            };
            let actor = author.and_then(|author| author.actor.clone());
            crate::change::monitor_record(columns, computer, edit.entity, edit.fields, actor)
        })
        .collect()
}

fn edits(previous: &Policy, current: &Policy) -> Vec<Edit> {
    let find = |policy: &Policy, name: &str| {
        policy
            .entities
            .iter()
            .find(|entity| entity.name == name)
            .cloned()
    };
    let mut edits = Vec::new();
    for old in &previous.entities {
        if find(current, &old.name).is_none() {
            edits.push(Edit {
                event: MonitorEvent::EntityRemoved,
                entity: old.name.clone(),
                fields: Vec::new(),
                previous: json(old),
                current: None,
            });
        }
    }
    for new in &current.entities {
        let Some(old) = find(previous, &new.name) else {
            edits.push(Edit {
                event: MonitorEvent::EntityAdded,
                entity: new.name.clone(),
                fields: Vec::new(),
                previous: None,
                current: json(new),
            });
            continue;
        };
        let fields = entity_fields(&old, new);
        if fields.is_empty() {
            continue;
        }
        let event = match (fields.as_slice(), new.enabled) {
            ([only], true) if only == "Enabled" => MonitorEvent::EntityEnabled,
            ([only], false) if only == "Enabled" => MonitorEvent::EntityDisabled,
            _ => MonitorEvent::EntityEdited,
        };
        edits.push(Edit {
            event,
            entity: new.name.clone(),
            fields,
            previous: json(&old),
            current: json(new),
        });
    }
    let settings = settings_fields(previous, current);
    if !settings.is_empty() {
        edits.push(Edit {
            event: MonitorEvent::SettingsChanged,
            entity: String::new(),
            fields: settings,
            previous: json(&previous.settings),
            current: json(&current.settings),
        });
    }
    edits
}

fn entity_fields(old: &Entity, new: &Entity) -> Vec<String> {
    let mut fields = Vec::new();
    let mut differs = |different: bool, name: &str| {
        if different {
            fields.push(name.to_string());
        }
    };
    differs(old.kind != new.kind, "Kind");
    differs(old.path != new.path, "Path");
    differs(old.recursive != new.recursive, "Recursive");
    differs(old.ignore != new.ignore, "Ignore");
    differs(old.enabled != new.enabled, "Enabled");
    fields
}

/// The settings that differ, by their names in the policy file.
fn settings_fields(previous: &Policy, current: &Policy) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) = (
        serde_json::to_value(&previous.settings),
        serde_json::to_value(&current.settings),
    ) else {
        return Vec::new();
    };
    new.iter()
        .filter(|(key, value)| old.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

fn json<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_string(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeCategory;
    use crate::policy::default_policy;

    fn names(records: &[ChangeRecord]) -> Vec<(String, &'static str, Vec<String>)> {
        records
            .iter()
            .map(|record| {
                let monitor = record.monitor.as_ref().expect("monitor columns");
                (
                    record.entity.clone(),
                    monitor.event.as_str(),
                    record.fields_changed.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn each_kind_of_edit_is_one_record() {
        let before = default_policy();
        let mut after = before.clone();
        let removed = after.entities.remove(0);
        after.entities[0].enabled = !after.entities[0].enabled;
        after.entities[1].recursive = !after.entities[1].recursive;
        after.entities[1].ignore.push("*.bak".into());
        let mut added = removed.clone();
        added.name = "added".into();
        after.entities.push(added);
        after.settings.sweep_interval_secs += 60;
        let computer = Computer {
            name: "host".into(),
            id: "id".into(),
        };
        let journaled = records(
            &before,
            &after,
            None,
            Path::new("/etc/fim/policy.toml"),
            &computer,
        );
        let toggled = if after.entities[0].enabled {
            "EntityEnabled"
        } else {
            "EntityDisabled"
        };
        assert_eq!(
            names(&journaled),
            vec![
                (removed.name.clone(), "EntityRemoved", vec![]),
                (
                    after.entities[0].name.clone(),
                    toggled,
                    vec!["Enabled".to_string()]
                ),
                (
                    after.entities[1].name.clone(),
                    "EntityEdited",
                    vec!["Recursive".to_string(), "Ignore".to_string()]
                ),
                ("added".to_string(), "EntityAdded", vec![]),
                (
                    String::new(),
                    "SettingsChanged",
                    vec!["sweep_interval_secs".to_string()]
                ),
            ]
        );
        assert_eq!(journaled[0].change_category, ChangeCategory::Removed);
        assert_eq!(journaled[3].change_category, ChangeCategory::Added);
        let monitor = journaled[0].monitor.as_ref().expect("monitor");
        assert_eq!(monitor.source, "policy-file");
        assert!(monitor
            .previous
            .as_deref()
            .is_some_and(|json| json.contains(&removed.path)));
        assert!(records(&before, &before, None, Path::new("/p"), &computer).is_empty());
    }

    #[test]
    fn an_edit_is_attributed_only_to_the_file_version_the_api_wrote() {
        let edits = PolicyEdits::default();
        let author = PolicyAuthor {
            actor: None,
            by: "uid 0 (gid 0, pid 7)".into(),
        };
        let written = Some((SystemTime::UNIX_EPOCH, 10, 1));
        edits.note(written, author.clone());
        assert_eq!(edits.take_for(Some((SystemTime::UNIX_EPOCH, 11, 1))), None);
        edits.note(written, author.clone());
        assert_eq!(edits.take_for(written), Some(author));
        assert_eq!(edits.take_for(written), None, "taken once");
    }
}
