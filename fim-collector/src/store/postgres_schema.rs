//! The PostgreSQL schema of the workspace database, and how a database is recognised as one.
//!
//! The same shape as SQLite's ([`super::sqlite_schema`]): a machine table beside fim-kql's
//! records layout ([`fim_kql::schema::POSTGRES_SCHEMA`]: daily partitions, a default
//! partition, hourly counts kept by a statement trigger). A marker table says which
//! application and version made the database, so the collector refuses a database another
//! application uses, or one with a newer schema, instead of writing into it.
use postgres::GenericClient;

/// The application the marker names.
pub const APPLICATION: &str = "fim-workspace";

pub const VERSION: i32 = 1;

/// Serialises schema creation between collectors starting together on one empty database
/// (an arbitrary constant; `pg_advisory_xact_lock` takes any bigint).
const SCHEMA_LOCK: i64 = 0x4649_4D43_5343_4845;

const MACHINES: &str = r#"
CREATE TABLE fim_workspace (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    application text        NOT NULL,
    version     integer     NOT NULL,
    created     timestamptz NOT NULL DEFAULT now()
);
-- One row per journal of a machine (a machine whose database was recreated has two).
CREATE TABLE machine (
    computer_id     text    NOT NULL,
    journal_id      text    NOT NULL,
    computer        text    NOT NULL,
    acked_sequence  bigint  NOT NULL,
    acked_hash      bytea   NOT NULL,
    first_seen_ns   bigint  NOT NULL,
    last_seen_ns    bigint  NOT NULL,
    agent_version   text    NOT NULL,
    platform        text    NOT NULL,
    strategy        text    NOT NULL,
    -- 'intact' or 'flagged'; flag_reason keeps the first reason found.
    chain_status    text    NOT NULL,
    flag_reason     text,
    flagged_ns      bigint,
    PRIMARY KEY (computer_id, journal_id)
);
-- Records an agent pruned before the workspace received them (its hard cap).
CREATE TABLE journal_gap (
    computer_id      text    NOT NULL,
    journal_id       text    NOT NULL,
    after_sequence   bigint  NOT NULL,
    through_sequence bigint  NOT NULL,
    noticed_ns       bigint  NOT NULL,
    PRIMARY KEY (computer_id, journal_id, after_sequence)
);
-- API tokens: only the BLAKE3 hash of each secret (crate::auth).
CREATE TABLE api_token (
    name        text    PRIMARY KEY,
    token_hash  bytea   NOT NULL UNIQUE,
    role        text    NOT NULL,
    created_ns  bigint  NOT NULL,
    expires_ns  bigint,
    revoked_ns  bigint
);
"#;

/// What was found in the database.
pub enum Found {
    /// Our schema at our version.
    Ours,
    /// Nothing of ours nor anything in the way: a new workspace.
    Empty,
    /// Something else, and why it is refused.
    Refused(String),
}

/// Looks at the database's `public` tables.
pub fn inspect(client: &mut impl GenericClient) -> Result<Found, postgres::Error> {
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if tables.is_empty() {
        return Ok(Found::Empty);
    }
    if !tables.iter().any(|table| table == "fim_workspace") {
        let mut shown = tables;
        shown.sort();
        shown.truncate(5);
        return Ok(Found::Refused(format!(
            "it already holds tables that are not a fim workspace's ({}), and no \
             fim_workspace marker",
            shown.join(", ")
        )));
    }
    let marker = client.query_opt("SELECT application, version FROM fim_workspace", &[])?;
    Ok(match marker {
        None => Found::Refused("its fim_workspace marker table is empty".to_string()),
        Some(row) => {
            let (application, version): (String, i32) = (row.get(0), row.get(1));
            if application != APPLICATION {
                Found::Refused(format!("it belongs to {application:?}, not {APPLICATION}"))
            } else if version != VERSION {
                Found::Refused(format!(
                    "its schema version is {version}; this collector knows version {VERSION}"
                ))
            } else {
                Found::Ours
            }
        }
    })
}

/// Creates the schema unless another collector did it first; returns what it found under
/// the lock (Empty when it created the schema).
pub fn create_if_empty(client: &mut postgres::Client) -> Result<Found, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    let found = inspect(&mut tx)?;
    if matches!(found, Found::Ours) {
        // Tables added within the version (enrollment) appear in older workspaces.
        tx.batch_execute(&super::enrollment::tables(false))?;
        tx.batch_execute(&super::drift::tables(false))?;
    }
    if matches!(found, Found::Empty) {
        tx.batch_execute(MACHINES)?;
        tx.batch_execute(&super::enrollment::tables(false))?;
        tx.batch_execute(&super::drift::tables(false))?;
        tx.batch_execute(fim_kql::schema::POSTGRES_SCHEMA)?;
        tx.execute(
            "INSERT INTO fim_workspace (application, version) VALUES ($1, $2)",
            &[&APPLICATION, &VERSION],
        )?;
    }
    tx.commit()?;
    Ok(found)
}
