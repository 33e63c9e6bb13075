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
    limit_malloc_arenas();
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

/// One malloc arena for the whole daemon, set before any thread exists.
///
/// glibc gives threads that allocate at once arenas of their own (up to 8 per core), and what
/// is freed in one arena is not reused by another: in a burst the ring reader, the reconciler
/// and a gap rescan's workers each grew one, and a `cp -r` of 100,000 files on tmpfs peaked at
/// 154 MiB, against 103-107 MiB with one arena (BENCHMARKS.md, copy storm). fimd's allocations
/// are not contended enough for more arenas to pay: one reconciler thread, and scan workers
/// that mostly read and hash into buffers they keep.
///
/// glibc also keeps freed memory in the middle of its heap resident until `malloc_trim`: a
/// thread returns it once more than [`TRIM_ABOVE`] is free, checked every [`TRIM_EVERY`], so
/// a burst's peak stays near what is really in use.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
        let _ = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: mallinfo2 and malloc_trim only read and release allocator state.
                unsafe {
                    if libc::mallinfo2().fordblks > TRIM_ABOVE {
                        libc::malloc_trim(0);
                    }
                }
            });
    }
}

#[cfg(target_env = "gnu")]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
#[cfg(target_env = "gnu")]
const TRIM_ABOVE: usize = 8 << 20;

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
