//! The record schema: what counts as a change, and JSON that stays stable.
use super::*;

fn state() -> FileState {
    FileState {
        file_type: FileType::Regular,
        size: 3,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 1_000_000_000,
        ctime_ns: 1_000_000_000,
        ino: 7,
        dev: 1,
        nlink: 1,
        hash: Some([1; 32]),
        ..FileState::empty(FileType::Regular)
    }
}

#[test]
fn ctime_alone_is_not_a_change() {
    let before = state();
    let after = FileState {
        ctime_ns: 2,
        ..state()
    };
    assert!(fields_changed(&before, &after).is_empty());
}

#[test]
fn a_file_written_and_put_back_differs_in_change_time_only() {
    let before = state();
    let after = FileState {
        ctime_ns: 2_000_000_000,
        ..state()
    };
    assert_eq!(verdict_fields(&before, &after), vec![CHANGE_TIME]);
    // Anything else that differs is named instead: ctime moves with every change.
    let chmodded = FileState {
        mode: 0o600,
        ..after.clone()
    };
    assert_eq!(verdict_fields(&before, &chmodded), vec!["Mode"]);
    assert!(verdict_fields(&before, &state()).is_empty());
    let symlink = |ctime_ns| FileState {
        file_type: FileType::Symlink,
        ctime_ns,
        ..state()
    };
    assert_eq!(verdict_fields(&symlink(1), &symlink(2)), vec![CHANGE_TIME]);
}

#[test]
fn a_directory_change_time_is_not_a_change() {
    let directory = |ctime_ns, size, nlink| FileState {
        file_type: FileType::Directory,
        ctime_ns,
        size,
        nlink,
        hash: None,
        ..state()
    };
    assert!(verdict_fields(&directory(1, 4096, 2), &directory(2, 4096, 2)).is_empty());
    assert!(verdict_fields(&directory(1, 4096, 2), &directory(2, 8192, 3)).is_empty());
}

