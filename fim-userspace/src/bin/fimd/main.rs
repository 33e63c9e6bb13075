//! fimd: the file integrity monitoring daemon.
//!
//! By default it runs the engine on the policy (built-in default when the policy file does not
//! exist): kernel events are reconciled against the baseline in the state directory and every
//! change is journaled ([`engine`]). With `--watch PATH` it is a debugging tool instead: no
//! baseline, no journal, each raw kernel event under PATH printed as one JSON line ([`watch`]).
//! Logs go to stderr through tracing (plain lines under systemd, which timestamps them itself).
//! SIGINT/SIGTERM: finish the events already read, detach everything, exit.
mod args;
mod engine;
mod kernel;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Args;

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    raise_open_file_limit();
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
    let result = if args.watch.is_empty() {
        runtime.block_on(engine::run(args))
    } else {
        runtime.block_on(watch::run(args))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Scan threads, the kernel ring, the API and the database all hold descriptors; the default
/// soft limit (often 1024) is far below the hard limit root is allowed.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "cannot read RLIMIT_NOFILE: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            tracing::warn!(
                "cannot raise RLIMIT_NOFILE to {}: {}",
                limit.rlim_max,
                std::io::Error::last_os_error()
            );
            return;
        }
        limit = raised;
    }
    tracing::info!("open file limit (RLIMIT_NOFILE): {}", limit.rlim_cur);
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Under systemd, stderr goes to the journal, which adds its own timestamps and does not
    // render colours.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // try_init also routes the `log` facade (aya-log's records) into tracing.
    let _ = if journald {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
