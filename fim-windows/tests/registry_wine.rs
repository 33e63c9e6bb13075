//! fimsvc against the real registry, under Wine 8.0 (`cargo xtask wine-test`): registry changes
//! made with reg.exe, as an administrator or an intruder would, each giving the exact record.
//! These tests run where Windows runs (Wine here); on Linux this file compiles to nothing.
#![cfg(windows)]
// Test helpers panic by design: a failed step is the test's failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{write_policy, Fimsvc};
use serde_json::Value;

/// A test's own key under HKCU (Wine's test user may write there), deleted at the end.
struct TestKey {
    key: String,
}

impl TestKey {
    fn new(name: &str) -> Self {
        let key = format!(
            r"HKEY_CURRENT_USER\Software\fim-it-{}-{name}",
            std::process::id()
        );
        let _ = reg(&["delete", &key, "/f"]);
        TestKey { key }
    }

    fn sub(&self, path: &str) -> String {
        format!(r"{}\{path}", self.key)
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let _ = reg(&["delete", &self.key, "/f"]);
    }
}

/// reg.exe with `args`.
fn reg(args: &[&str]) -> std::process::Output {
    Command::new("reg.exe")
        .args(args)
        .output()
        .expect("run reg.exe")
}

fn reg_ok(args: &[&str]) {
    common::run_ok("reg.exe", args);
}

/// (category, key, value name, previous data, data, detection) of a record.
fn summary(record: &Value) -> (String, String, String, String, String, String) {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_string();
    let registry = &record["Registry"];
    (
        text(&record["ChangeCategory"]),
        text(&registry["RegistryKey"]),
        text(&registry["ValueName"]),
        text(&registry["PreviousValueData"]),
        text(&registry["ValueData"]),
        text(&record["DetectedBy"]),
    )
}

fn row(
    category: &str,
    key: &str,
    value: &str,
    before: &str,
    after: &str,
    how: &str,
) -> (String, String, String, String, String, String) {
    (
        category.into(),
        key.into(),
        value.into(),
        before.into(),
        after.into(),
        how.into(),
    )
}

#[test]
fn values_set_changed_and_deleted_with_reg_exe_are_recorded_in_real_time() {
    let key = TestKey::new("values");
    reg_ok(&[
        "add", &key.key, "/v", "Before", "/t", "REG_SZ", "/d", "one", "/f",
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), &[("run", "windows-registry", &key.key, true)]);
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    assert_eq!(fimsvc.count(), 0, "the first baseline is silent");

    let from = fimsvc.count();
    reg_ok(&[
        "add",
        &key.key,
        "/v",
        "Run",
        "/t",
        "REG_SZ",
        "/d",
        r"C:\evil.exe",
        "/f",
    ]);
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        records.iter().map(summary).collect::<Vec<_>>(),
        vec![row(
            "Added",
            &key.key,
            "Run",
            "-",
            r"C:\evil.exe",
            "realtime"
        )]
    );
    let record = &records[0];
    // Under Wine no ETW session runs: no actor, said once in the log, detection unaffected.
    assert_eq!(record["Actor"], "unknown", "{record}");
    assert!(
        fimsvc
            .log()
            .contains("who-data unavailable (OpenTraceW failed"),
        "{}",
        fimsvc.log()
    );
    assert_eq!(record["ConfigChangeType"], "Registry");
    assert_eq!(record["Entity"], "run");
    assert_eq!(record["Registry"]["Hive"], "HKEY_CURRENT_USER");
    assert_eq!(record["Registry"]["ValueType"], "REG_SZ");
    assert_eq!(
        record["Operations"],
        serde_json::json!(["registry-notification"])
    );

    let from = fimsvc.count();
    reg_ok(&[
        "add",
        &key.key,
        "/v",
        "Before",
        "/t",
        "REG_DWORD",
        "/d",
        "7",
        "/f",
    ]);
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        records.iter().map(summary).collect::<Vec<_>>(),
        vec![row("Modified", &key.key, "Before", "one", "7", "realtime")]
    );
    assert_eq!(
        records[0]["FieldsChanged"],
        serde_json::json!(["ValueType", "ValueData"])
    );
    assert_eq!(records[0]["Registry"]["PreviousValueType"], "REG_SZ");
    assert_eq!(records[0]["Registry"]["ValueType"], "REG_DWORD");

    let from = fimsvc.count();
    reg_ok(&["delete", &key.key, "/v", "Before", "/f"]);
    assert_eq!(
        fimsvc
            .records_after(from, 1)
            .iter()
            .map(summary)
            .collect::<Vec<_>>(),
        vec![row("Removed", &key.key, "Before", "7", "-", "realtime")]
    );
}

