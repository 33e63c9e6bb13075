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
//! batches, acks), [`enroll`] (the agent's certificate: enrolling, mutual TLS),
//! [`backoff`].
use std::{path::PathBuf, sync::Arc, time::Duration};

use tonic::transport::{Channel, Endpoint};

pub mod backoff;
pub mod enroll;
pub mod journal;
mod session;

pub use enroll::{TlsSettings, COLLECTOR_SERVER_NAME};
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
    #[error(
        "the collector at {address} failed the stream: {} ({:?})",
        status.message(),
        status.code()
    )]
    Stream {
        address: String,
        status: Box<tonic::Status>,
    },
    #[error("the collector at {address} broke the protocol: {reason}")]
    Protocol { address: String, reason: String },
    #[error("cannot read the journal: {0}")]
    Journal(String),
    #[error("workspace credentials: {0}")]
    Credentials(String),
}

/// How the agent reaches collectors: mutual TLS with the certificate it enrolled for
/// ([`enroll`]), or plain TCP where the collector was started with `--insecure-plaintext`
/// (a lab, or a test of the protocol itself).
#[derive(Clone, Debug, Default)]
pub enum Transport {
    #[default]
    Plain,
    Tls(Arc<TlsSettings>),
}

impl Transport {
    /// A channel for reporting: over TLS, enrolling first when the agent has no
    /// certificate yet.
    pub async fn connect(
        &self,
        address: &str,
        identity: &AgentIdentity,
    ) -> Result<Channel, PushError> {
        match self {
            Transport::Plain => {
                let uri = if address.contains("://") {
                    address.to_string()
                } else {
                    format!("http://{address}")
                };
                let fail = |source| PushError::Connect {
                    address: address.to_string(),
                    source,
                };
                endpoint(Endpoint::from_shared(uri).map_err(fail)?)
                    .connect()
                    .await
                    .map_err(fail)
            }
            Transport::Tls(settings) => {
                let credentials = settings.credentials(address, identity).await?;
                settings.channel(address, Some(&credentials)).await
            }
        }
    }
}

/// The connection settings every collector connection uses.
fn endpoint(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(30)))
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

/// What fimd and fimsvc are told about reporting: their `--collector` flags (one clap
/// definition, flattened into both).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ReportingOptions {
    /// Report the journal to the workspace collector at ADDR (host:port, over mutual TLS;
    /// repeatable: the next one is tried when one fails; FIM_COLLECTOR takes a comma list).
    /// Retention then waits for the workspace's acknowledgement.
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "collector",
            value_name = "ADDR",
            env = "FIM_COLLECTOR",
            value_delimiter = ','
        )
    )]
    pub collectors: Vec<String>,
    /// The workspace CA collectors are checked against (ca.pem in the collector's TLS
    /// directory; a file only root, or the service, may change).
    #[cfg_attr(
        feature = "clap",
        arg(long = "collector-ca", value_name = "PATH", env = "FIM_COLLECTOR_CA")
    )]
    pub ca: Option<PathBuf>,
    /// The enrollment token (`fim-collector enroll create`) for joining the workspace on
    /// the first connection; not needed once enrolled.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH"))]
    pub enroll_token_file: Option<PathBuf>,
    /// Report over plain TCP, to a collector started with --insecure-plaintext.
    #[cfg_attr(feature = "clap", arg(long = "collector-plaintext"))]
    pub plaintext: bool,
}

impl ReportingOptions {
    /// The transport these options ask for; the agent's credentials live in `state_dir`.
    pub fn transport(&self, state_dir: &std::path::Path) -> Result<Transport, PushError> {
        match (&self.ca, self.plaintext) {
            (Some(_), true) => Err(PushError::Credentials(
                "--collector-ca and --collector-plaintext exclude each other".to_string(),
            )),
            (None, true) => {
                tracing::warn!(
                    "reporting to the workspace over plain TCP (--collector-plaintext): the                      records and the machine's identity cross the network unprotected"
                );
                Ok(Transport::Plain)
            }
            (None, false) => Err(PushError::Credentials(
                "--collector needs --collector-ca PATH (the workspace CA: ca.pem in the                  collector's TLS directory) or, for a collector run with --insecure-plaintext,                  --collector-plaintext"
                    .to_string(),
            )),
            (Some(ca), false) => Ok(Transport::Tls(Arc::new(TlsSettings::new(
                ca,
                self.enroll_token_file.clone(),
                state_dir,
            )?))),
        }
    }

    /// Starts reporting the journal in `state_dir` as this host, None without collectors.
    /// Retention learns what the workspace acknowledged through `acknowledged`.
    pub fn start(
        &self,
        state_dir: &std::path::Path,
        platform: &str,
        agent_version: &str,
        acknowledged: fim_engine::store::Acknowledged,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, PushError> {
        if self.collectors.is_empty() {
            return Ok(None);
        }
        let transport = self.transport(state_dir)?;
        let computer = fim_engine::identity::Computer::of_this_host();
        let identity = AgentIdentity {
            computer_id: computer.id,
            computer: computer.name,
            agent_version: agent_version.to_string(),
            platform: platform.to_string(),
        };
        let database = state_dir.join(fim_engine::daemon::DATABASE_FILE);
        tracing::info!(collectors = ?self.collectors, "reporting the journal to the workspace");
        let mut config = PushConfig::new(self.collectors.clone(), database, identity);
        config.acknowledged = acknowledged;
        config.transport = transport;
        Ok(Some(spawn(config)))
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
    let channel = config.transport.connect(address, &config.identity).await?;
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
