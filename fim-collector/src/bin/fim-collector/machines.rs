//! `fim-collector machines`: the journals the workspace knows, read from its database;
//! `fim-collector drift`: which machines' monitored trees differ, entity by entity.
use fim_collector::{
    chain::hex,
    store::{drift, Machine},
};
use fim_model::Timestamp;

pub(crate) fn print(database: &crate::DatabaseArgs, json: bool) -> anyhow::Result<()> {
    if database.database.is_none() {
        let path = crate::database_path(&database.state_dir);
        if !path.exists() {
            anyhow::bail!("no workspace database at {}", path.display());
        }
    }
    let (store, _) = database.open(false)?;
    let reports = store.entity_reports()?;
    for machine in store.machines()? {
        if json {
            let mut value = as_json(&machine);
            value["entities"] = reports
                .iter()
                .filter(|(computer, _)| *computer == machine.key.computer_id)
                .map(|(_, report)| {
                    serde_json::json!({
                        "entity": report.entity,
                        "objects": report.objects,
                        "digest": hex(&report.digest),
                        "reported": Timestamp::from_unix_nanos(report.reported_ns).to_rfc3339(),
                    })
                })
                .collect();
            println!("{value}");
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

/// `fim-collector drift`: for each entity, the variants of its tree and who holds each; an
/// entity every reporting machine holds alike says so in one line.
pub(crate) fn drift(database: &crate::DatabaseArgs, json: bool) -> anyhow::Result<()> {
    let (store, _) = database.open(false)?;
    for entity in drift::groups(&store.entity_reports()?) {
        if json {
            let variants: Vec<_> = entity
                .variants
                .iter()
                .map(|variant| {
                    serde_json::json!({
                        "digest": hex(&variant.digest),
                        "objects": variant.objects,
                        "computers": variant.computers,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "entity": entity.entity,
                    "drifted": entity.variants.len() > 1 || !entity.missing.is_empty(),
                    "variants": variants,
                    "missing": entity.missing,
                })
            );
            continue;
        }
        match (entity.variants.as_slice(), entity.missing.is_empty()) {
            ([only], true) => println!(
                "{}: the same on all {} machines ({} objects)",
                entity.entity,
                only.computers.len(),
                only.objects
            ),
            (variants, _) => {
                println!("{}: DRIFTED, {} variants", entity.entity, variants.len());
                for variant in variants {
                    println!(
                        "  {} ({} objects): {}",
                        &hex(&variant.digest)[..16],
                        variant.objects,
                        variant.computers.join(", ")
                    );
                }
                if !entity.missing.is_empty() {
                    println!("  not monitored on: {}", entity.missing.join(", "));
                }
            }
        }
    }
    Ok(())
}
