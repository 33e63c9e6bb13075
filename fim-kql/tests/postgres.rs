//! The same execution tests against a real PostgreSQL 15 server, started for the test in a
//! temporary directory (see `fim_kql::pg_test`) and stopped at the end. Missing PostgreSQL
//! binaries fail the test: `cargo xtask setup` installs them.
// Test helpers panic by design: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fim_kql::pg_test::TestServer;
use fim_kql::{postgres as pg, Dialect, ExecError, Options};
use postgres::{Client, NoTls};

fn database(server: &TestServer) -> Client {
    let mut client = Client::connect(&server.connection_string(), NoTls).unwrap();
    client
        .batch_execute(create_table(Dialect::Postgres))
        .unwrap();
    for f in fixtures() {
        let time = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(u64::try_from(f.time.unix_nanos()).unwrap());
        let record = f.record.to_string();
        client
            .execute(
                "INSERT INTO configuration_change VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)",
                &[
                    &f.sequence,
                    &format!("id-{}", f.computer),
                    &f.computer,
                    &time,
                    &f.change_type,
                    &f.category,
                    &f.entity,
                    &f.path,
                    &record,
                ],
            )
            .unwrap();
    }
    client
}

/// One server for every check (starting one takes seconds), each check reported by name.
#[test]
fn postgresql_15_returns_the_same_rows_as_sqlite() {
    let mut server = TestServer::start().expect("a throwaway PostgreSQL 15 server");
    let mut client = database(&server);
    let mut run = |query: &fim_kql::CompiledQuery| {
        pg::query_rows(&mut client, query).unwrap_or_else(|err| panic!("{}\n{err:?}", query.sql))
    };
    check_cases(Dialect::Postgres, &mut run);
    check_documented(Dialect::Postgres, &mut run);

    // CSV export equals the query result.
    let query = compile_for(Dialect::Postgres, CSV_QUERY, &options());
    let rows = pg::query_rows(&mut client, &query).unwrap();
    let (count, bytes) = pg::export_csv(&mut client, &query, Vec::new()).unwrap();
    assert_eq!(count, rows.rows.len());
    check_csv(&rows, &String::from_utf8(bytes).unwrap());

    // The row cap.
    let capped = Options {
        row_cap: 5,
        ..options()
    };
    let query = compile_for(
        Dialect::Postgres,
        "ConfigurationChange | project Sequence",
        &capped,
    );
    let rows = pg::query_rows(&mut client, &query).unwrap();
    assert_eq!((rows.rows.len(), rows.capped), (5, true));

    // The injection attempt is a value; the table is still there.
    let query = compile_for(
        Dialect::Postgres,
        "ConfigurationChange | where Computer == \"x'; DROP TABLE configuration_change; --\"",
        &options(),
    );
    assert!(!query.sql.contains("DROP"));
    assert!(pg::query_rows(&mut client, &query).unwrap().rows.is_empty());
    let count: i64 = client
        .query_one("SELECT count(*) FROM configuration_change", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 11);

    // The server's statement_timeout cancels a query past its limit.
    let slow = Options {
        timeout: std::time::Duration::from_millis(50),
        ..options()
    };
    let mut query = compile_for(Dialect::Postgres, "ConfigurationChange | count", &slow);
    query.sql =
        "SELECT count(*) AS \"Count\" FROM (SELECT pg_sleep(2)) AS s LIMIT $1::bigint".to_string();
    match pg::query_rows(&mut client, &query) {
        Err(ExecError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The adapter's transaction is read-only: a statement that writes fails in the server.
    let mut query = compile_for(Dialect::Postgres, "ConfigurationChange | count", &options());
    query.sql = "DELETE FROM configuration_change RETURNING 1::bigint AS \"Count\"".to_string();
    query.params.clear();
    let err = pg::query_rows(&mut client, &query).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(client);
    suggested_schema(&server);
    server.stop().unwrap();
}

/// The suggested schema: partitions, replays dropped, hourly counts exact, retention.
fn suggested_schema(server: &TestServer) {
    use fim_kql::schema::{
        postgres_drop_before, postgres_ensure_partitions, POSTGRES_INSERT, POSTGRES_SCHEMA,
    };
    let mut client = Client::connect(&server.connection_string(), NoTls).unwrap();
    client
        .batch_execute("CREATE SCHEMA suggested; SET search_path = suggested")
        .unwrap();
    client.batch_execute(POSTGRES_SCHEMA).unwrap();
    client.batch_execute(POSTGRES_SCHEMA).unwrap();
    let month_ago =
        fim_model::Timestamp::from_unix_nanos(now().unix_nanos() - 31 * 86_400_000_000_000);
    let days = postgres_ensure_partitions(&mut client, month_ago, now()).unwrap();
    assert_eq!(days, 32);
    let mut inserted = 0;
    for _ in 0..2 {
        for f in fixtures() {
            let time = std::time::UNIX_EPOCH
                + std::time::Duration::from_nanos(u64::try_from(f.time.unix_nanos()).unwrap());
            inserted += client
                .execute(
                    POSTGRES_INSERT,
                    &[
                        &format!("id-{}", f.computer),
                        &"journal-1",
                        &f.sequence,
                        &time,
                        &f.computer,
                        &f.change_type,
                        &f.category,
                        &f.entity,
                        &f.path,
                        &f.record.to_string(),
                        &[0u8; 32].to_vec(),
                        &[1u8; 32].to_vec(),
                    ],
                )
                .unwrap();
        }
    }
    assert_eq!(inserted, 11, "the replay inserted nothing");
    let totals = |client: &mut Client| -> (i64, i64) {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM configuration_change), \
                 (SELECT SUM(changes)::bigint FROM configuration_change_hourly)",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(totals(&mut client), (11, 11));
    let start = std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(u64::try_from(fourteen_days_ago().unix_nanos()).unwrap());
    let hourly = |client: &mut Client| -> Vec<Vec<String>> {
        client
            .query(&hourly_summary_sql("$1"), &[&start])
            .unwrap()
            .iter()
            .map(|row| {
                vec![
                    row.get::<_, String>(0),
                    row.get::<_, String>(1),
                    row.get::<_, i64>(2).to_string(),
                ]
            })
            .collect()
    };
    assert_eq!(
        hourly(&mut client),
        SUMMARY_14D.map(|row| row.map(String::from))
    );
    check_documented(Dialect::Postgres, |query| {
        pg::query_rows(&mut client, query).unwrap()
    });
    check_rollup(Dialect::Postgres, |query| {
        pg::query_rows(&mut client, query).unwrap()
    });

    let dropped = postgres_drop_before(&mut client, fourteen_days_ago()).unwrap();
    assert_eq!(dropped.len(), 17, "{dropped:?}");
    assert_eq!(
        totals(&mut client),
        (9, 9),
        "the 20- and 30-day-old records and their counts"
    );
    assert_eq!(
        hourly(&mut client),
        SUMMARY_14D.map(|row| row.map(String::from))
    );
    check_documented(Dialect::Postgres, |query| {
        pg::query_rows(&mut client, query).unwrap()
    });
    check_rollup(Dialect::Postgres, |query| {
        pg::query_rows(&mut client, query).unwrap()
    });

    // One batch of nine replays and one new record: the statement's counts add exactly one.
    let inserted = client
        .execute(
            "INSERT INTO configuration_change SELECT * FROM configuration_change \
             UNION ALL SELECT computer_id, 'journal-2', sequence, time_generated, computer, \
             change_type, category, entity, path, record, prev_hash, hash FROM configuration_change \
             WHERE sequence = 1 ON CONFLICT DO NOTHING",
            &[],
        )
        .unwrap();
    assert_eq!(inserted, 1);
    assert_eq!(totals(&mut client), (10, 10));
}

/// Pipeline fragments combined three at a time: every combination that compiles must give
/// the same rows on both backends (the fixed cases cannot think of every interaction).
const FRAGMENTS: &[&str] = &[
    "where Computer startswith 'win'",
    "where TimeGenerated > ago(7d)",
    "where Size > 100 or ConfigChangeType == 'Registry'",
    "where FieldsChanged has 'ValueData' or RegistryKey has 'run'",
    "where ChangeCategory in ('Added', 'Removed')",
    "extend k = tolower(strcat(Computer, '/', ConfigChangeType))",
    "extend h = bin(TimeGenerated, 1d)",
    "project Sequence, Computer, ConfigChangeType, TimeGenerated, Size",
    "project-away Entity",
    "summarize n = count(), c = dcount(Computer), t = max(TimeGenerated) by ConfigChangeType",
    "summarize count() by Computer, bin(TimeGenerated, 1d)",
    "distinct Computer, ConfigChangeType",
    "top 3 by Sequence asc",
    "order by Computer asc, Sequence asc | take 4",
    "count",
];

#[test]
fn every_three_operator_pipeline_agrees_between_sqlite_and_postgresql() {
    let server = TestServer::start().expect("a throwaway PostgreSQL 15 server");
    let mut client = database(&server);
    let conn = sqlite_database();
    let (mut compared, mut failures) = (0, Vec::new());
    for a in FRAGMENTS {
        for b in FRAGMENTS {
            for c in FRAGMENTS {
                let query = format!("ConfigurationChange | {a} | {b} | {c}");
                let lite = fim_kql::compile(
                    &query,
                    &fim_kql::Catalog::configuration_change(),
                    Dialect::Sqlite,
                    &options(),
                );
                let post = fim_kql::compile(
                    &query,
                    &fim_kql::Catalog::configuration_change(),
                    Dialect::Postgres,
                    &options(),
                );
                let (lite, post) = match (lite, post) {
                    (Ok(lite), Ok(post)) => (lite, post),
                    (Err(l), Err(p)) if l == p => continue,
                    (l, p) => panic!("{query}: compiles differently: {l:?} / {p:?}"),
                };
                let mut want = cells(&fim_kql::sqlite::query_rows(&conn, &lite).unwrap());
                let got = fim_kql::postgres::query_rows(&mut client, &post);
                let mut got = match got {
                    Ok(rows) => cells(&rows),
                    Err(err) => {
                        failures.push(format!("{query}\n  {err}\n  {}", post.sql));
                        continue;
                    }
                };
                want.sort();
                got.sort();
                if want != got {
                    failures.push(format!("{query}\n  sqlite {want:?}\n  postgres {got:?}"));
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "only {compared} pipelines compiled");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
