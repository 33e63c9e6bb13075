//! The decoders and the correlator on `tests/fixtures/etw/session.json` (synthetic events laid
//! out from the provider manifests by `make_fixtures.py`; see its header for where they come
//! from). Wine cannot consume ETW, so these fixtures are all the ETW path has been run on.
use std::time::Duration;

use serde_json::Value;

use super::{correlate::WhoData, fields::FieldError, EtwEvent, Provider};

const SESSION: &str = include_str!("../../tests/fixtures/etw/session.json");

fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|at| u8::from_str_radix(&text[at * 2..at * 2 + 2], 16).expect("hex"))
        .collect()
}

/// The fixture's events, each with what it stands for.
pub(super) type Described = Vec<(&'static str, EtwEvent)>;

/// The fixture's events and its device-to-drive map.
pub(super) fn events() -> (Described, Vec<(String, String)>) {
    let session: Value = serde_json::from_str(SESSION).expect("fixture JSON");
    let devices = session["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let events = session["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| {
            let what: &'static str =
                Box::leak(event["what"].as_str().unwrap().to_string().into_boxed_str());
            (
                what,
                EtwEvent {
                    provider: Provider::from_guid(event["provider"].as_str().unwrap())
                        .expect("known provider"),
                    id: event["id"].as_u64().unwrap() as u16,
                    version: event["version"].as_u64().unwrap() as u8,
                    pid: event["pid"].as_u64().unwrap() as u32,
                    tid: event["tid"].as_u64().unwrap() as u32,
                    filetime: event["filetime"].as_i64().unwrap(),
                    pointer_size: event["pointer_size"].as_u64().unwrap() as usize,
                    user_data: hex(event["user_data"].as_str().unwrap()),
                    sid: event["sid"].as_str().map(str::to_string),
                },
            )
        })
        .collect();
    (events, devices)
}

fn who_data() -> (WhoData, Described) {
    let (events, devices) = events();
    let devices: Vec<(&str, &str)> = devices
        .iter()
        .map(|(d, l)| (d.as_str(), l.as_str()))
        .collect();
    let mut who = WhoData::new(&devices);
    for (_, event) in &events {
        who.observe(event);
    }
    (who, events)
}

/// `after_ms` after the fixture's first event: when a notification-driven read would see it.
fn detected(events: &[(&str, EtwEvent)], after_ms: i64) -> fim_model::Timestamp {
    fim_model::Timestamp::from_unix_nanos(events[0].1.time().unix_nanos() + after_ms * 1_000_000)
}

#[test]
fn every_event_decodes_but_the_truncated_one_which_names_its_field() {
    let (events, _) = events();
    for (what, event) in &events {
        let decoded = super::decode(event);
        if what.starts_with("a truncated") {
            assert!(
                matches!(
                    decoded,
                    Err(FieldError {
                        field: "ValueName",
                        event: 5,
                        ..
                    })
                ),
                "{what}: {decoded:?}"
            );
        } else {
            assert!(matches!(decoded, Ok(Some(_))), "{what}: {decoded:?}");
        }
    }
    let (who, _) = who_data();
    assert_eq!(who.undecodable, 1);
}

#[test]
fn a_value_set_is_attributed_to_the_process_image_and_user_of_its_time() {
    let (who, events) = who_data();
    let run = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
    let who_set = who
        .who_changed_key(
            run,
            Some("Updater"),
            detected(&events, 150),
            Duration::from_secs(5),
        )
        .expect("an attribution");
    assert_eq!(who_set.pid, 4242);
    assert_eq!(who_set.tid, 4300);
    assert_eq!(who_set.operation, "SetValueKey");
    assert!(who_set.exact);
    assert_eq!(who_set.sid.as_deref(), Some("S-1-5-21-1111-2222-3333-500"));
    // The image is the one that ran when the value was set, not the later owner of the pid.
    assert_eq!(
        who_set.image.as_deref(),
        Some(r"\Device\HarddiskVolume3\Windows\System32\reg.exe")
    );
    assert_eq!(who_set.parent, Some(1000));
    // Key names are compared as Windows does, ignoring case.
    assert!(who
        .who_changed_key(
            &run.to_lowercase(),
            Some("UPDATER"),
            detected(&events, 150),
            Duration::from_secs(5)
        )
        .is_some());
    // A denied write changed nothing and is nobody's.
    assert_eq!(
        who.who_changed_key(
            run,
            Some("Other"),
            detected(&events, 150),
            Duration::from_secs(5)
        ),
        None
    );
    // Outside the window, or before the change, there is nothing to say.
    assert_eq!(
        who.who_changed_key(
            run,
            Some("Updater"),
            detected(&events, 10_000),
            Duration::from_secs(5)
        ),
        None
    );
    assert_eq!(
        who.who_changed_key(
            run,
            Some("Updater"),
            detected(&events, 15),
            Duration::from_secs(5)
        ),
        None
    );
}

#[test]
fn a_key_opened_before_the_session_is_matched_by_name_and_marked_inexact() {
    let (who, events) = who_data();
    let found = who
        .who_changed_key(
            r"HKEY_CURRENT_USER\Environment",
            Some("Path"),
            detected(&events, 150),
            Duration::from_secs(5),
        )
        .expect("an attribution");
    assert_eq!((found.pid, found.exact), (5000, false));
    assert_eq!(found.sid.as_deref(), Some("S-1-5-21-1111-2222-3333-1001"));
}

#[test]
fn a_created_key_under_the_users_hive_matches_hkcu_for_that_user_only() {
    let (who, events) = who_data();
    let at = detected(&events, 150);
    let window = Duration::from_secs(5);
    let created = who
        .who_changed_key(r"HKEY_CURRENT_USER\Software\Fim32", None, at, window)
        .expect("the 32-bit session's CreateKey");
    assert_eq!((created.pid, created.operation), (5000, "CreateKey"));
    assert!(who
        .who_changed_key(
            r"HKEY_USERS\S-1-5-21-1111-2222-3333-1001\Software\Fim32",
            None,
            at,
            window
        )
        .is_some());
    assert!(who
        .who_changed_key(
            r"HKEY_USERS\S-1-5-21-9-9-9-1001\Software\Fim32",
            None,
            at,
            window
        )
        .is_none());
}

#[test]
fn file_writes_and_renames_are_attributed_by_their_file_object_on_the_drive_path() {
    let (who, events) = who_data();
    let at = detected(&events, 150);
    let window = Duration::from_secs(5);
    let write = who
        .who_changed_file(r"C:\Windows\System32\drivers\etc\hosts", at, window)
        .expect("the write");
    assert_eq!(
        (write.pid, write.tid, write.operation),
        (6000, 6001, "Write")
    );
    assert_eq!(
        write.image.as_deref(),
        Some(r"\Device\HarddiskVolume3\Windows\System32\notepad.exe")
    );
    for path in [r"C:\data\a.txt", r"c:\DATA\b.txt"] {
        let renamed = who.who_changed_file(path, at, window).expect("the rename");
        assert_eq!(renamed.operation, "RenamePath", "{path}");
    }
    assert!(who.who_changed_file(r"C:\data\c.txt", at, window).is_none());
}

#[test]
fn a_flood_of_events_keeps_memory_bounded() {
    let (events, _) = events();
    let set_value = events
        .iter()
        .find(|(what, _)| what.starts_with("reg.exe sets"))
        .map(|(_, event)| event.clone())
        .unwrap();
    let mut who = WhoData::new(&[]);
    for _ in 0..(super::correlate::MAX_RECENT * 3) {
        who.observe(&set_value);
    }
    assert_eq!(who.recent_len(), super::correlate::MAX_RECENT);
}
