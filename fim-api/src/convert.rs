//! Engine types to fim.v1 messages and back.
//!
//! The engine's record schema is the contract (it is what the journal hashes), so records go
//! out field for field, plus `journal_json`, the exact JSON the hash chain covers, for clients
//! that verify the chain themselves. Requests come in from anyone who can reach the socket,
//! so every pb → engine conversion validates and answers INVALID_ARGUMENT naming the field,
//! instead of guessing (an unknown enum value is an error, not "any").
use fim_engine::{
    change::{self, ChangeCategory, ConfigChangeType, Detection, Timestamp, UserIdentity},
    path_text::{display_bytes, display_path, parse_display},
    policy::{Entity, EntityKind},
    source::GapNotice,
    store::{
        BaselineEntry, ChangeFilter, GroupKey, ScanRun, SubjectGlob, VerifyProblem, VerifyReport,
    },
};
use tonic::Status;

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

/// Who may see file content in what the API returns. There is no policy setting for it:
/// content (file-content entities keep it, for diffs) goes only to root, so the owner and
/// reader groups learn that a file changed, never what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Shown,
    Stripped,
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

/// A baseline state as `content` allows.
pub fn baseline_state_for(entry: &BaselineEntry, content: Content) -> pb::BaselineState {
    let mut out = baseline_state(entry);
    if content == Content::Stripped {
        out.content = None;
        out.content_truncated = false;
    }
    out
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
        date_modified: file.date_modified.map(Timestamp::to_rfc3339),
        previous_date_modified: file.previous_date_modified.map(Timestamp::to_rfc3339),
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
        change_time: file.change_time.map(Timestamp::to_rfc3339),
        previous_change_time: file.previous_change_time.map(Timestamp::to_rfc3339),
    }
}

pub fn gap(gap: &GapNotice) -> pb::GapNotice {
    pb::GapNotice {
        roots: gap.roots.iter().map(ToString::to_string).collect(),
        dropped: gap.dropped,
        time: gap.time.clone(),
    }
}

/// Nanoseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn scan_run(run: &ScanRun) -> pb::ScanRun {
    pb::ScanRun {
        kind: run.kind.clone(),
        started: Some(timestamp(run.started.unix_nanos())),
        finished: Some(timestamp(run.finished.unix_nanos())),
        files: run.files,
        changes: run.changes,
        errors: run.errors,
    }
}

pub fn hash_progress(progress: &fim_engine::reconcile::HashProgress) -> pb::HashProgress {
    pb::HashProgress {
        path: display_path(&progress.path),
        size: progress.size,
        done: progress.done,
    }
}

pub fn baseline_state(entry: &BaselineEntry) -> pb::BaselineState {
    let state = &entry.state;
    pb::BaselineState {
        file_type: state.file_type.as_str().to_string(),
        size: state.size,
        mode: state.mode,
        uid: state.uid,
        gid: state.gid,
        mtime: Some(timestamp(state.mtime_ns)),
        ctime: Some(timestamp(state.ctime_ns)),
        inode: state.ino,
        device: state.dev,
        links: state.nlink,
        symlink_target: state.symlink_target.as_deref().map(display_bytes),
        checksum: state.hash.as_ref().map(|hash| change::hex(hash)),
        acl: state.acl.clone(),
        selinux_context: state.selinux.as_deref().map(|raw| {
            String::from_utf8_lossy(raw.strip_suffix(b"\0").unwrap_or(raw)).into_owned()
        }),
        capabilities: state.capability.as_deref().map(change::hex),
        content: state.content.clone(),
        content_truncated: state.content_truncated,
        error: state.error.clone(),
        unstable: state.unstable,
    }
}

pub fn verify_report(report: &VerifyReport) -> pb::VerifyJournalResponse {
    pb::VerifyJournalResponse {
        intact: report.is_ok(),
        checked: report.checked,
        head_sequence: report.head_sequence,
        problem: report
            .problem
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        problem_sequence: report.problem.as_ref().map_or(0, problem_sequence),
        head_hash: report.head_hash.clone(),
    }
}

/// The sequence a problem is at: the first record that is wrong or absent.
fn problem_sequence(problem: &VerifyProblem) -> u64 {
    match problem {
        VerifyProblem::Missing { expected, .. } => *expected,
        VerifyProblem::Edited { sequence, .. }
        | VerifyProblem::Reordered { sequence }
        | VerifyProblem::AnchorMismatch { sequence }
        | VerifyProblem::HeadMismatch { sequence } => *sequence,
        VerifyProblem::AnchorMissing { last_present, .. } => last_present + 1,
        VerifyProblem::Damaged { .. } => 0,
        VerifyProblem::TruncatedTail { last_present, .. } => last_present + 1,
        VerifyProblem::BeyondHead { head_sequence, .. } => head_sequence + 1,
        // Zero or negative: no sequence a chain can have.
        VerifyProblem::Foreign { .. } => 0,
    }
}

