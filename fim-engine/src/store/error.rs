//! Store errors: every one names the database file, and a full disk is told apart.
//!
//! The daemon reacts differently to "the disk is full" (keep the events, raise an alert, retry
//! when space returns) than to anything else (a bug or corruption, which needs a person), so
//! [`StoreError::is_disk_full`] answers that from SQLite's result code and the OS errno
//! underneath it, not from message text.
use std::path::PathBuf;

/// What the store failed at; every variant carries the database path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error. `os_errno` is the errno SQLite saw underneath an I/O error
    /// (`sqlite3_system_errno`), when there was one.
    #[error("{path}: {action}: {source}", path = .path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        os_errno: Option<i32>,
        #[source]
        source: rusqlite::Error,
    },
    /// A file-system call around the database (creating its directory or file) failed.
    #[error("{path}: {action}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer fim whose schema this build does not know.
    #[error(
        "{path}: the database has schema version {found}, but this fim only knows versions up \
         to {supported}; use a newer fim (downgrading a database is not supported)",
        path = .path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A read-only open found a database that the daemon has not created or migrated yet.
    #[error(
        "{path}: the database has schema version {found}, this fim expects {supported}; start \
         the daemon once so it migrates the database",
        path = .path.display()
    )]
    NotMigrated {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The file is an SQLite database of some other program.
    #[error("{path}: not a fim database ({reason})", path = .path.display())]
    NotFim { path: PathBuf, reason: String },
    /// A write was attempted through a store opened with `open_read_only`.
    #[error("{path}: opened read-only; only the daemon writes to it", path = .path.display())]
    ReadOnly { path: PathBuf },
    /// A record handed to the journal cannot be stored (e.g. TimeGenerated is not RFC 3339).
    #[error("{path}: cannot journal the record: {reason}", path = .path.display())]
    BadRecord { path: PathBuf, reason: String },
    /// A stored row does not decode (a value out of range, a hash of the wrong length, a
    /// journal text that is not a record).
    #[error("{path}: corrupt {what}: {reason}", path = .path.display())]
    Corrupt {
        path: PathBuf,
        what: String,
        reason: String,
    },
}

impl StoreError {
    /// True when the failure was a full file system (SQLITE_FULL, or an I/O error whose errno
    /// is ENOSPC or EDQUOT): the caller should keep its data and retry once space is freed.
    pub fn is_disk_full(&self) -> bool {
        let full_errno = crate::platform::is_disk_full_error;
        match self {
            StoreError::Sqlite {
                source, os_errno, ..
            } => {
                let full_code = matches!(
                    source,
                    rusqlite::Error::SqliteFailure(error, _)
                        if error.code == rusqlite::ErrorCode::DiskFull
                );
                full_code || os_errno.is_some_and(full_errno)
            }
            StoreError::Io { source, .. } => source.raw_os_error().is_some_and(full_errno),
            _ => false,
        }
    }

    /// The database file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            StoreError::Sqlite { path, .. }
            | StoreError::Io { path, .. }
            | StoreError::TooNew { path, .. }
            | StoreError::NotMigrated { path, .. }
            | StoreError::NotFim { path, .. }
            | StoreError::ReadOnly { path }
            | StoreError::BadRecord { path, .. }
            | StoreError::Corrupt { path, .. } => path,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
