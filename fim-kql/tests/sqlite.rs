//! Execution tests on a real in-memory SQLite database holding the fixture records in the
//! table the default catalog expects.
// Test helpers panic by design: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fim_kql::{sqlite, Dialect, ExecError, Options};
use rusqlite::{params, Connection};

fn database() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(create_table(Dialect::Sqlite)).unwrap();
    for f in fixtures() {
        conn.execute(
            "INSERT INTO configuration_change VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                f.sequence,
                format!("id-{}", f.computer),
                f.computer,
                f.time.unix_nanos(),
                f.change_type,
                f.category,
                f.entity,
                f.path,
                f.record.to_string()
            ],
        )
        .unwrap();
    }
    conn
}

#[test]
fn every_operator_returns_exactly_the_expected_rows() {
    let conn = database();
    check_cases(Dialect::Sqlite, |query| {
        sqlite::query_rows(&conn, query).unwrap_or_else(|err| panic!("{}\n{err}", query.sql))
    });
}

#[test]
fn the_documented_queries_return_the_right_rows() {
    let conn = database();
    check_documented(Dialect::Sqlite, |query| {
        sqlite::query_rows(&conn, query).unwrap()
    });
}

#[test]
fn csv_export_equals_the_query_result() {
    let conn = database();
    let query = compile_for(Dialect::Sqlite, CSV_QUERY, &options());
    let rows = sqlite::query_rows(&conn, &query).unwrap();
    let (count, bytes) = sqlite::export_csv(&conn, &query, Vec::new()).unwrap();
    assert_eq!(count, rows.rows.len());
    check_csv(&rows, &String::from_utf8(bytes).unwrap());
}

#[test]
fn an_injection_attempt_is_a_bound_value_and_the_table_survives() {
    let conn = database();
    let query = compile_for(
        Dialect::Sqlite,
        "ConfigurationChange | where Computer == \"x'; DROP TABLE configuration_change; --\"",
        &options(),
    );
    assert!(!query.sql.contains("DROP"), "{}", query.sql);
    assert!(sqlite::query_rows(&conn, &query).unwrap().rows.is_empty());
    let count: i64 = conn
        .query_row("SELECT count(*) FROM configuration_change", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(count, 11);
}

#[test]
fn the_row_cap_bounds_every_result() {
    let conn = database();
    let capped = Options {
        row_cap: 5,
        ..options()
    };
    let query = compile_for(
        Dialect::Sqlite,
        "ConfigurationChange | project Sequence",
        &capped,
    );
    assert_eq!(query.limit, 5);
    let rows = sqlite::query_rows(&conn, &query).unwrap();
    assert_eq!(rows.rows.len(), 5);
    assert!(rows.capped);
    let query = compile_for(Dialect::Sqlite, "ConfigurationChange | take 3", &capped);
    let rows = sqlite::query_rows(&conn, &query).unwrap();
    assert_eq!((rows.rows.len(), rows.capped), (3, false));
    let query = compile_for(Dialect::Sqlite, "ConfigurationChange | take 50", &capped);
    assert_eq!(query.limit, 5);
    assert_eq!(sqlite::query_rows(&conn, &query).unwrap().rows.len(), 5);
}

#[test]
fn a_query_past_its_time_limit_is_interrupted() {
    let conn = database();
    let slow = Options {
        timeout: std::time::Duration::from_millis(0),
        ..options()
    };
    // A recursive count to 10^8: far more work than a 0 ms limit allows.
    let mut query = compile_for(Dialect::Sqlite, "ConfigurationChange | count", &slow);
    query.sql =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) \
                 SELECT count(*) AS \"Count\" FROM n LIMIT ?1"
            .to_string();
    std::thread::sleep(std::time::Duration::from_millis(2));
    match sqlite::query_rows(&conn, &query) {
        Err(ExecError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}
