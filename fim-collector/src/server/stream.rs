//! One agent's Report stream: the Hello, then each batch checked and committed before its
//! Ack goes out. The admission permit is held for as long as the stream runs.
use std::sync::Arc;

use fim_api::collector_pb::{
    agent_message, collector_message, Ack, AgentMessage, CollectorMessage, EntityDigest, Hello,
    JournalRecord, Refusal, Welcome,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tonic::{Status, Streaming};

use super::Limits;
use crate::{
    chain::{Head, IncomingRecord},
    store::{
        drift::{MAX_ENTITIES, MAX_ENTITY_NAME_BYTES},
        AgentHello, CollectorStore, EntityReport, Ingested, JournalKey,
    },
};

pub(super) type Replies = mpsc::Sender<Result<CollectorMessage, Status>>;

/// `certified`: the computer id the agent's certificate was issued to, which its Hello
/// must name (None on a plaintext collector).
pub(super) async fn serve(
    store: Arc<dyn CollectorStore>,
    limits: Limits,
    certified: Option<String>,
    mut inbound: Streaming<AgentMessage>,
    replies: Replies,
    _permit: OwnedSemaphorePermit,
) {
    let certified = certified.as_deref();
    if let Err(status) = run(store, &limits, certified, &mut inbound, &replies).await {
        if status.code() != tonic::Code::Ok {
            tracing::warn!("agent stream ended: {}", status.message());
        }
        let _ = replies.send(Err(status)).await;
    }
}

async fn run(
    store: Arc<dyn CollectorStore>,
    limits: &Limits,
    certified: Option<&str>,
    inbound: &mut Streaming<AgentMessage>,
    replies: &Replies,
) -> Result<(), Status> {
    let hello = match receive(inbound, limits).await? {
        Some(agent_message::Kind::Hello(hello)) => agent_hello(hello)?,
        Some(agent_message::Kind::Batch(_) | agent_message::Kind::Pruned(_)) => {
            return Err(Status::invalid_argument(
                "the first message must be a Hello",
            ))
        }
        None => return Ok(()),
    };
    if let Some(certified) = certified {
        if hello.key.computer_id != certified {
            tracing::warn!(
                certified,
                claimed = %hello.key.computer_id,
                "report refused: the Hello names another computer than the certificate"
            );
            return Err(Status::permission_denied(format!(
                "this certificate was issued to computer {certified}; it cannot report for \
                 computer {}",
                hello.key.computer_id
            )));
        }
    }
    let key = hello.key.clone();
    let entities = hello.entities.clone();
    let machine = blocking({
        let store = Arc::clone(&store);
        move || store.hello(&hello, now_ns())
    })
    .await?;
    if let Some(entities) = entities {
        let store = Arc::clone(&store);
        let computer_id = key.computer_id.clone();
        blocking(move || store.report_entities(&computer_id, &entities)).await?;
    }
    tracing::debug!(
        computer = %machine.computer,
        computer_id = %key.computer_id,
        journal_id = %key.journal_id,
        acknowledged = machine.acknowledged.sequence,
        "agent connected"
    );
    let welcome = Welcome {
        resume_after_sequence: machine.acknowledged.sequence,
        resume_hash: machine.acknowledged.hash.to_vec(),
        max_batch_records: u32::try_from(limits.max_batch_records).unwrap_or(u32::MAX),
        flagged: machine.flag_reason.is_some(),
        flag_reason: machine.flag_reason.unwrap_or_default(),
    };
    send(replies, collector_message::Kind::Welcome(welcome)).await?;
    while let Some(kind) = receive(inbound, limits).await? {
        let batch = match kind {
            agent_message::Kind::Batch(batch) => batch,
            agent_message::Kind::Pruned(pruned) => {
                let ack = record_gap(&store, &key, pruned).await?;
                send(replies, collector_message::Kind::Ack(ack)).await?;
                continue;
            }
            agent_message::Kind::Hello(_) => {
                return Err(Status::invalid_argument("a second Hello on one stream"))
            }
        };
        let records: Vec<IncomingRecord> = batch.records.into_iter().map(incoming).collect();
        let ingested = blocking({
            let store = Arc::clone(&store);
            let key = key.clone();
            let max = limits.max_batch_records;
            move || store.ingest(&key, &records, max, now_ns())
        })
        .await?;
        send(
            replies,
            collector_message::Kind::Ack(ack(batch.batch_id, ingested)),
        )
        .await?;
    }
    Ok(())
}

/// Records a Pruned message's gap; the Ack (batch 0) carries the head after it, or the
/// refusal's reason.
async fn record_gap(
    store: &Arc<dyn CollectorStore>,
    key: &crate::store::JournalKey,
    pruned: fim_api::collector_pb::Pruned,
) -> Result<Ack, Status> {
    let through_hash = fim_engine::state::Digest::try_from(pruned.through_hash.as_slice())
        .map_err(|_| Status::invalid_argument("the Pruned message's hash is not 32 bytes"))?;
    let gap = crate::store::PrunedGap {
        after: pruned.after_sequence,
        through: pruned.through_sequence,
        through_hash,
    };
    let outcome = blocking({
        let store = Arc::clone(store);
        let key = key.clone();
        move || store.record_gap(&key, &gap, now_ns())
    })
    .await?;
    Ok(Ack {
        batch_id: 0,
        acknowledged_sequence: outcome.acknowledged.sequence,
        acknowledged_hash: outcome.acknowledged.hash.to_vec(),
        refused: outcome
            .refused
            .into_iter()
            .map(|reason| Refusal {
                sequence: 0,
                reason,
                duplicate: false,
            })
            .collect(),
        ..Ack::default()
    })
}

/// The next message, None at the end of the stream; an idle stream is ended.
async fn receive(
    inbound: &mut Streaming<AgentMessage>,
    limits: &Limits,
) -> Result<Option<agent_message::Kind>, Status> {
    match tokio::time::timeout(limits.idle_timeout, inbound.message()).await {
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no message for {:?}: the stream is closed",
            limits.idle_timeout
        ))),
        Ok(Err(status)) => Err(status),
        Ok(Ok(None)) => Ok(None),
        Ok(Ok(Some(AgentMessage { kind: None }))) => {
            Err(Status::invalid_argument("an empty message"))
        }
        Ok(Ok(Some(AgentMessage { kind: Some(kind) }))) => Ok(Some(kind)),
    }
}

