//! Change records and gap notices, engine → fim.v1, column group by column group.
use fim_engine::{
    change::{self, ChangeCategory, ConfigChangeType, Detection, UserIdentity},
    source::GapNotice,
};

use super::Content;
use crate::pb;

/// A record as sent to clients; `journal_json` is the record's journaled text.
pub fn record(record: &change::ChangeRecord) -> pb::ChangeRecord {
    let journal_json = serde_json::to_string(record).unwrap_or_default();
    pb::ChangeRecord {
        sequence: record.sequence,
        time_generated: record.time_generated.to_rfc3339(),
        computer: record.computer.clone(),
        computer_id: record.computer_id.clone(),
        config_change_type: change_type(record.config_change_type) as i32,
        change_category: category(record.change_category) as i32,
        fields_changed: record.fields_changed.clone(),
        entity: record.entity.clone(),
        detected_by: detection(record.detected_by).to_string(),
        operations: record.operations.clone(),
        actor: record.actor.as_ref().map(actor),
        file: record.file.as_ref().map(file_columns),
        registry: record.registry.as_ref().map(registry_columns),
        service: record.service.as_ref().map(service_columns),
        journal_json,
        contributors: record
            .contributors
            .iter()
            .map(|contributor| pb::Contributor {
                actor: Some(actor(&contributor.actor)),
                operations: contributor.operations.clone(),
            })
            .collect(),
        contributors_omitted: record.contributors_omitted,
        monitor: record.monitor.as_ref().map(|monitor| pb::MonitorColumns {
            event: monitor.event.as_str().to_string(),
            source: monitor.source.clone(),
            by: monitor.by.clone(),
            policy_file: monitor.policy_file.clone(),
            previous: monitor.previous.clone(),
            current: monitor.current.clone(),
            detail: monitor.detail.clone(),
        }),
    }
}

fn detection(detection: Detection) -> &'static str {
    match detection {
        Detection::Realtime => "realtime",
        Detection::Scan => "scan",
        Detection::GapRescan => "gap-rescan",
        Detection::Monitor => "monitor",
    }
}

pub fn change_type(kind: ConfigChangeType) -> pb::ConfigChangeType {
    match kind {
        ConfigChangeType::Files => pb::ConfigChangeType::Files,
        ConfigChangeType::Registry => pb::ConfigChangeType::Registry,
        ConfigChangeType::WindowsServices => pb::ConfigChangeType::WindowsServices,
        ConfigChangeType::Daemons => pb::ConfigChangeType::Daemons,
        ConfigChangeType::Monitor => pb::ConfigChangeType::Monitor,
    }
}

pub fn category(kind: ChangeCategory) -> pb::ChangeCategory {
    match kind {
        ChangeCategory::Added => pb::ChangeCategory::Added,
        ChangeCategory::Modified => pb::ChangeCategory::Modified,
        ChangeCategory::Removed => pb::ChangeCategory::Removed,
    }
}

fn actor(actor: &change::Actor) -> pb::Actor {
    let mut out = pb::Actor {
        process_id: actor.process_id,
        thread_id: actor.thread_id,
        process_name: actor.process_name.clone(),
        executable: actor.executable.clone(),
        parent_process_id: actor.parent_process_id,
        ..pb::Actor::default()
    };
    match &actor.user {
        UserIdentity::Unix(user) => {
            out.user_id = user.user_id;
            out.user_name = user.user_name.clone();
            out.group_id = user.group_id;
            out.login_user_id = user.login_user_id;
            out.cgroup_id = user.cgroup_id;
            out.cgroup = user.cgroup.clone();
        }
        UserIdentity::Windows(user) => {
            out.user_sid = Some(user.user_sid.clone());
            out.logon_id = user.logon_id;
            out.account_name = user.account_name.clone();
            out.user_name = actor.user_display().to_string();
        }
    }
    out
}

