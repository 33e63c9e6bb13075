//! fimsvc against real files, under Wine 8.0 (`cargo xtask wine-test`): windows-file entities
//! watched with ReadDirectoryChangesW, each change giving the exact record. These tests run
//! where Windows runs (Wine here); on Linux this file compiles to nothing.
//!
//! Paths in records are shown as Windows shows them (`C:\Temp\a.txt`; see `shown`).
#![cfg(windows)]
// Test helpers panic by design: a failed step is the test's failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{write_policy, Fimsvc};
use serde_json::Value;

/// (category, path, fields changed, detection, operations) of a record.
fn summary(record: &Value) -> (String, String, String, String, String) {
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_string(),
    };
    (
        text(&record["ChangeCategory"]),
        text(&record["File"]["FileSystemPath"]),
        text(&record["FieldsChanged"]),
        text(&record["DetectedBy"]),
        text(&record["Operations"]),
    )
}

fn row(
    category: &str,
    path: &Path,
    fields: &str,
    how: &str,
    operations: &str,
) -> (String, String, String, String, String) {
    (
        category.into(),
        shown(path),
        fields.into(),
        how.into(),
        operations.into(),
    )
}

/// A path as records show it: as Windows shows it, single separators (only control
/// characters and `|`, which no Win32 name holds, would be escaped).
fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn summaries(records: &[Value]) -> Vec<(String, String, String, String, String)> {
    records.iter().map(summary).collect()
}

#[test]
fn files_created_written_renamed_and_deleted_in_a_directory_entity_are_recorded_in_real_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let policy = write_policy(
        dir.path(),
        &[("data", "windows-file", &watched.display().to_string(), true)],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    assert_eq!(fimsvc.count(), 0, "the first baseline is silent");

    let file = watched.join("new.txt");
    let from = fimsvc.count();
    std::fs::write(&file, b"first").expect("create");
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        summaries(&records),
        vec![row("Added", &file, "", "realtime", "create,write-closed")]
    );
    assert_eq!(records[0]["Entity"], "data");
    assert_eq!(records[0]["ConfigChangeType"], "Files");
    assert_eq!(
        records[0]["File"]["FileContentChecksum"],
        blake3_hex(b"first")
    );

    let from = fimsvc.count();
    std::fs::write(&file, b"second, longer").expect("write");
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        summaries(&records),
        vec![row(
            "Modified",
            &file,
            "Size,DateModified,FileContentChecksum",
            "realtime",
            "write-closed"
        )]
    );
    assert_eq!(
        records[0]["File"]["PreviousFileContentChecksum"],
        blake3_hex(b"first")
    );
    assert_eq!(
        records[0]["File"]["FileContentChecksum"],
        blake3_hex(b"second, longer")
    );

    let renamed = watched.join("renamed.txt");
    let from = fimsvc.count();
    std::fs::rename(&file, &renamed).expect("rename");
    let records = fimsvc.records_after(from, 2);
    // The engine reports a rename as the pair: the old path removed, the new one added, both
    // naming the path as what changed.
    assert_eq!(
        summaries(&records),
        vec![
            row("Removed", &file, "FileSystemPath", "realtime", "rename"),
            row("Added", &renamed, "FileSystemPath", "realtime", "rename"),
        ]
    );

    let from = fimsvc.count();
    std::fs::remove_file(&renamed).expect("delete");
    let records = fimsvc.records_after(from, 1);
    assert_eq!(
        summaries(&records),
        vec![row("Removed", &renamed, "", "realtime", "unlink")]
    );
}

