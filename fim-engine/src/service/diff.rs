//! A service's change as a WindowsServices record: created (Added), deleted (Removed), or
//! changed in any of display name, state, startup type, binary path or account (Modified,
//! with every field's previous value, and `FieldsChanged` naming those that differ).
use fim_model::{ChangeCategory, ChangeRecord, ConfigChangeType, ServiceColumns};

use super::ServiceSnapshot;
use crate::registry::diff::RecordContext;

/// The record for the change from `before` to `after`, or None when nothing differs.
pub fn service_record(
    before: Option<&ServiceSnapshot>,
    after: Option<&ServiceSnapshot>,
    context: &RecordContext<'_>,
) -> Option<ChangeRecord> {
    let (category, fields) = match (before, after) {
        (None, None) => return None,
        (None, Some(_)) => (ChangeCategory::Added, Vec::new()),
        (Some(_), None) => (ChangeCategory::Removed, Vec::new()),
        (Some(old), Some(new)) => {
            let fields = changed_fields(old, new);
            if fields.is_empty() {
                return None;
            }
            (ChangeCategory::Modified, fields)
        }
    };
    let name = after.or(before).map(|service| service.name.clone())?;
    let current = |field: fn(&ServiceSnapshot) -> &String| after.map(|s| field(s).clone());
    let previous = |field: fn(&ServiceSnapshot) -> &String| before.map(|s| field(s).clone());
    let columns = ServiceColumns {
        svc_name: name,
        svc_display_name: current(|s| &s.display_name),
        previous_svc_display_name: previous(|s| &s.display_name),
        svc_state: current(|s| &s.state),
        previous_svc_state: previous(|s| &s.state),
        svc_startup_type: current(|s| &s.startup_type),
        previous_svc_startup_type: previous(|s| &s.startup_type),
        svc_path: current(|s| &s.path),
        previous_svc_path: previous(|s| &s.path),
        svc_account: current(|s| &s.account),
        previous_svc_account: previous(|s| &s.account),
        capped: before.is_some_and(|s| s.capped) || after.is_some_and(|s| s.capped),
    };
    let mut record = context.record(ConfigChangeType::WindowsServices, category, &fields);
    record.service = Some(columns);
    Some(record)
}

/// The service columns that differ, in column order.
pub fn changed_fields(old: &ServiceSnapshot, new: &ServiceSnapshot) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let pairs: [(&str, &String, &String); 5] = [
        ("SvcDisplayName", &old.display_name, &new.display_name),
        ("SvcState", &old.state, &new.state),
        ("SvcStartupType", &old.startup_type, &new.startup_type),
        ("SvcPath", &old.path, &new.path),
        ("SvcAccount", &old.account, &new.account),
    ];
    for (field, before, after) in pairs {
        if before != after {
            fields.push(field);
        }
    }
    fields
}