async fn send(replies: &Replies, kind: collector_message::Kind) -> Result<(), Status> {
    replies
        .send(Ok(CollectorMessage { kind: Some(kind) }))
        .await
        .map_err(|_| Status::cancelled("the agent went away"))
}

/// Runs store work on the blocking pool; a store failure is UNAVAILABLE for the agent (it
/// keeps its journal and retries) and an error in the collector's log.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::CollectorError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error @ crate::CollectorError::TooManyJournals { .. })) => {
            // The client's doing, not the store's: refused with the reason, not retried soon.
            tracing::warn!("{error}");
            Err(Status::resource_exhausted(error.to_string()))
        }
        Ok(Err(error)) => {
            // The detail (the database's address, its error) stays in the collector's log:
            // the agent only needs to know to keep its journal and retry.
            tracing::error!("{error}");
            Err(Status::unavailable(
                "the workspace database is unavailable: keep the journal and retry",
            ))
        }
        Err(error) => Err(Status::internal(format!("the store task failed: {error}"))),
    }
}

/// The longest string a Hello field may hold: ids, host names and versions are short, and
/// each is stored in the machine row for good.
pub(super) const MAX_HELLO_FIELD_BYTES: usize = 256;

fn agent_hello(hello: Hello) -> Result<AgentHello, Status> {
    if hello.computer_id.is_empty() || hello.journal_id.is_empty() {
        return Err(Status::invalid_argument(
            "the Hello must name the computer id and the journal id",
        ));
    }
    check_hello_sizes(&hello)?;
    let entities = hello
        .entities_reported
        .then(|| entity_reports(&hello.entities))
        .transpose()?;
    let hash = hello
        .head_hash
        .as_slice()
        .try_into()
        .map_err(|_| Status::invalid_argument("the Hello's head hash is not 32 bytes"))?;
    Ok(AgentHello {
        key: JournalKey {
            computer_id: hello.computer_id,
            journal_id: hello.journal_id,
        },
        computer: hello.computer,
        agent_version: hello.agent_version,
        platform: hello.platform,
        strategy: hello.strategy,
        head: Head {
            sequence: hello.head_sequence,
            hash,
        },
        entities,
    })
}

