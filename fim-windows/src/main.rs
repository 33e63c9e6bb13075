//! fimsvc: the Windows companion of fimd.
//!
//! It links the same engine, store, journal and policy format as fimd; what differs is where
//! events come from. Here registry notifications ([`registry_source`]) say which registry
//! entity to look at again, and the engine's registry reader compares its keys with their
//! baseline. `fimsvc run` works in the foreground (a console, or Wine on the build machine);
//! the service wrapper (install, start, stop) and the file and service sources come next.
//! Built on other platforms it only says that it runs on Windows.
#[cfg(windows)]
mod registry_source;
#[cfg(windows)]
mod run;
#[cfg(windows)]
mod service_source;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "fimsvc",
    version,
    about = "File integrity monitoring for Windows: registry keys in real time"
)]
struct Args {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Monitor in the foreground until Ctrl-C: the start-up scan, then registry
    /// notifications, every change journaled.
    Run(RunArgs),
}

#[derive(clap::Args, Debug, Clone)]
// Read only by the Windows build.
#[cfg_attr(not(windows), allow(dead_code))]
pub struct RunArgs {
    /// The policy file (the same format as fimd's; Linux kinds are not applicable here).
    #[arg(long)]
    pub policy: PathBuf,
    /// Where the database lives.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Print every committed record as a JSON line on stdout.
    #[arg(long)]
    pub print_records: bool,
}

fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match args.command {
        Task::Run(run) => start(run),
    }
}

#[cfg(windows)]
fn start(args: RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
fn start(_args: RunArgs) -> ExitCode {
    tracing::error!("fimsvc runs on Windows only (fimd is the Linux agent)");
    ExitCode::from(2)
}
