//! What changed between a key's baseline and a new read ([`compare`]), and the record each
//! change becomes ([`KeyChange::record`]).
//!
//! One key gives one record per thing a user would name: the key itself appearing or going,
//! each value added, removed or set (type or data), the key's ACL, and (for a key watched
//! without recursion) each direct subkey added or removed. A removed key also reports each of
//! its values as Removed, so a deleted `Run` key shows which autostart entries went with it.
use fim_model::{
    object::hive_of, Actor, ChangeCategory, ChangeRecord, ConfigChangeType, Detection,
    RegistryColumns, Timestamp,
};

use super::{
    child_key,
    text::{type_name, value_text},
    KeySnapshot, RegistryValue,
};
use crate::identity::Computer;

/// One difference between a key's baseline and its new read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    KeyAdded {
        sddl: Option<String>,
    },
    KeyRemoved {
        sddl: Option<String>,
    },
    AclChanged {
        before: String,
        after: String,
    },
    ValueAdded(RegistryValue),
    ValueRemoved(RegistryValue),
    ValueChanged {
        before: RegistryValue,
        after: RegistryValue,
    },
    /// A direct subkey, by its name.
    SubkeyAdded(String),
    SubkeyRemoved(String),
}

/// The differences from `before` (the baseline; None when the key had none) to `after` (None
/// when the key is gone), in a stable order: the key, its ACL, values by name, subkeys by
/// name. An ACL that could not be read on one side is not a change (unreadable is not
/// different).
pub fn compare(before: Option<&KeySnapshot>, after: Option<&KeySnapshot>) -> Vec<KeyChange> {
    let empty = KeySnapshot::default();
    let mut changes = Vec::new();
    match (before, after) {
        (None, None) => return changes,
        (None, Some(after)) => changes.push(KeyChange::KeyAdded {
            sddl: after.sddl.clone(),
        }),
        (Some(before), None) => changes.push(KeyChange::KeyRemoved {
            sddl: before.sddl.clone(),
        }),
        (Some(before), Some(after)) => {
            if let (Some(old), Some(new)) = (&before.sddl, &after.sddl) {
                if old != new {
                    changes.push(KeyChange::AclChanged {
                        before: old.clone(),
                        after: new.clone(),
                    });
                }
            }
        }
    }
    let before = before.unwrap_or(&empty);
    let after = after.unwrap_or(&empty);
    for (name, old) in &before.values {
        match after.values.get(name) {
            None => changes.push(KeyChange::ValueRemoved(old.clone())),
            Some(new) if new.kind != old.kind || new.data != old.data => {
                changes.push(KeyChange::ValueChanged {
                    before: old.clone(),
                    after: new.clone(),
                })
            }
            Some(_) => {}
        }
    }
    for (name, new) in &after.values {
        if !before.values.contains_key(name) {
            changes.push(KeyChange::ValueAdded(new.clone()));
        }
    }
    for (name, spelled) in &before.subkeys {
        if !after.subkeys.contains_key(name) {
            changes.push(KeyChange::SubkeyRemoved(spelled.clone()));
        }
    }
    for (name, spelled) in &after.subkeys {
        if !before.subkeys.contains_key(name) {
            changes.push(KeyChange::SubkeyAdded(spelled.clone()));
        }
    }
    changes
}

/// Who and how, shared by the records of one reconcile.
pub struct RecordContext<'a> {
    pub computer: &'a Computer,
    pub entity: &'a str,
    pub detection: Detection,
    /// Only real-time records carry an actor (and only where the platform names one).
    pub actor: Option<Actor>,
    pub operations: Vec<String>,
}

