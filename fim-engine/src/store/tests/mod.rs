//! Store tests, on real SQLite files in temporary directories.
//!
//! Tampering tests edit the file through a second, raw SQLite connection, as an attacker with
//! `sqlite3` would; the crash test SIGKILLs a writer process; the disk-full test fills a tiny
//! tmpfs.
use std::path::{Path, PathBuf};

use super::Store;
use crate::{
    change::{ChangeCategory, ChangeRecord, ConfigChangeType, Detection, FileColumns, Timestamp},
    state::{FileState, FileType},
};

mod baseline;
mod bench;
mod crash;
// A full file system is made with a tiny tmpfs (mount(2), root): Linux only.
#[cfg(unix)]
mod disk_full;
mod journal;
mod open;
mod query;
mod registry;

/// A fresh database in a fresh directory (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fim.db");
    let store = Store::open(&path).expect("open store");
    (dir, path, store)
}

/// A second connection straight to the file, for tampering and inspection.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

/// A typical regular file's state, varied by `n`.
pub fn state(n: u64) -> FileState {
    FileState {
        file_type: FileType::Regular,
        size: 1000 + n,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 1_700_000_000_000_000_000 + n as i64,
        ctime_ns: 1_700_000_000_500_000_000 + n as i64,
        ino: 100_000 + n,
        dev: 0x803,
        nlink: 1,
        hash: Some(*blake3::hash(&n.to_le_bytes()).as_bytes()),
        ..FileState::empty(FileType::Regular)
    }
}

/// A Files record for `path` at `time_ns`, computer host-a, entity etc.
pub fn record(path: &str, category: ChangeCategory, time_ns: i64) -> ChangeRecord {
    ChangeRecord {
        sequence: 0,
        time_generated: Timestamp::from_unix_nanos(time_ns),
        computer: "host-a".into(),
        computer_id: "id-a".into(),
        config_change_type: ConfigChangeType::Files,
        change_category: category,
        fields_changed: vec!["Size".into()],
        entity: "etc".into(),
        detected_by: Detection::Scan,
        operations: vec![],
        actor: None,
        file: Some(FileColumns {
            file_system_path: path.into(),
            size: Some(3),
            ..FileColumns::default()
        }),
        registry: None,
        service: None,
        contributors: vec![],
        contributors_omitted: 0,
        monitor: None,
    }
}

/// Appends `records` in one committed batch; returns their sequences.
pub fn append_all(store: &Store, records: &mut [ChangeRecord]) -> Vec<u64> {
    let mut batch = store.batch().expect("batch");
    let sequences = records
        .iter_mut()
        .map(|record| batch.append(record).expect("append"))
        .collect();
    batch.commit().expect("commit");
    sequences
}

/// Appends `count` Modified records for /etc/f{n}, one second apart from t = 1000 s.
pub fn journal_of(store: &Store, count: u64) {
    let mut records: Vec<ChangeRecord> = (1..=count)
        .map(|n| {
            let time = (1000 + n as i64) * 1_000_000_000;
            record(&format!("/etc/f{n}"), ChangeCategory::Modified, time)
        })
        .collect();
    append_all(store, &mut records);
}
