//! The embedded store: one SQLite file holding the baseline and the hash-chained journal.
//!
//! A single host needs no server: the daemon keeps everything in its state directory (e.g.
//! `/var/lib/fim/fim.db`). Baseline rows and the journal records that describe the same
//! change are written in one transaction ([`Batch`]), so a crash (SIGKILL, power loss with
//! `synchronous=FULL`) leaves either the old baseline without the records or the new baseline
//! with them, never one without the other. WAL mode lets `fim` read (with
//! [`Store::open_read_only`]) while the daemon writes.
//!
//! Layout: [`schema`] (tables, migrations), [`baseline`] (reads of the baseline), [`batch`]
//! (all writes), [`journal`] (hashing and `verify`), [`query`] (`fim changes`/`fim summary`),
//! [`meta`] (key/value settings and scan history), [`rows`] (rows as hashed, for the collector).
use std::{
    cell::RefCell,
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};

pub mod baseline;
pub mod batch;
pub mod digest;
mod error;
pub mod journal;
pub mod meta;
pub mod query;
pub mod registry;
mod retention;
pub mod rows;
pub mod schema;
pub mod service;

#[cfg(test)]
mod tests;

pub use crate::state::QuickMeta;
pub use baseline::BaselineEntry;
pub use batch::Batch;
pub use digest::EntityDigest;
pub use error::{Result, StoreError};
pub use journal::{Anchor, EditDetail, VerifyProblem, VerifyReport};
pub use meta::ScanRun;
pub use query::{ChangeFilter, GroupKey, SubjectGlob, SummaryRow};
pub use retention::{Acknowledged, Retention, PRUNED_THROUGH};
pub use rows::{JournalRow, JOURNAL_ID_META};