#[test]
fn a_single_file_entity_reports_only_that_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("etc");
    std::fs::create_dir(&watched).expect("mkdir");
    let file = watched.join("app.ini");
    let sibling = watched.join("other.ini");
    std::fs::write(&file, b"[app]").expect("write");
    std::fs::write(&sibling, b"[other]").expect("write");
    let policy = write_policy(
        dir.path(),
        &[("ini", "windows-file", &file.display().to_string(), false)],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    assert_eq!(fimsvc.count(), 0, "the first baseline is silent");

    let from = fimsvc.count();
    std::fs::write(&sibling, b"[other]\nchanged=1").expect("write the sibling");
    std::fs::write(watched.join("new.ini"), b"new").expect("create a sibling");
    std::fs::write(&file, b"[app]\nchanged=1").expect("write the file");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row(
            "Modified",
            &file,
            "Size,DateModified,FileContentChecksum",
            "realtime",
            "write-closed"
        )]
    );

    let from = fimsvc.count();
    std::fs::remove_file(&sibling).expect("delete the sibling");
    std::fs::remove_file(&file).expect("delete the file");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row("Removed", &file, "", "realtime", "unlink")]
    );

    let from = fimsvc.count();
    std::fs::write(&file, b"back").expect("recreate the file");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row("Added", &file, "", "realtime", "create,write-closed")]
    );
}

#[test]
fn a_change_made_while_fimsvc_was_stopped_is_found_by_the_start_up_scan() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let kept = watched.join("kept.txt");
    let gone = watched.join("gone.txt");
    std::fs::write(&kept, b"before").expect("write");
    std::fs::write(&gone, b"gone soon").expect("write");
    let policy = write_policy(
        dir.path(),
        &[("data", "windows-file", &watched.display().to_string(), true)],
    );
    let state = dir.path().join("state");
    let fimsvc = Fimsvc::start(&policy, &state);
    assert_eq!(fimsvc.count(), 0, "the first baseline is silent");
    drop(fimsvc);

    std::fs::write(&kept, b"changed while stopped").expect("write");
    std::fs::remove_file(&gone).expect("delete");
    let added = watched.join("added.txt");
    std::fs::write(&added, b"new").expect("create");
    let fimsvc = Fimsvc::start(&policy, &state);
    // Wine has no change journal: said, and the start-up scan alone finds what changed.
    fimsvc.wait_for_log(
        "has no change journal; changes while stopped are found by the start-up scan alone",
    );
    let mut records = summaries(&fimsvc.records_after(0, 3));
    records.sort();
    assert_eq!(
        records,
        vec![
            row("Added", &added, "", "scan", "-"),
            row(
                "Modified",
                &kept,
                "Size,DateModified,FileContentChecksum",
                "scan",
                "-"
            ),
            row("Removed", &gone, "", "scan", "-"),
        ]
    );
}

#[test]
fn a_notification_buffer_overflow_is_a_gap_and_every_file_still_gets_its_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let policy = write_policy(
        dir.path(),
        &[("data", "windows-file", &watched.display().to_string(), true)],
    );
    // A buffer too small for even one record: every completion overflows.
    let fimsvc = Fimsvc::start_with_env(
        &policy,
        &dir.path().join("state"),
        &[("FIMSVC_TEST_NOTIFY_BUFFER", "16")],
    );
    let from = fimsvc.count();
    let files: Vec<_> = (0..20)
        .map(|index| watched.join(format!("file-{index:02}.txt")))
        .collect();
    // Each file is written beside the entity and moved in whole, so no scan can see it half
    // written (which would make a second record).
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("mkdir");
    for file in &files {
        let staged = staging.join(file.file_name().expect("a name"));
        std::fs::write(&staged, b"storm").expect("create");
        std::fs::rename(&staged, file).expect("move in");
    }
    let records = fimsvc.records_after(from, files.len());
    fimsvc.wait_for_log("more changed than the notification buffer holds");
    fimsvc.wait_for_log("events were lost; rescanning the affected entities now");
    let mut added: Vec<String> = records
        .iter()
        .filter(|record| record["ChangeCategory"] == "Added")
        .map(|record| summary(record).1)
        .collect();
    added.sort();
    added.dedup();
    assert_eq!(
        added,
        files.iter().map(|file| shown(file)).collect::<Vec<_>>()
    );
    assert_eq!(records.len(), files.len(), "one record per file");
    assert!(
        records
            .iter()
            .all(|record| record["DetectedBy"] == "gap-rescan"),
        "{records:#?}"
    );
}

