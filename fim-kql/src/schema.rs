//! A storage layout for the workspace that the default catalog reads, for both backends:
//! the DDL, the insert that drops replayed duplicates, the hourly counts, and retention.
//! The collector may adopt it as it is or keep its own table with the same column names.
//!
//! - **Deduplicated** by (computer_id, journal_id, sequence): an insert of a record already
//!   stored does nothing ([`SQLITE_INSERT`], [`POSTGRES_INSERT`] use `ON CONFLICT DO
//!   NOTHING`). PostgreSQL requires a partitioned table's unique key to hold the partition
//!   key, so there the key also holds `time_generated`; a replay carries the agent's bytes
//!   unchanged, time included, so it is still caught. (A sequence seen again with another
//!   time is a rewritten journal, which the collector's chain check flags before inserting.)
//! - **Hourly counts** (`configuration_change_hourly`: UTC hour, computer, type, category,
//!   changes) kept by an AFTER INSERT trigger: in PostgreSQL once per statement over its
//!   transition table (one upsert per group of a batch, not per row: with a row trigger a
//!   1M-row INSERT ... SELECT took 50 s here, with this one 14 s), in SQLite per row. A skipped duplicate is in no
//!   transition table and fires no row trigger, so the counts stay exact under replays. "Changes in the last 14 days by computer and type"
//!   reads about 14 x 24 x computers x types rows instead of the records.
//! - **Partitioned by day** in PostgreSQL (`configuration_change_pYYYYMMDD`, UTC days), so
//!   retention drops whole partitions ([`postgres_drop_before`]) instead of deleting rows;
//!   [`postgres_partition`] creates a day's partition (ahead of time, and for late records).
//!   SQLite keeps one table and deletes ([`SQLITE_RETENTION`]).
//! - **Indexes** for the dashboard's and the documented queries' shapes: (time, type) and
//!   (computer, time).
use fim_model::Timestamp;

const DAY_NS: i64 = 86_400_000_000_000;

/// The SQLite schema (idempotent).
pub const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS configuration_change (
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
    UNIQUE (computer_id, journal_id, sequence)
);
CREATE INDEX IF NOT EXISTS configuration_change_time_type
    ON configuration_change (time_generated, change_type);
CREATE INDEX IF NOT EXISTS configuration_change_computer_time
    ON configuration_change (computer, time_generated);
