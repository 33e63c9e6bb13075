//! fimsvc against the real service control manager, under Wine 8.0: a service created and
//! deleted with sc.exe and reconfigured with ChangeServiceConfigW, each giving the exact
//! WindowsServices record.
#![cfg(windows)]
// Test helpers panic by design: a failed step is the test's failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::ptr::{null, null_mut};

use common::{run_ok, write_policy, Fimsvc};
use serde_json::Value;
use windows_sys::Win32::System::Services::{
    ChangeServiceConfigW, CloseServiceHandle, OpenSCManagerW, OpenServiceW, SC_MANAGER_CONNECT,
    SERVICE_CHANGE_CONFIG, SERVICE_DISABLED, SERVICE_NO_CHANGE,
};

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

/// Disables `name` and points it at `path` through the service control manager, as an
/// administrator's tool (or an intruder's) would.
fn disable_and_repoint(name: &str, path: &str) {
    let (name, path) = (wide(name), wide(path));
    // SAFETY: local manager; the handles are closed below; strings are NUL-terminated.
    unsafe {
        let manager = OpenSCManagerW(null(), null(), SC_MANAGER_CONNECT);
        assert!(!manager.is_null(), "OpenSCManagerW");
        let service = OpenServiceW(manager, name.as_ptr(), SERVICE_CHANGE_CONFIG);
        assert!(!service.is_null(), "OpenServiceW");
        let changed = ChangeServiceConfigW(
            service,
            SERVICE_NO_CHANGE,
            SERVICE_DISABLED,
            SERVICE_NO_CHANGE,
            path.as_ptr(),
            null(),
            null_mut(),
            null(),
            null(),
            null(),
            null(),
        );
        CloseServiceHandle(service);
        CloseServiceHandle(manager);
        assert_ne!(changed, 0, "ChangeServiceConfigW");
    }
}

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
    let name = common::unique("fim-it");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(
        dir.path(),
        &[("services", "windows-service", &format!("{name}*"), false)],
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
    disable_and_repoint(&name, r"C:\Users\Public\evil.exe");
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