pub fn entity(entity: &Entity) -> pb::Entity {
    pb::Entity {
        name: entity.name.clone(),
        kind: entity_kind(entity.kind) as i32,
        path: entity.path.clone(),
        recursive: entity.recursive,
        enabled: entity.enabled,
        ignore: entity.ignore.clone(),
    }
}

pub fn entity_kind(kind: EntityKind) -> pb::EntityKind {
    match kind {
        EntityKind::LinuxFile => pb::EntityKind::LinuxFile,
        EntityKind::FileContent => pb::EntityKind::FileContent,
        EntityKind::WindowsFile => pb::EntityKind::WindowsFile,
        EntityKind::WindowsRegistry => pb::EntityKind::WindowsRegistry,
        EntityKind::WindowsService => pb::EntityKind::WindowsService,
    }
}

// ---- requests: pb → engine, validated ----

fn invalid(field: &str, what: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {what}"))
}

/// Linux's PATH_MAX, less the terminating NUL.
const PATH_MAX: usize = 4095;
/// Components in an entity path: far beyond any real tree.
const MAX_COMPONENTS: usize = 256;

/// An entity from an UpsertEntity request (`field` prefixes error messages).
pub fn entity_of(entity: &pb::Entity, field: &str) -> Result<Entity, Status> {
    if entity.name.trim().is_empty() {
        return Err(invalid(&format!("{field}.name"), "must not be empty"));
    }
    let kind = match pb::EntityKind::try_from(entity.kind) {
        Ok(pb::EntityKind::LinuxFile) => EntityKind::LinuxFile,
        Ok(pb::EntityKind::FileContent) => EntityKind::FileContent,
        Ok(pb::EntityKind::WindowsFile) => EntityKind::WindowsFile,
        Ok(pb::EntityKind::WindowsRegistry) => EntityKind::WindowsRegistry,
        Ok(pb::EntityKind::WindowsService) => EntityKind::WindowsService,
        Ok(pb::EntityKind::Unspecified) => {
            return Err(invalid(&format!("{field}.kind"), "must be set"))
        }
        Err(_) => {
            return Err(invalid(
                &format!("{field}.kind"),
                format_args!("{} is not an EntityKind", entity.kind),
            ))
        }
    };
    if entity.path.trim().is_empty() {
        return Err(invalid(&format!("{field}.path"), "must not be empty"));
    }
    // Hostile paths are refused here, before they reach the policy file or the kernel: a NUL
    // cannot be in a path (it would cut it short in every C call), and a path longer than
    // PATH_MAX or deeper than MAX_COMPONENTS cannot be opened, only walked at great cost.
    if entity.path.contains('\0') {
        return Err(invalid(
            &format!("{field}.path"),
            "must not contain a NUL byte",
        ));
    }
    let components = entity
        .path
        .split(['/', '\\'])
        .filter(|part| !part.is_empty())
        .count();
    if components > MAX_COMPONENTS {
        return Err(invalid(
            &format!("{field}.path"),
            format_args!("has {components} components; at most {MAX_COMPONENTS}"),
        ));
    }
    if entity.path.len() > PATH_MAX {
        return Err(invalid(
            &format!("{field}.path"),
            format_args!("is {} bytes long; at most {PATH_MAX}", entity.path.len()),
        ));
    }
    if entity.name.contains('\0') {
        return Err(invalid(
            &format!("{field}.name"),
            "must not contain a NUL byte",
        ));
    }
    Ok(Entity {
        name: entity.name.clone(),
        kind,
        path: entity.path.clone(),
        recursive: entity.recursive,
        enabled: entity.enabled,
        ignore: entity.ignore.clone(),
    })
}

fn timestamp_of(timestamp: &prost_types::Timestamp, field: &str) -> Result<Timestamp, Status> {
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(invalid(
            field,
            format_args!("nanos {} is outside 0..1000000000", timestamp.nanos),
        ));
    }
    timestamp
        .seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(i64::from(timestamp.nanos)))
        .map(Timestamp::from_unix_nanos)
        .ok_or_else(|| invalid(field, "is out of range"))
}