CREATE TABLE IF NOT EXISTS configuration_change_hourly (
    hour        INTEGER NOT NULL,
    computer_id TEXT    NOT NULL,
    computer    TEXT    NOT NULL,
    change_type TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    changes     INTEGER NOT NULL,
    PRIMARY KEY (hour, computer_id, computer, change_type, category)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS configuration_change_count
AFTER INSERT ON configuration_change
BEGIN
    INSERT INTO configuration_change_hourly
    VALUES ((NEW.time_generated / 3600000000000) * 3600000000000, NEW.computer_id,
            NEW.computer, NEW.change_type, NEW.category, 1)
    ON CONFLICT (hour, computer_id, computer, change_type, category)
    DO UPDATE SET changes = changes + 1;
END;
";

/// Insert one record: computer_id, journal_id, sequence, time (ns), computer, change_type,
/// category, entity, path, record JSON, prev_hash, hash (the agent's hash-chain link:
/// hash = BLAKE3(prev_hash || record), kept so the workspace can prove its copy). A
/// duplicate is skipped (0 rows changed).
pub const SQLITE_INSERT: &str = "INSERT INTO configuration_change \
    (computer_id, journal_id, sequence, time_generated, computer, change_type, category, \
    entity, path, record, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
    ON CONFLICT DO NOTHING";

/// Retention, two statements each binding `?1`, the cutoff in Unix nanoseconds: records and
/// counts before the start of the cutoff's hour go, so the counts stay equal to the rows.
pub const SQLITE_RETENTION: [&str; 2] = [
    "DELETE FROM configuration_change \
     WHERE time_generated < (?1 / 3600000000000) * 3600000000000",
    "DELETE FROM configuration_change_hourly WHERE hour < (?1 / 3600000000000) * 3600000000000",
];

/// The PostgreSQL schema (idempotent; PostgreSQL 14 or later for CREATE OR REPLACE TRIGGER).
pub const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS configuration_change (
    computer_id    text        NOT NULL,
    journal_id     text        NOT NULL,
    sequence       bigint      NOT NULL,
    time_generated timestamptz NOT NULL,
    computer       text        NOT NULL,
    change_type    text        NOT NULL,
    category       text        NOT NULL,
    entity         text        NOT NULL,
    path           text,
    record         jsonb       NOT NULL,
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    PRIMARY KEY (computer_id, journal_id, sequence, time_generated)
) PARTITION BY RANGE (time_generated);
CREATE INDEX IF NOT EXISTS configuration_change_time_type
    ON configuration_change (time_generated, change_type);
CREATE INDEX IF NOT EXISTS configuration_change_computer_time
    ON configuration_change (computer, time_generated);
CREATE TABLE IF NOT EXISTS configuration_change_hourly (
    hour        timestamptz NOT NULL,
    computer_id text        NOT NULL,
    computer    text        NOT NULL,
    change_type text        NOT NULL,
    category    text        NOT NULL,
    changes     bigint      NOT NULL,
    PRIMARY KEY (hour, computer_id, computer, change_type, category)
);
CREATE TABLE IF NOT EXISTS configuration_change_default
    PARTITION OF configuration_change DEFAULT;
CREATE OR REPLACE FUNCTION configuration_change_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO configuration_change_hourly
    SELECT date_trunc('hour', time_generated, 'UTC'), computer_id, computer, change_type,
           category, count(*)
    FROM inserted_rows
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (hour, computer_id, computer, change_type, category)
    DO UPDATE SET changes = configuration_change_hourly.changes + EXCLUDED.changes;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER configuration_change_count
    AFTER INSERT ON configuration_change
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION configuration_change_count();
";

/// The PostgreSQL insert, with the same parameters as [`SQLITE_INSERT`] (the time a
/// timestamptz, the record text cast to jsonb).
pub const POSTGRES_INSERT: &str = "INSERT INTO configuration_change \
    (computer_id, journal_id, sequence, time_generated, computer, change_type, category, \
    entity, path, record, prev_hash, hash) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11, $12) \
    ON CONFLICT DO NOTHING";

/// The PostgreSQL insert of a whole batch in one statement (so the hourly-count trigger
/// runs once per batch): twelve arrays of equal length, in [`POSTGRES_INSERT`]'s column
/// order (text[], text[], bigint[], timestamptz[], text[] x 6 with the record JSON as text,
/// bytea[] x 2). Duplicates are skipped.
pub const POSTGRES_INSERT_BATCH: &str = "INSERT INTO configuration_change \
    (computer_id, journal_id, sequence, time_generated, computer, change_type, category, \
    entity, path, record, prev_hash, hash) \
    SELECT computer_id, journal_id, sequence, time_generated, computer, change_type, \
    category, entity, path, record::jsonb, prev_hash, hash \
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bytea[], $12::bytea[]) \
    AS batch(computer_id, journal_id, sequence, time_generated, computer, change_type, \
    category, entity, path, record, prev_hash, hash) \
    ON CONFLICT DO NOTHING";

/// Where records whose day has no partition go (a clock far off, or a day whose partition
/// could not be made): they are kept, never refused. Created by [`POSTGRES_SCHEMA`].
pub const POSTGRES_DEFAULT_PARTITION: &str = "configuration_change_default";

/// The UTC day `at` falls in, as `YYYY-MM-DD`, and the start of that day in nanoseconds.
fn day_of(at: Timestamp) -> (String, i64) {
    let start = at.unix_nanos().div_euclid(DAY_NS) * DAY_NS;
    let text = Timestamp::from_unix_nanos(start).to_rfc3339();
    (text.get(..10).unwrap_or("1970-01-01").to_string(), start)
}

/// The name of the partition holding `at`.
pub fn postgres_partition_name(at: Timestamp) -> String {
    format!("configuration_change_p{}", day_of(at).0.replace('-', ""))
}

/// DDL creating the partition of the UTC day holding `at` (idempotent). The bounds come
/// from our own clock arithmetic, never from a query, and DDL takes no parameters.
pub fn postgres_partition(at: Timestamp) -> String {
    let (day, start) = day_of(at);
    let (next, _) = day_of(Timestamp::from_unix_nanos(start + DAY_NS));
    format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF configuration_change \
         FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
        postgres_partition_name(at)
    )
}

