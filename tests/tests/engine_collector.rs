//! Agents report to a workspace collector without loss or duplicates: a real fimd, a real
//! `fim-collector`, real TCP on loopback.
//!
//! Every test compares exact values: the workspace's records against the agent's journal
//! row by row (sequence, record text, prev_hash, hash), the acknowledged head against the
//! agent's head, and flag reasons against the text the collector must give.
use std::time::Duration;

use fim_tests::{
    collector::{
        agent_head, agent_rows, as_args, collector_count, collector_rows, enrolled_agent_args,
        free_address, machines, run_collector, settled_head, wait_until, Collector,
    },
    engine::{Engine, Workspace},
};

/// Writes `count` new files under the tree (one Added record each).
fn write_files(workspace: &Workspace, prefix: &str, count: usize) {
    for index in 0..count {
        std::fs::write(workspace.tree.join(format!("{prefix}-{index:05}")), b"x")
            .expect("write file");
    }
}

/// The one journal the workspace knows, once its acknowledged head reaches `sequence`.
fn acknowledged(state: &std::path::Path, sequence: u64, timeout: Duration) -> serde_json::Value {
    let mut found = None;
    wait_until(
        &format!("the workspace to acknowledge {sequence}"),
        timeout,
        || {
            let listed = if state.join("collector.db").exists() {
                machines(state)
            } else {
                Vec::new()
            };
            let done = listed.len() == 1 && listed[0]["acknowledged_sequence"] == sequence;
            found = listed.into_iter().next();
            done
        },
    );
    found.expect("a machine")
}

/// The workspace holds exactly the agent's journal: same rows, contiguous from 1.
fn assert_same_journal(workspace: &Workspace, collector_state: &std::path::Path, head: u64) {
    let agent = agent_rows(&workspace.state);
    let collected = collector_rows(collector_state);
    assert_eq!(
        agent.len() as u64,
        head,
        "the agent's journal is contiguous"
    );
    assert_eq!(collected.len(), agent.len(), "no record lost or duplicated");
    for (index, (got, want)) in collected.iter().zip(&agent).enumerate() {
        assert_eq!(got.sequence, index as u64 + 1, "no gap");
        assert_eq!(got, want, "record {} differs", want.sequence);
    }
}

#[test]
fn an_agent_offline_collector_catches_up_with_exactly_its_journal() {
    let workspace = Workspace::new("collector-offline");
    let address = free_address();
    let collector_state = workspace.base.join("collector");
    let agent = enrolled_agent_args(&collector_state, &address);
    let mut engine = Engine::start_with(&workspace, &as_args(&agent));
    // The case: an agent offline while it records 10,000 changes.
    write_files(&workspace, "offline", 10_000);
    let (head, head_hash) = settled_head(&workspace.state, 10_000, Duration::from_secs(240));
    engine.wait_for_log("cannot connect to the collector", Duration::from_secs(10));
    assert_eq!(collector_count(&collector_state), 0);

    let collector = Collector::start(&collector_state, &address, &[]);
    let machine = acknowledged(&collector_state, head, Duration::from_secs(120));
    assert_eq!(machine["acknowledged_hash"], head_hash.as_str());
    assert_eq!(machine["chain_status"], "intact");
    assert_eq!(machine["records"], head);
    assert_eq!(machine["platform"], "linux");
    assert_same_journal(&workspace, &collector_state, head);
    eprintln!("caught up: {head} records, head {head_hash}");

    // Live: records made while the collector runs arrive too.
    write_files(&workspace, "live", 10);
    let (live_head, live_hash) = settled_head(&workspace.state, head + 10, Duration::from_secs(60));
    let machine = acknowledged(&collector_state, live_head, Duration::from_secs(60));
    assert_eq!(machine["acknowledged_hash"], live_hash.as_str());
    assert_same_journal(&workspace, &collector_state, live_head);
    engine.wait_for_log(
        "the workspace has every record of this journal",
        Duration::from_secs(5),
    );
    drop(collector);
    engine.stop();
}

