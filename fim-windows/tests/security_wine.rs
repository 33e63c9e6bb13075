//! fimsvc and Windows security descriptors, under Wine 8.0 (`cargo xtask wine-test`): the
//! owner and DACL of monitored files in records, and the refusal of a policy file or state
//! directory that others may change. Wine keeps no descriptors of files (it derives them from
//! the Unix mode and maps a DACL that is set onto the mode), so "others" is Everyone here.
#![cfg(windows)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{set_dacl, write_policy, Fimsvc, EVERYONE_FULL};

#[test]
fn a_dacl_change_on_a_monitored_file_is_an_acls_record_with_both_dacls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let file = watched.join("secret.txt");
    std::fs::write(&file, b"keep out").expect("write");
    let policy = write_policy(
        dir.path(),
        &[("data", "windows-file", &watched.display().to_string(), true)],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    let from = fimsvc.count();
    set_dacl(&file, EVERYONE_FULL);
    let records = fimsvc.records_after(from, 1);
    let shown = file.display().to_string();
    let record = records
        .iter()
        .find(|record| record["File"]["FileSystemPath"] == shown.as_str())
        .unwrap_or_else(|| panic!("no record for {shown}: {records:#?}"));
    assert_eq!(record["ChangeCategory"], "Modified", "{record:#}");
    assert_eq!(
        record["FieldsChanged"],
        serde_json::json!(["Acls"]),
        "{record:#}"
    );
    assert_eq!(record["DetectedBy"], "realtime", "{record:#}");
    let acls = record["File"]["Acls"].as_str().expect("Acls");
    let previous = record["File"]["PreviousAcls"]
        .as_str()
        .expect("PreviousAcls");
    assert!(
        acls.starts_with("D:") && acls.contains(";;;WD)"),
        "{record:#}"
    );
    assert!(!previous.contains("FA;;;WD)"), "{record:#}");
    // The owner is an account, not a number.
    let owner = record["File"]["Owner"].as_str().expect("Owner");
    assert!(
        owner.contains('\\') || owner.starts_with("S-1-"),
        "{record:#}"
    );
    assert_ne!(owner, "0", "{record:#}");
}

/// fimsvc run on `policy` and `state`, expected to refuse: its exit status and stderr.
fn refused_run(policy: &std::path::Path, state: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fimsvc"))
        .args(["run", "--policy"])
        .arg(policy)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("run fimsvc");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn fimsvc_refuses_a_policy_file_that_others_may_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), &[]);
    set_dacl(&policy, EVERYONE_FULL);
    let (succeeded, stderr) = refused_run(&policy, &dir.path().join("state"));
    assert!(!succeeded, "fimsvc started on an open policy:\n{stderr}");
    assert!(
        stderr.contains("refusing the policy") && stderr.contains("its DACL lets WD change it"),
        "{stderr}"
    );
}

#[test]
fn fimsvc_refuses_a_state_directory_that_others_may_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), &[]);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    set_dacl(&state, EVERYONE_FULL);
    let (succeeded, stderr) = refused_run(&policy, &state);
    assert!(
        !succeeded,
        "fimsvc started on an open state directory:\n{stderr}"
    );
    assert!(
        stderr.contains("refusing the state directory") && stderr.contains("lets WD change it"),
        "{stderr}"
    );
    // Nothing was created in it: no database to trust later.
    assert!(!state.join("fim.db").exists());
}
