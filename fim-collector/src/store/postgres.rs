//! The backend for large estates: a PostgreSQL database several collectors share.
//!
//! Collectors keep nothing of their own: every acknowledged head is read inside the
//! transaction that extends it, under a row lock (`SELECT ... FOR UPDATE` on the journal's
//! machine row), so two collectors handed the same agent one after the other, or at once,
//! serialise on that row and the second sees what the first committed: a batch
//! acknowledged by one is never re-inserted through another. A Hello takes an advisory lock
//! on its computer id, so the journal cap holds across collectors too.
//!
//! A batch is one `INSERT ... SELECT FROM unnest(...)` (the hourly-count trigger runs once
//! per batch). Its days' partitions are created outside the transaction, for days
//! within [`PARTITION_PAST_DAYS`] before now and [`PARTITION_FUTURE_DAYS`] after; a record
//! dated outside that window (a clock far off, or a hostile agent trying to make a
//! partition per day for a thousand years) lands in the default partition instead.
//!
//! Connections come from a small pool; one found closed (PostgreSQL restarted) is reopened
//! and the operation retried once, which is safe because Hello and ingest are idempotent
//! (the chain check skips what is already stored).
use std::{collections::HashSet, sync::Mutex};

use fim_kql::schema as layout;
use fim_model::Timestamp;
use postgres::GenericClient;

use super::{
    postgres_pool::{Fail, Pool},
    postgres_schema::{self, Found},
    token_from, AgentHello, CollectorStore, GapOutcome, Ingested, JournalKey, Machine, PrunedGap,
    MACHINE_COLUMNS, MACHINE_STATS, MAX_JOURNALS_PER_COMPUTER, NO_STATS, TOKEN_COLUMNS,
};
use crate::auth::ApiToken;
use crate::{
    chain::{self, CheckedRecord, Head, IncomingRecord},
    error::CollectorError,
};
use fim_engine::state::Digest;
use fim_kql::{CompiledQuery, Dialect, Rows};

/// Partitions are made for records at most this many days old...
pub const PARTITION_PAST_DAYS: i64 = 400;
/// ...and at most this many days ahead of the collector's clock.
pub const PARTITION_FUTURE_DAYS: i64 = 2;

const DAY_NS: i64 = 86_400_000_000_000;

/// Connections per collector by default: enough for the blocking pool's concurrent
/// batches on two cores without holding many server processes per collector.
pub const DEFAULT_CONNECTIONS: usize = 4;

pub struct PostgresStore {
    pool: Pool,
    /// The database as messages name it (no password).
    target: String,
    /// Day starts (Unix ns) whose partition exists.
    partitions: Mutex<HashSet<i64>>,
}