/// A change filter from a request; `field` names it in errors (e.g. "filter").
pub fn filter_of(filter: Option<&pb::ChangeFilter>, field: &str) -> Result<ChangeFilter, Status> {
    let Some(filter) = filter else {
        return Ok(ChangeFilter::default());
    };
    let since = filter
        .since
        .as_ref()
        .map(|at| timestamp_of(at, &format!("{field}.since")))
        .transpose()?;
    let until = filter
        .until
        .as_ref()
        .map(|at| timestamp_of(at, &format!("{field}.until")))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            return Err(invalid(
                &format!("{field}.since"),
                "is after filter.until: the range is empty",
            ));
        }
    }
    let types = filter
        .types
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            let name = format!("{field}.types[{index}]");
            match pb::ConfigChangeType::try_from(value) {
                Ok(pb::ConfigChangeType::Files) => Ok(ConfigChangeType::Files),
                Ok(pb::ConfigChangeType::Registry) => Ok(ConfigChangeType::Registry),
                Ok(pb::ConfigChangeType::WindowsServices) => Ok(ConfigChangeType::WindowsServices),
                Ok(pb::ConfigChangeType::Daemons) => Ok(ConfigChangeType::Daemons),
                Ok(pb::ConfigChangeType::Monitor) => Ok(ConfigChangeType::Monitor),
                Ok(pb::ConfigChangeType::Unspecified) => Err(invalid(&name, "is unspecified")),
                Err(_) => Err(invalid(
                    &name,
                    format_args!("{value} is not a ConfigChangeType"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let categories = filter
        .categories
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            let name = format!("{field}.categories[{index}]");
            match pb::ChangeCategory::try_from(value) {
                Ok(pb::ChangeCategory::Added) => Ok(ChangeCategory::Added),
                Ok(pb::ChangeCategory::Modified) => Ok(ChangeCategory::Modified),
                Ok(pb::ChangeCategory::Removed) => Ok(ChangeCategory::Removed),
                Ok(pb::ChangeCategory::Unspecified) => Err(invalid(&name, "is unspecified")),
                Err(_) => Err(invalid(
                    &name,
                    format_args!("{value} is not a ChangeCategory"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path_glob = filter
        .path_glob
        .as_deref()
        .map(|glob| {
            SubjectGlob::new(glob).map_err(|error| {
                invalid(
                    &format!("{field}.path_glob"),
                    format_args!("{glob:?} is not a valid glob: {}", error.kind()),
                )
            })
        })
        .transpose()?;
    Ok(ChangeFilter {
        since,
        until,
        types,
        categories,
        path_glob,
        computer: filter.computer.clone(),
        entity: filter.entity.clone(),
        after_sequence: None,
    })
}

pub fn group_key(key: GroupKey) -> pb::GroupKey {
    match key {
        GroupKey::Computer => pb::GroupKey::Computer,
        GroupKey::Type => pb::GroupKey::Type,
        GroupKey::Category => pb::GroupKey::Category,
        GroupKey::Entity => pb::GroupKey::Entity,
    }
}

pub fn group_keys(keys: &[i32]) -> Result<Vec<GroupKey>, Status> {
    keys.iter()
        .enumerate()
        .map(|(index, &value)| {
            let name = format!("group_by[{index}]");
            match pb::GroupKey::try_from(value) {
                Ok(pb::GroupKey::Computer) => Ok(GroupKey::Computer),
                Ok(pb::GroupKey::Type) => Ok(GroupKey::Type),
                Ok(pb::GroupKey::Category) => Ok(GroupKey::Category),
                Ok(pb::GroupKey::Entity) => Ok(GroupKey::Entity),
                Ok(pb::GroupKey::Unspecified) => Err(invalid(&name, "is unspecified")),
                Err(_) => Err(invalid(&name, format_args!("{value} is not a GroupKey"))),
            }
        })
        .collect()
}

/// A path as records show it (`\xNN` for non-UTF-8 bytes, `\\` for a backslash).
pub fn path_of(text: &str, field: &str) -> Result<std::path::PathBuf, Status> {
    if text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    parse_display(text).ok_or_else(|| {
        invalid(
            field,
            format_args!(
                "{text:?} is not a path as records show it (a backslash must start \\\\ or \\xNN)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_validated_with_the_field_named() {
        let bad_glob = pb::ChangeFilter {
            path_glob: Some("/etc/[".into()),
            ..Default::default()
        };
        let status = filter_of(Some(&bad_glob), "filter").unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("filter.path_glob:"));

        let bad_type = pb::ChangeFilter {
            types: vec![1, 99],
            ..Default::default()
        };
        let status = filter_of(Some(&bad_type), "filter").unwrap_err();
        assert!(
            status.message().starts_with("filter.types[1]:"),
            "{status:?}"
        );

        let backwards = pb::ChangeFilter {
            since: Some(timestamp(2_000_000_000)),
            until: Some(timestamp(1_000_000_000)),
            ..Default::default()
        };
        let status = filter_of(Some(&backwards), "filter").unwrap_err();
        assert!(status.message().contains("filter.since"), "{status:?}");
    }

    #[test]
    fn paths_use_the_record_escape() {
        assert!(path_of("/etc/\\q", "path").is_err());
        assert_eq!(
            path_of("/etc/a\\xffb", "path").unwrap(),
            parse_display("/etc/a\\xffb").unwrap()
        );
    }

    #[test]
    fn contributors_and_change_time_reach_the_message() {
        let actor = |pid: u32, name: &str| change::Actor {
            process_id: pid,
            thread_id: pid,
            process_name: name.into(),
            executable: None,
            parent_process_id: 1,
            user: change::UserIdentity::Unix(change::UnixUser {
                user_id: 0,
                user_name: "root".into(),
                group_id: 0,
                login_user_id: None,
                cgroup_id: 1,
                cgroup: None,
            }),
        };
        let contributor = |pid, name, op: &str| change::Contributor {
            actor: actor(pid, name),
            operations: vec![op.to_string()],
        };
        let engine = change::ChangeRecord {
            sequence: 3,
            time_generated: Timestamp::UNIX_EPOCH,
            computer: "h".into(),
            computer_id: "id".into(),
            config_change_type: ConfigChangeType::Files,
            change_category: ChangeCategory::Modified,
            fields_changed: vec!["ChangeTime".into()],
            entity: "e".into(),
            detected_by: Detection::Realtime,
            operations: vec!["write-closed".into(), "setattr".into()],
            actor: Some(actor(8, "touch")),
            file: Some(change::FileColumns {
                file_system_path: "/x".into(),
                change_time: Some(Timestamp::from_unix_nanos(2_000_000_000)),
                previous_change_time: Some(Timestamp::from_unix_nanos(1_000_000_000)),
                ..Default::default()
            }),
            contributors: vec![
                contributor(7, "bash", "write-closed"),
                contributor(8, "touch", "setattr"),
            ],
            contributors_omitted: 1,
            registry: None,
            service: None,
            monitor: None,
        };
        let message = record(&engine);
        let named: Vec<(u32, &str, &[String])> = message
            .contributors
            .iter()
            .map(|c| {
                let actor = c.actor.as_ref().expect("actor");
                (
                    actor.process_id,
                    actor.process_name.as_str(),
                    &c.operations[..],
                )
            })
            .collect();
        assert_eq!(
            named,
            vec![
                (7, "bash", &["write-closed".to_string()][..]),
                (8, "touch", &["setattr".to_string()][..]),
            ]
        );
        assert_eq!(message.contributors_omitted, 1);
        let file = message.file.expect("file");
        assert_eq!(file.change_time.as_deref(), Some("1970-01-01T00:00:02Z"));
        assert_eq!(
            file.previous_change_time.as_deref(),
            Some("1970-01-01T00:00:01Z")
        );
        assert!(message
            .journal_json
            .contains(r#""Contributors":[{"ProcessId":7"#));
    }

    #[test]
    fn negative_timestamps_round_down() {
        let at = timestamp(-1);
        assert_eq!((at.seconds, at.nanos), (-1, 999_999_999));
        assert_eq!(timestamp_of(&at, "t").unwrap().unix_nanos(), -1);
    }

    #[test]
    fn registry_and_service_columns_and_windows_actors_reach_the_message() {
        let registry = record(&fim_model::samples::registry_record());
        let columns = registry.registry.as_ref().unwrap();
        assert_eq!(
            columns.registry_key,
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
        );
        assert_eq!(columns.value_name.as_deref(), Some("Updater"));
        assert_eq!(columns.previous_value_data.as_deref(), Some(r"C:\good.exe"));
        assert!(columns.value_data_invalid);
        assert!(registry.file.is_none() && registry.service.is_none());
        let actor = registry.actor.as_ref().unwrap();
        assert_eq!(actor.user_sid.as_deref(), Some("S-1-5-21-1-2-3-1001"));
        assert_eq!(actor.logon_id, Some(999));
        assert_eq!(actor.account_name.as_deref(), Some(r"CORP\alice"));
        assert_eq!(actor.user_name, r"CORP\alice");
        assert_eq!(
            registry.config_change_type,
            pb::ConfigChangeType::Registry as i32
        );
        // journal_json is the record itself, so a client reads it back whole.
        let back: change::ChangeRecord = serde_json::from_str(&registry.journal_json).unwrap();
        assert_eq!(back, fim_model::samples::registry_record());

        let service = record(&fim_model::samples::service_record());
        let columns = service.service.as_ref().unwrap();
        assert_eq!(columns.svc_name, "Spooler");
        assert_eq!(columns.svc_state.as_deref(), Some("Stopped"));
        assert_eq!(columns.previous_svc_startup_type.as_deref(), Some("Auto"));
        assert!(service.actor.is_none());
    }
}
