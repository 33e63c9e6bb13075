//! fimsvc reports its journal to a workspace collector, under Wine 8.0 (`cargo xtask
//! wine-test`; labelled Wine, not Windows): a real registry change made with reg.exe reaches
//! a real fim-collector (its service and SQLite store, run in this test process on loopback
//! TCP), every record with its hash-chain link checked there. fimsvc enrolls with a one-use
//! token and reports over mutual TLS, as in production. On Linux this file compiles to
//! nothing.
#![cfg(windows)]
// Test helpers panic by design: a failed step is the test's failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{run_ok, write_policy, Fimsvc};
use fim_collector::{
    ca::WorkspaceCa,
    enrollment::{self, EnrollmentToken},
    server::{self, CollectorService, Limits, QueryLimits, WorkspaceService},
    store::{CollectorStore, SqliteStore},
};

/// A TLS collector on 127.0.0.1 in a thread of its own; its store stays readable here.
/// Returns its address, the store, the CA file and a one-use enrollment token's file.
fn start_collector(state: &std::path::Path) -> (String, Arc<dyn CollectorStore>, PathBuf, PathBuf) {
    let store: Arc<dyn CollectorStore> = Arc::new(SqliteStore::open(state, false).unwrap());
    let ca = Arc::new(WorkspaceCa::load_or_create(&state.join("tls")).unwrap());
    let (secret, hash) = enrollment::new_secret().unwrap();
    let now = fim_model::Timestamp::now().unix_nanos();
    let token = EnrollmentToken {
        name: "wine".into(),
        max_uses: 1,
        uses_left: 1,
        created_ns: now,
        expires_ns: now + 3_600_000_000_000,
        revoked_ns: None,
    };
    store.add_enrollment_token(&token, &hash).unwrap();
    let token_file = state.join("wine.token");
    std::fs::write(&token_file, secret).unwrap();
    let ca_file = ca.ca_path();
    let (address_in, address) = std::sync::mpsc::channel();
    let served = Arc::clone(&store);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let bound = server::bind("127.0.0.1:0").await.unwrap();
            address_in.send(bound.address.to_string()).unwrap();
            let workspace =
                WorkspaceService::new(Arc::clone(&served), QueryLimits::default(), true);
            let service = CollectorService::new(served, Limits::default(), true);
            server::serve(bound, service, workspace, Some(ca), std::future::pending())
                .await
                .unwrap();
        });
    });
    (address.recv().unwrap(), store, ca_file, token_file)
}

#[test]
fn a_registry_change_reaches_the_workspace_with_its_chain_checked() {
    let key = format!(
        r"HKEY_CURRENT_USER\Software\fim-it-{}-workspace",
        std::process::id()
    );
    run_ok(
        "reg.exe",
        &["add", &key, "/v", "Run", "/t", "REG_SZ", "/d", "old", "/f"],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (address, store, ca, token) = start_collector(&dir.path().join("collector"));
    let policy = write_policy(dir.path(), &[("run", "windows-registry", &key, true)]);
    let (ca, token) = (ca.display().to_string(), token.display().to_string());
    let fimsvc = Fimsvc::start_with_args(
        &policy,
        &dir.path().join("state"),
        &[
            "--no-api",
            "--collector",
            &address,
            "--collector-ca",
            &ca,
            "--enroll-token-file",
            &token,
        ],
    );
    let from = fimsvc.count();
    run_ok(
        "reg.exe",
        &["add", &key, "/v", "Run", "/t", "REG_SZ", "/d", "new", "/f"],
    );
    let records = fimsvc.records_after(from, 1);
    let head = records[0]["Sequence"].as_u64().expect("a sequence");

    let deadline = Instant::now() + Duration::from_secs(60);
    let machine = loop {
        let machines = store.machines().unwrap();
        if let Some(machine) = machines
            .into_iter()
            .find(|m| m.acknowledged.sequence >= head)
        {
            break machine;
        }
        assert!(
            Instant::now() < deadline,
            "the workspace did not acknowledge record {head}; fimsvc's log:\n{}",
            fimsvc.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(machine.platform, "windows");
    assert_eq!(machine.flag_reason, None, "every link chained");
    assert_eq!(machine.records, machine.acknowledged.sequence);
    assert_eq!(
        machine.key.computer_id,
        records[0]["ComputerId"].as_str().unwrap()
    );
    // It enrolled once, for its own computer id, with the token it was given.
    let certificates = store.agent_certificates().unwrap();
    assert_eq!(certificates.len(), 1, "{certificates:?}");
    assert_eq!(certificates[0].computer_id, machine.key.computer_id);
    assert_eq!(certificates[0].token_name, "wine");
    assert_eq!(store.enrollment_tokens().unwrap()[0].uses_left, 0);
    // The record the workspace holds is the one fimsvc journaled, field for field.
    let catalog = fim_kql::Catalog::configuration_change();
    let query = fim_kql::compile(
        &format!("ConfigurationChange | where Sequence == {head} | project RegistryKey, ValueName, ValueData, PreviousValueData, ChangeCategory"),
        &catalog,
        store.dialect(),
        &fim_kql::Options::default(),
    )
    .unwrap();
    let rows = store.query(&query).unwrap();
    let cells: Vec<String> = rows.rows[0].iter().map(fim_kql::Value::display).collect();
    assert_eq!(cells, [key.as_str(), "Run", "new", "old", "Modified"]);
    let _ = std::process::Command::new("reg.exe")
        .args(["delete", &key, "/f"])
        .output();
    drop(fimsvc);
}