#[test]
fn a_collector_killed_mid_ingest_loses_and_duplicates_nothing() {
    let workspace = Workspace::new("collector-kill");
    let address = free_address();
    let collector_state = workspace.base.join("collector");
    let agent = enrolled_agent_args(&collector_state, &address);
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    write_files(&workspace, "kill", 3000);
    let (head, head_hash) = settled_head(&workspace.state, 3000, Duration::from_secs(120));

    // One record per batch, so that ingest takes thousands of commits and the kill lands
    // inside it.
    let collector = Collector::start(&collector_state, &address, &["--max-batch-records", "1"]);
    wait_until("ingest to begin", Duration::from_secs(60), || {
        collector_count(&collector_state) >= 100
    });
    collector.kill9();
    let at_kill = collector_count(&collector_state);
    eprintln!("collector killed with {at_kill} of {head} records stored");
    assert!(
        (100..head).contains(&at_kill),
        "the kill landed mid-ingest: {at_kill} of {head} stored"
    );

    let _collector = Collector::start(&collector_state, &address, &[]);
    let machine = acknowledged(&collector_state, head, Duration::from_secs(180));
    assert_eq!(machine["acknowledged_hash"], head_hash.as_str());
    assert_eq!(machine["chain_status"], "intact");
    assert_eq!(machine["records"], head);
    assert_same_journal(&workspace, &collector_state, head);
    engine.stop();
}

