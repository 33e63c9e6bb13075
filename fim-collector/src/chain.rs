//! The chain check every backend applies, inside its ingest transaction.
//!
//! The workspace anchors each agent's chain: it knows the last record it committed for a
//! journal (its sequence and hash), so the next record must carry that hash as its
//! `prev_hash`, and its own hash must be `BLAKE3(prev_hash || record)` (the engine's
//! [`chain_hash`], the function the agent's journal used). A record that does not chain is
//! refused, not stored, and flags the journal; so does a head the workspace already
//! acknowledged that has changed (history rolled back or rewritten). A record the workspace
//! already holds with the same hash is a harmless replay (an Ack lost with a collector): it
//! is counted, not stored again.
use fim_engine::{state::Digest, store::journal::chain_hash};
use fim_model::ChangeRecord;

/// A journal position: the last record committed (0 and 32 zero bytes before the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub sequence: u64,
    pub hash: Digest,
}

impl Head {
    pub const GENESIS: Head = Head {
        sequence: 0,
        hash: fim_engine::store::journal::GENESIS_HASH,
    };
}

/// A record as the agent sent it (nothing checked yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingRecord {
    pub sequence: u64,
    pub record_json: Vec<u8>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// A record that chains, with the columns the workspace queries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRecord {
    pub sequence: u64,
    pub time_generated_ns: i64,
    pub computer: String,
    pub config_change_type: String,
    pub change_category: String,
    pub entity: String,
    pub path: Option<String>,
    pub record_json: String,
    pub prev_hash: Digest,
    pub hash: Digest,
}

/// A record (sequence 0: the whole batch) not stored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub sequence: u64,
    pub reason: String,
    pub duplicate: bool,
}

/// What a batch comes to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub accepted: Vec<CheckedRecord>,
    pub refused: Vec<Refusal>,
    pub duplicates: u32,
    /// Why the journal is to be flagged, when the batch shows tampering.
    pub flag: Option<String>,
}

pub fn hex(bytes: &[u8]) -> String {
    fim_engine::change::hex(bytes)
}

/// Why an agent's Hello flags its journal: its head is before what the workspace
/// acknowledged (rolled back), or at it with another hash (rewritten). None otherwise; a
/// head further on is checked record by record.
/// What an agent's Pruned message asks of a journal acknowledged through `acknowledged`:
/// Ok(None) when the gap ends at or before it (a repeat, nothing to do), Ok(Some(first))
/// when records `first` to `through` are to be recorded as never received, Err with the
/// reason when the message contradicts the workspace (it claims a head the workspace never
/// acknowledged).
pub fn check_gap(acknowledged: Head, after: u64, through: u64) -> Result<Option<u64>, String> {
    if through <= acknowledged.sequence {
        return Ok(None);
    }
    if after > acknowledged.sequence {
        return Err(format!(
            "the agent says records after {after} were pruned, but the workspace holds this \
             journal only through record {}",
            acknowledged.sequence
        ));
    }
    Ok(Some(acknowledged.sequence + 1))
}

pub fn check_hello(acknowledged: Head, agent: Head) -> Option<String> {
    if agent.sequence < acknowledged.sequence {
        return Some(format!(
            "the journal was rolled back: the workspace acknowledged record {} (hash {}), the \
             agent's head is now record {} (hash {})",
            acknowledged.sequence,
            hex(&acknowledged.hash),
            agent.sequence,
            hex(&agent.hash)
        ));
    }
    if agent.sequence == acknowledged.sequence && agent.hash != acknowledged.hash {
        return Some(format!(
            "the journal was rewritten: the workspace acknowledged record {} with hash {}, the \
             agent's head is that record with hash {}",
            acknowledged.sequence,
            hex(&acknowledged.hash),
            hex(&agent.hash)
        ));
    }
    None
}

/// Checks a batch against the journal's committed head. `stored_hash` gives the hash the
/// workspace holds for an earlier sequence (for replays). Records are examined in order;
/// after the first refusal that is not a duplicate the rest of the batch is refused unseen
/// (nothing after a break can chain).
pub fn check_batch<E>(
    head: Head,
    computer_id: &str,
    records: &[IncomingRecord],
    max_records: usize,
    mut stored_hash: impl FnMut(u64) -> Result<Option<Digest>, E>,
) -> Result<(Checked, Head), E> {
    let mut checked = Checked::default();
    if records.is_empty() || records.len() > max_records {
        let reason = if records.is_empty() {
            "the batch is malformed: it holds no records".to_string()
        } else {
            format!(
                "the batch is malformed: it holds {} records, more than the limit of {max_records}",
                records.len()
            )
        };
        checked.refused.push(refusal(0, reason));
        return Ok((checked, head));
    }
    let mut cursor = head;
    for (index, record) in records.iter().enumerate() {
        let verdict = match digests(record) {
            Err(reason) => Verdict::Refuse {
                reason,
                flag: false,
            },
            Ok((_, hash)) if record.sequence <= cursor.sequence => {
                replayed(record.sequence, hash, stored_hash(record.sequence)?)
            }
            Ok((prev_hash, hash)) => next_link(cursor, computer_id, record, prev_hash, hash),
        };
        match verdict {
            Verdict::Accept(accepted) => {
                cursor = Head {
                    sequence: accepted.sequence,
                    hash: accepted.hash,
                };
                checked.accepted.push(*accepted);
            }
            Verdict::Duplicate => {
                checked.duplicates += 1;
                checked.refused.push(Refusal {
                    sequence: record.sequence,
                    reason: format!(
                        "record {} was already acknowledged (a replay): not stored again",
                        record.sequence
                    ),
                    duplicate: true,
                });
            }
            Verdict::Refuse { reason, flag } => {
                let rest = records.len() - index - 1;
                let shown = if rest > 0 {
                    format!("{reason} ({rest} records after it in the batch were not examined)")
                } else {
                    reason.clone()
                };
                checked.refused.push(refusal(record.sequence, shown));
                if flag {
                    checked.flag = Some(reason);
                }
                break;
            }
        }
    }
    Ok((checked, cursor))
}

