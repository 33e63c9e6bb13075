//! Execution tests on a real in-memory SQLite database holding the fixture records in the
//! table the default catalog expects.
// Test helpers panic by design: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fim_kql::{sqlite, Dialect, ExecError, Options};
use rusqlite::{params, Connection};

fn database() -> Connection {
    sqlite_database()
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
fn the_byte_budget_cuts_a_large_result_and_says_so() {
    let conn = database();
    let kql = "ConfigurationChange | extend Padding = strcat(Computer, '________________________________________') \
               | project Sequence, Padding | order by Sequence asc";
    let all = sqlite::query_rows(&conn, &compile_for(Dialect::Sqlite, kql, &options())).unwrap();
    assert!(all.rows.len() >= 4 && !all.capped, "{}", all.rows.len());
    // Each row costs about 16 + 8 + 16 + 45 bytes: room for two, not three.
    let small = Options {
        max_bytes: 200,
        ..options()
    };
    let cut = sqlite::query_rows(&conn, &compile_for(Dialect::Sqlite, kql, &small)).unwrap();
    assert_eq!(cut.rows.len(), 2, "{:?}", cut.rows);
    assert!(cut.capped, "a result cut by its size is marked capped");
    assert_eq!(cut.rows[..], all.rows[..2], "the first rows, in order");
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

#[test]
fn the_suggested_schema_drops_replays_keeps_exact_hourly_counts_and_expires_old_rows() {
    use fim_kql::schema::{SQLITE_INSERT, SQLITE_RETENTION, SQLITE_SCHEMA};
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(SQLITE_SCHEMA).unwrap();
    conn.execute_batch(SQLITE_SCHEMA).unwrap();
    // The agent sends everything, reconnects, and sends it all again.
    let mut inserted = 0;
    for _ in 0..2 {
        for f in fixtures() {
            inserted += conn
                .execute(
                    SQLITE_INSERT,
                    params![
                        format!("id-{}", f.computer),
                        "journal-1",
                        f.sequence,
                        f.time.unix_nanos(),
                        f.computer,
                        f.change_type,
                        f.category,
                        f.entity,
                        f.path,
                        f.record.to_string(),
                        [0u8; 32].to_vec(),
                        [1u8; 32].to_vec()
                    ],
                )
                .unwrap();
        }
    }
    assert_eq!(inserted, 11, "the replay inserted nothing");
    let totals = |conn: &Connection| -> (i64, i64) {
        let rows = conn
            .query_row("SELECT count(*) FROM configuration_change", [], |r| {
                r.get(0)
            })
            .unwrap();
        let counted = conn
            .query_row(
                "SELECT SUM(changes) FROM configuration_change_hourly",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (rows, counted)
    };
    assert_eq!(totals(&conn), (11, 11));
    let hourly = |conn: &Connection| -> Vec<Vec<String>> {
        let mut statement = conn.prepare(&hourly_summary_sql("?1")).unwrap();
        statement
            .query_map([fourteen_days_ago().unix_nanos()], |row| {
                Ok(vec![
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?.to_string(),
                ])
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(hourly(&conn), SUMMARY_14D.map(|row| row.map(String::from)));
    // The default catalog reads this schema: the documented queries agree with the counts.
    check_documented(Dialect::Sqlite, |query| {
        sqlite::query_rows(&conn, query).unwrap()
    });
    check_rollup(Dialect::Sqlite, |query| {
        sqlite::query_rows(&conn, query).unwrap()
    });

    for statement in SQLITE_RETENTION {
        conn.execute(statement, [fourteen_days_ago().unix_nanos()])
            .unwrap();
    }
    assert_eq!(
        totals(&conn),
        (9, 9),
        "the 20- and 30-day-old records and their counts"
    );
    assert_eq!(hourly(&conn), SUMMARY_14D.map(|row| row.map(String::from)));
    check_documented(Dialect::Sqlite, |query| {
        sqlite::query_rows(&conn, query).unwrap()
    });
    check_rollup(Dialect::Sqlite, |query| {
        sqlite::query_rows(&conn, query).unwrap()
    });
}

#[test]
fn a_statement_that_would_write_is_refused_by_the_adapter() {
    let conn = database();
    let mut query = compile_for(Dialect::Sqlite, "ConfigurationChange | count", &options());
    query.sql = "DELETE FROM configuration_change".to_string();
    query.params.clear();
    assert!(matches!(
        sqlite::query_rows(&conn, &query),
        Err(ExecError::NotReadOnly)
    ));
    let count: i64 = conn
        .query_row("SELECT count(*) FROM configuration_change", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(count, 11);
}
