//! Engine, when things go wrong: changes while stopped, SIGKILL mid-storm, a ring buffer
//! overflow, a full disk and an edited journal. In each case no change may be lost and the
//! database must stay consistent.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use fim_tests::engine::{path_of, summary, Engine, Workspace};
use serde_json::Value;

fn fields(list: &[&str]) -> Vec<String> {
    list.iter().map(|field| field.to_string()).collect()
}

/// For each path, its last record in the journal.
fn last_by_path(journal: &[Value]) -> BTreeMap<String, Value> {
    journal
        .iter()
        .map(|record| {
            (
                record["File"]["FileSystemPath"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                record.clone(),
            )
        })
        .collect()
}

/// Every regular file under `tree`: its last journal record is Added/Modified and carries the
/// file's current hash.
fn assert_journal_matches_tree(journal: &[Value], tree: &Path) {
    let last = last_by_path(journal);
    let mut files = 0;
    for entry in walk(tree) {
        let content = std::fs::read(&entry).unwrap();
        let name = path_of(&entry);
        let record = last
            .get(&name)
            .unwrap_or_else(|| panic!("no record for {name}"));
        assert_ne!(record["ChangeCategory"], "Removed", "{record}");
        assert_eq!(
            record["File"]["FileContentChecksum"],
            blake3::hash(&content).to_hex().as_str(),
            "stale hash for {name}"
        );
        files += 1;
    }
    assert!(files > 0);
}

/// The paths with an Added record.
fn added_paths(journal: &[Value]) -> BTreeSet<String> {
    journal
        .iter()
        .filter(|record| record["ChangeCategory"] == "Added")
        .filter_map(|record| record["File"]["FileSystemPath"].as_str())
        .map(str::to_string)
        .collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn verify_ok(workspace: &Workspace) {
    let output = workspace.fim(&["verify"]);
    assert!(
        output.status.success(),
        "fim verify failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn start_up_scan_finds_changes_made_while_stopped() {
    let workspace = Workspace::new("stopped");
    let tree = &workspace.tree;
    for name in ["keep", "edit", "gone", "mode"] {
        std::fs::write(tree.join(name), name).unwrap();
    }
    let engine = Engine::start(&workspace);
    assert!(engine.records().is_empty(), "the first baseline is silent");
    engine.stop();

    let edit = path_of(&tree.join("edit"));
    let reference = path_of(&workspace.base.join("ref"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "touch -r '{edit}' '{reference}' && printf EDIT > '{edit}' && touch -r '{reference}' '{edit}' && \
             rm '{gone}' && printf new > '{new}' && chmod 600 '{mode}'",
            gone = path_of(&tree.join("gone")),
            new = path_of(&tree.join("new")),
            mode = path_of(&tree.join("mode")),
        ))
        .status()
        .unwrap();
    assert!(status.success());

    let engine = Engine::start(&workspace);
    let mut records = engine.settle(4);
    records.sort_by_key(|record| {
        record["File"]["FileSystemPath"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(
        summary(&records),
        vec![
            (
                "Modified".into(),
                edit.clone(),
                fields(&["FileContentChecksum"])
            ),
            ("Removed".into(), path_of(&tree.join("gone")), vec![]),
            (
                "Modified".into(),
                path_of(&tree.join("mode")),
                fields(&["Mode"])
            ),
            ("Added".into(), path_of(&tree.join("new")), vec![]),
        ]
    );
    for record in &records {
        assert_eq!(record["Actor"], "unknown", "{record}");
        assert_eq!(record["DetectedBy"], "scan", "{record}");
    }
    engine.stop();
    verify_ok(&workspace);
}

#[test]
fn sigkill_during_a_storm_loses_nothing() {
    let workspace = Workspace::new("sigkill");
    let engine = Engine::start(&workspace);
    let tree = workspace.tree.clone();
    let storm = std::thread::spawn(move || {
        for round in 0..3 {
            for index in 0..600 {
                let dir = tree.join(format!("d{}", index % 20));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("f{index}")), format!("{round}-{index}")).unwrap();
            }
        }
    });
    // Kill while records are being written.
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.records().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        engine.records().len() >= 200,
        "the storm produced no records"
    );
    engine.kill9();
    storm.join().unwrap();

    let engine = Engine::start(&workspace);
    std::thread::sleep(Duration::from_millis(500));
    engine.stop();
    verify_ok(&workspace);
    let journal = workspace.journal();
    assert_journal_matches_tree(&journal, &workspace.tree);
    // Sequences are dense: nothing half-written survived the kill.
    for (index, record) in journal.iter().enumerate() {
        assert_eq!(record["Sequence"], index as u64 + 1);
    }
}

#[test]
fn ring_overflow_is_recovered_by_the_targeted_rescan() {
    let workspace = Workspace::new("overflow");
    let mut engine = Engine::start_with(&workspace, &["--ring-bytes", "4096"]);
    for index in 0..3000 {
        std::fs::write(workspace.tree.join(format!("f{index}")), format!("{index}")).unwrap();
    }
    engine.wait_for_log("events were lost", Duration::from_secs(10));
    engine.wait_for_log("gap rescan scan finished", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    engine.stop();
    let journal = workspace.journal();
    let added = added_paths(&journal);
    assert_eq!(added.len(), 3000, "every file has an Added record");
    assert!(
        journal
            .iter()
            .any(|record| record["DetectedBy"] == "gap-rescan"),
        "some files were found by the rescan"
    );
    assert_journal_matches_tree(&journal, &workspace.tree);
    verify_ok(&workspace);
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_disk_is_reported_and_recovered() {
    let workspace = Workspace::new("diskfull");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs"])
        .arg(&workspace.state)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _mount = Tmpfs(workspace.state.clone());
    let mut engine = Engine::start(&workspace);
    // Fill the state directory's filesystem.
    let filler = workspace.state.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=1000"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    for index in 0..50 {
        std::fs::write(
            workspace.tree.join(format!("while-full-{index}")),
            "x".repeat(4000),
        )
        .unwrap();
    }
    engine.wait_for_log("disk is full", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.records().len() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    engine.stop();
    let journal = workspace.journal();
    let added = added_paths(&journal);
    assert_eq!(
        added.len(),
        50,
        "every change made while the disk was full is recorded"
    );
    assert_journal_matches_tree(&journal, &workspace.tree);
    verify_ok(&workspace);
}

#[test]
fn verify_names_the_edited_record() {
    let workspace = Workspace::new("verify");
    let engine = Engine::start(&workspace);
    for index in 0..5 {
        std::fs::write(workspace.tree.join(format!("f{index}")), "x").unwrap();
        std::thread::sleep(Duration::from_millis(80));
    }
    engine.settle(5);
    engine.stop();
    verify_ok(&workspace);
    let database = workspace.state.join("fim.db");
    let connection = rusqlite::Connection::open(&database).unwrap();
    connection
        .execute(
            "UPDATE journal SET record = replace(record, '\"Added\"', '\"Modified\"') WHERE sequence = 3",
            [],
        )
        .unwrap();
    drop(connection);
    let output = workspace.fim(&["verify"]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("record 3"), "{text}");
}
