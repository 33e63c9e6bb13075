//! One Report stream: Hello, Welcome (or Busy), then batch after batch, each sent only after
//! the previous one was acknowledged, until the journal has nothing more.
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{transport::Channel, Streaming};

use super::{JournalHead, JournalReader, PushConfig, PushError};
use crate::collector_pb::{
    agent_message, collector_client::CollectorClient, collector_message, Ack, AgentMessage, Batch,
    CollectorMessage, Hello, JournalRecord, Pruned,
};

/// How a session ended (failures are errors).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every record of the journal is acknowledged.
    CaughtUp,
    /// The collector's admission limit: come back after this long.
    Busy(Duration),
    /// The collector refused records (the reasons): they will not be accepted as they are.
    Refused(String),
}

/// What the collector acknowledged during the session.
#[derive(Debug, Default)]
pub struct Progress {
    pub acknowledged: Option<u64>,
}

/// The largest message the agent accepts from the collector.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// What the records of one batch may add up to: half the collector's default message limit,
/// so records with file content in them split into several batches rather than one the
/// collector refuses as too large.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How many of `rows` fit in `budget` bytes (always at least one).
fn within_bytes(rows: &[fim_engine::store::JournalRow], budget: usize) -> usize {
    let mut total = 0;
    let fitting = rows
        .iter()
        .take_while(|row| {
            total += row.record.len() + 96;
            total <= budget
        })
        .count();
    fitting.max(1)
}

pub(super) async fn run(
    channel: Channel,
    address: &str,
    config: &PushConfig,
    journal: &JournalReader,
    progress: &mut Progress,
) -> Result<Outcome, PushError> {
    let head = journal.head().await?;
    // A failed summary must not stop reporting: the heartbeat then leaves drift alone.
    let entities = match journal.entity_digests().await {
        Ok(digests) => Some(digests),
        Err(error) => {
            tracing::warn!("no entity digests for the workspace this time: {error}");
            None
        }
    };
    let (requests, outgoing) = mpsc::channel::<AgentMessage>(2);
    let hello = hello(config, &head, entities);
    requests
        .send(message(agent_message::Kind::Hello(hello)))
        .await
        .map_err(|_| closed(address))?;
    let mut client = CollectorClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES);
    let mut replies = client
        .report(ReceiverStream::new(outgoing))
        .await
        .map_err(|status| stream_error(address, status))?
        .into_inner();
    let welcome = match next(&mut replies, address).await? {
        collector_message::Kind::Welcome(welcome) => welcome,
        collector_message::Kind::Busy(busy) => {
            return Ok(Outcome::Busy(retry_after(busy.retry_after_ms)));
        }
        collector_message::Kind::Ack(_) => return Err(protocol(address, "an Ack before Welcome")),
    };
    let mut resume = welcome.resume_after_sequence;
    progress.acknowledged = Some(resume);
    // What the workspace holds, for retention: a Welcome may lower it (a workspace that
    // lost records gets them again, as long as the journal still has them).
    config.acknowledged.set(resume);
    if welcome.flagged {
        tracing::error!(collector = %address, "the workspace flags this journal: {}", welcome.flag_reason);
    }
    if resume > head.sequence {
        return Ok(Outcome::Refused(format!(
            "the workspace holds this journal up to record {resume}, past its head {}",
            head.sequence
        )));
    }
    if head.sequence > resume {
        tracing::info!(
            collector = %address,
            acknowledged = resume,
            head = head.sequence,
            "the workspace is {} records behind this journal",
            head.sequence - resume
        );
    }
    let mut link = Link {
        address,
        requests,
        replies,
    };
    let (base, base_hash) = head.base;
    if base > resume {
        resume = link.report_gap(resume, base, base_hash).await?;
        progress.acknowledged = Some(resume);
        config.acknowledged.raise(resume);
    }
    let limit = config
        .batch_records
        .min(usize::try_from(welcome.max_batch_records).unwrap_or(usize::MAX))
        .max(1);
    link.send_batches(journal, resume, limit, &config.acknowledged, progress)
        .await
}

/// An open stream past its Welcome.
struct Link<'a> {
    address: &'a str,
    requests: mpsc::Sender<AgentMessage>,
    replies: Streaming<CollectorMessage>,
}

