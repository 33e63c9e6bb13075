//! A database written before the platform-neutral model (schema 1, fixture in
//! tests/fixtures/db-v1, made by fimd at commit 77225fb) still opens, verifies and prints
//! exactly as it did, and fimd continues its chain: nothing a Linux user has is lost to a
//! model change. See tests/fixtures/db-v1/README.md for what the fixture holds.
use std::path::{Path, PathBuf};

use fim_tests::engine::{Engine, Workspace};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/db-v1")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// A workspace whose state directory holds a copy of the fixture database.
fn workspace_with_fixture(name: &str) -> Workspace {
    let workspace = Workspace::new(name);
    for file in ["fim.db", "fim.db.marker"] {
        std::fs::copy(fixture(file), workspace.state.join(file)).unwrap();
    }
    workspace
}

fn stdout(workspace: &Workspace, args: &[&str]) -> String {
    let output = workspace.fim(args);
    assert!(
        output.status.success(),
        "fim {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The first `columns` cells of each csv line (the fixture's csv has no quoted commas past
/// them that would matter: FieldsChanged is quoted and read as one cell).
fn csv_prefix(text: &str, columns: usize) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    reader
        .records()
        .map(|row| {
            let row = row.unwrap();
            row.iter().take(columns).map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn an_old_database_verifies_and_prints_as_it_did() {
    let workspace = workspace_with_fixture("compat-print");
    let (intact, said) = workspace.verify(&[]);
    assert!(intact, "{said}");
    assert!(
        said.contains(
            "8 records checked, chain head at \
             8:dfc332c614568f53efc470abe001bc6fc70d2c42b554fb16af5ee3ef04adbb6a"
        ),
        "{said}"
    );
    let local = |args: &[&str]| {
        let mut all = vec!["--local"];
        all.extend_from_slice(args);
        stdout(&workspace, &all)
    };
    assert_eq!(local(&["changes"]), read_fixture("changes.txt"));
    assert_eq!(
        local(&["changes", "--format", "json"]),
        read_fixture("changes.json")
    );
    assert_eq!(
        local(&["changes", "--format", "jsonl"]),
        read_fixture("changes.jsonl")
    );
    assert_eq!(local(&["summary"]), read_fixture("summary.txt"));
    // csv keeps its nine columns, in order, and adds the registry and service ones after them
    // (empty for file records).
    let csv = local(&["changes", "--format", "csv"]);
    assert_eq!(
        csv_prefix(&csv, 9),
        csv_prefix(&read_fixture("changes.csv"), 9)
    );
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(
            ",RegistryKey,ValueName,ValueType,PreviousValueType,ValueData,\
             PreviousValueData,SvcName,SvcDisplayName,SvcState,PreviousSvcState,SvcStartupType,\
             PreviousSvcStartupType,SvcPath,PreviousSvcPath,SvcAccount,PreviousSvcAccount"
        ),
        "{header}"
    );
    assert!(
        csv.lines()
            .skip(1)
            .all(|line| line.ends_with(",,,,,,,,,,,,,,,,")),
        "{csv}"
    );
    // The non-UTF-8 name is still found by its bytes, and the new types find nothing here.
    let removed = local(&["changes", "--path", "/tmp/fx/tree/n?", "--format", "jsonl"]);
    assert_eq!(removed.lines().count(), 1, "{removed}");
    assert!(
        removed.contains(r#""FileSystemPath":"/tmp/fx/tree/n\\xe9""#),
        "{removed}"
    );
    for kind in ["Registry", "WindowsServices"] {
        let none = local(&["changes", "--type", kind, "--format", "jsonl"]);
        assert_eq!(none, "", "--type {kind}");
    }
}

#[test]
fn fimd_continues_the_chain_of_an_old_database() {
    let workspace = workspace_with_fixture("compat-daemon");
    std::fs::write(workspace.tree.join("after.txt"), "new\n").unwrap();
    let engine = Engine::start(&workspace);
    engine.stop();
    let (intact, said) = workspace.verify(&[]);
    assert!(intact, "{said}");
    // The old records are there, unchanged byte for byte (the chain hashes their text).
    let text = stdout(
        &workspace,
        &["--local", "changes", "--format", "jsonl", "--limit", "1000"],
    );
    let old: Vec<&str> = text.lines().take(8).collect();
    let fixture_text = read_fixture("changes.jsonl");
    assert_eq!(old, fixture_text.lines().collect::<Vec<_>>());
    let journal = workspace.journal();
    // The daemon went on from sequence 9: the fixture's entities left the policy (Monitor
    // records) and this workspace's tree was baselined.
    let later = &journal[8..];
    assert!(!later.is_empty(), "{journal:?}");
    assert_eq!(later[0]["Sequence"], 9, "{:?}", later[0]);
    let removed: Vec<&str> = later
        .iter()
        .filter(|record| record["Monitor"]["Event"] == "EntityRemoved")
        .filter_map(|record| record["Entity"].as_str())
        .collect();
    assert!(removed.contains(&"fixture-files"), "{later:?}");
}
