//! The live who-data on the fixture session: a record gets the actor of the operation on its
//! object, waits for a session that lags behind it, and never waits without a session.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use fim_model::{
    change::{ChangeCategory, ChangeRecord, ConfigChangeType, Detection},
    columns::RegistryColumns,
    Timestamp,
};

use super::LiveWhoData;
use crate::etw::fixture_tests::{events, Described};

const RUN: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";

fn live(events: &Described, devices: &[(String, String)], take: usize) -> LiveWhoData {
    let devices: Vec<(&str, &str)> = devices
        .iter()
        .map(|(device, drive)| (device.as_str(), drive.as_str()))
        .collect();
    let who = LiveWhoData::new(&devices);
    who.set_live(true);
    for (_, event) in events.iter().take(take) {
        who.observe(event);
    }
    who
}

/// The record fimsvc's registry source makes for `Run\Updater`, `after_ms` after the
/// fixture's first event.
fn value_record(events: &Described, after_ms: i64) -> ChangeRecord {
    let time = events[0].1.time().unix_nanos() + after_ms * 1_000_000;
    ChangeRecord {
        sequence: 0,
        time_generated: Timestamp::from_unix_nanos(time),
        computer: "win1".into(),
        computer_id: "guid".into(),
        config_change_type: ConfigChangeType::Registry,
        change_category: ChangeCategory::Added,
        fields_changed: Vec::new(),
        entity: "run".into(),
        detected_by: Detection::Realtime,
        operations: Vec::new(),
        actor: None,
        file: None,
        registry: Some(RegistryColumns {
            registry_key: RUN.into(),
            hive: "HKEY_LOCAL_MACHINE".into(),
            value_name: Some("Updater".into()),
            ..Default::default()
        }),
        service: None,
        contributors: Vec::new(),
        contributors_omitted: 0,
        monitor: None,
    }
}

#[test]
fn a_value_record_gets_the_setters_image_parent_and_user() {
    let (events, devices) = events();
    let who = live(&events, &devices, events.len());
    let actor = who
        .actor_within(&value_record(&events, 30), Duration::from_secs(1))
        .expect("an actor");
    assert_eq!((actor.process_id, actor.thread_id), (4242, 4300));
    assert_eq!(actor.process_name, "reg.exe");
    // The kernel's device path, as the drive the user knows.
    assert_eq!(
        actor.executable.as_deref(),
        Some(r"C:\Windows\System32\reg.exe")
    );
    assert_eq!(actor.parent_process_id, 1000);
    let user = actor.windows().expect("a Windows user");
    assert_eq!(user.user_sid, "S-1-5-21-1111-2222-3333-500");
    // Off Windows no account lookup: the SID stands alone.
    assert_eq!(user.account_name, None);
}

#[test]
fn a_record_ahead_of_the_session_waits_for_its_events() {
    let (events, devices) = events();
    // Only the process start and the key open have been delivered: the SetValueKey is still
    // in the session's buffers.
    let who = Arc::new(live(&events, &devices, 2));
    let late = events.clone();
    let feeder = {
        let who = who.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            for (_, event) in late.iter().skip(2) {
                who.observe(event);
            }
        })
    };
    let started = Instant::now();
    let actor = who.actor_within(&value_record(&events, 50), Duration::from_secs(5));
    let waited = started.elapsed();
    feeder.join().unwrap();
    assert_eq!(actor.map(|actor| actor.process_id), Some(4242));
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );
}

#[test]
fn without_a_session_nothing_waits_and_nobody_is_named() {
    let (events, devices) = events();
    let who = live(&events, &devices, 0);
    who.set_live(false);
    let started = Instant::now();
    assert_eq!(
        who.actor_within(&value_record(&events, 30), Duration::from_secs(5)),
        None
    );
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn a_session_caught_up_with_no_operation_on_the_object_names_nobody_at_once() {
    let (events, devices) = events();
    let who = live(&events, &devices, events.len());
    let mut record = value_record(&events, 50);
    if let Some(registry) = &mut record.registry {
        registry.value_name = Some("NeverSet".into());
    }
    let started = Instant::now();
    assert_eq!(who.actor_within(&record, Duration::from_secs(5)), None);
    assert!(started.elapsed() < Duration::from_millis(500));
    // Ahead of every event delivered: held back at most the limit, then nobody.
    let mut far_ahead = value_record(&events, 60_000);
    far_ahead.registry = record.registry.clone();
    let started = Instant::now();
    assert_eq!(
        who.actor_within(&far_ahead, Duration::from_millis(300)),
        None
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // A stopped session never holds records back.
    who.set_live(false);
    let started = Instant::now();
    assert_eq!(who.actor_within(&far_ahead, Duration::from_secs(5)), None);
    assert!(started.elapsed() < Duration::from_millis(500));
}
