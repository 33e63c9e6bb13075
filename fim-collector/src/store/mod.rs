//! Where the workspace keeps machines and records: one trait, one backend per database.
//!
//! The trait is the whole contract a backend meets, so PostgreSQL can be added beside
//! SQLite with the same features: [`CollectorStore::hello`] registers a journal and checks
//! its head, [`CollectorStore::ingest`] checks a batch with [`crate::chain`] and commits the
//! records, the new acknowledged head and any flag in one transaction, and reads the head
//! inside that transaction (not from memory), so several collectors can share one database.
//! Methods are blocking: the server calls them on tokio's blocking pool.
use crate::{
    auth::ApiToken,
    chain::{Checked, Head, IncomingRecord},
    error::CollectorError,
};
use fim_engine::state::Digest;
use fim_kql::{CompiledQuery, Dialect, Rows};

pub mod drift;
pub mod enrollment;
pub mod postgres;
mod postgres_pool;
mod postgres_schema;
pub mod sqlite;
mod sqlite_schema;

#[cfg(test)]
mod contract_tests;

pub use drift::{DriftStore, EntityReport};
pub use enrollment::EnrollmentStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One journal of one machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JournalKey {
    pub computer_id: String,
    pub journal_id: String,
}

/// What an agent says about itself in its Hello.
#[derive(Clone, Debug)]
pub struct AgentHello {
    pub key: JournalKey,
    pub computer: String,
    pub agent_version: String,
    pub platform: String,
    pub strategy: String,
    pub head: Head,
    /// The heartbeat's entity digests, None when the agent sent none.
    pub entities: Option<Vec<EntityReport>>,
}

/// The most distinct journals one computer id may open: a new database is a new journal, so
/// a few are normal, but an unbounded number would let one client fill the machine table.
pub const MAX_JOURNALS_PER_COMPUTER: usize = 16;

/// A journal as the workspace knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub key: JournalKey,
    pub computer: String,
    pub acknowledged: Head,
    pub first_seen_ns: i64,
    pub last_seen_ns: i64,
    pub agent_version: String,
    pub platform: String,
    pub strategy: String,
    /// Why the chain is flagged (the first reason found), None while intact.
    pub flag_reason: Option<String>,
    /// Records stored for the journal: counted by `machines` only (0 from `hello`), since a
    /// count costs O(records) and Hello runs inside the write transaction.
    pub records: u64,
    /// Records the agent pruned before the workspace received them, and in how many gaps
    /// (from `machines` only, like `records`).
    pub pruned_unreceived: u64,
    pub gaps: u64,
}

/// An agent's Pruned message: records after `after` through `through` are gone from its
/// journal, which continues from `through_hash`.
#[derive(Clone, Debug)]
pub struct PrunedGap {
    pub after: u64,
    pub through: u64,
    pub through_hash: Digest,
}

/// What became of a Pruned message.
#[derive(Debug)]
pub struct GapOutcome {
    /// The acknowledged head after it (the gap's end when it was recorded).
    pub acknowledged: Head,
    /// Why it was refused, None when recorded or a repeat.
    pub refused: Option<String>,
}

/// A committed batch.
#[derive(Debug)]
pub struct Ingested {
    pub checked: Checked,
    /// The acknowledged head after the commit.
    pub acknowledged: Head,
}

pub trait CollectorStore: EnrollmentStore + DriftStore + Send + Sync {
    /// Registers the journal (or updates what the agent says about itself), flags it when
    /// its head contradicts what was acknowledged, and returns it.
    fn hello(&self, hello: &AgentHello, now_ns: i64) -> Result<Machine, CollectorError>;

    /// Checks the batch against the committed head and commits what chains.
    fn ingest(
        &self,
        key: &JournalKey,
        records: &[IncomingRecord],
        max_records: usize,
        now_ns: i64,
    ) -> Result<Ingested, CollectorError>;

    /// Every journal, ordered by computer then journal id.
    fn machines(&self) -> Result<Vec<Machine>, CollectorError>;

    /// Records a gap the agent's retention made ([`crate::chain::check_gap`]) and moves the
    /// acknowledged head past it, in one transaction.
    fn record_gap(
        &self,
        key: &JournalKey,
        gap: &PrunedGap,
        now_ns: i64,
    ) -> Result<GapOutcome, CollectorError>;

    /// Retention: deletes the records before the UTC hour holding `cutoff_ns` (SQLite), or
    /// drops the daily partitions wholly before it (PostgreSQL), with their hourly counts,
    /// so the counts stay equal to the rows. Returns what went, for the log. Machines and
    /// their acknowledged heads stay: agents do not resend what was expired.
    fn expire_before(&self, cutoff_ns: i64) -> Result<String, CollectorError>;

