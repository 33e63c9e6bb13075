//! The monitor's own records (see [`fim_model::monitor`]): building one for this computer.
use super::{Actor, ChangeCategory, ChangeRecord, ConfigChangeType, Detection, Timestamp};
use crate::identity::Computer;
pub use fim_model::monitor::{MonitorColumns, MonitorEvent};

/// The `Monitor` record these columns go in (sequence assigned when journaled). The
/// category follows the event: an entity added is Added, removed is Removed, the rest
/// Modified.
pub fn monitor_record(
    columns: MonitorColumns,
    computer: &Computer,
    entity: String,
    fields_changed: Vec<String>,
    actor: Option<Actor>,
) -> ChangeRecord {
    ChangeRecord {
        sequence: 0,
        time_generated: Timestamp::now(),
        computer: computer.name.clone(),
        computer_id: computer.id.clone(),
        config_change_type: ConfigChangeType::Monitor,
        change_category: match columns.event {
            MonitorEvent::EntityAdded => ChangeCategory::Added,
            MonitorEvent::EntityRemoved => ChangeCategory::Removed,
            _ => ChangeCategory::Modified,
        },
        fields_changed,
        entity,
        detected_by: Detection::Monitor,
        operations: Vec::new(),
        actor,
        file: None,
        registry: None,
        service: None,
        contributors: Vec::new(),
        contributors_omitted: 0,
        monitor: Some(columns),
    }
}