enum Verdict {
    Accept(Box<CheckedRecord>),
    Duplicate,
    Refuse { reason: String, flag: bool },
}

fn refusal(sequence: u64, reason: String) -> Refusal {
    Refusal {
        sequence,
        reason,
        duplicate: false,
    }
}

fn digests(record: &IncomingRecord) -> Result<(Digest, Digest), String> {
    let digest = |bytes: &[u8], name: &str| {
        Digest::try_from(bytes).map_err(|_| {
            format!(
                "record {} is malformed: its {name} is {} bytes, not 32",
                record.sequence,
                bytes.len()
            )
        })
    };
    if record.sequence == 0 {
        return Err("record 0 is malformed: sequences start at 1".to_string());
    }
    Ok((
        digest(&record.prev_hash, "prev_hash")?,
        digest(&record.hash, "hash")?,
    ))
}

/// A record at or before the committed head.
fn replayed(sequence: u64, hash: Digest, stored: Option<Digest>) -> Verdict {
    match stored {
        Some(stored) if stored == hash => Verdict::Duplicate,
        Some(stored) => Verdict::Refuse {
            reason: format!(
                "record {sequence} was rewritten: the workspace holds it with hash {}, the agent \
                 now sends hash {}",
                hex(&stored),
                hex(&hash)
            ),
            flag: true,
        },
        // Before what this workspace ever received (a journal pruned before it enrolled).
        None => Verdict::Refuse {
            reason: format!(
                "record {sequence} is before the first record the workspace holds for this journal"
            ),
            flag: false,
        },
    }
}

/// The record right after the cursor (or a gap).
fn next_link(
    cursor: Head,
    computer_id: &str,
    record: &IncomingRecord,
    prev_hash: Digest,
    hash: Digest,
) -> Verdict {
    let sequence = record.sequence;
    let refuse = |reason: String, flag: bool| Verdict::Refuse { reason, flag };
    if sequence != cursor.sequence + 1 {
        return refuse(
            format!(
                "record {sequence} leaves a gap: the workspace holds this journal through record {}, \
                 so the next record must be {}",
                cursor.sequence,
                cursor.sequence + 1
            ),
            false,
        );
    }
    if prev_hash != cursor.hash {
        return refuse(
            format!(
                "record {sequence} does not chain: its prev_hash is {}, but record {} at the \
                 workspace has hash {}",
                hex(&prev_hash),
                cursor.sequence,
                hex(&cursor.hash)
            ),
            true,
        );
    }
    let computed = chain_hash(&prev_hash, &record.record_json);
    if computed != hash {
        return refuse(
            format!(
                "record {sequence} does not match its hash: BLAKE3(prev_hash || record) is {}, the \
                 agent sent {} (the record was edited after it was journaled)",
                hex(&computed),
                hex(&hash)
            ),
            true,
        );
    }
    match columns(sequence, computer_id, &record.record_json, prev_hash, hash) {
        Ok(checked) => Verdict::Accept(Box::new(checked)),
        Err(reason) => refuse(reason, true),
    }
}

/// The query columns of a record whose chain is sound.
fn columns(
    sequence: u64,
    computer_id: &str,
    json: &[u8],
    prev_hash: Digest,
    hash: Digest,
) -> Result<CheckedRecord, String> {
    let text = std::str::from_utf8(json)
        .map_err(|error| format!("record {sequence} is not UTF-8 text: {error}"))?;
    let record: ChangeRecord = serde_json::from_str(text)
        .map_err(|error| format!("record {sequence} is not a change record: {error}"))?;
    if record.sequence != sequence {
        return Err(format!(
            "record {sequence} says in its text that it is record {}",
            record.sequence
        ));
    }
    if record.computer_id != computer_id {
        return Err(format!(
            "record {sequence} names computer id {:?}, but the agent said it is {computer_id:?}",
            record.computer_id
        ));
    }
    Ok(CheckedRecord {
        sequence,
        time_generated_ns: record.time_generated.unix_nanos(),
        path: record.subject().map(str::to_string),
        computer: record.computer,
        config_change_type: record.config_change_type.as_str().to_string(),
        change_category: record.change_category.as_str().to_string(),
        entity: record.entity,
        record_json: text.to_string(),
        prev_hash,
        hash,
    })
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
