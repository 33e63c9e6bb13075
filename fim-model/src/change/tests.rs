//! The record's JSON is what the journal hashes: it must read and write back byte for byte.
use super::*;
use crate::{
    actor::{UnixUser, UserIdentity},
    samples::registry_record,
};

/// Records journaled by fimd before this crate existed (schema 1, commit 77225fb): a content
/// diff, a rename pair, a non-UTF-8 name, a Monitor record and a scan's "unknown" actor.
const GOLDEN_V1: &str = include_str!("golden-v1.jsonl");

#[test]
fn records_journaled_before_the_model_crate_read_and_write_back_byte_for_byte() {
    let mut kinds = std::collections::BTreeSet::new();
    for line in GOLDEN_V1.lines() {
        let record: ChangeRecord = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&record).unwrap(), line);
        kinds.insert(format!(
            "{:?}/{}",
            record.config_change_type,
            record.actor.is_some()
        ));
    }
    assert_eq!(GOLDEN_V1.lines().count(), 8);
    assert!(kinds.contains("Files/true") && kinds.contains("Files/false"));
    assert!(kinds.contains("Monitor/false"));
    let first: ChangeRecord = serde_json::from_str(GOLDEN_V1.lines().next().unwrap()).unwrap();
    let actor = first.actor.clone().unwrap();
    assert_eq!(actor.process_name, "bash");
    assert_eq!(
        actor.user,
        UserIdentity::Unix(UnixUser {
            user_id: 0,
            user_name: "root".into(),
            group_id: 0,
            login_user_id: None,
            cgroup_id: 1,
            cgroup: Some("/".into()),
        })
    );
    assert_eq!(first.subject(), Some("/tmp/fx/tree/app.conf"));
}

#[test]
fn a_registry_record_with_a_windows_actor_round_trips() {
    let record = registry_record();
    let json = serde_json::to_string(&record).unwrap();
    assert!(
        json.contains(
            r#""UserSid":"S-1-5-21-1-2-3-1001","LogonId":999,"AccountName":"CORP\\alice""#
        ),
        "{json}"
    );
    assert!(json.contains(r#""Registry":{"RegistryKey":"#), "{json}");
    assert!(!json.contains("UserId"), "{json}");
    assert!(!json.contains("\"File\""), "{json}");
    let back: ChangeRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    assert_eq!(back.actor.unwrap().user_display(), r"CORP\alice");
    assert_eq!(
        record.subject(),
        Some(r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run")
    );
}

#[test]
fn a_service_record_round_trips() {
    let record = crate::samples::service_record();
    let json = serde_json::to_string(&record).unwrap();
    assert!(json.contains(r#""Actor":"unknown""#), "{json}");
    assert!(
        json.contains(
            r#""Service":{"SvcName":"Spooler","SvcState":"Stopped","PreviousSvcState":"Running""#
        ),
        "{json}"
    );
    let back: ChangeRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    assert_eq!(back.subject(), Some("Spooler"));
}