/// The day of a partition name made by [`postgres_partition_name`], as its start in ns.
fn partition_start(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("configuration_change_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = format!(
        "{}-{}-{}T00:00:00Z",
        &digits[..4],
        &digits[4..6],
        &digits[6..]
    );
    Timestamp::parse_rfc3339(&text)
        .ok()
        .map(Timestamp::unix_nanos)
}

/// Of `partitions` (names), those wholly before `cutoff`, and the end of the last of them.
pub fn partitions_before(partitions: &[String], cutoff: Timestamp) -> (Vec<String>, Option<i64>) {
    let mut expired = Vec::new();
    let mut end = None;
    for name in partitions {
        if let Some(start) = partition_start(name) {
            let stop = start + DAY_NS;
            if stop <= cutoff.unix_nanos() {
                expired.push(name.clone());
                end = Some(end.map_or(stop, |e: i64| e.max(stop)));
            }
        }
    }
    (expired, end)
}

/// The start (Unix ns) of the UTC day holding `at`.
pub fn day_start(at: Timestamp) -> i64 {
    day_of(at).1
}

/// The day starts of the partitions named in `names` (others, the default one included,
/// are left out).
pub fn partition_days(names: &[String]) -> Vec<i64> {
    names
        .iter()
        .filter_map(|name| partition_start(name))
        .collect()
}

/// Creates the partitions of every UTC day from `from` to `to` (both included).
#[cfg(feature = "postgres")]
pub fn postgres_ensure_partitions(
    client: &mut postgres::Client,
    from: Timestamp,
    to: Timestamp,
) -> Result<usize, postgres::Error> {
    let mut day = day_of(from).1;
    let mut created = 0;
    while day <= to.unix_nanos() {
        client.batch_execute(&postgres_partition(Timestamp::from_unix_nanos(day)))?;
        created += 1;
        day += DAY_NS;
    }
    Ok(created)
}

/// Retention: drops the partitions wholly before `cutoff`, those days' rows in the default
/// partition, and their hourly counts, in one transaction. Returns the dropped partitions' names.
#[cfg(feature = "postgres")]
pub fn postgres_drop_before(
    client: &mut postgres::Client,
    cutoff: Timestamp,
) -> Result<Vec<String>, postgres::Error> {
    let mut tx = client.transaction()?;
    let names: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'configuration_change'::regclass",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let (expired, end) = partitions_before(&names, cutoff);
    for name in &expired {
        // Names are ours (checked by partition_start), not user text.
        tx.batch_execute(&format!("DROP TABLE {name}"))?;
    }
    if let Some(end) = end {
        let end = crate::postgres::system_time(Timestamp::from_unix_nanos(end));
        // Rows of those days that sit in the default partition go too, or the counts
        // dropped below would no longer equal the rows.
        tx.execute(
            "DELETE FROM configuration_change_default WHERE time_generated < $1",
            &[&end],
        )?;
        tx.execute(
            "DELETE FROM configuration_change_hourly WHERE hour < $1",
            &[&end],
        )?;
    }
    tx.commit()?;
    Ok(expired)
}
