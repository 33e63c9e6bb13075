//! fim-collector: the workspace's collector service.
//!
//! `serve` opens (or, on a first run, creates) the workspace database, in the state
//! directory (SQLite) or at `--database` (PostgreSQL), binds the TCP address, prints it on stdout and serves agents until SIGTERM or
//! SIGINT. `machines` lists the journals the workspace knows, flagged ones with the reason;
//! `token` makes, lists and revokes the API tokens of the Workspace API; `enroll` makes
//! enrollment tokens and revokes machines. Agents report over mutual TLS with certificates
//! the workspace CA (in the TLS directory, made on first use) issued at enrollment.
//! A database that is missing where one was expected, or unusable, stops it with a non-zero
//! exit: a silent fresh start would forget every acknowledged head.
use std::{io::Write as _, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fim_collector::{
    server::{self, CollectorService, Limits, QueryLimits, WorkspaceService},
    store::{sqlite::DATABASE_FILE, CollectorStore, PostgresStore, SqliteStore},
};

mod enroll;
mod machines;
mod tokens;

#[derive(Parser, Debug)]
#[command(name = "fim-collector", version, about = "The fim workspace collector")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve agents.
    Serve(ServeArgs),
    /// List the journals the workspace knows (computer, head, chain status).
    Machines {
        #[command(flatten)]
        database: DatabaseArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Which machines' monitored trees differ (from their heartbeats' entity digests).
    Drift {
        #[command(flatten)]
        database: DatabaseArgs,
        /// One JSON object per entity instead of text.
        #[arg(long)]
        json: bool,
    },
    /// API tokens for the Workspace API (`fim --workspace`).
    Token {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(subcommand)]
        command: tokens::TokenCommand,
    },
    /// Enrollment tokens for agents, their certificates, and revoking machines.
    Enroll {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(subcommand)]
        command: enroll::EnrollCommand,
    },
}

/// Where the workspace CA lives.
#[derive(clap::Args, Debug)]
struct TlsArgs {
    /// The workspace CA's directory (ca.key, ca.pem); default: tls in the state directory.
    /// Collectors sharing one PostgreSQL share these two files.
    #[arg(long, global = true, env = "FIM_COLLECTOR_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<PathBuf>,
}

impl TlsArgs {
    fn dir(&self, database: &DatabaseArgs) -> PathBuf {
        self.tls_dir
            .clone()
            .unwrap_or_else(|| database.state_dir.join("tls"))
    }
}

/// Where the workspace lives: the embedded SQLite file in the state directory, or a
/// PostgreSQL database several collectors share.
#[derive(clap::Args, Debug)]
struct DatabaseArgs {
    /// Where the embedded workspace database (collector.db) lives.
    #[arg(
        long,
        global = true,
        env = "FIM_COLLECTOR_STATE_DIR",
        default_value = "/var/lib/fim-collector"
    )]
    state_dir: PathBuf,
    /// A PostgreSQL connection URL (postgresql://user@host:port/db) or libpq string; when
    /// given, the workspace lives there instead of in the state directory. An empty
    /// database gets the schema; one holding anything else is refused.
    #[arg(long, global = true, env = "FIM_COLLECTOR_DATABASE")]
    database: Option<String>,
    /// PostgreSQL connections this collector holds.
    #[arg(long, global = true, default_value_t = fim_collector::store::postgres::DEFAULT_CONNECTIONS)]
    pg_connections: usize,
}