/// How long a writer waits for another writer's lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open fim database. Not `Sync`: one thread uses a `Store` at a time (open another for
/// another thread or process; SQLite serialises the writers).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Entity name to id, for rows that are committed (a batch keeps its own new ones until it
    /// commits, so a rolled-back id never lands here).
    entity_ids: RefCell<HashMap<String, i64>>,
    read_only: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the database for reading and writing, creating it (mode 0600, in a directory
    /// created 0700 when missing: file-content entities keep file contents here) and
    /// migrating it to the current schema. Refuses a file from a newer fim.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        create_private_file(&path)?;
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            action: "opening the database",
            os_errno: None,
            source,
        })?;
        let store = Store::with_connection(conn, path, false)?;
        let found = schema::check(&store.conn).map_err(store.fail("reading the schema version"))?;
        // Refuse before configuring: switching a foreign or newer file to WAL changes it.
        match &found {
            schema::Found::Version(version) if *version > schema::CURRENT_VERSION => {
                return Err(store.too_new(*version));
            }
            schema::Found::Foreign(reason) => return Err(store.foreign(reason.clone())),
            schema::Found::Version(_) => {}
        }
        store.configure(true)?;
        let found = match found {
            schema::Found::Version(version) if version < schema::CURRENT_VERSION => {
                schema::migrate(&store.conn).map_err(store.fail("migrating the database schema"))?
            }
            found => found,
        };
        match found {
            schema::Found::Version(version) if version == schema::CURRENT_VERSION => {}
            schema::Found::Version(version) => return Err(store.too_new(version)),
            schema::Found::Foreign(reason) => return Err(store.foreign(reason)),
        }
        tracing::debug!(path = %store.path.display(), "opened the fim database");
        Ok(store)
    }

    /// Opens an existing database read-only (for `fim` reading while the daemon writes). The
    /// daemon must have created it; any version from [`schema::READABLE_FROM`] on reads.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Err(source) = std::fs::metadata(&path) {
            return Err(StoreError::Io {
                path,
                action: "opening the database read-only",
                source,
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                action: "opening the database read-only",
                os_errno: None,
                source,
            })?;
        let store = Store::with_connection(conn, path, true)?;
        store.configure(false)?;
        match schema::check(&store.conn).map_err(store.fail("reading the schema version"))? {
            // Version 2 only added the registry and service baselines: the journal a reader
            // queries and verifies is the same, so a database the daemon has not migrated yet
            // (fim upgraded first) still reads.
            schema::Found::Version(version)
                if (schema::READABLE_FROM..=schema::CURRENT_VERSION).contains(&version) =>
            {
                Ok(store)
            }
            schema::Found::Version(version) if version > schema::CURRENT_VERSION => {
                Err(store.too_new(version))
            }
            schema::Found::Version(version) => Err(StoreError::NotMigrated {
                path: store.path.clone(),
                found: version,
                supported: schema::CURRENT_VERSION,
            }),
            schema::Found::Foreign(reason) => Err(store.foreign(reason)),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (this build's [`schema::CURRENT_VERSION`] once open).
    pub fn schema_version(&self) -> Result<u32> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.fail("reading the schema version"))?;
        Ok(u32::try_from(version).unwrap_or(u32::MAX))
    }

    /// SQLite's own consistency check of the file (`PRAGMA integrity_check`): empty when the
    /// file is sound, otherwise SQLite's findings.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let fail = self.fail("checking the database's integrity");
        let mut statement = self.conn.prepare("PRAGMA integrity_check").map_err(&fail)?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(lines.into_iter().filter(|line| line != "ok").collect())
    }

    /// The size of the database proper (pages in use and free), without the WAL.
    pub fn database_bytes(&self) -> Result<u64> {
        let fail = self.fail("measuring the database");
        let pages: i64 = self
            .conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .map_err(&fail)?;
        let page_size: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .map_err(&fail)?;
        Ok(u64::try_from(pages * page_size).unwrap_or(0))
    }

    /// Copies the WAL into the database and truncates it (after a large scan, so the WAL does
    /// not keep its peak size).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(self.fail("checkpointing the write-ahead log"))
    }

    /// Writes a consistent copy of the open database to `path` (`VACUUM INTO`): what fimd
    /// holds open survives its file being deleted, and this puts it back.
    pub fn copy_to(&self, path: &Path) -> Result<()> {
        let target = path.to_string_lossy();
        self.conn
            .execute("VACUUM INTO ?1", [target.as_ref()])
            .map_err(self.fail("copying the database"))?;
        Ok(())
    }

    /// A store with no file, read-only, to hold the place of one being replaced.
    pub fn placeholder() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: PathBuf::from(":memory:"),
            action: "opening a placeholder",
            os_errno: None,
            source,
        })?;
        Store::with_connection(conn, PathBuf::from(":memory:"), true)
    }

    fn with_connection(conn: Connection, path: PathBuf, read_only: bool) -> Result<Store> {
        let store = Store {
            conn,
            path,
            entity_ids: RefCell::new(HashMap::new()),
            read_only,
        };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(store.fail("setting the busy timeout"))?;
        // A scan's batch uses a dozen statements over and over; keep them all prepared.
        store.conn.set_prepared_statement_cache_capacity(64);
        Ok(store)
    }

    fn configure(&self, writable: bool) -> Result<()> {
        let fail = self.fail("configuring the connection");
        if writable {
            let mode: String = self
                .conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(&fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %self.path.display(), mode, "the database is not in WAL mode");
            }
        }
        // FULL: a commit is on disk when it returns (WAL's default NORMAL can lose the last
        // transactions on power loss, and the journal promises no silent loss).
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(&fail)?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(&fail)?;
        Ok(())
    }

    /// Maps an SQLite error to a [`StoreError`] naming the file and what was being done,
    /// with the OS errno underneath an I/O error.
    fn fail(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| {
            let os_errno = match &source {
                rusqlite::Error::SqliteFailure(error, _)
                    if matches!(
                        error.code,
                        rusqlite::ErrorCode::SystemIoFailure
                            | rusqlite::ErrorCode::CannotOpen
                            | rusqlite::ErrorCode::DiskFull
                    ) =>
                {
                    // SAFETY: the handle is this store's open connection, used on this thread;
                    // sqlite3_system_errno only reads the connection's last OS error.
                    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(self.conn.handle()) };
                    (errno != 0).then_some(errno)
                }
                _ => None,
            };
            StoreError::Sqlite {
                path: self.path.clone(),
                action,
                os_errno,
                source,
            }
        }
    }

    /// Refuses writes through a read-only store up front (SQLite would only refuse the first
    /// write statement, after BEGIN IMMEDIATE succeeded).
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn corrupt(&self, what: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            reason: reason.into(),
        }
    }

    fn too_new(&self, found: u32) -> StoreError {
        StoreError::TooNew {
            path: self.path.clone(),
            found,
            supported: schema::CURRENT_VERSION,
        }
    }

    fn foreign(&self, reason: String) -> StoreError {
        StoreError::NotFim {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Creates the database file owner-only before SQLite does (SQLite would use 0644, and gives
/// its -wal and -shm files the database file's mode).
fn create_private_file(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if !dir.exists() {
            crate::platform::create_private_dir(dir).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                action: "creating the state directory",
                source,
            })?;
        }
    }
    match crate::platform::create_private_file(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            action: "creating the database file",
            source,
        }),
    }
}
