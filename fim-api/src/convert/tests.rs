use fim_engine::{
    change::{self, ChangeCategory, ConfigChangeType, Detection, Timestamp},
    path_text::parse_display,
};

use super::{filter_of, group_keys, path_of, record, request::timestamp_of, timestamp};
use crate::pb;

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
    // The path escape is `\` on Unix and `|` on Windows (see fim_model::path_text).
    let (bad, escaped) = if cfg!(unix) {
        ("/etc/\\q", "/etc/a\\xffb")
    } else {
        ("C:\\etc|q", "C:\\etc\\a|x0ab")
    };
    assert!(path_of(bad, "path").is_err());
    assert_eq!(
        path_of(escaped, "path").unwrap(),
        parse_display(escaped).unwrap()
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

#[test]
fn enum_lists_name_the_value_that_is_refused() {
    let unspecified = pb::ChangeFilter {
        categories: vec![pb::ChangeCategory::Added as i32, 0],
        ..Default::default()
    };
    let status = filter_of(Some(&unspecified), "filter").unwrap_err();
    assert_eq!(status.message(), "filter.categories[1]: is unspecified");
    let status = group_keys(&[pb::GroupKey::Entity as i32, 42]).unwrap_err();
    assert_eq!(status.message(), "group_by[1]: 42 is not a GroupKey");
    assert_eq!(
        group_keys(&[pb::GroupKey::Type as i32]).unwrap(),
        [fim_engine::store::GroupKey::Type]
    );
}