/// A heartbeat's entity digests, checked for size and shape.
fn entity_reports(entities: &[EntityDigest]) -> Result<Vec<EntityReport>, Status> {
    if entities.len() > MAX_ENTITIES {
        return Err(Status::invalid_argument(format!(
            "the Hello carries {} entity digests, more than the {MAX_ENTITIES} allowed",
            entities.len()
        )));
    }
    let now = now_ns();
    entities
        .iter()
        .map(|entity| {
            if entity.entity.is_empty() || entity.entity.len() > MAX_ENTITY_NAME_BYTES {
                return Err(Status::invalid_argument(format!(
                    "an entity name must be 1 to {MAX_ENTITY_NAME_BYTES} bytes"
                )));
            }
            let digest = entity.digest.as_slice().try_into().map_err(|_| {
                Status::invalid_argument(format!(
                    "the digest of entity {:?} is not 32 bytes",
                    entity.entity
                ))
            })?;
            Ok(EntityReport {
                entity: entity.entity.clone(),
                objects: entity.objects,
                digest,
                reported_ns: now,
            })
        })
        .collect()
}

fn check_hello_sizes(hello: &Hello) -> Result<(), Status> {
    let fields = [
        ("computer id", &hello.computer_id),
        ("computer name", &hello.computer),
        ("journal id", &hello.journal_id),
        ("agent version", &hello.agent_version),
        ("platform", &hello.platform),
        ("strategy", &hello.strategy),
    ];
    for (name, value) in fields {
        if value.len() > MAX_HELLO_FIELD_BYTES {
            return Err(Status::invalid_argument(format!(
                "the Hello's {name} is {} bytes, more than the {MAX_HELLO_FIELD_BYTES} allowed",
                value.len()
            )));
        }
    }
    Ok(())
}

fn incoming(record: JournalRecord) -> IncomingRecord {
    IncomingRecord {
        sequence: record.sequence,
        record_json: record.record_json,
        prev_hash: record.prev_hash,
        hash: record.hash,
    }
}

fn ack(batch_id: u64, ingested: Ingested) -> Ack {
    let checked = ingested.checked;
    Ack {
        batch_id,
        acknowledged_sequence: ingested.acknowledged.sequence,
        acknowledged_hash: ingested.acknowledged.hash.to_vec(),
        accepted: u32::try_from(checked.accepted.len()).unwrap_or(u32::MAX),
        duplicates: checked.duplicates,
        refused: checked
            .refused
            .into_iter()
            .map(|refusal| Refusal {
                sequence: refusal.sequence,
                reason: refusal.reason,
                duplicate: refusal.duplicate,
            })
            .collect(),
        flag_reason: checked.flag.unwrap_or_default(),
    }
}

pub(super) fn now_ns() -> i64 {
    fim_model::Timestamp::now().unix_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Hello {
        Hello {
            computer_id: "host-1".into(),
            journal_id: "j1".into(),
            head_hash: vec![0; 32],
            ..Hello::default()
        }
    }

    #[test]
    fn an_oversized_hello_field_is_refused_with_its_name() {
        assert!(agent_hello(valid()).is_ok());
        let mut hello = valid();
        hello.platform = "x".repeat(MAX_HELLO_FIELD_BYTES + 1);
        let status = agent_hello(hello).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("platform"),
            "{}",
            status.message()
        );
        let mut hello = valid();
        hello.computer_id = "x".repeat(MAX_HELLO_FIELD_BYTES + 1);
        assert!(agent_hello(hello).is_err());
    }
}
