//! Journal retention on an agent that reports to a workspace: a real fimd, a real
//! `fim-collector`, real TCP on loopback.
//!
//! `journal_keep_records` prunes only what the workspace acknowledged, so an agent cut off
//! from its collector loses nothing to retention; `journal_hard_cap_records` bounds the
//! journal anyway, and what it pruned before the workspace had it shows there as a gap
//! (`pruned_unreceived`, `gaps`), never as silence and never as tampering.
use std::time::Duration;

use fim_tests::{
    collector::{
        agent_rows, as_args, collector_rows, enrolled_agent_args, free_address, machines,
        settled_head, wait_until, Collector,
    },
    engine::{Engine, Workspace},
};

fn write_files(workspace: &Workspace, prefix: &str, count: usize) {
    for index in 0..count {
        std::fs::write(workspace.tree.join(format!("{prefix}-{index:03}")), b"x")
            .expect("write file");
    }
}

fn policy(workspace: &Workspace, extra: &str) {
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\njournal_keep_records = 5\n{extra}\n\
         [[entity]]\nname = \"tree\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        workspace.tree.display()
    ));
}

/// The one machine, once its acknowledged head reaches `sequence`.
fn acknowledged(state: &std::path::Path, sequence: u64) -> serde_json::Value {
    let mut found = None;
    wait_until(
        &format!("the workspace to acknowledge {sequence}"),
        Duration::from_secs(120),
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

fn sequences(rows: &[fim_tests::collector::Row]) -> Vec<u64> {
    rows.iter().map(|row| row.sequence).collect()
}

#[test]
fn retention_waits_for_the_workspace_and_a_hard_cap_shows_there_as_a_gap() {
    let workspace = Workspace::new("collector-retention");
    let address = free_address();
    let collector_state = workspace.base.join("collector");
    policy(&workspace, "");
    let agent = enrolled_agent_args(&collector_state, &address);
    let args = as_args(&agent);

    // The collector is down: 40 changes, then a restart, which applies retention at once.
    let engine = Engine::start_with(&workspace, &args);
    write_files(&workspace, "offline", 40);
    let (head, _) = settled_head(&workspace.state, 40, Duration::from_secs(60));
    engine.stop();
    let engine = Engine::start_with(&workspace, &args);
    std::thread::sleep(Duration::from_secs(2));
    let rows = agent_rows(&workspace.state);
    assert_eq!(
        sequences(&rows),
        (1..=head).collect::<Vec<_>>(),
        "journal_keep_records = 5 pruned nothing the workspace had not acknowledged"
    );

    // The collector comes back: the workspace gets every record.
    let collector = Collector::start(&collector_state, &address, &[]);
    let machine = acknowledged(&collector_state, head);
    assert_eq!(machine["records"], head);
    assert_eq!(machine["gaps"], 0);
    assert_eq!(collector_rows(&collector_state), rows);
    engine.stop();
    drop(collector);

    // Down again, with a hard cap of 20: 40 more changes, and the restart prunes all but
    // the newest 20 although the workspace has not seen them.
    policy(&workspace, "journal_hard_cap_records = 20\n");
    let engine = Engine::start_with(&workspace, &args);
    write_files(&workspace, "capped", 40);
    settled_head(&workspace.state, head + 40, Duration::from_secs(60));
    engine.stop();
    let mut engine = Engine::start_with(&workspace, &args);
    engine.wait_for_log(
        "were pruned by the retention settings",
        Duration::from_secs(10),
    );
    let kept = agent_rows(&workspace.state);
    let marker = kept.last().expect("the pruning marker").clone();
    assert!(
        marker.record.contains("JournalPruned")
            && marker
                .record
                .contains("no collector has answered since fimd started"),
        "{}",
        marker.record
    );
    let base = kept[0].sequence - 1;
    assert!(
        base > head,
        "the cap pruned records the workspace never had: base {base}, acknowledged {head}"
    );

    // The collector returns: the gap is reported and recorded, the rest arrives and chains.
    let _collector = Collector::start(&collector_state, &address, &[]);
    let machine = acknowledged(&collector_state, marker.sequence);
    assert_eq!(machine["chain_status"], "intact", "{machine}");
    assert_eq!(machine["gaps"], 1, "{machine}");
    assert_eq!(machine["pruned_unreceived"], base - head, "{machine}");
    assert_eq!(machine["records"], head + kept.len() as u64, "{machine}");
    let collected = collector_rows(&collector_state);
    assert_eq!(
        &collected[..rows.len()],
        &rows[..],
        "the first session's records stay"
    );
    assert_eq!(
        &collected[rows.len()..],
        &kept[..],
        "then every record after the gap"
    );
    engine.wait_for_log("reporting the gap", Duration::from_secs(5));
    engine.stop();
}