#[test]
fn change_time_columns_are_filled_and_old_records_serialise_unchanged() {
    let before = state();
    let after = FileState {
        ctime_ns: 2_000_000_001,
        ..state()
    };
    let columns = file_columns(Path::new("/x"), Some(&before), Some(&after));
    assert_eq!(
        columns.change_time.map(Timestamp::to_rfc3339).as_deref(),
        Some("1970-01-01T00:00:02.000000001Z")
    );
    assert_eq!(
        columns
            .previous_change_time
            .map(Timestamp::to_rfc3339)
            .as_deref(),
        Some("1970-01-01T00:00:01Z")
    );
    let json = serde_json::to_string(&columns).unwrap();
    assert!(json.contains(r#""ChangeTime":"1970"#), "{json}");
    assert!(json.contains(r#""PreviousChangeTime":"1970"#), "{json}");
    // A record journaled before these fields existed reads back and serialises to the
    // same text, so its hash still verifies.
    let old = r#"{"Sequence":1,"TimeGenerated":"1970-01-01T00:00:00Z","Computer":"h","ComputerId":"id","ConfigChangeType":"Files","ChangeCategory":"Modified","FieldsChanged":["Size"],"Entity":"e","DetectedBy":"realtime","Operations":["write-closed"],"Actor":"unknown","File":{"FileSystemPath":"/x","Size":3}}"#;
    let record: ChangeRecord = serde_json::from_str(old).unwrap();
    assert!(record.contributors.is_empty());
    assert_eq!(serde_json::to_string(&record).unwrap(), old);
}

#[test]
fn contributors_flatten_the_actor_and_round_trip() {
    let actor = |pid: u32, name: &str| Actor {
        process_id: pid,
        thread_id: pid,
        process_name: name.into(),
        executable: None,
        parent_process_id: 1,
        user: crate::change::UserIdentity::Unix(crate::change::UnixUser {
            user_id: 0,
            user_name: "root".into(),
            group_id: 0,
            login_user_id: None,
            cgroup_id: 9,
            cgroup: None,
        }),
    };
    let record = ChangeRecord {
        sequence: 2,
        time_generated: Timestamp::UNIX_EPOCH,
        computer: "h".into(),
        computer_id: "id".into(),
        config_change_type: ConfigChangeType::Files,
        change_category: ChangeCategory::Modified,
        fields_changed: vec!["Size".into()],
        entity: "e".into(),
        detected_by: Detection::Realtime,
        operations: vec!["write-closed".into(), "setattr".into()],
        actor: Some(actor(8, "touch")),
        file: None,
        registry: None,
        service: None,
        contributors: vec![
            Contributor {
                actor: actor(7, "bash"),
                operations: vec!["write-closed".into()],
            },
            Contributor {
                actor: actor(8, "touch"),
                operations: vec!["setattr".into()],
            },
        ],
        contributors_omitted: 3,
        monitor: None,
    };
    let json: serde_json::Value = serde_json::to_value(&record).unwrap();
    assert_eq!(json["Contributors"][0]["ProcessName"], "bash");
    assert_eq!(json["Contributors"][0]["ProcessId"], 7);
    assert_eq!(json["Contributors"][1]["Operations"][0], "setattr");
    assert_eq!(json["ContributorsOmitted"], 3);
    let text = serde_json::to_string(&record).unwrap();
    let back: ChangeRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, record);
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
}

#[test]
fn content_change_with_restored_mtime_is_a_checksum_change() {
    let before = state();
    let after = FileState {
        hash: Some([2; 32]),
        ctime_ns: 5,
        ..state()
    };
    assert_eq!(fields_changed(&before, &after), vec!["FileContentChecksum"]);
}

#[test]
fn a_directory_gaining_entries_is_not_a_change() {
    let directory = |size, mtime_ns, nlink| FileState {
        file_type: FileType::Directory,
        size,
        mtime_ns,
        nlink,
        hash: None,
        ..state()
    };
    assert!(fields_changed(&directory(4096, 1, 2), &directory(8192, 2, 3)).is_empty());
    let chmodded = FileState {
        mode: 0o700,
        ..directory(4096, 1, 2)
    };
    assert_eq!(
        fields_changed(&directory(4096, 1, 2), &chmodded),
        vec!["Mode"]
    );
}

#[test]
fn setcap_and_chmod_are_named() {
    let before = state();
    let after = FileState {
        mode: 0o755,
        capability: Some(vec![1, 2]),
        ..state()
    };
    assert_eq!(
        fields_changed(&before, &after),
        vec!["Mode", "Capabilities"]
    );
}

#[test]
fn unknown_actor_round_trips_as_a_string() {
    let record = ChangeRecord {
        sequence: 1,
        time_generated: Timestamp::UNIX_EPOCH,
        computer: "h".into(),
        computer_id: "id".into(),
        config_change_type: ConfigChangeType::Files,
        change_category: ChangeCategory::Added,
        fields_changed: vec![],
        entity: "e".into(),
        detected_by: Detection::Scan,
        operations: vec![],
        actor: None,
        file: Some(file_columns(Path::new("/x"), None, Some(&state()))),
        registry: None,
        service: None,
        contributors: vec![],
        contributors_omitted: 0,
        monitor: None,
    };
    let json = serde_json::to_string(&record).unwrap();
    assert!(json.contains(r#""Actor":"unknown""#), "{json}");
    let back: ChangeRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
}

#[test]
fn a_windows_descriptor_is_compared_and_shown_by_its_parts() {
    let sddl = |owner: &str, dacl: &str| FileState {
        acl: Some(format!("O:{owner}G:SYD:{dacl}")),
        ..state()
    };
    let before = sddl("BA", "P(A;;FA;;;SY)(A;;FA;;;BA)");
    // Only the owner: Owner, not Acls.
    let owner = sddl("S-1-5-21-1-2-3-1000", "P(A;;FA;;;SY)(A;;FA;;;BA)");
    assert_eq!(fields_changed(&before, &owner), vec!["Owner"]);
    // Only the DACL: Acls, not Owner.
    let dacl = sddl("BA", "P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FW;;;BU)");
    assert_eq!(fields_changed(&before, &dacl), vec!["Acls"]);
    let columns = file_columns(Path::new("/x"), Some(&before), Some(&dacl));
    assert_eq!(
        columns.acls.as_deref(),
        Some("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FW;;;BU)")
    );
    assert_eq!(
        columns.previous_acls.as_deref(),
        Some("D:P(A;;FA;;;SY)(A;;FA;;;BA)")
    );
    // Off Windows a SID has no account name: it is shown as it is.
    #[cfg(not(windows))]
    assert_eq!(columns.owner.as_deref(), Some("BA"));
    #[cfg(windows)]
    assert_eq!(columns.owner.as_deref(), Some("BUILTIN\\Administrators"));
    // A POSIX ACL is still compared as text, and owners by uid.
    let posix = FileState {
        acl: Some("user::rw-,group::r--,other::r--".into()),
        ..state()
    };
    let chowned = FileState {
        uid: 7,
        ..posix.clone()
    };
    assert_eq!(fields_changed(&posix, &chowned), vec!["Owner"]);
}