impl Link<'_> {
    /// Tells the workspace that records after `after` through `through` were pruned here
    /// before it received them; returns the head it acknowledges after recording the gap.
    async fn report_gap(
        &mut self,
        after: u64,
        through: u64,
        through_hash: fim_engine::state::Digest,
    ) -> Result<u64, PushError> {
        let address = self.address;
        tracing::error!(
            collector = %address,
            "records {} to {through} were pruned from this journal before the workspace \
             received them (journal_hard_cap_records): reporting the gap",
            after + 1
        );
        let pruned = Pruned {
            after_sequence: after,
            through_sequence: through,
            through_hash: through_hash.to_vec(),
        };
        self.requests
            .send(message(agent_message::Kind::Pruned(pruned)))
            .await
            .map_err(|_| closed(address))?;
        let ack = match next(&mut self.replies, address).await? {
            collector_message::Kind::Ack(ack) if ack.batch_id == 0 => ack,
            _ => return Err(protocol(address, "a reply that is not the gap's Ack")),
        };
        if let Some(reason) = refusals(&ack) {
            return Err(protocol(address, &format!("it refused the gap: {reason}")));
        }
        if ack.acknowledged_sequence < through {
            return Err(protocol(address, "it did not move past the gap"));
        }
        Ok(ack.acknowledged_sequence)
    }

    /// Sends the rows after `resume`, a batch at a time, each after the previous Ack.
    async fn send_batches(
        &mut self,
        journal: &JournalReader,
        mut resume: u64,
        limit: usize,
        acknowledged: &fim_engine::store::Acknowledged,
        progress: &mut Progress,
    ) -> Result<Outcome, PushError> {
        let address = self.address;
        let mut batch_id = 0;
        loop {
            let mut rows = journal.rows_after(resume, limit).await?;
            rows.truncate(within_bytes(&rows, MAX_BATCH_BYTES));
            let Some(last) = rows.last().map(|row| row.sequence) else {
                if batch_id > 0 {
                    tracing::info!(collector = %address, acknowledged = resume, "the workspace has every record of this journal (0 behind)");
                }
                return Ok(Outcome::CaughtUp);
            };
            batch_id += 1;
            let records = rows
                .into_iter()
                .map(|row| JournalRecord {
                    sequence: row.sequence,
                    record_json: row.record.into_bytes(),
                    prev_hash: row.prev_hash.to_vec(),
                    hash: row.hash.to_vec(),
                })
                .collect();
            let batch = Batch { batch_id, records };
            self.requests
                .send(message(agent_message::Kind::Batch(batch)))
                .await
                .map_err(|_| closed(address))?;
            let ack = match next(&mut self.replies, address).await? {
                collector_message::Kind::Ack(ack) if ack.batch_id == batch_id => ack,
                _ => return Err(protocol(address, "a reply that is not this batch's Ack")),
            };
            resume = ack.acknowledged_sequence;
            progress.acknowledged = Some(resume);
            acknowledged.raise(resume);
            if let Some(reasons) = refusals(&ack) {
                return Ok(Outcome::Refused(reasons));
            }
            if resume < last {
                return Ok(Outcome::Refused(format!(
                    "the collector acknowledged through {resume}, not {last}"
                )));
            }
            tracing::debug!(collector = %address, acknowledged = resume, "batch acknowledged");
        }
    }
}

fn closed(address: &str) -> PushError {
    protocol(address, "it closed the stream")
}

fn hello(
    config: &PushConfig,
    head: &JournalHead,
    entities: Option<Vec<fim_engine::store::EntityDigest>>,
) -> Hello {
    let entities_reported = entities.is_some();
    let entities = entities
        .unwrap_or_default()
        .into_iter()
        .map(|digest| crate::collector_pb::EntityDigest {
            entity: digest.entity,
            objects: digest.objects,
            digest: digest.digest.to_vec(),
            reported_ns: 0,
        })
        .collect();
    Hello {
        entities,
        entities_reported,
        computer_id: config.identity.computer_id.clone(),
        computer: config.identity.computer.clone(),
        journal_id: head.journal_id.clone(),
        head_sequence: head.sequence,
        head_hash: head.hash.to_vec(),
        agent_version: config.identity.agent_version.clone(),
        platform: config.identity.platform.clone(),
        strategy: head.strategy.clone(),
    }
}

fn message(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

/// The refusals of an Ack that are not mere duplicates, joined; None when there are none.
fn refusals(ack: &Ack) -> Option<String> {
    let reasons: Vec<&str> = ack
        .refused
        .iter()
        .filter(|refusal| !refusal.duplicate)
        .map(|refusal| refusal.reason.as_str())
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

async fn next(
    replies: &mut Streaming<CollectorMessage>,
    address: &str,
) -> Result<collector_message::Kind, PushError> {
    match replies.message().await {
        Ok(Some(CollectorMessage { kind: Some(kind) })) => Ok(kind),
        Ok(Some(CollectorMessage { kind: None })) => Err(protocol(address, "an empty message")),
        Ok(None) => Err(protocol(address, "it ended the stream")),
        Err(status) => Err(stream_error(address, status)),
    }
}

fn protocol(address: &str, reason: &str) -> PushError {
    PushError::Protocol {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

fn stream_error(address: &str, status: tonic::Status) -> PushError {
    PushError::Stream {
        address: address.to_string(),
        status: Box::new(status),
    }
}

/// The longest Busy wait obeyed: the retry-after comes from the network, and a collector
/// (or anyone answering on its address) must not park the agent for up to 49 days.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub(super) fn retry_after(millis: u32) -> Duration {
    Duration::from_millis(millis.into()).min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fim_engine::store::JournalRow;

    fn row(bytes: usize) -> JournalRow {
        JournalRow {
            sequence: 1,
            record: "x".repeat(bytes),
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn busy_retry_after_is_capped_at_a_minute() {
        assert_eq!(retry_after(1500), Duration::from_millis(1500));
        assert_eq!(retry_after(60_000), MAX_RETRY_AFTER);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY_AFTER);
    }

    #[test]
    fn batches_stay_within_the_byte_budget_but_never_empty() {
        let rows = vec![row(400), row(400), row(400)];
        assert_eq!(within_bytes(&rows, 1000), 2);
        assert_eq!(within_bytes(&rows, 10), 1);
        assert_eq!(within_bytes(&rows, 1 << 20), 3);
    }
}
