//! fimsvc as a real Windows service under Wine 8.0: installed, started (RUNNING only once it
//! monitors), a registry change journaled while it runs, stopped, a change made while stopped
//! found by the next start-up scan, uninstalled. Records are read from its journal.
#![cfg(windows)]
// Test helpers panic by design: a failed step is the test's failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{run_ok, write_policy};
use fim_engine::store::{ChangeFilter, Store};
use fim_model::ChangeRecord;

fn fimsvc(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_fimsvc"))
        .args(args)
        .output()
        .expect("run fimsvc");
    assert!(
        output.status.success(),
        "fimsvc {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The journal's records, waiting up to 30 s until there are at least `count`.
fn journal(state: &Path, count: usize) -> Vec<ChangeRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = Store::open_read_only(state.join("fim.db"))
            .and_then(|store| store.query(&ChangeFilter::default(), 1000))
            .unwrap_or_default();
        let registry: Vec<ChangeRecord> = records
            .into_iter()
            .filter(|record| record.registry.is_some())
            .collect();
        if registry.len() >= count || Instant::now() > deadline {
            return registry;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn value_of(record: &ChangeRecord) -> (String, String, String) {
    let registry = record.registry.clone().expect("registry columns");
    (
        registry.value_name.unwrap_or_default(),
        registry.value_data.unwrap_or_default(),
        format!("{:?}", record.detected_by),
    )
}

#[test]
fn installed_started_stopped_and_uninstalled_as_a_service_losing_nothing() {
    let name = common::unique("fimsvc-test");
    let key = format!(r"HKEY_CURRENT_USER\Software\{name}");
    run_ok("reg.exe", &["add", &key, "/f"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let policy = write_policy(dir.path(), &[("svc", "windows-registry", &key, true)]);
    let policy_text = policy.to_string_lossy().into_owned();
    let state_text = state.to_string_lossy().into_owned();
    // The API options reach the installed service's command line.
    let pipe = format!(r"\\.\pipe\{name}");
    fimsvc(&[
        "install",
        "--name",
        &name,
        "--policy",
        &policy_text,
        "--state-dir",
        &state_text,
        "--api-pipe",
        &pipe,
    ]);
    fimsvc(&["start", "--name", &name]);
    let status = Command::new(common::fim_exe())
        .args(["--socket", &pipe, "status"])
        .output()
        .expect("run fim.exe");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("daemon:     running"),
        "the service's API: {status}"
    );

    run_ok(
        "reg.exe",
        &["add", &key, "/v", "Live", "/t", "REG_SZ", "/d", "one", "/f"],
    );
    let records = journal(&state, 1);
    assert_eq!(
        records.iter().map(value_of).collect::<Vec<_>>(),
        vec![(
            "Live".to_string(),
            "one".to_string(),
            "Realtime".to_string()
        )]
    );

    fimsvc(&["stop", "--name", &name]);
    run_ok(
        "reg.exe",
        &[
            "add",
            &key,
            "/v",
            "WhileStopped",
            "/t",
            "REG_SZ",
            "/d",
            "two",
            "/f",
        ],
    );
    fimsvc(&["start", "--name", &name]);
    let records = journal(&state, 2);
    assert_eq!(
        records.iter().map(value_of).collect::<Vec<_>>(),
        vec![
            (
                "Live".to_string(),
                "one".to_string(),
                "Realtime".to_string()
            ),
            (
                "WhileStopped".to_string(),
                "two".to_string(),
                "Scan".to_string()
            ),
        ]
    );
    let log = std::fs::read_to_string(state.join("fimsvc.log")).expect("the service's log");
    assert!(log.contains("monitoring started"), "{log}");
    // The stop ended the API after the engine, and the restart could take the pipe again.
    assert!(log.contains("api stopped"), "{log}");
    assert_eq!(
        log.matches(&format!("api listening on {pipe}")).count(),
        2,
        "{log}"
    );

    fimsvc(&["uninstall", "--name", &name]);
    let query = Command::new("sc.exe")
        .args(["query", &name])
        .output()
        .expect("sc query");
    assert!(
        !query.status.success(),
        "the service is gone after uninstall"
    );
    let _ = Command::new("reg.exe")
        .args(["delete", &key, "/f"])
        .output();
    let store = Store::open_read_only(state.join("fim.db")).expect("the journal opens");
    assert!(store.verify().expect("verify").is_ok());
}
