//! fim: the command-line tool for the file integrity monitor.
//!
//! When a daemon answers on its socket, `fim` goes through the daemon's API (fim.v1): the
//! daemon owns the database and checks the caller's role. Otherwise (or with `--local`) it
//! reads the store directly (SQLite in WAL mode) and edits the policy file, which a daemon
//! started later follows. On Windows the daemon is fimsvc and its API a named pipe.
mod changes;
mod entities;
mod output;
mod progress;
mod remote;
mod scan;
mod status;
mod timespec;
mod workspace;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// The daemon's defaults; both tools must agree on them.
#[cfg(unix)]
const DEFAULT_STATE_DIR: &str = "/var/lib/fim";
#[cfg(unix)]
const DEFAULT_POLICY: &str = "/etc/fim/policy.toml";
#[cfg(unix)]
const DEFAULT_SOCKET: &str = "/run/fim/fim.sock";
/// fimsvc has no default state directory or policy (its service is installed with both);
/// these are where an installation is expected to put them.
#[cfg(windows)]
const DEFAULT_STATE_DIR: &str = r"C:\ProgramData\fim";
#[cfg(windows)]
const DEFAULT_POLICY: &str = r"C:\ProgramData\fim\policy.toml";
/// fimsvc's named pipe.
#[cfg(windows)]
const DEFAULT_SOCKET: &str = fim_api::pipe::DEFAULT_PIPE;

