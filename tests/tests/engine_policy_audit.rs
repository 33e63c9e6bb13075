//! Engine: every policy change is a record of its own kind in the hash chain, with who made
//! it: through the API (the caller's process and user), by editing the file (source
//! "policy-file"), or while fimd was stopped (journaled at the next start). `fim changes`
//! shows them and `fim verify` checks them with the rest.
use std::time::Duration;

use fim_tests::engine::{path_of, Engine, Workspace};
use serde_json::Value;

fn monitor_records(records: &[Value]) -> Vec<(String, String, String)> {
    records
        .iter()
        .filter(|record| record["ConfigChangeType"] == "Monitor")
        .map(|record| {
            (
                record["Monitor"]["Event"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                record["Entity"].as_str().unwrap_or("?").to_string(),
                record["Monitor"]["Source"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect()
}

fn wait_monitor(engine: &Engine, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline && monitor_records(&engine.records()).len() < count {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    engine.records()
}

#[test]
fn policy_changes_through_the_api_name_the_caller() {
    let workspace = Workspace::new("audit-api");
    let extra = workspace.base.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    let engine = Engine::start(&workspace);
    assert!(
        engine.records().is_empty(),
        "the first start journals no policy change"
    );

    workspace.fim_ok(&[
        "entities",
        "add",
        "--name",
        "extra",
        "--path",
        &path_of(&extra),
    ]);
    let records = wait_monitor(&engine, 1);
    workspace.fim_ok(&["entities", "disable", "extra"]);
    let records = {
        let _ = records;
        wait_monitor(&engine, 2)
    };
    assert_eq!(
        monitor_records(&records),
        vec![
            (
                "EntityAdded".to_string(),
                "extra".to_string(),
                "api".to_string()
            ),
            (
                "EntityDisabled".to_string(),
                "extra".to_string(),
                "api".to_string()
            ),
        ],
        "{records:#?}"
    );
    let disabled = records
        .iter()
        .filter(|record| record["ConfigChangeType"] == "Monitor")
        .nth(1)
        .expect("the disabling");
    assert_eq!(disabled["ChangeCategory"], "Modified", "{disabled:#}");
    assert_eq!(
        disabled["FieldsChanged"],
        serde_json::json!(["Enabled"]),
        "{disabled:#}"
    );
    assert_eq!(disabled["DetectedBy"], "monitor", "{disabled:#}");
    assert_eq!(disabled["Actor"]["UserId"], 0, "{disabled:#}");
    assert_eq!(disabled["Actor"]["ProcessName"], "fim", "{disabled:#}");
    assert!(
        disabled["Monitor"]["By"]
            .as_str()
            .is_some_and(|by| by.starts_with("uid 0")),
        "{disabled:#}"
    );
    assert_eq!(
        disabled["Monitor"]["PolicyFile"],
        path_of(&workspace.policy)
    );
    let previous: Value =
        serde_json::from_str(disabled["Monitor"]["Previous"].as_str().expect("previous")).unwrap();
    let current: Value =
        serde_json::from_str(disabled["Monitor"]["Current"].as_str().expect("current")).unwrap();
    assert_eq!(
        (previous["enabled"].clone(), current["enabled"].clone()),
        (true.into(), false.into())
    );
    engine.stop();

    // In the journal, in the chain, and `fim verify` agrees.
    let journal = workspace.journal();
    assert_eq!(monitor_records(&journal).len(), 2, "{journal:#?}");
    let (intact, said) = workspace.verify(&[]);
    assert!(intact, "{said}");
}

#[test]
fn policy_file_edits_are_journaled_live_and_across_a_restart() {
    let workspace = Workspace::new("audit-file");
    let policy = |sweep: u64, extra: bool| {
        let mut text = format!(
            "[settings]\nscan_idle_io = false\nsweep_interval_secs = {sweep}\n\n[[entity]]\nname = \"tree\"\nkind = \"linux-file\"\npath = \"{}\"\n",
            path_of(&workspace.tree)
        );
        if extra {
            text.push_str(
                "\n[[entity]]\nname = \"registry\"\nkind = \"windows-registry\"\npath = \"HKEY_LOCAL_MACHINE\\\\Software\\\\Test\"\n",
            );
        }
        text
    };
    workspace.write_policy(&policy(900, false));
    let engine = Engine::start(&workspace);
    workspace.write_policy(&policy(600, false));
    let records = wait_monitor(&engine, 1);
    assert_eq!(
        monitor_records(&records),
        vec![(
            "SettingsChanged".to_string(),
            String::new(),
            "policy-file".to_string()
        )]
    );
    let settings = &records[0];
    assert_eq!(
        settings["FieldsChanged"],
        serde_json::json!(["sweep_interval_secs"])
    );
    assert_eq!(settings["Actor"], "unknown", "{settings:#}");
    engine.stop();

    // Edited while fimd was stopped (an entity of another platform, which changes nothing
    // fimd monitors): journaled at the next start.
    workspace.write_policy(&policy(600, true));
    // Journaled before the start-up scan, so before any stream subscriber: in the journal.
    let engine = Engine::start(&workspace);
    engine.stop();
    let journal = workspace.journal();
    assert_eq!(
        monitor_records(&journal),
        vec![
            (
                "SettingsChanged".to_string(),
                String::new(),
                "policy-file".to_string()
            ),
            (
                "EntityAdded".to_string(),
                "registry".to_string(),
                "policy-file".to_string()
            ),
        ]
    );
}
