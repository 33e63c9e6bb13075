//! The workspace on PostgreSQL: real fimd agents, real `fim-collector` processes sharing a
//! real PostgreSQL 15 server (a throwaway cluster), real TCP on loopback.
//!
//! What a user checks: the workspace ends with exactly each agent's journal (every
//! sequence once, the same record text and hashes), the hourly counts equal the rows, the
//! acknowledged head is the agent's head, and nothing is flagged, whichever collector died
//! or however long the database was down.
use std::{process::Command, time::Duration};

use fim_kql::pg_test::TestServer;
use fim_tests::{
    collector::{
        agent_rows, as_args, collector_bin, enrolled_agent_args_in, free_address, hex,
        settled_head, wait_until, Collector, Row,
    },
    engine::{Engine, Workspace},
};
use postgres::{Client, NoTls};

fn write_files(workspace: &Workspace, prefix: &str, count: usize) {
    for index in 0..count {
        std::fs::write(workspace.tree.join(format!("{prefix}-{index:05}")), b"x")
            .expect("write file");
    }
}

/// Records stored, or None while the server is down or the schema not made yet.
fn stored(url: &str) -> Option<u64> {
    let mut client = Client::connect(url, NoTls).ok()?;
    let row = client
        .query_one("SELECT count(*) FROM configuration_change", &[])
        .ok()?;
    u64::try_from(row.get::<_, i64>(0)).ok()
}

fn workspace_rows(url: &str) -> Vec<Row> {
    let mut client = Client::connect(url, NoTls).expect("connect to the workspace");
    client
        .query(
            "SELECT sequence, record::text, prev_hash, hash FROM configuration_change \
             ORDER BY journal_id, sequence",
            &[],
        )
        .expect("read the records")
        .iter()
        .map(|row| Row {
            sequence: u64::try_from(row.get::<_, i64>(0)).expect("a positive sequence"),
            record: row.get(1),
            prev_hash: hex(row.get::<_, &[u8]>(2)),
            hash: hex(row.get::<_, &[u8]>(3)),
        })
        .collect()
}

/// `fim-collector machines --database URL --json`.
fn machines(url: &str) -> Vec<serde_json::Value> {
    let output = Command::new(collector_bin())
        .args(["machines", "--json", "--database", url])
        .output()
        .expect("run fim-collector machines");
    assert!(
        output.status.success(),
        "fim-collector machines: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("machine JSON"))
        .collect()
}

/// The record JSON as PostgreSQL's jsonb gives it back is normalised (key order, spacing),
/// so records are compared as JSON values; sequence and both hashes byte for byte.
fn assert_same_journal(workspace: &Workspace, url: &str, head: u64) {
    let agent = agent_rows(&workspace.state);
    let collected = workspace_rows(url);
    assert_eq!(
        agent.len() as u64,
        head,
        "the agent's journal is contiguous"
    );
    assert_eq!(collected.len(), agent.len(), "no record lost or duplicated");
    for (index, (got, want)) in collected.iter().zip(&agent).enumerate() {
        assert_eq!(got.sequence, index as u64 + 1, "no gap");
        assert_eq!(
            (got.sequence, &got.prev_hash, &got.hash),
            (want.sequence, &want.prev_hash, &want.hash),
            "record {} differs",
            want.sequence
        );
        let parse =
            |text: &str| -> serde_json::Value { serde_json::from_str(text).expect("record JSON") };
        assert_eq!(
            parse(&got.record),
            parse(&want.record),
            "record {}",
            want.sequence
        );
    }
    let mut client = Client::connect(url, NoTls).expect("connect");
    let counted: i64 = client
        .query_one(
            "SELECT coalesce(sum(changes), 0)::bigint FROM configuration_change_hourly",
            &[],
        )
        .expect("hourly counts")
        .get(0);
    assert_eq!(counted as u64, head, "the hourly counts equal the rows");
}

#[test]
fn two_collectors_on_one_postgresql_one_killed_and_the_database_restarted_lose_and_duplicate_nothing(
) {
    let mut server = TestServer::start().expect("a PostgreSQL 15 test server");
    let url = server.url();
    let workspace = Workspace::new("collector-pg");
    let (first, second) = (free_address(), free_address());
    // One record per batch on the first, so the kill lands inside thousands of commits.
    let collector_a = Collector::start(
        &workspace.base.join("collector-a"),
        &first,
        &["--database", &url, "--max-batch-records", "1"],
    );
    let shared_ca = workspace.base.join("collector-a").join("tls");
    let shared_ca = shared_ca.display().to_string();
    let collector_b = Collector::start(
        &workspace.base.join("collector-b"),
        &second,
        &[
            "--database",
            &url,
            "--max-batch-records",
            "1",
            "--tls-dir",
            &shared_ca,
        ],
    );
    // Both collectors share the database, so a certificate one issued is known to both;
    // they share the CA too, as the docs ask of collectors on one PostgreSQL.
    let mut agent = enrolled_agent_args_in(
        &workspace.base.join("collector-a"),
        &first,
        &["--database", &url],
    );
    agent.extend(["--collector".to_string(), second.clone()]);
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    write_files(&workspace, "pg", 3000);
    wait_until("ingest to begin", Duration::from_secs(120), || {
        stored(&url).unwrap_or(0) >= 100
    });
    collector_a.kill9();
    let at_kill = stored(&url).expect("count after the kill");
    eprintln!("collector A killed with {at_kill} records stored");
    let (head, head_hash) = settled_head(&workspace.state, 3000, Duration::from_secs(120));
    assert!(
        at_kill < head,
        "the kill landed mid-stream: {at_kill} of {head}"
    );

    // The agent goes on with B; PostgreSQL is restarted under it.
    wait_until("B to ingest", Duration::from_secs(60), || {
        stored(&url).unwrap_or(0) > at_kill
    });
    let before_stop = stored(&url).expect("count before the restart");
    assert!(
        before_stop < head,
        "the restart lands mid-ingest: {before_stop} of {head}"
    );
    server.stop().expect("stop PostgreSQL");
    std::thread::sleep(Duration::from_secs(2));
    server.start_again().expect("start PostgreSQL again");

    wait_until(
        "the workspace to hold the journal",
        Duration::from_secs(180),
        || stored(&url) == Some(head),
    );
    let listed = machines(&url);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["acknowledged_sequence"], head);
    assert_eq!(listed[0]["acknowledged_hash"], head_hash.as_str());
    assert_eq!(listed[0]["chain_status"], "intact", "{:?}", listed[0]);
    assert_eq!(listed[0]["records"], head);
    assert_same_journal(&workspace, &url, head);
    // B said loudly that the database went away.
    let log = collector_b.log();
    assert!(
        log.contains("the workspace database postgresql://fim@127.0.0.1:"),
        "collector B's log:\n{log}"
    );
    engine.stop();
}
