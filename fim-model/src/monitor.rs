//! Records the monitor journals about itself: policy changes, history lost, a database
//! restored after it was deleted.
//!
//! A FIM whose configuration can change without a trace can be talked into not looking: an
//! owner who disables an entity, plants a file and enables it again must leave the disabling
//! in the same hash chain as the file changes, with who did it. These records are ordinary
//! change records (same chain, same queries, same stream) of type `Monitor`, with a `Monitor`
//! column group instead of `File`.
use serde::{Deserialize, Serialize};

/// What happened to the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MonitorEvent {
    EntityAdded,
    EntityEdited,
    EntityEnabled,
    EntityDisabled,
    EntityRemoved,
    SettingsChanged,
    /// The journal and baseline before this record are gone (the database was lost).
    HistoryLost,
    /// The database file was deleted or replaced while fimd ran, and put back from the copy
    /// fimd held open: nothing was lost.
    DatabaseRestored,
    /// Old records were pruned by the retention settings; the chain continues from the last
    /// pruned record's hash.
    JournalPruned,
    /// An event a newer fimd wrote: an older `fim` still reads the journal (the record text,
    /// which the chain hashes, keeps the real name).
    #[serde(other)]
    Unknown,
}

impl MonitorEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorEvent::EntityAdded => "EntityAdded",
            MonitorEvent::EntityEdited => "EntityEdited",
            MonitorEvent::EntityEnabled => "EntityEnabled",
            MonitorEvent::EntityDisabled => "EntityDisabled",
            MonitorEvent::EntityRemoved => "EntityRemoved",
            MonitorEvent::SettingsChanged => "SettingsChanged",
            MonitorEvent::HistoryLost => "HistoryLost",
            MonitorEvent::DatabaseRestored => "DatabaseRestored",
            MonitorEvent::JournalPruned => "JournalPruned",
            MonitorEvent::Unknown => "Unknown",
        }
    }
}

/// The `Monitor` column group of a record of type `Monitor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitorColumns {
    pub event: MonitorEvent,
    /// How the change arrived: "api" (a caller of the API, named in `By` and the actor),
    /// "policy-file" (the file was edited, by whom the daemon cannot tell) or "database".
    pub source: String,
    /// The caller as the API saw it ("uid 0 (gid 0, pid 42)", a certificate), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The policy file the change was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<String>,
    /// The entity (or the settings) before and after, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// What happened, in words (database events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::MonitorEvent;

    #[test]
    fn an_event_from_a_newer_daemon_still_reads() {
        let event: MonitorEvent = serde_json::from_str("\"SomethingNew\"").expect("reads");
        assert_eq!(event, MonitorEvent::Unknown);
        let known: MonitorEvent = serde_json::from_str("\"EntityDisabled\"").expect("reads");
        assert_eq!(known, MonitorEvent::EntityDisabled);
    }
}