impl DatabaseArgs {
    /// Opens the store; `init` lets SQLite create a database in a used state directory.
    fn open(&self, init: bool) -> anyhow::Result<(Arc<dyn CollectorStore>, String)> {
        Ok(match &self.database {
            Some(url) => {
                let store = PostgresStore::open(url, self.pg_connections)?;
                let target = store.target().to_string();
                (Arc::new(store), target)
            }
            None => {
                let store = SqliteStore::open(&self.state_dir, init)?;
                let target = store.path().display().to_string();
                (Arc::new(store), target)
            }
        })
    }
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// Serve without TLS: agents report unauthenticated (no enrollment), and the Workspace
    /// API answers on loopback only. For labs and protocol tests; never on a network.
    #[arg(long)]
    insecure_plaintext: bool,
    /// The TCP address agents connect to (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: String,
    /// Create the database even though the state directory is not empty (it is created
    /// without this only when the directory is missing or empty). Never replaces one.
    #[arg(long)]
    init: bool,
    /// Report streams served at once; agents beyond it are told to retry later.
    #[arg(long, default_value_t = Limits::default().max_streams)]
    max_streams: usize,
    /// TCP connections held at once, all agents together.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// TCP connections held at once from one IP address (agents behind one NAT share one).
    #[arg(long, default_value_t = Limits::default().max_connections_per_address)]
    max_connections_per_address: usize,
    /// How long a new connection may take to send its first byte, in milliseconds, before it
    /// is closed (agents send theirs at once).
    #[arg(long, default_value_t = millis(Limits::default().first_byte_timeout))]
    first_byte_timeout_ms: u64,
    /// The most records per batch.
    #[arg(long, default_value_t = Limits::default().max_batch_records)]
    max_batch_records: usize,
    /// The largest message an agent may send, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Keep records this many days (by TimeGenerated), expiring older ones at start and
    /// every hour (PostgreSQL: whole daily partitions). Without it, records are kept.
    #[arg(long)]
    retention_days: Option<u32>,
    /// What a Busy answer asks agents to wait, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    retry_after_ms: u64,
}

/// A default duration as a flag's milliseconds.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    let result = match args.command {
        Command::Serve(serve) => serve_agents(serve),
        Command::Machines { database, json } => machines::print(&database, json),
        Command::Drift { database, json } => machines::drift(&database, json),
        Command::Token { database, command } => tokens::run(&database, command),
        Command::Enroll {
            database,
            tls,
            command,
        } => enroll::run(&database, &tls.dir(&database), command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_agents(args: ServeArgs) -> anyhow::Result<()> {
    let (store, target) = args.database.open(args.init)?;
    let machines = store.machines()?;
    tracing::info!(
        database = %target,
        journals = machines.len(),
        "workspace database open"
    );
    let limits = Limits {
        max_batch_records: args.max_batch_records.max(1),
        max_message_bytes: args.max_message_bytes,
        max_streams: args.max_streams,
        max_connections: args.max_connections.max(1),
        max_connections_per_address: args.max_connections_per_address.max(1),
        first_byte_timeout: Duration::from_millis(args.first_byte_timeout_ms.max(1)),
        retry_after: Duration::from_millis(args.retry_after_ms),
        ..Limits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The database first: on a first run it must find the state directory empty.
    let ca = match args.insecure_plaintext {
        true => {
            tracing::warn!(
                "serving WITHOUT TLS (--insecure-plaintext): agents are not authenticated, \
                 records cross the network in clear, and enrollment is off"
            );
            None
        }
        false => {
            let ca = fim_collector::ca::WorkspaceCa::load_or_create(&args.tls.dir(&args.database))?;
            tracing::info!(ca = %ca.ca_path().display(), "agents report over mutual TLS with the workspace CA");
            Some(Arc::new(ca))
        }
    };
    runtime.block_on(async move {
        let bound = server::bind(&args.listen).await?;
        // The address on stdout, for `cargo xtask run` and for scripts (port 0).
        println!("fim-collector listening on {}", bound.address);
        let _ = std::io::stdout().flush();
        tracing::info!(address = %bound.address, "serving agents (fim.collector.v1)");
        if let Some(days) = args.retention_days {
            tokio::spawn(expire_every_hour(Arc::clone(&store), days.max(1)));
        }
        let tls = ca.is_some();
        let workspace = WorkspaceService::new(Arc::clone(&store), QueryLimits::default(), tls);
        let service = CollectorService::new(store, limits, tls);
        server::serve(bound, service, workspace, ca, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Collector retention: at start, then every hour.
async fn expire_every_hour(store: Arc<dyn CollectorStore>, days: u32) {
    const DAY_NS: i64 = 86_400_000_000_000;
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = fim_model::Timestamp::now().unix_nanos() - i64::from(days) * DAY_NS;
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.expire_before(cutoff)).await {
            Ok(Ok(what)) => tracing::info!(days, "retention: expired {what}"),
            Ok(Err(error)) => tracing::error!("retention: {error}"),
            Err(error) => tracing::error!("retention task failed: {error}"),
        }
    }
}

#[cfg(unix)]
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} }
        }
        _ => {
            tracing::warn!("cannot install signal handlers: stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn shutdown_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The database file a state directory holds (for messages).
pub(crate) fn database_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join(DATABASE_FILE)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
