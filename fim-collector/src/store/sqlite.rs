//! The embedded backend: one SQLite file in the collector's state directory.
//!
//! One connection behind a mutex: SQLite has one writer at a time anyway, and every ingest
//! is one IMMEDIATE transaction that reads the acknowledged head, checks the batch and
//! writes, so two streams for one journal (or two collector processes on one file) cannot
//! both extend it. WAL with `synchronous=FULL`: an Ack is sent only after a commit that is
//! on disk, so a collector killed at any point has either the whole batch or none of it.
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    sqlite_schema, token_from, AgentHello, CollectorStore, GapOutcome, Ingested, JournalKey,
    Machine, PrunedGap, MACHINE_COLUMNS, MACHINE_STATS, MAX_JOURNALS_PER_COMPUTER, NO_STATS,
    TOKEN_COLUMNS,
};
use crate::auth::ApiToken;
use crate::{
    chain::{self, Head, IncomingRecord},
    error::CollectorError,
};
use fim_engine::state::Digest;
use fim_kql::{CompiledQuery, Dialect, Rows};

/// The database's name in the state directory.
pub const DATABASE_FILE: &str = "collector.db";

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Queries run here, read-only: WAL lets them read beside the writer, and a query
    /// running to its time limit never holds the writer's lock.
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens `state_dir/collector.db`. A missing database is created only on a first run
    /// (the state directory missing or empty) or with `init`; an existing file that is not a
    /// sound workspace database is refused, never replaced.
    pub fn open(state_dir: &Path, init: bool) -> Result<SqliteStore, CollectorError> {
        let path = state_dir.join(DATABASE_FILE);
        let exists = path.exists();
        if !exists && !init && !first_run(state_dir) {
            return Err(CollectorError::Missing {
                path,
                reason: "the state directory holds other files but not the database, which \
                         may have been deleted or moved; pass --init to start a new workspace"
                    .to_string(),
            });
        }
        if !exists {
            create_private_dir(state_dir)?;
        }
        let fail = |action| {
            let path = path.clone();
            move |source| CollectorError::Sqlite {
                path,
                action,
                source,
            }
        };
        let mut conn = Connection::open(&path).map_err(fail("opening"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(fail("setting the busy timeout"))?;
        if exists {
            let problem =
                sqlite_schema::problem(&conn).map_err(|source| CollectorError::Unusable {
                    path: path.clone(),
                    reason: source.to_string(),
                })?;
            if let Some(reason) = problem {
                return Err(CollectorError::Unusable { path, reason });
            }
            let was = sqlite_schema::upgrade(&mut conn).map_err(fail("upgrading the schema"))?;
            if was != sqlite_schema::VERSION {
                tracing::info!(path = %path.display(), from = was, to = sqlite_schema::VERSION,
                    "upgraded the workspace database (hourly counts filled from the records)");
            }
        } else {
            sqlite_schema::create(&mut conn).map_err(fail("creating the schema"))?;
            tracing::info!(path = %path.display(), "created a new workspace database");
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail("switching to WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail("setting synchronous=FULL"))?;
        let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(fail("opening the query connection"))?;
        reader
            .busy_timeout(Duration::from_secs(5))
            .map_err(fail("setting the busy timeout"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (SQLite
        // rolls it back when it is dropped), so the connection is still sound.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> CollectorError + '_ {
        move |source| CollectorError::Sqlite {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

fn first_run(state_dir: &Path) -> bool {
    match std::fs::read_dir(state_dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CollectorError> {
    fim_engine::platform::create_private_dir(dir)
        .or_else(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(error),
        })
        .map_err(|source| CollectorError::StateDir {
            path: dir.to_path_buf(),
            source,
        })
}

fn digest(bytes: Vec<u8>) -> rusqlite::Result<Digest> {
    Digest::try_from(bytes.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            bytes.len(),
            rusqlite::types::Type::Blob,
            "a hash is not 32 bytes".into(),
        )
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn machine_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Machine> {
    Ok(Machine {
        key: JournalKey {
            computer_id: row.get(0)?,
            journal_id: row.get(1)?,
        },
        computer: row.get(2)?,
        acknowledged: Head {
            sequence: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            hash: digest(row.get(4)?)?,
        },
        first_seen_ns: row.get(5)?,
        last_seen_ns: row.get(6)?,
        agent_version: row.get(7)?,
        platform: row.get(8)?,
        strategy: row.get(9)?,
        flag_reason: row.get(10)?,
        records: u64::try_from(row.get::<_, i64>(11)?).unwrap_or(0),
        pruned_unreceived: u64::try_from(row.get::<_, i64>(12)?).unwrap_or(0),
        gaps: u64::try_from(row.get::<_, i64>(13)?).unwrap_or(0),
    })
}

fn read_machine(conn: &Connection, key: &JournalKey) -> rusqlite::Result<Option<Machine>> {
    conn.query_row(
        &format!(
            "SELECT {MACHINE_COLUMNS}, {NO_STATS} FROM machine m \
             WHERE m.computer_id = ?1 AND m.journal_id = ?2"
        ),
        params![key.computer_id, key.journal_id],
        machine_row,
    )
    .optional()
}

enum CapError {
    Sqlite(rusqlite::Error),
    Refused(CollectorError),
}

/// Refuses a journal new to the workspace when its computer id has opened
/// [`MAX_JOURNALS_PER_COMPUTER`] already (a known journal is always let back in).
fn check_journal_cap(conn: &Connection, key: &JournalKey) -> Result<(), CapError> {
    let (known, journals): (bool, i64) = conn
        .query_row(
            "SELECT coalesce(max(journal_id = ?2), 0), count(*) FROM machine \
             WHERE computer_id = ?1",
            params![key.computer_id, key.journal_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(CapError::Sqlite)?;
    if known || usize::try_from(journals).unwrap_or(usize::MAX) < MAX_JOURNALS_PER_COMPUTER {
        return Ok(());
    }
    Err(CapError::Refused(CollectorError::TooManyJournals {
        computer_id: key.computer_id.clone(),
        journal_id: key.journal_id.clone(),
        max: MAX_JOURNALS_PER_COMPUTER,
    }))
}

/// Stores checked records; one already stored (a replay) is skipped by the insert itself.
fn insert_records(
    conn: &Connection,
    key: &JournalKey,
    records: &[chain::CheckedRecord],
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(fim_kql::schema::SQLITE_INSERT)?;
    for record in records {
        insert.execute(params![
            key.computer_id,
            key.journal_id,
            to_i64(record.sequence),
            record.time_generated_ns,
            record.computer,
            record.config_change_type,
            record.change_category,
            record.entity,
            record.path,
            record.record_json,
            record.prev_hash.to_vec(),
            record.hash.to_vec()
        ])?;
    }
    Ok(())
}

/// Flags the journal unless it is flagged already (the first reason is the evidence);
/// later reasons go to the log only.
fn flag(conn: &Connection, key: &JournalKey, reason: &str, now_ns: i64) -> rusqlite::Result<()> {
    let changed = conn.execute(
        "UPDATE machine SET chain_status = 'flagged', flag_reason = ?3, flagged_ns = ?4 \
         WHERE computer_id = ?1 AND journal_id = ?2 AND flag_reason IS NULL",
        params![key.computer_id, key.journal_id, reason, now_ns],
    )?;
    super::log_flag(key, reason, changed > 0);
    Ok(())
}

impl CollectorStore for SqliteStore {
    fn hello(&self, hello: &AgentHello, now_ns: i64) -> Result<Machine, CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("registering a journal");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let key = &hello.key;
        check_journal_cap(&tx, key).map_err(|error| match error {
            CapError::Sqlite(source) => fail(source),
            CapError::Refused(error) => error,
        })?;
        tx.execute(
            "INSERT INTO machine (computer_id, journal_id, computer, acked_sequence, acked_hash, \
             first_seen_ns, last_seen_ns, agent_version, platform, strategy, chain_status) \
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?5, ?6, ?7, ?8, 'intact') \
             ON CONFLICT (computer_id, journal_id) DO UPDATE SET computer = excluded.computer, \
             last_seen_ns = excluded.last_seen_ns, agent_version = excluded.agent_version, \
             platform = excluded.platform, strategy = excluded.strategy",
            params![
                key.computer_id,
                key.journal_id,
                hello.computer,
                Head::GENESIS.hash.to_vec(),
                now_ns,
                hello.agent_version,
                hello.platform,
                hello.strategy
            ],
        )
        .map_err(&fail)?;
        let acknowledged = read_machine(&tx, key)
            .map_err(&fail)?
            .map(|m| m.acknowledged);
        if let Some(reason) = acknowledged.and_then(|head| chain::check_hello(head, hello.head)) {
            flag(&tx, key, &reason, now_ns).map_err(&fail)?;
        }
        let machine = read_machine(&tx, key).map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        machine.ok_or_else(|| super::unknown_journal(key))
    }

    fn ingest(
        &self,
        key: &JournalKey,
        records: &[IncomingRecord],
        max_records: usize,
        now_ns: i64,
    ) -> Result<Ingested, CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("ingesting a batch");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let Some(machine) = read_machine(&tx, key).map_err(&fail)? else {
            return Err(super::unknown_journal(key));
        };
        let stored_hash = |sequence: u64| {
            tx.query_row(
                "SELECT hash FROM configuration_change WHERE computer_id = ?1 AND journal_id = ?2 AND sequence = ?3",
                params![key.computer_id, key.journal_id, to_i64(sequence)],
                |row| digest(row.get(0)?),
            )
            .optional()
        };
        let (checked, head) = chain::check_batch(
            machine.acknowledged,
            &key.computer_id,
            records,
            max_records,
            stored_hash,
        )
        .map_err(&fail)?;
        insert_records(&tx, key, &checked.accepted).map_err(&fail)?;
        tx.execute(
            "UPDATE machine SET acked_sequence = ?3, acked_hash = ?4, last_seen_ns = ?5 \
             WHERE computer_id = ?1 AND journal_id = ?2",
            params![
                key.computer_id,
                key.journal_id,
                to_i64(head.sequence),
                head.hash.to_vec(),
                now_ns
            ],
        )
        .map_err(&fail)?;
        if let Some(reason) = &checked.flag {
            flag(&tx, key, reason, now_ns).map_err(&fail)?;
        }
        tx.commit().map_err(&fail)?;
        Ok(Ingested {
            checked,
            acknowledged: head,
        })
    }

    fn machines(&self) -> Result<Vec<Machine>, CollectorError> {
        let conn = self.lock();
        let fail = self.fail("listing machines");
        let mut statement = conn
            .prepare(&format!(
                "SELECT {MACHINE_COLUMNS}, {MACHINE_STATS} FROM machine m \
                 ORDER BY m.computer_id, m.journal_id"
            ))
            .map_err(&fail)?;
        let machines = statement
            .query_map([], machine_row)
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(machines)
    }

    fn record_gap(
        &self,
        key: &JournalKey,
        gap: &PrunedGap,
        now_ns: i64,
    ) -> Result<GapOutcome, CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("recording a gap");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let Some(machine) = read_machine(&tx, key).map_err(&fail)? else {
            return Err(super::unknown_journal(key));
        };
        let first = match super::plan_gap(machine.acknowledged, gap) {
            Ok(first) => first,
            Err(outcome) => return Ok(outcome),
        };
        tx.execute(
            "INSERT INTO journal_gap VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                key.computer_id,
                key.journal_id,
                to_i64(first - 1),
                to_i64(gap.through),
                now_ns
            ],
        )
        .map_err(&fail)?;
        tx.execute(
            "UPDATE machine SET acked_sequence = ?3, acked_hash = ?4, last_seen_ns = ?5 \
             WHERE computer_id = ?1 AND journal_id = ?2",
            params![
                key.computer_id,
                key.journal_id,
                to_i64(gap.through),
                gap.through_hash.to_vec(),
                now_ns
            ],
        )
        .map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(super::gap_recorded(key, first, gap))
    }

    fn expire_before(&self, cutoff_ns: i64) -> Result<String, CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("expiring old records");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let [records, counts] = fim_kql::schema::SQLITE_RETENTION;
        let deleted = tx.execute(records, params![cutoff_ns]).map_err(&fail)?;
        tx.execute(counts, params![cutoff_ns]).map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(format!("{deleted} records"))
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&self, query: &CompiledQuery) -> Result<Rows, CollectorError> {
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(fim_kql::sqlite::query_rows(&reader, query)?)
    }

    fn add_token(&self, token: &ApiToken, hash: &Digest) -> Result<(), CollectorError> {
        let conn = self.lock();
        let added = conn.execute(
            "INSERT INTO api_token (name, token_hash, role, created_ns, expires_ns) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
            params![
                token.name,
                hash.to_vec(),
                token.role.as_str(),
                token.created_ns,
                token.expires_ns
            ],
        );
        match added.map_err(self.fail("adding an API token"))? {
            0 => Err(CollectorError::TokenExists(token.name.clone())),
            _ => Ok(()),
        }
    }

    fn token(&self, hash: &Digest) -> Result<Option<ApiToken>, CollectorError> {
        let conn = self.lock();
        conn.query_row(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE token_hash = ?1"),
            params![hash.to_vec()],
            token_row,
        )
        .optional()
        .map_err(self.fail("looking up an API token"))
    }

    fn tokens(&self) -> Result<Vec<ApiToken>, CollectorError> {
        let conn = self.lock();
        let fail = self.fail("listing API tokens");
        let mut statement = conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_token ORDER BY name"
            ))
            .map_err(&fail)?;
        let tokens = statement
            .query_map([], token_row)
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(tokens)
    }

    fn revoke_token(&self, name: &str, now_ns: i64) -> Result<bool, CollectorError> {
        let conn = self.lock();
        let changed = conn
            .execute(
                "UPDATE api_token SET revoked_ns = ?2 WHERE name = ?1 AND revoked_ns IS NULL",
                params![name, now_ns],
            )
            .map_err(self.fail("revoking an API token"))?;
        Ok(changed > 0)
    }
}

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(token_from(
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

#[path = "sqlite_drift.rs"]
mod drift;
#[path = "sqlite_enrollment.rs"]
mod enrollment;

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
