//! `fim-collector machines`: the journals the workspace knows, read from its database.
use fim_collector::{chain::hex, store::Machine};
use fim_model::Timestamp;

pub(crate) fn print(database: &crate::DatabaseArgs, json: bool) -> anyhow::Result<()> {
    if database.database.is_none() {
        let path = crate::database_path(&database.state_dir);
        if !path.exists() {
            anyhow::bail!("no workspace database at {}", path.display());
        }
    }
    let (store, _) = database.open(false)?;
    for machine in store.machines()? {
        if json {
            println!("{}", as_json(&machine));
        } else {
            println!("{}", as_line(&machine));
        }
    }
    Ok(())
}

fn status(machine: &Machine) -> String {
    let chain = match &machine.flag_reason {
        Some(reason) => format!("FLAGGED: {reason}"),
        None => "intact".to_string(),
    };
    match machine.gaps {
        0 => chain,
        gaps => format!(
            "{chain}; {} records pruned on the agent before the workspace received them ({gaps} gaps)",
            machine.pruned_unreceived
        ),
    }
}

fn as_line(machine: &Machine) -> String {
    format!(
        "{} ({}) journal {}: acknowledged through {} ({} records), last seen {}, {}",
        machine.computer,
        machine.key.computer_id,
        machine.key.journal_id,
        machine.acknowledged.sequence,
        machine.records,
        Timestamp::from_unix_nanos(machine.last_seen_ns).to_rfc3339(),
        status(machine)
    )
}

fn as_json(machine: &Machine) -> serde_json::Value {
    serde_json::json!({
        "computer_id": machine.key.computer_id,
        "computer": machine.computer,
        "journal_id": machine.key.journal_id,
        "acknowledged_sequence": machine.acknowledged.sequence,
        "acknowledged_hash": hex(&machine.acknowledged.hash),
        "first_seen": Timestamp::from_unix_nanos(machine.first_seen_ns).to_rfc3339(),
        "last_seen": Timestamp::from_unix_nanos(machine.last_seen_ns).to_rfc3339(),
        "agent_version": machine.agent_version,
        "platform": machine.platform,
        "strategy": machine.strategy,
        "chain_status": if machine.flag_reason.is_some() { "flagged" } else { "intact" },
        "flag_reason": machine.flag_reason,
        "records": machine.records,
        "pruned_unreceived": machine.pruned_unreceived,
        "gaps": machine.gaps,
    })
}