fn registry_columns(registry: &change::RegistryColumns) -> pb::RegistryColumns {
    let registry = registry.clone();
    pb::RegistryColumns {
        registry_key: registry.registry_key,
        hive: registry.hive,
        value_name: registry.value_name,
        value_type: registry.value_type,
        previous_value_type: registry.previous_value_type,
        value_data: registry.value_data,
        previous_value_data: registry.previous_value_data,
        value_data_checksum: registry.value_data_checksum,
        previous_value_data_checksum: registry.previous_value_data_checksum,
        value_data_size: registry.value_data_size,
        previous_value_data_size: registry.previous_value_data_size,
        value_data_truncated: registry.value_data_truncated,
        value_data_invalid: registry.value_data_invalid,
        acls: registry.acls,
        previous_acls: registry.previous_acls,
    }
}

fn service_columns(service: &change::ServiceColumns) -> pb::ServiceColumns {
    let service = service.clone();
    pb::ServiceColumns {
        svc_name: service.svc_name,
        svc_display_name: service.svc_display_name,
        previous_svc_display_name: service.previous_svc_display_name,
        svc_state: service.svc_state,
        previous_svc_state: service.previous_svc_state,
        svc_startup_type: service.svc_startup_type,
        previous_svc_startup_type: service.previous_svc_startup_type,
        svc_path: service.svc_path,
        previous_svc_path: service.previous_svc_path,
        svc_account: service.svc_account,
        previous_svc_account: service.previous_svc_account,
        capped: service.capped,
    }
}

/// A record as `content` allows: the diff is removed when content is stripped, from the
/// columns and from `journal_json` alike (which then no longer hashes to the chain: only
/// root, who may see the content, can check a content record's hash itself).
pub fn record_for(record: &change::ChangeRecord, content: Content) -> pb::ChangeRecord {
    let has_diff = record
        .file
        .as_ref()
        .is_some_and(|file| file.content_diff.is_some());
    if content == Content::Shown || !has_diff {
        return self::record(record);
    }
    let mut stripped = record.clone();
    if let Some(file) = stripped.file.as_mut() {
        file.content_diff = None;
    }
    self::record(&stripped)
}

fn file_columns(file: &change::FileColumns) -> pb::FileColumns {
    let file = file.clone();
    pb::FileColumns {
        file_system_path: file.file_system_path,
        renamed_from: file.renamed_from,
        renamed_to: file.renamed_to,
        file_type: file.file_type,
        previous_file_type: file.previous_file_type,
        size: file.size,
        previous_size: file.previous_size,
        date_modified: file.date_modified.map(change::Timestamp::to_rfc3339),
        previous_date_modified: file
            .previous_date_modified
            .map(change::Timestamp::to_rfc3339),
        owner: file.owner,
        previous_owner: file.previous_owner,
        group: file.group,
        previous_group: file.previous_group,
        mode: file.mode,
        previous_mode: file.previous_mode,
        acls: file.acls,
        previous_acls: file.previous_acls,
        attributes: file.attributes,
        previous_attributes: file.previous_attributes,
        capabilities: file.capabilities,
        previous_capabilities: file.previous_capabilities,
        selinux_context: file.selinux_context,
        previous_selinux_context: file.previous_selinux_context,
        symlink_target: file.symlink_target,
        previous_symlink_target: file.previous_symlink_target,
        links: file.links,
        previous_links: file.previous_links,
        inode: file.inode,
        previous_inode: file.previous_inode,
        file_content_checksum: file.file_content_checksum,
        previous_file_content_checksum: file.previous_file_content_checksum,
        content_diff: file.content_diff,
        unstable: file.unstable,
        error: file.error,
        change_time: file.change_time.map(change::Timestamp::to_rfc3339),
        previous_change_time: file.previous_change_time.map(change::Timestamp::to_rfc3339),
    }
}

pub fn gap(gap: &GapNotice) -> pb::GapNotice {
    pb::GapNotice {
        roots: gap.roots.iter().map(ToString::to_string).collect(),
        dropped: gap.dropped,
        time: gap.time.to_rfc3339(),
    }
}
