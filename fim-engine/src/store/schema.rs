//! The schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Migration `n` (index `n - 1` in [`MIGRATIONS`]) takes the file from version `n - 1` to `n`
//! inside one IMMEDIATE transaction together with the version bump, so a crash mid-migration
//! leaves the old version intact. A file from a newer fim is refused rather than guessed at:
//! its tables may mean something this build does not know.
//!
//! The tables are deliberately plain (integers, text, blobs, no SQLite-only column types) so
//! the multi-machine workspace can run the same shape on PostgreSQL. Unsigned 64-bit values
//! (size, inode, device, link count) are stored bit-for-bit as signed 64-bit integers.
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// `PRAGMA application_id` of a fim database ("FIM\0"), so a foreign SQLite file is refused.
pub const APPLICATION_ID: i32 = 0x4649_4D00;

/// Each entry migrates from version `index` to `index + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2];

/// The version this build writes.
pub const CURRENT_VERSION: u32 = MIGRATIONS.len() as u32;

/// The oldest version a read-only reader accepts without a migration: every later version
/// only added tables a reader of the journal does not need (raise it when a migration
/// changes the journal, the chain head or meta).
pub const READABLE_FROM: u32 = 1;

/// Version 1: baseline, journal with its chain head, meta and scan history.
const V1: &str = r#"
-- Entity names, so each baseline row carries a small integer instead of the name. Rows are
-- never deleted: an id, once given to a name, always means that name.
CREATE TABLE entity (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);

-- The last known state of every monitored path. Keyed by the raw path bytes (Linux names are
-- bytes); WITHOUT ROWID keeps the path once, in the primary-key b-tree. `content` is last so
-- that reading the metadata never touches its overflow pages. file_type codes: 0 unknown,
-- 1 regular, 2 directory, 3 symlink, 4 fifo, 5 socket, 6 char device, 7 block device.
CREATE TABLE baseline (
    path              BLOB    NOT NULL PRIMARY KEY,
    entity_id         INTEGER NOT NULL REFERENCES entity (id),
    file_type         INTEGER NOT NULL,
    size              INTEGER NOT NULL,
    mtime_ns          INTEGER NOT NULL,
    ctime_ns          INTEGER NOT NULL,
    ino               INTEGER NOT NULL,
    dev               INTEGER NOT NULL,
    mode              INTEGER NOT NULL,
    uid               INTEGER NOT NULL,
    gid               INTEGER NOT NULL,
    nlink             INTEGER NOT NULL,
    attributes        INTEGER NOT NULL,
    unstable          INTEGER NOT NULL,
    content_truncated INTEGER NOT NULL,
    hash              BLOB,
    symlink_target    BLOB,
    acl               TEXT,
    selinux           BLOB,
    capability        BLOB,
    error             TEXT,
    content           BLOB
) WITHOUT ROWID;

-- The hash-chained journal: `record` is the change record's JSON exactly as hashed,
-- hash = BLAKE3(prev_hash || record). The other columns copy fields of the JSON for queries;
-- `fim verify` checks that they agree with it.
CREATE TABLE journal (
    sequence    INTEGER NOT NULL PRIMARY KEY,
    time_ns     INTEGER NOT NULL,
    computer    TEXT    NOT NULL,
    computer_id TEXT    NOT NULL,
    change_type TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    entity      TEXT    NOT NULL,
    path        TEXT,
    record      TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);
CREATE INDEX journal_time ON journal (time_ns);
CREATE INDEX journal_path ON journal (path);

-- The last committed sequence and hash, written in the same transaction as the records, so
-- a deleted tail (or a rewritten chain) shows.
CREATE TABLE chain_head (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    hash     BLOB    NOT NULL
);
INSERT INTO chain_head (id, sequence, hash)
VALUES (1, 0, X'0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE scan_run (
    id          INTEGER NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL,
    started_ns  INTEGER NOT NULL,
    finished_ns INTEGER NOT NULL,
    files       INTEGER NOT NULL,
    changes     INTEGER NOT NULL,
    errors      INTEGER NOT NULL
);
"#;

/// Version 2: the baselines of registry keys and services (the Windows companion's; empty on
/// Linux).
const V2: &str = r#"
-- The last known state of every monitored registry key. Keyed by the key's full name with
-- its long hive, folded to lower case (Windows compares key names without case), and the
-- registry view (0 native, 1 the 32-bit WOW6432Node view); `name` keeps the key's spelling
-- for records. `snapshot` is the key's values, direct subkeys, SDDL and last-write time as
-- JSON (registry::KeySnapshot): registry values are few per key and always read together.
CREATE TABLE registry_baseline (
    key       TEXT    NOT NULL,
    view      INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    entity_id INTEGER NOT NULL REFERENCES entity (id),
    snapshot  TEXT    NOT NULL,
    PRIMARY KEY (key, view)
) WITHOUT ROWID;

-- The last known state of every monitored Windows service, keyed by its key name folded to
-- lower case; `snapshot` is its display name, state, startup type, binary path and account
-- as JSON (service::ServiceSnapshot).
CREATE TABLE service_baseline (
    name      TEXT    NOT NULL PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entity (id),
    snapshot  TEXT    NOT NULL
) WITHOUT ROWID;
"#;

/// What [`check`] found in a file's header.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A fim database (or an empty file) at this version.
    Version(u32),
    /// Someone else's database.
    Foreign(String),
}

/// Reads the version and tells a fim (or empty) database from a foreign one.
pub fn check(conn: &Connection) -> rusqlite::Result<Found> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    if application_id != 0 && application_id != APPLICATION_ID {
        return Ok(Found::Foreign(format!(
            "its application id is {application_id:#x}"
        )));
    }
    if version == 0 && application_id == 0 {
        let foreign_table: Option<String> = conn
            .query_row("SELECT name FROM sqlite_schema LIMIT 1", [], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(table) = foreign_table {
            return Ok(Found::Foreign(format!(
                "it already holds `{table}` but no fim schema version"
            )));
        }
    }
    Ok(Found::Version(u32::try_from(version).unwrap_or(u32::MAX)))
}

/// Applies every missing migration, each in its own transaction with its version bump.
/// Re-checks the version under the write lock, since another process may have migrated first.
/// Returns what the file is at the end (a version above [`CURRENT_VERSION`] is left alone).
pub fn migrate(conn: &Connection) -> rusqlite::Result<Found> {
    migrate_through(conn, MIGRATIONS)
}

/// [`migrate`] with a given list of steps (tests add a step that fails half-way).
pub(crate) fn migrate_through(conn: &Connection, migrations: &[&str]) -> rusqlite::Result<Found> {
    loop {
        let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        let found = check(&tx)?;
        let Found::Version(version) = found else {
            return Ok(found);
        };
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|index| migrations.get(index))
        else {
            return Ok(found);
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
        tracing::info!(
            from = version,
            to = version + 1,
            "migrated the fim database"
        );
    }
}