#[test]
fn a_policy_reload_moves_the_file_watches_to_the_new_roots() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    std::fs::create_dir(&first).expect("mkdir");
    std::fs::create_dir(&second).expect("mkdir");
    let entity =
        |name: &'static str, path: &Path| (name, "windows-file", path.display().to_string(), true);
    let one = [entity("first", &first)];
    let policy = write_policy(dir.path(), &borrowed(&one));
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));

    let both = [entity("first", &first), entity("second", &second)];
    write_policy(dir.path(), &borrowed(&both));
    fimsvc.wait_for_log("the file roots changed: watching the new set");
    let from = fimsvc.count();
    let file = second.join("new.txt");
    std::fs::write(&file, b"seen").expect("create");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row("Added", &file, "", "realtime", "create,write-closed")]
    );
}

#[test]
fn a_directory_entity_created_after_the_start_is_watched_once_it_exists() {
    let dir = tempfile::tempdir().expect("temp dir");
    let later = dir.path().join("later");
    let policy = write_policy(
        dir.path(),
        &[("later", "windows-file", &later.display().to_string(), true)],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    let from = fimsvc.count();
    std::fs::create_dir(&later).expect("mkdir");
    let first = later.join("first.txt");
    std::fs::write(&first, b"early").expect("create");
    fimsvc.wait_for_log("the root changed between file and directory: watching it afresh");
    // Watched through its parent until it existed, then a rescan of the entity (gap) covers
    // what was written before the directory's own watch was armed.
    let mut records = summaries(&fimsvc.records_after(from, 2));
    records.sort();
    records.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    assert_eq!(
        records
            .iter()
            .map(|(category, path, ..)| (category.as_str(), path.clone()))
            .collect::<Vec<_>>(),
        vec![("Added", shown(&later)), ("Added", shown(&first))]
    );

    let from = fimsvc.count();
    let second = later.join("second.txt");
    std::fs::write(&second, b"late").expect("create");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row("Added", &second, "", "realtime", "create,write-closed")]
    );
}

#[test]
fn linux_kinds_are_not_applicable_here_and_said_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let policy = write_policy(
        dir.path(),
        &[
            ("etc", "linux-file", "/etc", true),
            ("data", "windows-file", &watched.display().to_string(), true),
        ],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    fimsvc.wait_for_log(
        "entity \"etc\": linux-file entities are not applicable on this platform; it is not monitored",
    );
    fimsvc.wait_for_log(r#"baselined=["data"]"#);
}

/// PLATFORM.md says Wine 8.0's subtree watch missed writes inside subdirectories that existed
/// before the watch began; with this source's handle (FILE_LIST_DIRECTORY, overlapped, the
/// full filter) it does not: create, write and delete in such a subdirectory are each seen in
/// real time. Should a Wine version regress, this goes red.
#[test]
fn changes_inside_a_subdirectory_that_existed_before_the_watch_are_seen_in_real_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let watched = dir.path().join("watched");
    let sub = watched.join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let old = sub.join("old.txt");
    std::fs::write(&old, b"old").expect("write");
    let policy = write_policy(
        dir.path(),
        &[("data", "windows-file", &watched.display().to_string(), true)],
    );
    let fimsvc = Fimsvc::start(&policy, &dir.path().join("state"));
    let from = fimsvc.count();
    let file = sub.join("deep.txt");
    std::fs::write(&file, b"deep").expect("create");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row("Added", &file, "", "realtime", "create,write-closed")]
    );
    let from = fimsvc.count();
    std::fs::write(&old, b"old, written again").expect("write");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row(
            "Modified",
            &old,
            "Size,DateModified,FileContentChecksum",
            "realtime",
            "write-closed"
        )]
    );
    let from = fimsvc.count();
    std::fs::remove_file(&old).expect("delete");
    assert_eq!(
        summaries(&fimsvc.records_after(from, 1)),
        vec![row("Removed", &old, "", "realtime", "unlink")]
    );
}

/// `write_policy`'s borrowed form of owned entity rows.
fn borrowed<'a>(
    rows: &'a [(&'static str, &'static str, String, bool)],
) -> Vec<(&'static str, &'static str, &'a str, bool)> {
    rows.iter()
        .map(|(name, kind, path, recursive)| (*name, *kind, path.as_str(), *recursive))
        .collect()
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}
