//! fimsvc against the real service control manager, under Wine 8.0: services created,
//! reconfigured and deleted with sc.exe, each giving the exact WindowsServices record.
#![cfg(windows)]

mod common;

use common::{run_ok, write_policy, Fimsvc};
use serde_json::Value;

/// (category, service, fields changed, previous start type, start type, previous path, path).
fn summary(record: &Value) -> Vec<String> {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_string();
    let service = &record["Service"];
    vec![
        text(&record["ChangeCategory"]),
        text(&service["SvcName"]),
        record["FieldsChanged"].to_string(),
        text(&service["PreviousSvcStartupType"]),
        text(&service["SvcStartupType"]),
        text(&service["PreviousSvcPath"]),
        text(&service["SvcPath"]),
    ]
}

fn row(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|field| field.to_string()).collect()
}

#[test]
fn a_service_created_reconfigured_and_deleted_with_sc_exe_is_recorded() {
    let name = format!("fim-it-{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(
        dir.path(),
        &[("services", "windows-service", "fim-it-*", false)],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    assert_eq!(fimsvc.count(), 0, "the first baseline is silent");

    let from = fimsvc.count();
    run_ok(
        "sc.exe",
        &[
            "create",
            &name,
            "binPath=",
            r"C:\fim\svc.exe",
            "start=",
            "demand",
        ],
    );
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        records.iter().map(summary).collect::<Vec<_>>(),
        vec![row(&[
            "Added",
            &name,
            "[]",
            "-",
            "Manual",
            "-",
            r"C:\fim\svc.exe"
        ])]
    );
    assert_eq!(records[0]["ConfigChangeType"], "WindowsServices");
    assert_eq!(records[0]["Entity"], "services");
    assert_eq!(records[0]["Service"]["SvcState"], "Stopped");

    let from = fimsvc.count();
    run_ok(
        "sc.exe",
        &[
            "config",
            &name,
            "start=",
            "disabled",
            "binPath=",
            r"C:\Users\Public\evil.exe",
        ],
    );
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        records.iter().map(summary).collect::<Vec<_>>(),
        vec![row(&[
            "Modified",
            &name,
            r#"["SvcStartupType","SvcPath"]"#,
            "Manual",
            "Disabled",
            r"C:\fim\svc.exe",
            r"C:\Users\Public\evil.exe"
        ])]
    );

    let from = fimsvc.count();
    run_ok("sc.exe", &["delete", &name]);
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        records.iter().map(summary).collect::<Vec<_>>(),
        vec![row(&[
            "Removed",
            &name,
            "[]",
            "Disabled",
            "-",
            r"C:\Users\Public\evil.exe",
            "-"
        ])]
    );
}
