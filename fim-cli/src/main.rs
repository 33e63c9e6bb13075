//! fim: the command-line tool for the file integrity monitor.
//!
//! It reads the daemon's store directly (SQLite in WAL mode lets it read while the daemon
//! writes) and edits the policy file, which a running daemon follows within a second.
mod changes;
mod entities;
mod output;
mod scan;
mod status;
mod timespec;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// The daemon's defaults; both tools must agree on them.
const DEFAULT_STATE_DIR: &str = "/var/lib/fim";
const DEFAULT_POLICY: &str = "/etc/fim/policy.toml";

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
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => scan::run(&cli.state_dir, &cli.policy, args),
        Command::Changes(args) => changes::list(&cli.state_dir, args),
        Command::Summary(args) => changes::summary(&cli.state_dir, args),
        Command::Status(args) => status::status(&cli.state_dir, &cli.policy, args),
        Command::Verify(args) => status::verify(&cli.state_dir, args),
        Command::Entities(command) => entities::run(&cli.policy, command),
        Command::Policy(command) => entities::policy(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