#[derive(Parser, Debug)]
#[command(
    name = "fim",
    version,
    about = "File integrity monitor: scans, changes, policy"
)]
struct Cli {
    /// The daemon's state directory (baseline and journal).
    #[arg(long, global = true, env = "FIM_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The policy file (the built-in default policy applies while it does not exist).
    #[arg(long, global = true, env = "FIM_POLICY", default_value = DEFAULT_POLICY)]
    policy: PathBuf,
    /// The daemon's API socket (on Windows fimsvc's named pipe: `fim` or `\\.\pipe\fim`).
    #[arg(long, global = true, env = "FIM_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Do not use a running daemon: read the store and edit the policy file directly.
    #[arg(long, global = true)]
    local: bool,
    /// A workspace collector's address (https://127.0.0.1:7700): `changes`, `summary`,
    /// `query` and `machines` then cover every machine reporting to it. The API token comes
    /// from FIM_WORKSPACE_TOKEN or --token-file.
    #[arg(long, global = true, env = "FIM_WORKSPACE")]
    workspace: Option<String>,
    /// The workspace CA the collector is checked against (its tls/ca.pem); without it the
    /// connection is plain, for a collector run with --insecure-plaintext.
    #[arg(long, global = true, env = "FIM_WORKSPACE_CA")]
    workspace_ca: Option<PathBuf>,
    /// A file whose first line is the workspace API token.
    #[arg(long, global = true, env = "FIM_WORKSPACE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Scan now: the first run records the baseline, later runs report what changed.
    Scan(scan::ScanArgs),
    /// List recorded changes.
    Changes(changes::ChangesArgs),
    /// Count changes, grouped like `summarize count() by Computer, ConfigChangeType`.
    Summary(changes::SummaryArgs),
    /// What the monitor is doing: baseline size, last scans, journal head, daemon state.
    Status(status::StatusArgs),
    /// Check the journal's hash chain; names the first record that was edited, removed or
    /// moved.
    Verify(status::VerifyArgs),
    /// List and change the monitored entities.
    #[command(subcommand)]
    Entities(entities::EntitiesCommand),
    /// Policy files.
    #[command(subcommand)]
    Policy(entities::PolicyCommand),
    /// Follow the live stream of changes from a running daemon (resuming after --from-seq).
    Watch(WatchArgs),
    /// Run a KQL query over the workspace's ConfigurationChange table (with --workspace).
    Query(QueryArgs),
    /// The machines reporting to the workspace, with their chain status (with --workspace).
    Machines {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct QueryArgs {
    /// The query, e.g. "ConfigurationChange | where TimeGenerated > ago(14d) | summarize
    /// count() by Computer, ConfigChangeType".
    kql: String,
    /// table, json, jsonl or csv (Azure's column names; formula-like cells neutralised).
    #[arg(long, default_value = "table")]
    format: output::Format,
    /// At most this many rows (0: the collector's cap).
    #[arg(long, default_value_t = 0)]
    max_rows: u32,
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    /// Print records after this sequence first (0: the whole journal), then live ones.
    #[arg(long = "from-seq", default_value_t = 0)]
    from_seq: u64,
    #[command(flatten)]
    filter: changes::FilterArgs,
    /// table or jsonl.
    #[arg(long, default_value = "table")]
    format: output::Format,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(error) => Err(anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

const NEEDS_WORKSPACE: &str =
    "fim query and fim machines read a workspace: pass --workspace URL (or set FIM_WORKSPACE)";

/// With --workspace: the collector. Otherwise through the daemon when one answers (and
/// --local is not given), else on the files.
async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(url) = &cli.workspace {
        let (token_file, ca) = (cli.token_file.as_deref(), cli.workspace_ca.as_deref());
        return dispatch_workspace(url, token_file, ca, cli.command).await;
    }
    if matches!(cli.command, Command::Query(_) | Command::Machines { .. }) {
        anyhow::bail!(NEEDS_WORKSPACE);
    }
    let needs_no_daemon = matches!(cli.command, Command::Policy(_));
    let client = if cli.local || needs_no_daemon {
        None
    } else {
        remote::connect(&cli.socket).await
    };
    let Some(mut client) = client else {
        return match cli.command {
            Command::Scan(args) => scan::run(&cli.state_dir, &cli.policy, args),
            Command::Changes(args) => changes::list(&cli.state_dir, args),
            Command::Summary(args) => changes::summary(&cli.state_dir, args),
            Command::Status(args) => status::status(&cli.state_dir, &cli.policy, args),
            Command::Verify(args) => status::verify(&cli.state_dir, args),
            Command::Entities(command) => entities::run(&cli.policy, command),
            Command::Policy(command) => entities::policy(command),
            Command::Query(_) | Command::Machines { .. } => anyhow::bail!(NEEDS_WORKSPACE),
            Command::Watch(_) => anyhow::bail!(
                "fim watch needs a running daemon, and none answers on {}",
                fim_engine::path_text::display_path(&cli.socket)
            ),
        };
    };
    match cli.command {
        Command::Scan(args) => remote::trigger_scan(&mut client, args.entities, args.full).await,
        Command::Changes(args) => remote::changes(&mut client, args).await,
        Command::Summary(args) => remote::summary(&mut client, args).await,
        Command::Status(args) => remote::status(&mut client, args.json).await,
        Command::Verify(args) => remote::verify(&mut client, &args).await,
        Command::Entities(command) => entities::run_remote(&mut client, command).await,
        Command::Policy(command) => entities::policy(command),
        Command::Watch(args) => {
            remote::watch(&mut client, args.from_seq, &args.filter, args.format).await
        }
        Command::Query(_) | Command::Machines { .. } => anyhow::bail!(NEEDS_WORKSPACE),
    }
}

async fn dispatch_workspace(
    url: &str,
    token_file: Option<&std::path::Path>,
    ca: Option<&std::path::Path>,
    command: Command,
) -> anyhow::Result<ExitCode> {
    let kql = match &command {
        Command::Changes(args) => Some((workspace::changes_query(args)?, 0, args.format)),
        Command::Summary(args) => Some((workspace::summary_query(args)?, 0, args.format)),
        Command::Query(args) => Some((args.kql.clone(), args.max_rows, args.format)),
        Command::Machines { .. } => None,
        _ => anyhow::bail!(
            "with --workspace, fim runs changes, summary, query and machines; the other \
             commands work on one machine (drop --workspace)"
        ),
    };
    let mut client = workspace::connect(url, token_file, ca).await?;
    match (kql, command) {
        (Some((kql, max_rows, format)), _) => {
            workspace::query(&mut client, &kql, max_rows, format).await
        }
        (None, Command::Machines { json }) => workspace::machines(&mut client, json).await,
        (None, _) => anyhow::bail!(NEEDS_WORKSPACE),
    }
}