fn digest(target: &str, bytes: &[u8]) -> Result<Digest, Fail> {
    Digest::try_from(bytes).map_err(|_| {
        Fail::Refused(CollectorError::Unusable {
            path: target.into(),
            reason: format!("a stored hash is {} bytes, not 32", bytes.len()),
        })
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn machine_row(target: &str, row: &postgres::Row) -> Result<Machine, Fail> {
    let count = |index: usize| -> Result<u64, Fail> {
        Ok(u64::try_from(row.try_get::<_, i64>(index)?).unwrap_or(0))
    };
    Ok(Machine {
        key: JournalKey {
            computer_id: row.try_get(0)?,
            journal_id: row.try_get(1)?,
        },
        computer: row.try_get(2)?,
        acknowledged: Head {
            sequence: u64::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
            hash: digest(target, row.try_get::<_, &[u8]>(4)?)?,
        },
        first_seen_ns: row.try_get(5)?,
        last_seen_ns: row.try_get(6)?,
        agent_version: row.try_get(7)?,
        platform: row.try_get(8)?,
        strategy: row.try_get(9)?,
        flag_reason: row.try_get(10)?,
        records: count(11)?,
        pruned_unreceived: count(12)?,
        gaps: count(13)?,
    })
}

/// The journal's machine row, locked until the transaction ends.
fn lock_machine(
    target: &str,
    tx: &mut impl GenericClient,
    key: &JournalKey,
) -> Result<Option<Machine>, Fail> {
    let row = tx.query_opt(
        &format!(
            "SELECT {MACHINE_COLUMNS}, {NO_STATS} FROM machine m \
             WHERE m.computer_id = $1 AND m.journal_id = $2 FOR UPDATE OF m"
        ),
        &[&key.computer_id, &key.journal_id],
    )?;
    row.map(|row| machine_row(target, &row)).transpose()
}

/// Flags the journal unless it is flagged already (the first reason is the evidence);
/// later reasons go to the log only.
fn flag(
    tx: &mut impl GenericClient,
    key: &JournalKey,
    reason: &str,
    now_ns: i64,
) -> Result<(), Fail> {
    let changed = tx.execute(
        "UPDATE machine SET chain_status = 'flagged', flag_reason = $3, flagged_ns = $4 \
         WHERE computer_id = $1 AND journal_id = $2 AND flag_reason IS NULL",
        &[&key.computer_id, &key.journal_id, &reason, &now_ns],
    )?;
    super::log_flag(key, reason, changed > 0);
    Ok(())
}

/// Refuses a journal new to the workspace when its computer id has opened
/// [`MAX_JOURNALS_PER_COMPUTER`] already (a known journal is always let back in).
fn check_journal_cap(tx: &mut impl GenericClient, key: &JournalKey) -> Result<(), Fail> {
    let row = tx.query_one(
        "SELECT coalesce(bool_or(journal_id = $2), false), count(*) FROM machine \
         WHERE computer_id = $1",
        &[&key.computer_id, &key.journal_id],
    )?;
    let (known, journals): (bool, i64) = (row.try_get(0)?, row.try_get(1)?);
    if known || usize::try_from(journals).unwrap_or(usize::MAX) < MAX_JOURNALS_PER_COMPUTER {
        return Ok(());
    }
    Err(Fail::Refused(CollectorError::TooManyJournals {
        computer_id: key.computer_id.clone(),
        journal_id: key.journal_id.clone(),
        max: MAX_JOURNALS_PER_COMPUTER,
    }))
}

/// Stores checked records in one statement; one already stored is skipped by the insert.
fn insert_records(
    tx: &mut impl GenericClient,
    key: &JournalKey,
    records: &[CheckedRecord],
) -> Result<(), Fail> {
    if records.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&CheckedRecord) -> String| records.iter().map(f).collect::<Vec<_>>();
    let computer_ids = vec![key.computer_id.clone(); records.len()];
    let journal_ids = vec![key.journal_id.clone(); records.len()];
    let sequences: Vec<i64> = records.iter().map(|r| to_i64(r.sequence)).collect();
    let times: Vec<std::time::SystemTime> = records
        .iter()
        .map(|r| fim_kql::postgres::system_time(Timestamp::from_unix_nanos(r.time_generated_ns)))
        .collect();
    let computers = column(&|r| r.computer.clone());
    let types = column(&|r| r.config_change_type.clone());
    let categories = column(&|r| r.change_category.clone());
    let entities = column(&|r| r.entity.clone());
    let paths: Vec<Option<String>> = records.iter().map(|r| r.path.clone()).collect();
    let jsons = column(&|r| r.record_json.clone());
    let prev_hashes: Vec<Vec<u8>> = records.iter().map(|r| r.prev_hash.to_vec()).collect();
    let hashes: Vec<Vec<u8>> = records.iter().map(|r| r.hash.to_vec()).collect();
    tx.execute(
        layout::POSTGRES_INSERT_BATCH,
        &[
            &computer_ids,
            &journal_ids,
            &sequences,
            &times,
            &computers,
            &types,
            &categories,
            &entities,
            &paths,
            &jsons,
            &prev_hashes,
            &hashes,
        ],
    )?;
    Ok(())
}

enum Attempt {
    Done(Ingested),
    NeedPartitions(Vec<i64>),
}

/// The chain check of a batch against the locked head and the stored hashes of records it
/// repeats.
fn check_against_stored(
    target: &str,
    tx: &mut postgres::Transaction<'_>,
    key: &JournalKey,
    machine: &Machine,
    records: &[IncomingRecord],
    max_records: usize,
) -> Result<(chain::Checked, Head), Fail> {
    let lookup = tx.prepare(
        "SELECT hash FROM configuration_change \
         WHERE computer_id = $1 AND journal_id = $2 AND sequence = $3 LIMIT 1",
    )?;
    let stored_hash = |sequence: u64| -> Result<Option<Digest>, Fail> {
        let row = tx.query_opt(
            &lookup,
            &[&key.computer_id, &key.journal_id, &to_i64(sequence)],
        )?;
        row.map(|row| digest(target, row.try_get::<_, &[u8]>(0)?))
            .transpose()
    };
    chain::check_batch(
        machine.acknowledged,
        &key.computer_id,
        records,
        max_records,
        stored_hash,
    )
}

/// Whether `error` says the object exists already (another collector made it first).
fn already_exists(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    error.code().is_some_and(|code| {
        code == &SqlState::DUPLICATE_TABLE || code == &SqlState::UNIQUE_VIOLATION
    })
}

impl PostgresStore {
    /// Connects to `url`, creates the schema in an empty database, and refuses a database
    /// that holds anything else. `connections` is the pool's size.
    pub fn open(url: &str, connections: usize) -> Result<PostgresStore, CollectorError> {
        let pool = Pool::connect(url, connections)?;
        let store = PostgresStore {
            target: pool.target().to_string(),
            pool,
            partitions: Mutex::new(HashSet::new()),
        };
        let found = store.pool.run("creating the schema", |client| {
            Ok(postgres_schema::create_if_empty(client)?)
        })?;
        match found {
            Found::Refused(reason) => {
                return Err(CollectorError::Unusable {
                    path: store.target.clone().into(),
                    reason,
                })
            }
            Found::Empty => {
                tracing::info!(database = %store.target, "created a new workspace database")
            }
            Found::Ours => {}
        }
        store.load_partitions()?;
        let today = layout::day_start(Timestamp::now());
        store.create_partitions(&[today, today + DAY_NS]);
        Ok(store)
    }

    /// The database as messages name it (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    fn load_partitions(&self) -> Result<(), CollectorError> {
        let names: Vec<String> = self.pool.run("listing partitions", |client| {
            Ok(client
                .query(
                    "SELECT c.relname::text FROM pg_inherits i \
                     JOIN pg_class c ON c.oid = i.inhrelid \
                     WHERE i.inhparent = 'configuration_change'::regclass",
                    &[],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })?;
        let mut known = self
            .partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known.extend(layout::partition_days(&names));
        Ok(())
    }

    /// The days of `records` inside the partition window whose partition is not known.
    fn missing_days(&self, records: &[CheckedRecord], now_ns: i64) -> Vec<i64> {
        let window =
            now_ns - PARTITION_PAST_DAYS * DAY_NS..=now_ns + PARTITION_FUTURE_DAYS * DAY_NS;
        let known = self
            .partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut days: Vec<i64> = records
            .iter()
            .map(|record| record.time_generated_ns)
            .filter(|at| window.contains(at))
            .map(|at| layout::day_start(Timestamp::from_unix_nanos(at)))
            .filter(|day| !known.contains(day))
            .collect();
        days.sort_unstable();
        days.dedup();
        days
    }

    /// Creates the partitions of `days` (day starts). A failure is logged, not returned:
    /// those records go to the default partition, which is correct, only slower to expire.
    fn create_partitions(&self, days: &[i64]) {
        for &day in days {
            let ddl = layout::postgres_partition(Timestamp::from_unix_nanos(day));
            let made = self.pool.run("creating a partition", |client| {
                match client.batch_execute(&ddl) {
                    Err(error) if already_exists(&error) => Ok(()),
                    other => Ok(other?),
                }
            });
            match made {
                Ok(()) => {
                    self.partitions
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(day);
                }
                Err(error) => {
                    tracing::warn!("{error}; that day's records go to the default partition")
                }
            }
        }
    }
}

impl CollectorStore for PostgresStore {
    fn hello(&self, hello: &AgentHello, now_ns: i64) -> Result<Machine, CollectorError> {
        let key = &hello.key;
        self.pool.run("registering a journal", |client| {
            let mut tx = client.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&key.computer_id],
            )?;
            check_journal_cap(&mut tx, key)?;
            tx.execute(
                "INSERT INTO machine (computer_id, journal_id, computer, acked_sequence, \
                 acked_hash, first_seen_ns, last_seen_ns, agent_version, platform, strategy, \
                 chain_status) VALUES ($1, $2, $3, 0, $4, $5, $5, $6, $7, $8, 'intact') \
                 ON CONFLICT (computer_id, journal_id) DO UPDATE SET \
                 computer = excluded.computer, last_seen_ns = excluded.last_seen_ns, \
                 agent_version = excluded.agent_version, platform = excluded.platform, \
                 strategy = excluded.strategy",
                &[
                    &key.computer_id,
                    &key.journal_id,
                    &hello.computer,
                    &Head::GENESIS.hash.as_slice(),
                    &now_ns,
                    &hello.agent_version,
                    &hello.platform,
                    &hello.strategy,
                ],
            )?;
            let acknowledged = lock_machine(&self.target, &mut tx, key)?.map(|m| m.acknowledged);
            if let Some(reason) = acknowledged.and_then(|head| chain::check_hello(head, hello.head))
            {
                flag(&mut tx, key, &reason, now_ns)?;
            }
            let machine = lock_machine(&self.target, &mut tx, key)?;
            tx.commit()?;
            machine.ok_or_else(|| Fail::Refused(super::unknown_journal(key)))
        })
    }

    fn ingest(
        &self,
        key: &JournalKey,
        records: &[IncomingRecord],
        max_records: usize,
        now_ns: i64,
    ) -> Result<Ingested, CollectorError> {
        // Days come from the records' own times, known only after the chain check; a
        // batch with a day lacking its partition is rolled back, the partition made
        // outside any transaction (DDL on the parent would lock out every other
        // collector's inserts until commit), and the batch checked again.
        let mut make_partitions = true;
        loop {
            let attempt = self.pool.run("ingesting a batch", |client| {
                let mut tx = client.transaction()?;
                let Some(machine) = lock_machine(&self.target, &mut tx, key)? else {
                    return Err(Fail::Refused(super::unknown_journal(key)));
                };
                let (checked, head) = check_against_stored(
                    &self.target,
                    &mut tx,
                    key,
                    &machine,
                    records,
                    max_records,
                )?;
                if make_partitions {
                    let days = self.missing_days(&checked.accepted, now_ns);
                    if !days.is_empty() {
                        return Ok(Attempt::NeedPartitions(days));
                    }
                }
                insert_records(&mut tx, key, &checked.accepted)?;
                tx.execute(
                    "UPDATE machine SET acked_sequence = $3, acked_hash = $4, last_seen_ns = $5 \
                     WHERE computer_id = $1 AND journal_id = $2",
                    &[
                        &key.computer_id,
                        &key.journal_id,
                        &to_i64(head.sequence),
                        &head.hash.as_slice(),
                        &now_ns,
                    ],
                )?;
                if let Some(reason) = &checked.flag {
                    flag(&mut tx, key, reason, now_ns)?;
                }
                tx.commit()?;
                Ok(Attempt::Done(Ingested {
                    checked,
                    acknowledged: head,
                }))
            })?;
            match attempt {
                Attempt::Done(ingested) => return Ok(ingested),
                Attempt::NeedPartitions(days) => {
                    self.create_partitions(&days);
                    make_partitions = false;
                }
            }
        }
    }

    fn machines(&self) -> Result<Vec<Machine>, CollectorError> {
        self.pool.run("listing machines", |client| {
            let rows = client.query(
                &format!(
                    "SELECT {MACHINE_COLUMNS}, {MACHINE_STATS} \
                     FROM machine m ORDER BY m.computer_id, m.journal_id"
                ),
                &[],
            )?;
            rows.iter()
                .map(|row| machine_row(&self.target, row))
                .collect()
        })
    }

    fn record_gap(
        &self,
        key: &JournalKey,
        gap: &PrunedGap,
        now_ns: i64,
    ) -> Result<GapOutcome, CollectorError> {
        self.pool.run("recording a gap", |client| {
            let mut tx = client.transaction()?;
            let Some(machine) = lock_machine(&self.target, &mut tx, key)? else {
                return Err(Fail::Refused(super::unknown_journal(key)));
            };
            let first = match super::plan_gap(machine.acknowledged, gap) {
                Ok(first) => first,
                Err(outcome) => return Ok(outcome),
            };
            tx.execute(
                "INSERT INTO journal_gap VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &key.computer_id,
                    &key.journal_id,
                    &to_i64(first - 1),
                    &to_i64(gap.through),
                    &now_ns,
                ],
            )?;
            tx.execute(
                "UPDATE machine SET acked_sequence = $3, acked_hash = $4, last_seen_ns = $5 \
                 WHERE computer_id = $1 AND journal_id = $2",
                &[
                    &key.computer_id,
                    &key.journal_id,
                    &to_i64(gap.through),
                    &gap.through_hash.as_slice(),
                    &now_ns,
                ],
            )?;
            tx.commit()?;
            Ok(super::gap_recorded(key, first, gap))
        })
    }

    fn expire_before(&self, cutoff_ns: i64) -> Result<String, CollectorError> {
        let cutoff = Timestamp::from_unix_nanos(cutoff_ns);
        let dropped = self.pool.run("expiring old partitions", |client| {
            Ok(layout::postgres_drop_before(client, cutoff)?)
        })?;
        let days = layout::partition_days(&dropped);
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|day| !days.contains(day));
        Ok(match dropped.len() {
            0 => "no partition".to_string(),
            n => format!("{n} daily partitions ({})", dropped.join(", ")),
        })
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&self, query: &CompiledQuery) -> Result<Rows, CollectorError> {
        let outcome = self.pool.run("running a query", |client| {
            match fim_kql::postgres::query_rows(client, query) {
                // The server's error goes through `run`, which retries on a closed
                // connection; the adapter's own (a timeout, a decode) is passed on as is.
                Err(fim_kql::ExecError::Postgres(error)) => Err(Fail::Db(error)),
                other => Ok(other),
            }
        })?;
        Ok(outcome?)
    }

    fn add_token(&self, token: &ApiToken, hash: &Digest) -> Result<(), CollectorError> {
        let added = self.pool.run("adding an API token", |client| {
            Ok(client.execute(
                "INSERT INTO api_token (name, token_hash, role, created_ns, expires_ns) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                &[
                    &token.name,
                    &hash.as_slice(),
                    &token.role.as_str(),
                    &token.created_ns,
                    &token.expires_ns,
                ],
            )?)
        })?;
        match added {
            0 => Err(CollectorError::TokenExists(token.name.clone())),
            _ => Ok(()),
        }
    }

    fn token(&self, hash: &Digest) -> Result<Option<ApiToken>, CollectorError> {
        self.pool.run("looking up an API token", |client| {
            let row = client.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_token WHERE token_hash = $1"),
                &[&hash.as_slice()],
            )?;
            Ok(row.map(|row| token_row(&row)).transpose()?)
        })
    }

    fn tokens(&self) -> Result<Vec<ApiToken>, CollectorError> {
        self.pool.run("listing API tokens", |client| {
            let rows = client.query(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_token ORDER BY name"),
                &[],
            )?;
            Ok(rows.iter().map(token_row).collect::<Result<_, _>>()?)
        })
    }

    fn revoke_token(&self, name: &str, now_ns: i64) -> Result<bool, CollectorError> {
        let changed = self.pool.run("revoking an API token", |client| {
            Ok(client.execute(
                "UPDATE api_token SET revoked_ns = $2 WHERE name = $1 AND revoked_ns IS NULL",
                &[&name, &now_ns],
            )?)
        })?;
        Ok(changed > 0)
    }
}

fn token_row(row: &postgres::Row) -> Result<ApiToken, postgres::Error> {
    Ok(token_from(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    ))
}

#[path = "postgres_drift.rs"]
mod drift;
#[path = "postgres_enrollment.rs"]
mod enrollment;

// The throwaway server is Unix-only.
#[cfg(test)]
#[cfg(unix)]
#[path = "postgres_tests.rs"]
mod tests;