#[test]
fn subkeys_deep_under_a_recursive_entity_are_added_and_removed_key_by_key() {
    let key = TestKey::new("subkeys");
    reg_ok(&["add", &key.key, "/f"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), &[("tree", "windows-registry", &key.key, true)]);
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));

    let from = fimsvc.count();
    reg_ok(&[
        "add",
        &key.sub(r"A\B"),
        "/v",
        "Deep",
        "/t",
        "REG_DWORD",
        "/d",
        "1",
        "/f",
    ]);
    assert_eq!(
        fimsvc
            .records_after(from, 3)
            .iter()
            .map(summary)
            .collect::<Vec<_>>(),
        vec![
            row("Added", &key.sub("A"), "-", "-", "-", "realtime"),
            row("Added", &key.sub(r"A\B"), "-", "-", "-", "realtime"),
            row("Added", &key.sub(r"A\B"), "Deep", "-", "1", "realtime"),
        ]
    );
    let from = fimsvc.count();
    reg_ok(&[
        "add",
        &key.sub(r"A\B"),
        "/v",
        "Deep",
        "/t",
        "REG_DWORD",
        "/d",
        "2",
        "/f",
    ]);
    assert_eq!(
        fimsvc
            .records_after(from, 1)
            .iter()
            .map(summary)
            .collect::<Vec<_>>(),
        vec![row(
            "Modified",
            &key.sub(r"A\B"),
            "Deep",
            "1",
            "2",
            "realtime"
        )]
    );
    let from = fimsvc.count();
    reg_ok(&["delete", &key.sub("A"), "/f"]);
    assert_eq!(
        fimsvc
            .records_after(from, 3)
            .iter()
            .map(summary)
            .collect::<Vec<_>>(),
        vec![
            row("Removed", &key.sub("A"), "-", "-", "-", "realtime"),
            row("Removed", &key.sub(r"A\B"), "-", "-", "-", "realtime"),
            row("Removed", &key.sub(r"A\B"), "Deep", "2", "-", "realtime"),
        ]
    );
}

#[test]
fn a_key_created_after_start_and_changes_made_while_stopped_are_found() {
    let key = TestKey::new("late");
    // The entity's key does not exist yet; only its parent does.
    reg_ok(&["add", &key.key, "/f"]);
    let late = key.sub("Late");
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let policy = write_policy(dir.path(), &[("late", "windows-registry", &late, true)]);
    {
        let fimsvc = Fimsvc::start(&policy, &state);
        let from = fimsvc.count();
        reg_ok(&[
            "add", &late, "/v", "Now", "/t", "REG_SZ", "/d", "here", "/f",
        ]);
        assert_eq!(
            fimsvc
                .records_after(from, 2)
                .iter()
                .map(summary)
                .collect::<Vec<_>>(),
            vec![
                row("Added", &late, "-", "-", "-", "realtime"),
                row("Added", &late, "Now", "-", "here", "realtime"),
            ]
        );
        // Now watched on the key itself.
        let from = fimsvc.count();
        reg_ok(&[
            "add", &late, "/v", "Now", "/t", "REG_SZ", "/d", "again", "/f",
        ]);
        assert_eq!(
            fimsvc
                .records_after(from, 1)
                .iter()
                .map(summary)
                .collect::<Vec<_>>(),
            vec![row("Modified", &late, "Now", "here", "again", "realtime")]
        );
    }
    // Stopped (killed): a change now is found by the next start-up scan.
    reg_ok(&[
        "add", &late, "/v", "Offline", "/t", "REG_SZ", "/d", "x", "/f",
    ]);
    let fimsvc = Fimsvc::start(&policy, &state);
    let records = fimsvc.records_after(0, 1);
    assert_eq!(
        records.iter().map(summary).collect::<Vec<_>>(),
        vec![row("Added", &late, "Offline", "-", "x", "scan")]
    );
}
