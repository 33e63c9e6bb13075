//! Store types to messages.
use fim_api::collector_pb;
use fim_model::Timestamp;

use crate::store::Machine;

pub(super) fn machine(machine: &Machine) -> collector_pb::Machine {
    collector_pb::Machine {
        computer_id: machine.key.computer_id.clone(),
        computer: machine.computer.clone(),
        journal_id: machine.key.journal_id.clone(),
        acknowledged_sequence: machine.acknowledged.sequence,
        acknowledged_hash: machine.acknowledged.hash.to_vec(),
        first_seen: Timestamp::from_unix_nanos(machine.first_seen_ns).to_rfc3339(),
        last_seen: Timestamp::from_unix_nanos(machine.last_seen_ns).to_rfc3339(),
        agent_version: machine.agent_version.clone(),
        platform: machine.platform.clone(),
        strategy: machine.strategy.clone(),
        flagged: machine.flag_reason.is_some(),
        flag_reason: machine.flag_reason.clone().unwrap_or_default(),
        records: machine.records,
    }
}