impl RecordContext<'_> {
    /// A record of `change_type` with this context's computer, entity, detection, actor
    /// (real-time only) and operations, and no column group yet: the caller sets its own.
    pub fn record(
        &self,
        change_type: ConfigChangeType,
        category: ChangeCategory,
        fields: &[&str],
    ) -> ChangeRecord {
        ChangeRecord {
            sequence: 0,
            time_generated: Timestamp::now(),
            computer: self.computer.name.clone(),
            computer_id: self.computer.id.clone(),
            config_change_type: change_type,
            change_category: category,
            fields_changed: fields.iter().map(|field| field.to_string()).collect(),
            entity: self.entity.to_string(),
            detected_by: self.detection,
            operations: self.operations.clone(),
            actor: match self.detection {
                Detection::Realtime => self.actor.clone(),
                Detection::Scan | Detection::GapRescan | Detection::Monitor => None,
            },
            file: None,
            registry: None,
            service: None,
            contributors: Vec::new(),
            contributors_omitted: 0,
            monitor: None,
        }
    }
}

impl KeyChange {
    /// Whether this change is the existence of a direct subkey (reported only for keys
    /// watched without recursion: with recursion the subkey reports itself).
    pub fn is_subkey(&self) -> bool {
        matches!(
            self,
            KeyChange::SubkeyAdded(_) | KeyChange::SubkeyRemoved(_)
        )
    }

    /// The record of this change to `key` (long hive first).
    pub fn record(&self, key: &str, context: &RecordContext<'_>) -> ChangeRecord {
        let mut columns = RegistryColumns {
            registry_key: key.to_string(),
            hive: hive_of(key).unwrap_or_default().to_string(),
            ..RegistryColumns::default()
        };
        let mut fields: Vec<&str> = Vec::new();
        let category = match self {
            KeyChange::KeyAdded { sddl } => {
                columns.acls = sddl.clone();
                ChangeCategory::Added
            }
            KeyChange::KeyRemoved { sddl } => {
                columns.previous_acls = sddl.clone();
                ChangeCategory::Removed
            }
            KeyChange::AclChanged { before, after } => {
                columns.previous_acls = Some(before.clone());
                columns.acls = Some(after.clone());
                fields.push("Acls");
                ChangeCategory::Modified
            }
            KeyChange::ValueAdded(value) => {
                columns.value_name = Some(value.name.clone());
                set_current(&mut columns, value);
                ChangeCategory::Added
            }
            KeyChange::ValueRemoved(value) => {
                columns.value_name = Some(value.name.clone());
                set_previous(&mut columns, value);
                ChangeCategory::Removed
            }
            KeyChange::ValueChanged { before, after } => {
                columns.value_name = Some(after.name.clone());
                set_previous(&mut columns, before);
                set_current(&mut columns, after);
                if before.kind != after.kind {
                    fields.push("ValueType");
                }
                if before.data != after.data {
                    fields.push("ValueData");
                }
                ChangeCategory::Modified
            }
            KeyChange::SubkeyAdded(name) => {
                columns.registry_key = child_key(key, name);
                ChangeCategory::Added
            }
            KeyChange::SubkeyRemoved(name) => {
                columns.registry_key = child_key(key, name);
                ChangeCategory::Removed
            }
        };
        let mut record = context.record(ConfigChangeType::Registry, category, &fields);
        record.registry = Some(columns);
        record
    }
}

fn set_current(columns: &mut RegistryColumns, value: &RegistryValue) {
    let text = value_text(value);
    columns.value_type = Some(type_name(value.kind));
    columns.value_data = Some(text.text);
    columns.value_data_checksum = Some(text.checksum);
    columns.value_data_size = Some(text.size);
    columns.value_data_truncated |= text.truncated;
    columns.value_data_invalid |= text.invalid;
}

fn set_previous(columns: &mut RegistryColumns, value: &RegistryValue) {
    let text = value_text(value);
    columns.previous_value_type = Some(type_name(value.kind));
    columns.previous_value_data = Some(text.text);
    columns.previous_value_data_checksum = Some(text.checksum);
    columns.previous_value_data_size = Some(text.size);
    columns.value_data_truncated |= text.truncated;
    columns.value_data_invalid |= text.invalid;
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
