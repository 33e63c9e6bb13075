//! SIGKILL in the middle of writing: the baseline and the journal must agree afterwards.
//!
//! The parent test runs this test binary again as a child (only the ignored `child_writer`
//! test, with an environment variable naming the database), lets it write small batches for a
//! while, kills it with SIGKILL, and then replays the committed journal: every Added record
//! must have its baseline row and every Removed record must have none.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{record, state};
use crate::{
    change::ChangeCategory,
    store::{ChangeFilter, Store},
};

const DB_VAR: &str = "FIM_STORE_CRASH_CHILD_DB";
const READY: &str = "crash-child-ready";

/// The child: writes forever (until killed). Each batch adds three files and removes the
/// oldest one still present, with one journal record per baseline change.
#[test]
#[ignore = "run by sigkill_leaves_baseline_and_journal_consistent as a child process"]
fn child_writer() {
    let Some(db) = std::env::var_os(DB_VAR) else {
        return;
    };
    let store = Store::open(&db).expect("child opens the store");
    println!("{READY}");
    let mut next = 0u64;
    let mut oldest = 0u64;
    loop {
        let mut batch = store.batch().expect("batch");
        for _ in 0..3 {
            let path = format!("/crash/f{next:08}");
            batch
                .put(Path::new(&path), "crash", &state(next))
                .expect("put");
            let mut change = record(&path, ChangeCategory::Added, next as i64);
            batch.append(&mut change).expect("append");
            next += 1;
        }
        let path = format!("/crash/f{oldest:08}");
        assert!(batch.delete(Path::new(&path)).expect("delete"));
        let mut change = record(&path, ChangeCategory::Removed, oldest as i64);
        batch.append(&mut change).expect("append");
        oldest += 1;
        batch.commit().expect("commit");
    }
}

#[test]
fn sigkill_leaves_baseline_and_journal_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fim.db");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "store::tests::crash::child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_VAR, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|line| line.is_ok_and(|line| line.contains(READY)));
    assert!(ready, "the child never started writing");
    // Kill it once it has committed something, ~200 ms into writing.
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let reader = Store::open_read_only(&db).unwrap();
    while reader.last_sequence().unwrap() < 8 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(reader);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status}"
    );

    let store = Store::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), Vec::<String>::new());
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    let committed = report.head_sequence;
    assert!(committed >= 8, "only {committed} records committed");
    // Whole batches only: four records each.
    assert_eq!(committed % 4, 0, "a batch was half committed");

    let mut expected = BTreeSet::new();
    let records = store.query(&ChangeFilter::default(), usize::MAX).unwrap();
    assert_eq!(records.len() as u64, committed);
    for change in &records {
        let path = change.file.as_ref().unwrap().file_system_path.clone();
        match change.change_category {
            ChangeCategory::Added => assert!(expected.insert(path)),
            ChangeCategory::Removed => assert!(expected.remove(&path)),
            ChangeCategory::Modified => unreachable!(),
        }
    }
    let present: BTreeSet<String> = store
        .quick_map("crash")
        .unwrap()
        .paths()
        .map(|path| path.display().to_string())
        .collect();
    assert_eq!(store.count().unwrap(), expected.len() as u64);
    assert_eq!(present, expected);
    eprintln!(
        "crash test: killed after {committed} records, {} baseline rows",
        present.len()
    );
}
