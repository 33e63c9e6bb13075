//! fimsvc reports its journal to a workspace collector, under Wine 8.0 (`cargo xtask
//! wine-test`; labelled Wine, not Windows): a real registry change made with reg.exe reaches
//! a real fim-collector (its service and SQLite store, run in this test process on loopback
//! TCP), every record with its hash-chain link checked there. On Linux this file compiles to
//! nothing.
#![cfg(windows)]
// Test helpers panic by design: a failed step is the test's failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{run_ok, write_policy, Fimsvc};
use fim_collector::{
    server::{self, CollectorService, Limits, QueryLimits, WorkspaceService},
    store::{CollectorStore, SqliteStore},
};

/// A collector on 127.0.0.1 in a thread of its own; its store stays readable here.
fn start_collector(state: &std::path::Path) -> (String, Arc<dyn CollectorStore>) {
    let store: Arc<dyn CollectorStore> = Arc::new(SqliteStore::open(state, false).unwrap());
    let (address_in, address) = std::sync::mpsc::channel();
    let served = Arc::clone(&store);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let bound = server::bind("127.0.0.1:0").await.unwrap();
            address_in.send(bound.address.to_string()).unwrap();
            let workspace = WorkspaceService::new(Arc::clone(&served), QueryLimits::default());
            let service = CollectorService::new(served, Limits::default());
            server::serve(bound, service, workspace, std::future::pending())
                .await
                .unwrap();
        });
    });
    (address.recv().unwrap(), store)
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
    let (address, store) = start_collector(&dir.path().join("collector"));
    let policy = write_policy(dir.path(), &[("run", "windows-registry", &key, true)]);
    let fimsvc = Fimsvc::start_with_args(
        &policy,
        &dir.path().join("state"),
        &["--no-api", "--collector", &address],
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
