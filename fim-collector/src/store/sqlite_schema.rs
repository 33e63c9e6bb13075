//! The SQLite schema of the workspace database, and how a file is recognised as one.
//!
//! Plain types only (integers, text, blobs), so PostgreSQL gets the same shape. A file that
//! is not a workspace database (another application's, a newer schema, damaged pages) is
//! refused: starting afresh beside it would silently forget every acknowledged head.
use rusqlite::Connection;

/// `PRAGMA application_id` of a workspace database ("FIMC").
pub const APPLICATION_ID: i32 = 0x4649_4D43;

pub const VERSION: i32 = 2;

/// The machine table; the records and their hourly counts are fim-kql's layout
/// ([`fim_kql::schema::SQLITE_SCHEMA`]), so the workspace's queries and the dashboard read
/// what the collector writes, with no copy.
pub const MACHINES: &str = r#"
-- One row per journal of a machine (a machine whose database was recreated has two).
CREATE TABLE IF NOT EXISTS machine (
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
-- Records an agent pruned before the workspace received them (its hard cap).
CREATE TABLE IF NOT EXISTS journal_gap (
    computer_id      TEXT    NOT NULL,
    journal_id       TEXT    NOT NULL,
    after_sequence   INTEGER NOT NULL,
    through_sequence INTEGER NOT NULL,
    noticed_ns       INTEGER NOT NULL,
    PRIMARY KEY (computer_id, journal_id, after_sequence)
);
-- API tokens: only the BLAKE3 hash of each secret (crate::auth).
CREATE TABLE IF NOT EXISTS api_token (
    name        TEXT    PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    role        TEXT    NOT NULL,
    created_ns  INTEGER NOT NULL,
    expires_ns  INTEGER,
    revoked_ns  INTEGER
);
"#;

/// Version 1 kept the records without hourly counts: the schema statements add the counts
/// table and its trigger (the rest exists), and this fills the counts from the rows.
const BACKFILL_HOURLY: &str = "INSERT INTO configuration_change_hourly \
     SELECT (time_generated / 3600000000000) * 3600000000000, computer_id, computer, \
     change_type, category, count(*) FROM configuration_change GROUP BY 1, 2, 3, 4, 5";

/// Why an existing file is not a usable workspace database, None when it is.
pub fn problem(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if application_id != APPLICATION_ID {
        return Ok(Some(format!(
            "it is not a fim workspace database (application id {application_id:#x})"
        )));
    }
    if version != VERSION && version != 1 {
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
    tx.execute_batch(MACHINES)?;
    tx.execute_batch(&super::enrollment::tables(true))?;
    tx.execute_batch(&super::drift::tables(true))?;
    tx.execute_batch(fim_kql::schema::SQLITE_SCHEMA)?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()
}

/// Brings a database [`problem`] accepted to [`VERSION`], in one transaction; returns the
/// version it was at.
pub fn upgrade(conn: &mut Connection) -> rusqlite::Result<i32> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    // Idempotent: tables added within a version (tokens, enrollment) appear in older files.
    tx.execute_batch(MACHINES)?;
    tx.execute_batch(&super::enrollment::tables(true))?;
    tx.execute_batch(&super::drift::tables(true))?;
    if version == 1 {
        tx.execute_batch(fim_kql::schema::SQLITE_SCHEMA)?;
        tx.execute(BACKFILL_HOURLY, [])?;
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(version)
}