#[test]
fn an_edited_agent_record_is_refused_and_flags_the_machine() {
    let workspace = Workspace::new("collector-edit");
    let address = free_address();
    let collector_state = workspace.base.join("collector");
    let agent = enrolled_agent_args(&collector_state, &address);
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    write_files(&workspace, "edit", 20);
    let (head, _) = settled_head(&workspace.state, 20, Duration::from_secs(60));
    let rows = agent_rows(&workspace.state);
    let victim = rows[9].clone();
    let edited = victim.record.replacen("edit-", "tide-", 1);
    assert_ne!(edited, victim.record);
    {
        let conn = rusqlite::Connection::open(workspace.state.join("fim.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute(
            "UPDATE journal SET record = ?1 WHERE sequence = ?2",
            rusqlite::params![edited, victim.sequence as i64],
        )
        .unwrap();
    }
    let prev: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&victim.prev_hash[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev);
    hasher.update(edited.as_bytes());
    let computed = hasher.finalize().to_hex().to_string();
    let reason = format!(
        "record {} does not match its hash: BLAKE3(prev_hash || record) is {computed}, the agent \
         sent {} (the record was edited after it was journaled)",
        victim.sequence, victim.hash
    );

    let collector = Collector::start(&collector_state, &address, &[]);
    let machine = acknowledged(
        &collector_state,
        victim.sequence - 1,
        Duration::from_secs(60),
    );
    wait_until("the flag", Duration::from_secs(30), || {
        machines(&collector_state)[0]["chain_status"] == "flagged"
    });
    let machine_now = machines(&collector_state).remove(0);
    assert_eq!(machine_now["flag_reason"], reason.as_str());
    assert_eq!(machine_now["acknowledged_sequence"], victim.sequence - 1);
    assert_eq!(machine["records"], victim.sequence - 1);
    // Only the records before the edit are in the workspace, exactly as journaled.
    assert_eq!(collector_rows(&collector_state), rows[..9].to_vec());
    assert!(head > victim.sequence);
    assert!(collector
        .log()
        .contains(&format!("journal flagged: {reason}")));
    // The refusal is retried with back-off and refused again (logged at warn as a repeat),
    // never stored.
    wait_until("the refusal repeated", Duration::from_secs(30), || {
        collector
            .log()
            .contains(&format!("flagged journal, again: {reason}"))
    });
    assert_eq!(collector_count(&collector_state), victim.sequence - 1);
    engine.stop();
}

#[test]
fn a_rolled_back_agent_journal_is_flagged_with_both_heads() {
    let workspace = Workspace::new("collector-rollback");
    let address = free_address();
    let collector_state = workspace.base.join("collector");
    let agent = enrolled_agent_args(&collector_state, &address);
    let _collector = Collector::start(&collector_state, &address, &[]);
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    write_files(&workspace, "roll", 20);
    let (head, head_hash) = settled_head(&workspace.state, 20, Duration::from_secs(60));
    acknowledged(&collector_state, head, Duration::from_secs(60));
    engine.stop();

    // Roll the tail back by five records, chain head included: the file verifies on its own.
    let rows = agent_rows(&workspace.state);
    let keep = rows[(head - 6) as usize].clone();
    {
        let conn = rusqlite::Connection::open(workspace.state.join("fim.db")).unwrap();
        conn.execute(
            "DELETE FROM journal WHERE sequence > ?1",
            [keep.sequence as i64],
        )
        .unwrap();
        let hash: Vec<u8> = conn
            .query_row(
                "SELECT hash FROM journal WHERE sequence = ?1",
                [keep.sequence as i64],
                |row| row.get(0),
            )
            .unwrap();
        conn.execute(
            "UPDATE chain_head SET sequence = ?1, hash = ?2 WHERE id = 1",
            rusqlite::params![keep.sequence as i64, hash],
        )
        .unwrap();
    }
    let (verified, report) = workspace.verify(&[]);
    assert!(
        verified,
        "the rolled-back file verifies on its own: {report}"
    );
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    wait_until("the flag", Duration::from_secs(30), || {
        machines(&collector_state)[0]["chain_status"] == "flagged"
    });
    let (agent_sequence, agent_hash) = agent_head(&workspace.state);
    assert_eq!((agent_sequence, &agent_hash), (keep.sequence, &keep.hash));
    let machine = machines(&collector_state).remove(0);
    assert_eq!(
        machine["flag_reason"],
        format!(
            "the journal was rolled back: the workspace acknowledged record {head} (hash \
             {head_hash}), the agent's head is now record {} (hash {})",
            keep.sequence, keep.hash
        )
        .as_str()
    );
    // The workspace keeps what it acknowledged: the anchor is not rolled back with the agent.
    assert_eq!(machine["acknowledged_sequence"], head);
    assert_eq!(machine["records"], head);
    engine.stop();
}

#[test]
fn a_missing_or_corrupt_workspace_database_is_refused_loudly() {
    let base = std::env::temp_dir().join(format!("fim-collector-refuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("notes"), b"someone else's file").unwrap();
    let address = free_address();
    let serve = ["serve", "--listen", address.as_str()];
    let missing = run_collector(&serve, &base);
    assert_eq!(missing.status.code(), Some(1));
    let log = String::from_utf8_lossy(&missing.stderr);
    assert!(
        log.contains(&format!(
            "no workspace database at {}: the state directory holds other files but not the \
             database, which may have been deleted or moved; pass --init to start a new workspace",
            base.join("collector.db").display()
        )),
        "{log}"
    );
    std::fs::write(base.join("collector.db"), vec![0x5a; 8192]).unwrap();
    let corrupt = run_collector(&serve, &base);
    assert_eq!(corrupt.status.code(), Some(1));
    let log = String::from_utf8_lossy(&corrupt.stderr);
    assert!(
        log.contains(&format!(
            "refusing the workspace database {}: file is not a database",
            base.join("collector.db").display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::read(base.join("collector.db")).unwrap(),
        vec![0x5a; 8192]
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn an_agent_fails_over_to_the_next_collector_in_its_list() {
    let workspace = Workspace::new("collector-failover");
    let down = free_address();
    let up = free_address();
    let collector_state = workspace.base.join("collector");
    let _collector = Collector::start(&collector_state, &up, &[]);
    let mut agent = vec!["--collector".to_string(), down.clone()];
    agent.extend(enrolled_agent_args(&collector_state, &up));
    let mut engine = Engine::start_with(&workspace, &as_args(&agent));
    write_files(&workspace, "failover", 50);
    let (head, head_hash) = settled_head(&workspace.state, 50, Duration::from_secs(60));
    let machine = acknowledged(&collector_state, head, Duration::from_secs(60));
    assert_eq!(machine["acknowledged_hash"], head_hash.as_str());
    assert_same_journal(&workspace, &collector_state, head);
    engine.wait_for_log(
        &format!("cannot connect to the collector at {down}"),
        Duration::from_secs(5),
    );
    engine.stop();

    // The heartbeat carries each entity's baseline digest: after a restart (digests are
    // reused for minutes), the workspace holds exactly what the agent's baseline gives.
    let expected = fim_engine::store::Store::open_read_only(workspace.state.join("fim.db"))
        .expect("the agent's database")
        .entity_digests()
        .expect("entity digests");
    assert!(
        !expected.is_empty(),
        "the test tree is an entity with a baseline"
    );
    let engine = Engine::start_with(&workspace, &as_args(&agent));
    let mut reported = Vec::new();
    wait_until(
        "the heartbeat's entity digests",
        Duration::from_secs(60),
        || {
            reported = machines(&collector_state)[0]["entities"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            reported.len() == expected.len()
        },
    );
    for (got, want) in reported.iter().zip(&expected) {
        assert_eq!(got["entity"], want.entity.as_str());
        assert_eq!(got["objects"], want.objects);
        assert_eq!(got["digest"], fim_tests::collector::hex(&want.digest));
    }
    engine.stop();
}