    /// The SQL dialect queries must be compiled for.
    fn dialect(&self) -> Dialect;

    /// Runs a compiled (read-only, capped, time-limited) query. SQLite runs it on a
    /// read-only connection of its own, so a slow query never holds up ingest.
    fn query(&self, query: &CompiledQuery) -> Result<Rows, CollectorError>;

    /// Stores a new token under its hash; a name already used is refused.
    fn add_token(&self, token: &ApiToken, hash: &Digest) -> Result<(), CollectorError>;

    /// The token with this hash, revoked and expired ones included (the caller says why
    /// they are refused).
    fn token(&self, hash: &Digest) -> Result<Option<ApiToken>, CollectorError>;

    /// Every token, by name.
    fn tokens(&self) -> Result<Vec<ApiToken>, CollectorError>;

    /// Revokes the named token; false when there is none (or it was revoked already).
    fn revoke_token(&self, name: &str, now_ns: i64) -> Result<bool, CollectorError>;
}

/// The machine table's columns, in the backends' row readers' order (SQL both accept).
const MACHINE_COLUMNS: &str = "m.computer_id, m.journal_id, m.computer, m.acked_sequence, \
     m.acked_hash, m.first_seen_ns, m.last_seen_ns, m.agent_version, m.platform, m.strategy, \
     m.flag_reason";

/// Columns 11 to 13: the record count and the gaps, read only where status is displayed
/// (counting is O(records of the journal), and Hello and every ingest read the head inside
/// the write transaction).
const MACHINE_STATS: &str = "(SELECT count(*) FROM configuration_change r \
     WHERE r.computer_id = m.computer_id AND r.journal_id = m.journal_id), \
     (SELECT CAST(coalesce(sum(g.through_sequence - g.after_sequence), 0) AS BIGINT) \
     FROM journal_gap g WHERE g.computer_id = m.computer_id AND g.journal_id = m.journal_id), \
     (SELECT count(*) FROM journal_gap g \
     WHERE g.computer_id = m.computer_id AND g.journal_id = m.journal_id)";

/// Columns 11 to 13 where they are not needed.
const NO_STATS: &str = "CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT)";

/// The token table's columns, in [`token_from`]'s order.
const TOKEN_COLUMNS: &str = "name, role, created_ns, expires_ns, revoked_ns";

/// A token row; an unknown role (a newer collector's) reads as a reader, the least power.
fn token_from(
    name: String,
    role: String,
    created_ns: i64,
    expires_ns: Option<i64>,
    revoked_ns: Option<i64>,
) -> ApiToken {
    ApiToken {
        name,
        role: role.parse().unwrap_or(crate::auth::Role::Reader),
        created_ns,
        expires_ns,
        revoked_ns,
    }
}

/// Logs a flag: an error the first time (the reason kept as evidence), a warning after.
fn log_flag(key: &JournalKey, reason: &str, first: bool) {
    if first {
        tracing::error!(
            computer_id = %key.computer_id,
            journal_id = %key.journal_id,
            "journal flagged: {reason}"
        );
    } else {
        tracing::warn!(
            computer_id = %key.computer_id,
            journal_id = %key.journal_id,
            "flagged journal, again: {reason}"
        );
    }
}

/// The decision on a Pruned message: `Err(outcome)` answers at once (a repeat, a refusal),
/// `Ok(first)` records `first` to `gap.through` as never received.
fn plan_gap(acknowledged: Head, gap: &PrunedGap) -> Result<u64, GapOutcome> {
    match crate::chain::check_gap(acknowledged, gap.after, gap.through) {
        Ok(Some(first)) => Ok(first),
        Ok(None) => Err(GapOutcome {
            acknowledged,
            refused: None,
        }),
        Err(reason) => Err(GapOutcome {
            acknowledged,
            refused: Some(reason),
        }),
    }
}

/// A gap once committed: the head at its end (and the log line).
fn gap_recorded(key: &JournalKey, first: u64, gap: &PrunedGap) -> GapOutcome {
    log_gap(key, first, gap.through);
    GapOutcome {
        acknowledged: Head {
            sequence: gap.through,
            hash: gap.through_hash,
        },
        refused: None,
    }
}

/// The error for a journal that sent no Hello.
fn unknown_journal(key: &JournalKey) -> CollectorError {
    CollectorError::UnknownJournal {
        computer_id: key.computer_id.clone(),
        journal_id: key.journal_id.clone(),
    }
}

/// The gap text the logs give.
fn log_gap(key: &JournalKey, first: u64, through: u64) {
    tracing::warn!(
        computer_id = %key.computer_id,
        journal_id = %key.journal_id,
        "records {first} to {through} were pruned on the agent before the workspace received \
         them (its journal_hard_cap_records): recorded as a gap"
    );
}
