//! The SQLite schema of the workspace database, and how a file is recognised as one.
//!
//! Plain types only (integers, text, blobs), so PostgreSQL gets the same shape. A file that
//! is not a workspace database (another application's, a newer schema, damaged pages) is
//! refused: starting afresh beside it would silently forget every acknowledged head.
use rusqlite::Connection;

/// `PRAGMA application_id` of a workspace database ("FIMC").
pub const APPLICATION_ID: i32 = 0x4649_4D43;

pub const VERSION: i32 = 1;

pub const SCHEMA: &str = r#"
-- One row per journal of a machine (a machine whose database was recreated has two).
CREATE TABLE machine (
    computer_id     TEXT    NOT NULL,
    journal_id      TEXT    NOT NULL,
    computer        TEXT    NOT NULL,
    acked_sequence  INTEGER NOT NULL,
    acked_hash      BLOB    NOT NULL,
    first_seen_ns   INTEGER NOT NULL,
    last_seen_ns    INTEGER NOT NULL,
    agent_version   TEXT    NOT NULL,
    platform        TEXT    NOT NULL,
    strategy        TEXT    NOT NULL,
    -- 'intact' or 'flagged'; flag_reason keeps the first reason found.
    chain_status    TEXT    NOT NULL,
    flag_reason     TEXT,
    flagged_ns      INTEGER,
    PRIMARY KEY (computer_id, journal_id)
);

-- Every record as the agent journaled it: `record` is the JSON that was hashed,
-- hash = BLAKE3(prev_hash || record). The other columns copy fields for queries, named and
-- typed as fim-kql's `configuration_change` layout (time_generated in Unix nanoseconds), so
-- its catalog reads this table. The key makes a replayed batch unable to duplicate anything.
CREATE TABLE configuration_change (
    computer_id    TEXT    NOT NULL,
    journal_id     TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    time_generated INTEGER NOT NULL,
    computer       TEXT    NOT NULL,
    change_type    TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    entity         TEXT    NOT NULL,
    path           TEXT,
    record         TEXT    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    PRIMARY KEY (computer_id, journal_id, sequence)
);
CREATE INDEX configuration_change_time_type ON configuration_change (time_generated, change_type);
CREATE INDEX configuration_change_computer_time ON configuration_change (computer, time_generated);
"#;

/// Why an existing file is not a usable workspace database, None when it is.
pub fn problem(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if application_id != APPLICATION_ID {
        return Ok(Some(format!(
            "it is not a fim workspace database (application id {application_id:#x})"
        )));
    }
    if version != VERSION {
        return Ok(Some(format!(
            "its schema version is {version}; this collector knows version {VERSION}"
        )));
    }
    let check: String = conn.query_row("PRAGMA quick_check(1)", [], |row| row.get(0))?;
    if check != "ok" {
        return Ok(Some(format!("SQLite's check failed: {check}")));
    }
    Ok(None)
}

/// Creates the schema in a new, empty file.
pub fn create(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()
}
