//! The change record: the product's stable output schema.
//!
//! Field names follow Azure's ConfigurationChange table (TimeGenerated, Computer,
//! ConfigChangeType, ChangeCategory, FieldsChanged, FileSystemPath, RegistryKey, SvcName,
//! Previous*), so queries and reports written for it carry over; who-data, renames and the
//! journal sequence go beyond it. The JSON form of a record is what the journal hashes, so
//! fields are only ever added (with `skip_serializing_if` defaults), never renamed or reordered.
use serde::{Deserialize, Serialize};

use crate::{
    actor::{deserialize_actor, serialize_actor},
    Actor, FileColumns, MonitorColumns, RegistryColumns, ServiceColumns, Timestamp,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigChangeType {
    Files,
    Registry,
    WindowsServices,
    Daemons,
    /// The monitor itself: its policy changed (see [`MonitorColumns`]).
    Monitor,
}

impl ConfigChangeType {
    pub const ALL: [ConfigChangeType; 5] = [
        ConfigChangeType::Files,
        ConfigChangeType::Registry,
        ConfigChangeType::WindowsServices,
        ConfigChangeType::Daemons,
        ConfigChangeType::Monitor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigChangeType::Files => "Files",
            ConfigChangeType::Registry => "Registry",
            ConfigChangeType::WindowsServices => "WindowsServices",
            ConfigChangeType::Daemons => "Daemons",
            ConfigChangeType::Monitor => "Monitor",
        }
    }

    /// Case-insensitive, as users type it on a command line.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeCategory {
    Added,
    Modified,
    Removed,
}

impl ChangeCategory {
    pub const ALL: [ChangeCategory; 3] = [
        ChangeCategory::Added,
        ChangeCategory::Modified,
        ChangeCategory::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeCategory::Added => "Added",
            ChangeCategory::Modified => "Modified",
            ChangeCategory::Removed => "Removed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

/// How the change was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// A real-time event (eBPF, or Windows notifications) led to it.
    Realtime,
    /// A scheduled or start-up scan found it.
    Scan,
    /// The targeted rescan after lost events (a gap notice) found it.
    GapRescan,
    /// The monitor's own record (a policy change it applied).
    Monitor,
}

/// One process that contributed to a record coalesced from several: its identity (the fields of
/// [`Actor`], flattened) and what it did. A write by one process and a `touch -r` by another
/// within one window are one record; naming only the last would hide the writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Contributor {
    #[serde(flatten)]
    pub actor: Actor,
    /// This process's operations, in order, without repeats.
    pub operations: Vec<String>,
}

/// One change, as journaled and streamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeRecord {
    /// Strictly increasing; assigned when the journal accepts the record.
    pub sequence: u64,
    /// When the change was recorded (RFC 3339, UTC, in the JSON).
    pub time_generated: Timestamp,
    pub computer: String,
    /// Stable host identity (/etc/machine-id), for a workspace where host names repeat.
    pub computer_id: String,
    pub config_change_type: ConfigChangeType,
    pub change_category: ChangeCategory,
    pub fields_changed: Vec<String>,
    /// The policy entity the object belongs to.
    pub entity: String,
    pub detected_by: Detection,
    /// The real-time operations coalesced into this record (`write-closed`, `rename`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    #[serde(
        serialize_with = "serialize_actor",
        deserialize_with = "deserialize_actor"
    )]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileColumns>,
    /// Type `Registry`: the key and value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryColumns>,
    /// Type `WindowsServices`: the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceColumns>,
    /// Every process behind a real-time record, in order, when more than one contributed
    /// (`Actor` is the last of them, `Operations` the union). At most
    /// [`MAX_CONTRIBUTORS`]; the events of further processes are counted in
    /// `ContributorsOmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributors: Vec<Contributor>,
    /// Events from processes past the first [`MAX_CONTRIBUTORS`], not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub contributors_omitted: u64,
    /// Type `Monitor` only: what happened to the monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorColumns>,
}

/// How many processes one record names: a flood of processes touching one path within a
/// window must not grow the daemon's memory or the record without bound.
pub const MAX_CONTRIBUTORS: usize = 16;

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// The field a record names when the change time is all that differs.
pub const CHANGE_TIME: &str = "ChangeTime";

impl ChangeRecord {
    /// What the record is about, as text: the FileSystemPath, the RegistryKey or the SvcName
    /// (the journal's `path` column, and what a path/key glob is matched against). None for
    /// the monitor's own records.
    pub fn subject(&self) -> Option<&str> {
        if let Some(file) = &self.file {
            return Some(&file.file_system_path);
        }
        if let Some(registry) = &self.registry {
            return Some(&registry.registry_key);
        }
        self.service
            .as_ref()
            .map(|service| service.svc_name.as_str())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests;
