//! Service entities reconciled against the in-memory service list: the exact WindowsServices
//! records for a service created, reconfigured, stopped and deleted.
use std::sync::Arc;

use fim_model::{ChangeCategory, Detection, MonitoredObject};

use super::*;
use crate::{
    identity::Computer,
    policy,
    reconcile::Hint,
    service::{memory::MemoryServices, ServiceSnapshot},
    store::Store,
};

fn service(name: &str, state: &str, start: &str, path: &str) -> ServiceSnapshot {
    ServiceSnapshot {
        name: name.into(),
        display_name: format!("{name} display"),
        state: state.into(),
        startup_type: start.into(),
        path: path.into(),
        account: "LocalSystem".into(),
        capped: false,
    }
}

fn reconciler(entities: &[(&str, &str)]) -> (tempfile::TempDir, Reconciler, Arc<MemoryServices>) {
    let mut text = String::new();
    for (name, pattern) in entities {
        text.push_str(&format!(
            "[[entity]]\nname = \"{name}\"\nkind = \"windows-service\"\npath = '{pattern}'\n\n"
        ));
    }
    let parsed = policy::parse(&text, std::path::Path::new("test.toml")).expect("policy");
    let compiled = policy::compile(&parsed.policy).expect("compiles");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("fim.db")).expect("store");
    let computer = Computer {
        name: "win1".into(),
        id: "guid".into(),
    };
    let services = Arc::new(MemoryServices::new());
    let mut reconciler = Reconciler::new(store, compiled, computer);
    reconciler.set_service_reader(services.clone());
    (dir, reconciler, services)
}

fn event(reconciler: &mut Reconciler) -> Vec<ChangeRecord> {
    let hint = Hint {
        operations: vec!["service-poll".into()],
        ..Hint::default()
    };
    reconciler
        .reconcile(
            &[(MonitoredObject::Service("*".into()), hint)],
            Detection::Realtime,
        )
        .expect("reconcile")
}

#[test]
fn a_service_created_reconfigured_and_deleted_gives_exact_records() {
    let (_dir, mut reconciler, services) = reconciler(&[("all", "*")]);
    services.put(service(
        "Spooler",
        "Running",
        "Auto",
        r"C:\Windows\spoolsv.exe",
    ));
    assert!(
        event(&mut reconciler).is_empty(),
        "the first sweep is a silent baseline"
    );

    services.put(service(
        "EvilSvc",
        "Stopped",
        "Auto",
        r"C:\Users\Public\evil.exe",
    ));
    let created = event(&mut reconciler);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].change_category, ChangeCategory::Added);
    assert_eq!(created[0].entity, "all");
    assert_eq!(created[0].operations, vec!["service-poll"]);
    let columns = created[0].service.clone().expect("service columns");
    assert_eq!(columns.svc_name, "EvilSvc");
    assert_eq!(
        columns.svc_path.as_deref(),
        Some(r"C:\Users\Public\evil.exe")
    );
    assert_eq!(columns.previous_svc_path, None);
    assert_eq!(created[0].subject(), Some("EvilSvc"));

    services.put(service(
        "Spooler",
        "Stopped",
        "Disabled",
        r"C:\Windows\spoolsv.exe",
    ));
    let changed = event(&mut reconciler);
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].change_category, ChangeCategory::Modified);
    assert_eq!(
        changed[0].fields_changed,
        vec!["SvcState", "SvcStartupType"]
    );
    let columns = changed[0].service.clone().expect("service columns");
    assert_eq!(
        (
            columns.previous_svc_state.as_deref(),
            columns.svc_state.as_deref()
        ),
        (Some("Running"), Some("Stopped"))
    );
    assert_eq!(
        (
            columns.previous_svc_startup_type.as_deref(),
            columns.svc_startup_type.as_deref()
        ),
        (Some("Auto"), Some("Disabled"))
    );

    services.delete("EVILSVC");
    let deleted = event(&mut reconciler);
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0].change_category, ChangeCategory::Removed);
    let columns = deleted[0].service.clone().expect("service columns");
    assert_eq!(columns.svc_name, "EvilSvc");
    assert_eq!(
        columns.previous_svc_path.as_deref(),
        Some(r"C:\Users\Public\evil.exe")
    );
    assert_eq!(columns.svc_path, None);
    assert!(event(&mut reconciler).is_empty());
    assert!(reconciler.store().verify().expect("verify").is_ok());
}

#[test]
fn each_service_belongs_to_its_most_specific_entity_and_others_are_ignored() {
    let (_dir, mut reconciler, services) =
        reconciler(&[("net", "Net*"), ("logon", "Netlogon"), ("other", "W32Time")]);
    services.put(service("Netlogon", "Running", "Auto", "a"));
    services.put(service("NetTcpPortSharing", "Stopped", "Disabled", "b"));
    services.put(service("Spooler", "Running", "Auto", "c"));
    assert!(event(&mut reconciler).is_empty());
    services.put(service("Netlogon", "Running", "Auto", "a2"));
    services.put(service("NetTcpPortSharing", "Stopped", "Manual", "b"));
    services.put(service("Spooler", "Stopped", "Auto", "c"));
    let records = event(&mut reconciler);
    let summary: Vec<(String, String)> = records
        .iter()
        .map(|record| {
            let name = record.service.clone().expect("columns").svc_name;
            (name, record.entity.clone())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Netlogon".to_string(), "logon".to_string()),
            ("NetTcpPortSharing".to_string(), "net".to_string()),
        ]
    );
    // W32Time appears later: its entity was baselined empty, so it is Added.
    services.put(service("W32Time", "Running", "Manual", "d"));
    let late = event(&mut reconciler);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].entity, "other");
    assert_eq!(late[0].change_category, ChangeCategory::Added);
}

#[test]
fn a_scan_baselines_service_entities_and_reports_what_changed_while_stopped() {
    let (_dir, reconciler, services) = reconciler(&[("all", "*")]);
    services.put(service("Spooler", "Running", "Auto", "p"));
    let reconciler = std::sync::Mutex::new(reconciler);
    let scan = |reconciler: &std::sync::Mutex<Reconciler>| {
        crate::reconcile::sweep::sweep(
            reconciler,
            None,
            crate::reconcile::sweep::SweepKind::Metadata,
            Detection::Scan,
            &crate::scan::ScanOptions::default(),
        )
        .expect("scan")
    };
    let first = scan(&reconciler);
    assert_eq!(first.baselined, vec!["all".to_string()]);
    assert_eq!(first.changes, 0);
    services.put(service("Spooler", "Running", "Auto", "p2"));
    let second = scan(&reconciler);
    assert!(second.baselined.is_empty());
    assert_eq!(second.changes, 1);
    let records = lock(&reconciler)
        .store()
        .query(&Default::default(), 100)
        .expect("query");
    let last = records.last().expect("a record");
    assert_eq!(last.detected_by, Detection::Scan);
    assert_eq!(last.fields_changed, vec!["SvcPath"]);
}
