//! Small facts the daemon keeps between runs, and the history of its scans (for `fim status`).
//!
//! Meta values are text: the daemon owns their meaning (policy hash, last gap notice, ...).
//! Scan history is bounded to the last [`SCAN_HISTORY`] runs, so a daemon that scans every
//! few minutes for years does not grow the file.
use rusqlite::{OptionalExtension, TransactionBehavior};

use super::{Result, Store};
use crate::change::Timestamp;

/// How many scan runs are kept.
pub const SCAN_HISTORY: u64 = 1000;

/// One finished scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRun {
    /// What kind of scan (the daemon's word: "startup", "scheduled", "gap-rescan", ...).
    pub kind: String,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub files: u64,
    pub changes: u64,
    pub errors: u64,
}

impl Store {
    /// Sets `key` to `value` (its own transaction).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.writable()?;
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut statement| statement.execute([key, value]))
            .map_err(self.fail("writing a meta value"))?;
        Ok(())
    }

    /// Removes `key` (its own transaction); removing a key that is not set is not an error.
    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.writable()?;
        self.conn
            .prepare_cached("DELETE FROM meta WHERE key = ?1")
            .and_then(|mut statement| statement.execute([key]))
            .map_err(self.fail("deleting a meta value"))?;
        Ok(())
    }

    /// The value of `key`, if set.
    pub fn get_meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut statement| statement.query_row([key], |row| row.get(0)).optional())
            .map_err(self.fail("reading a meta value"))
    }

    /// Records a finished scan, dropping runs older than the last [`SCAN_HISTORY`].
    pub fn record_scan(&self, run: &ScanRun) -> Result<()> {
        self.writable()?;
        let fail = self.fail("recording a scan");
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(&fail)?;
        tx.prepare_cached(
            "INSERT INTO scan_run (kind, started_ns, finished_ns, files, changes, errors) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut statement| {
            statement.execute((
                &run.kind,
                run.started.unix_nanos(),
                run.finished.unix_nanos(),
                run.files as i64,
                run.changes as i64,
                run.errors as i64,
            ))
        })
        .map_err(&fail)?;
        tx.prepare_cached("DELETE FROM scan_run WHERE id <= (SELECT max(id) FROM scan_run) - ?1")
            .and_then(|mut statement| statement.execute([SCAN_HISTORY as i64]))
            .map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// The most recent scans, newest first, at most `limit`.
    pub fn last_scans(&self, limit: usize) -> Result<Vec<ScanRun>> {
        let fail = self.fail("reading the scan history");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT kind, started_ns, finished_ns, files, changes, errors FROM scan_run \
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(&fail)?;
        let runs = statement
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok(ScanRun {
                    kind: row.get(0)?,
                    started: Timestamp::from_unix_nanos(row.get(1)?),
                    finished: Timestamp::from_unix_nanos(row.get(2)?),
                    files: row.get::<_, i64>(3)? as u64,
                    changes: row.get::<_, i64>(4)? as u64,
                    errors: row.get::<_, i64>(5)? as u64,
                })
            })
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(runs)
    }
}
