use super::*;
use crate::{chain::Head, store::contract_tests as contract};

fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state"), false).unwrap()
}

#[test]
fn replays_are_stored_once_and_a_rollback_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    contract::replays_are_stored_once_and_a_rollback_is_flagged(&store_in(&dir));
    // And it survives a reopen.
    let store = store_in(&dir);
    assert_eq!(store.machines().unwrap()[0].records, 5);
}

#[test]
fn an_edited_record_is_refused_and_flags_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    contract::an_edited_record_is_refused_and_flags_the_journal(&store_in(&dir));
}

#[test]
fn a_pruned_gap_is_recorded_and_the_chain_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    contract::a_pruned_gap_is_recorded_and_the_chain_continues_after_it(&store_in(&dir));
}

#[test]
fn retention_expires_old_records_and_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir);
    let what = contract::retention_expires_old_records_and_their_counts(&store);
    assert_eq!(what, "4 records");
    let conn = store.lock();
    let counted: i64 = conn
        .query_row(
            "SELECT coalesce(sum(changes), 0) FROM configuration_change_hourly",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counted, 4, "the counts follow the rows");
}

#[test]
fn one_computer_may_open_a_bounded_number_of_journals() {
    let dir = tempfile::tempdir().unwrap();
    contract::one_computer_may_open_a_bounded_number_of_journals(&store_in(&dir));
}

#[test]
fn two_collectors_on_one_file_store_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (store_in(&dir), store_in(&dir));
    contract::two_stores_racing_on_one_journal_store_each_record_once(&first, &second);
}

#[test]
fn a_missing_database_in_a_used_directory_and_a_foreign_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("other"), b"x").unwrap();
    let missing = SqliteStore::open(dir.path(), false).err().unwrap();
    assert!(
        matches!(missing, CollectorError::Missing { .. }),
        "{missing}"
    );
    std::fs::write(
        dir.path().join(DATABASE_FILE),
        b"not a database at all, just text",
    )
    .unwrap();
    let corrupt = SqliteStore::open(dir.path(), true).err().unwrap();
    assert!(
        matches!(corrupt, CollectorError::Unusable { .. }),
        "{corrupt}"
    );
    std::fs::remove_file(dir.path().join(DATABASE_FILE)).unwrap();
    assert!(SqliteStore::open(dir.path(), true).is_ok());
}

#[test]
fn hourly_counts_equal_the_rows_and_a_version_1_database_is_upgraded_with_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // A database as version 1 made it: the records table without hourly counts.
    {
        let conn = Connection::open(state.join(DATABASE_FILE)).unwrap();
        conn.execute_batch(sqlite_schema::MACHINES).unwrap();
        conn.execute_batch(
            "CREATE TABLE configuration_change (computer_id TEXT NOT NULL, \
             journal_id TEXT NOT NULL, sequence INTEGER NOT NULL, time_generated INTEGER NOT NULL, \
             computer TEXT NOT NULL, change_type TEXT NOT NULL, category TEXT NOT NULL, \
             entity TEXT NOT NULL, path TEXT, record TEXT NOT NULL, prev_hash BLOB NOT NULL, \
             hash BLOB NOT NULL, PRIMARY KEY (computer_id, journal_id, sequence)); \
             CREATE INDEX configuration_change_time_type ON configuration_change (time_generated, change_type); \
             CREATE INDEX configuration_change_computer_time ON configuration_change (computer, time_generated); \
             PRAGMA application_id = 1179209027; PRAGMA user_version = 1;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO machine VALUES ('old', 'j1', 'old-host', 1, zeroblob(32), 1, 1, '0.1.0', \
             'linux', 'tracepoint', 'intact', NULL, NULL)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO configuration_change VALUES ('old', 'j1', 1, 7200000000001, 'old-host', \
             'Files', 'Added', 'etc', '/etc/x', '{}', zeroblob(32), zeroblob(32))",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&state, false).unwrap();
    let records = contract::chain("host-1", 5);
    store
        .hello(&contract::hello("host-1", Head::GENESIS), 1)
        .unwrap();
    let key = contract::hello("host-1", Head::GENESIS).key;
    store.ingest(&key, &records[..3], 10, 2).unwrap();
    store.ingest(&key, &records, 10, 3).unwrap();
    let conn = store.lock();
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, sqlite_schema::VERSION);
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM configuration_change", [], |r| {
            r.get(0)
        })
        .unwrap();
    let counted: i64 = conn
        .query_row(
            "SELECT sum(changes) FROM configuration_change_hourly",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        (rows, counted),
        (6, 6),
        "the old row was counted by the upgrade"
    );
    let old_hour: i64 = conn
        .query_row(
            "SELECT changes FROM configuration_change_hourly WHERE computer_id = 'old' \
             AND hour = 7200000000000",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_hour, 1);
}

#[test]
fn enrollment_holds_on_sqlite_with_two_collectors_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (store_in(&dir), store_in(&dir));
    contract::enrollment_spends_each_use_once_and_revocation_bars_the_machine(&first, &second);
    contract::entity_reports_replace_the_computers_previous_ones(&first);
}
