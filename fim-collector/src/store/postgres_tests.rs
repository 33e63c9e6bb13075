//! The storage contract on a real PostgreSQL 15 server (fim-kql's throwaway one), and what
//! only PostgreSQL has: sharing one database between collectors, partitions, a server
//! restart under a pooled connection.
use super::*;
use crate::store::contract_tests as contract;
use fim_kql::pg_test::TestServer;
use postgres::{Client, NoTls};

/// A fresh database on `server`, and its URL.
fn database(server: &TestServer, name: &str) -> String {
    let mut admin = Client::connect(&server.connection_string(), NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    server.url().replace("/postgres", &format!("/{name}"))
}

fn count(url: &str, sql: &str) -> i64 {
    let mut client = Client::connect(url, NoTls).unwrap();
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Rows, hourly counts and rows in the default partition.
fn totals(url: &str) -> (i64, i64, i64) {
    (
        count(url, "SELECT count(*) FROM configuration_change"),
        count(
            url,
            "SELECT coalesce(sum(changes), 0)::bigint FROM configuration_change_hourly",
        ),
        count(url, "SELECT count(*) FROM configuration_change_default"),
    )
}

#[test]
fn the_storage_contract_holds_on_postgres() {
    let server = TestServer::start().unwrap();
    let url = database(&server, "replays");
    contract::replays_are_stored_once_and_a_rollback_is_flagged(
        &PostgresStore::open(&url, 2).unwrap(),
    );
    assert_eq!(totals(&url), (5, 5, 0), "rows, counts, default partition");
    // Reopening finds its own schema and keeps everything.
    let reopened = PostgresStore::open(&url, 1).unwrap();
    assert_eq!(reopened.machines().unwrap()[0].records, 5);

    let url = database(&server, "edited");
    contract::an_edited_record_is_refused_and_flags_the_journal(
        &PostgresStore::open(&url, 2).unwrap(),
    );

    let url = database(&server, "gaps");
    contract::a_pruned_gap_is_recorded_and_the_chain_continues_after_it(
        &PostgresStore::open(&url, 2).unwrap(),
    );

    let url = database(&server, "retention");
    let what = contract::retention_expires_old_records_and_their_counts(
        &PostgresStore::open(&url, 2).unwrap(),
    );
    assert!(
        what.starts_with("1 daily partitions (configuration_change_p"),
        "{what}"
    );
    assert_eq!(totals(&url), (4, 4, 0), "rows, counts, default partition");

    let url = database(&server, "journals");
    contract::one_computer_may_open_a_bounded_number_of_journals(
        &PostgresStore::open(&url, 2).unwrap(),
    );

    let url = database(&server, "racing");
    let (first, second) = (
        PostgresStore::open(&url, 2).unwrap(),
        PostgresStore::open(&url, 2).unwrap(),
    );
    contract::two_stores_racing_on_one_journal_store_each_record_once(&first, &second);
    assert_eq!(totals(&url), (400, 400, 0));
    let url = database(&server, "enrollment");
    let (first, second) = (
        PostgresStore::open(&url, 2).unwrap(),
        PostgresStore::open(&url, 2).unwrap(),
    );
    contract::enrollment_spends_each_use_once_and_revocation_bars_the_machine(&first, &second);
    contract::entity_reports_replace_the_computers_previous_ones(&first);
}

#[test]
fn far_dated_records_go_to_the_default_partition_a_foreign_database_is_refused_and_a_restart_is_survived(
) {
    let mut server = TestServer::start().unwrap();
    let url = database(&server, "dates");
    let store = PostgresStore::open(&url, 1).unwrap();
    // Ten days ago: a partition is made for that day; three years ago and a century ahead:
    // the default partition, so an agent cannot make the collector create one per day.
    let now = Timestamp::now().unix_nanos();
    for (id, at) in [
        ("late", now - 10 * DAY_NS),
        ("ancient", now - 3 * 365 * DAY_NS),
        ("future", now + 100 * 365 * DAY_NS),
    ] {
        store
            .hello(&contract::hello(id, Head::GENESIS), now)
            .unwrap();
        let key = contract::hello(id, Head::GENESIS).key;
        let ingested = store
            .ingest(&key, &contract::chain_at(id, 3, at), 10, now)
            .unwrap();
        assert_eq!(ingested.acknowledged.sequence, 3, "{id}");
    }
    assert_eq!(totals(&url), (9, 9, 6), "rows, counts, default partition");
    let late_day = fim_kql::schema::postgres_partition_name(Timestamp::from_unix_nanos(
        now - 10 * DAY_NS + DAY_NS / 2,
    ));
    let partitions = count(
        &url,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'configuration_change'::regclass",
    );
    // Today, tomorrow, the late day (or its neighbour: the records span 3 s), the default.
    assert!((4..=5).contains(&partitions), "{partitions} partitions");
    let in_late: i64 = count(
        &url,
        "SELECT count(*) FROM configuration_change WHERE computer_id = 'late' \
         AND tableoid::regclass::text LIKE 'configuration_change_p%'",
    );
    assert_eq!(
        in_late, 3,
        "the late records are in a day partition ({late_day})"
    );

    // PostgreSQL restarts under the pooled connection: the next batch reconnects.
    server.stop().unwrap();
    server.start_again().unwrap();
    let key = contract::hello("late", Head::GENESIS).key;
    let more = contract::chain_at("late", 5, now - 10 * DAY_NS);
    let ingested = store.ingest(&key, &more, 10, now).unwrap();
    assert_eq!(
        (ingested.acknowledged.sequence, ingested.checked.duplicates),
        (5, 3)
    );
    assert_eq!(totals(&url), (11, 11, 6));

    // A database holding another application's tables is refused, and left alone.
    let foreign = database(&server, "foreign_app");
    Client::connect(&foreign, NoTls)
        .unwrap()
        .batch_execute("CREATE TABLE invoices (id int)")
        .unwrap();
    let refused = PostgresStore::open(&foreign, 1).err().unwrap();
    assert!(
        refused
            .to_string()
            .contains("holds tables that are not a fim workspace's (invoices)"),
        "{refused}"
    );
    assert_eq!(
        count(
            &foreign,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        1
    );
    // A down server is a clear error naming the database, not a hang.
    server.stop().unwrap();
    let down = PostgresStore::open(&url, 1).err().unwrap();
    assert!(down.to_string().contains("connecting"), "{down}");
    assert!(!down.to_string().contains("password"), "{down}");
}
