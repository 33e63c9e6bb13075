//! The agent's side of fim.collector.v1: a task that ships the journal to a collector.
//!
//! The journal is the offline buffer: nothing is queued in memory, so a collector that is
//! down for a day costs nothing but the records it has not acknowledged yet. The task dials
//! out (agents behind NAT work), says where its journal stands, sends the records after the
//! collector's resume point in batches and moves on only when a batch is acknowledged (after
//! the collector's commit). When it is caught up it closes the stream and polls its own
//! journal's head, so an idle agent holds no admission slot at the collector. Failures (no
//! collector, a refused batch, a dropped link) back off with jitter ([`backoff`]) and move to
//! the next collector of the list; a `Busy` answer is honoured as the collector asks.
//!
//! Layout: [`journal`] (reading the journal read-only), [`session`] (one stream: Hello,
//! batches, acks), [`backoff`].
use std::{path::PathBuf, time::Duration};

use tonic::transport::{Channel, Endpoint};

pub mod backoff;
pub mod journal;
mod session;

pub use journal::{JournalHead, JournalReader};
pub use session::{Outcome, Progress};

use backoff::{jitter, Backoff};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot connect to the collector at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("the collector at {address} failed the stream: {status}")]
    Stream {
        address: String,
        status: Box<tonic::Status>,
    },
    #[error("the collector at {address} broke the protocol: {reason}")]
    Protocol { address: String, reason: String },
    #[error("cannot read the journal: {0}")]
    Journal(String),
}

/// How the agent reaches collectors: plain TCP for now; TLS (an `Endpoint::tls_config`) is
/// the next variant, chosen here so the push logic does not change.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    #[default]
    Plain,
}

impl Transport {
    pub async fn connect(&self, address: &str) -> Result<Channel, PushError> {
        let uri = match self {
            Transport::Plain if address.contains("://") => address.to_string(),
            Transport::Plain => format!("http://{address}"),
        };
        let fail = |source| PushError::Connect {
            address: address.to_string(),
            source,
        };
        Endpoint::from_shared(uri)
            .map_err(fail)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .connect()
            .await
            .map_err(fail)
    }
}

/// Who the agent is, for the Hello.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub computer_id: String,
    pub computer: String,
    pub agent_version: String,
    pub platform: String,
}

#[derive(Clone, Debug)]
pub struct PushConfig {
    /// Collector addresses (`host:port`), tried in turn on failure.
    pub collectors: Vec<String>,
    /// The agent's journal database.
    pub database: PathBuf,
    pub identity: AgentIdentity,
    pub transport: Transport,
    /// The most records per batch (the collector may ask for fewer).
    pub batch_records: usize,
    /// How often a caught-up agent looks at its journal's head.
    pub poll: Duration,
    /// The longest back-off between failed attempts.
    pub max_backoff: Duration,
    /// Where the workspace's acknowledged sequence is told to retention.
    pub acknowledged: fim_engine::store::Acknowledged,
}

impl PushConfig {
    pub fn new(collectors: Vec<String>, database: PathBuf, identity: AgentIdentity) -> Self {
        PushConfig {
            collectors,
            database,
            identity,
            transport: Transport::Plain,
            batch_records: 500,
            poll: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            acknowledged: fim_engine::store::Acknowledged::default(),
        }
    }
}

/// Starts the push task; it runs until aborted.
pub fn spawn(config: PushConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(config))
}

/// The push loop: one collector at a time, the next one after a failure.
pub async fn run(config: PushConfig) {
    if config.collectors.is_empty() {
        return;
    }
    let journal = JournalReader::new(config.database.clone());
    let mut backoff = Backoff::new(config.max_backoff);
    let mut index = 0;
    let mut acknowledged: Option<u64> = None;
    loop {
        let address = &config.collectors[index % config.collectors.len()];
        let before = acknowledged;
        let outcome = attempt(&config, &journal, address, &mut acknowledged).await;
        if acknowledged > before {
            // The collector took records: a failure now is a new one, not the same outage.
            backoff.reset();
        }
        let delay = match outcome {
            Ok(Outcome::CaughtUp) => {
                backoff.reset();
                wait_for_news(&journal, acknowledged, config.poll).await;
                continue;
            }
            Ok(Outcome::Busy(retry_after)) => {
                tracing::info!(collector = %address, "the collector is busy: retrying in {retry_after:?} as it asks");
                retry_after + jitter(retry_after / 4)
            }
            Ok(Outcome::Refused(reason)) => {
                let delay = backoff.next_delay();
                tracing::warn!(collector = %address, "the collector refused records: {reason}; retrying in {delay:?}");
                delay
            }
            Err(error) => {
                index += 1;
                let delay = backoff.next_delay();
                tracing::warn!("{error}; retrying in {delay:?}");
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Connects and runs one session.
async fn attempt(
    config: &PushConfig,
    journal: &JournalReader,
    address: &str,
    acknowledged: &mut Option<u64>,
) -> Result<Outcome, PushError> {
    let channel = config.transport.connect(address).await?;
    let mut progress = Progress::default();
    let outcome = session::run(channel, address, config, journal, &mut progress).await;
    if let Some(sequence) = progress.acknowledged {
        *acknowledged = Some(sequence);
    }
    outcome
}

/// Returns once the journal's head is past what the collector acknowledged (or after a
/// while anyway, so a collector that lost its database is noticed).
async fn wait_for_news(journal: &JournalReader, acknowledged: Option<u64>, poll: Duration) {
    let Some(acknowledged) = acknowledged else {
        return;
    };
    for _ in 0..120 {
        tokio::time::sleep(poll).await;
        match journal.head().await {
            Ok(head) if head.sequence != acknowledged => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!("{error}");
                return;
            }
        }
    }
}
