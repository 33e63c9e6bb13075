//! Records the monitor journals about itself: policy changes, and (later) history lost and
//! journal pruning.
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
        }
    }
}

/// The `Monitor` column group of a record of type `Monitor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitorColumns {
    pub event: MonitorEvent,
    /// How the change arrived: "api" (a caller of the API, named in `By` and the actor) or
    /// "policy-file" (the file was edited, by whom the daemon cannot tell).
    pub source: String,
    /// The caller as the API saw it ("uid 0 (gid 0, pid 42)", a certificate), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The policy file the change was read from.
    pub policy_file: String,
    /// The entity (or the settings) before and after, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}
