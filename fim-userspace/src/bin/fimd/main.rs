//! fimd: the file integrity monitoring daemon.
//!
//! By default it runs the engine on the policy (built-in default when the policy file does not
//! exist): kernel events are reconciled against the baseline in the state directory and every
//! change is journaled. With `--watch PATH` it is a debugging tool instead: no baseline, no
//! journal, each raw kernel event under PATH printed as one JSON line. Logs go to stderr
//! through tracing (plain lines under systemd, which timestamps them itself).
//! SIGINT/SIGTERM: finish the events already read, detach everything, exit.
mod engine;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use fim_common::maps::DEFAULT_RING_BYTES;
use fim_engine::daemon::WatchRoot;
use fim_userspace::{
    ebpf_source::EbpfSource,
    kernel_offsets::read_kernel_offsets,
    loader,
    record::SourceItem,
    strategy::{self, Requested, Strategy},
};
use tokio::{
    io::AsyncWriteExt,
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

#[derive(Parser, Debug)]
#[command(name = "fimd", version, about = "File integrity monitoring daemon")]
pub(crate) struct Args {
    /// Debugging: print raw kernel events under PATH (repeatable) instead of running the
    /// engine. No baseline, no journal.
    #[arg(long = "watch", value_name = "PATH")]
    watch: Vec<PathBuf>,
    /// The policy file; the built-in default applies while it does not exist.
    #[arg(long, env = "FIM_POLICY", default_value = "/etc/fim/policy.toml")]
    pub(crate) policy: PathBuf,
    /// Where the baseline and the journal live.
    #[arg(long, env = "FIM_STATE_DIR", default_value = "/var/lib/fim")]
    pub(crate) state_dir: PathBuf,
    /// Print every journaled change record as a JSON line on stdout.
    #[arg(long)]
    pub(crate) print_records: bool,
    /// The system log's datagram socket: the journal's chain head is written there every 10
    /// minutes, at start and at stop ("fim chain head SEQ:HASH", for `fim verify --expect`).
    #[arg(long, value_name = "PATH", default_value = fim_engine::daemon::SYSLOG_SOCKET)]
    pub(crate) syslog_socket: PathBuf,
    /// Attach strategy: auto picks the best the kernel permits.
    #[arg(long, default_value = "auto", value_parser = parse_requested)]
    strategy: Requested,
    /// Kernel ring buffer size in bytes (a power of two, at least one page).
    #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
    ring_bytes: u32,
    /// Kernel BTF to read struct offsets from.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    btf: PathBuf,
    /// The gRPC API's Unix socket.
    #[arg(long, value_name = "PATH", default_value = "/run/fim/fim.sock")]
    pub(crate) api_socket: PathBuf,
    /// Members of this group are API owners (root always is); "" for root only.
    #[arg(long, value_name = "NAME", default_value = "fim")]
    pub(crate) api_owner_group: String,
    /// Members of this group are API readers; "" for none.
    #[arg(long, value_name = "NAME", default_value = "fim-readers")]
    pub(crate) api_reader_group: String,
    /// Do not offer the gRPC API.
    #[arg(long, conflicts_with = "api_tcp")]
    pub(crate) no_api: bool,
    /// Also offer the API over TCP with TLS; clients must present a certificate from
    /// --api-client-ca whose fingerprint is listed with --api-client.
    #[arg(long, value_name = "ADDR", requires_all = ["api_tls_cert", "api_tls_key", "api_client_ca"])]
    pub(crate) api_tcp: Option<std::net::SocketAddr>,
    /// The server certificate chain for --api-tcp (PEM).
    #[arg(long, value_name = "PATH")]
    pub(crate) api_tls_cert: Option<PathBuf>,
    /// The server key for --api-tcp (PEM).
    #[arg(long, value_name = "PATH")]
    pub(crate) api_tls_key: Option<PathBuf>,
    /// The CA that signs client certificates for --api-tcp (PEM).
    #[arg(long, value_name = "PATH")]
    pub(crate) api_client_ca: Option<PathBuf>,
    /// A TLS client and its role: the SHA-256 fingerprint of its DER certificate (hex, colons
    /// allowed) and "owner" or "reader", e.g. `ab12...=reader` (repeatable).
    #[arg(long = "api-client", value_name = "FINGERPRINT=ROLE", value_parser = parse_api_client)]
    pub(crate) api_clients: Vec<(String, fim_api::Role)>,
}

fn parse_api_client(text: &str) -> Result<(String, fim_api::Role), String> {
    let (fingerprint, role) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?} is not FINGERPRINT=owner|reader"))?;
    let role = fim_api::Role::parse(role)
        .ok_or_else(|| format!("{role:?} is not a role (owner or reader)"))?;
    let fingerprint = fim_api::auth::parse_fingerprint(fingerprint).ok_or_else(|| {
        format!("{fingerprint:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    })?;
    Ok((fingerprint, role))
}

fn parse_requested(text: &str) -> Result<Requested, String> {
    text.parse()
}

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
        runtime.block_on(run(args))
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

async fn run(args: Args) -> anyhow::Result<()> {
    if !args.ring_bytes.is_power_of_two() || args.ring_bytes < 4096 {
        anyhow::bail!(
            "--ring-bytes {} must be a power of two of at least 4096",
            args.ring_bytes
        );
    }
    let roots: Vec<WatchRoot> = args.watch.iter().map(WatchRoot::recursive).collect();
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let Some((_, source)) = start_kernel_source(&args, roots).await? else {
        // Scan-only: nothing to stream until the scanner lands; wait for a signal.
        tokio::select! { _ = terminate.recv() => {}, _ = interrupt.recv() => {} }
        return Ok(());
    };
    let (source, mut events) = source;
    // Buffered: tokio's stdout hands every write to a blocking thread.
    let mut stdout = tokio::io::BufWriter::with_capacity(1 << 16, tokio::io::stdout());
    // After a signal, keep printing until the source closes the channel: nothing it already
    // took from the kernel is lost on a clean shutdown.
    loop {
        tokio::select! {
            item = events.recv() => {
                let Some(item) = item else { break };
                let mut line = serde_json::to_vec(&item).context("encoding an event")?;
                line.push(b'\n');
                stdout.write_all(&line).await.context("writing to stdout")?;
                if events.is_empty() {
                    stdout.flush().await.context("writing to stdout")?;
                }
            }
            _ = terminate.recv() => { tracing::info!("SIGTERM: detaching"); source.request_stop() }
            _ = interrupt.recv() => { tracing::info!("SIGINT: detaching"); source.request_stop() }
        }
    }
    stdout.flush().await.context("writing to stdout")?;
    source
        .join()
        .await
        .context("stopping the kernel pipeline")?;
    tracing::info!("all programs detached");
    Ok(())
}

/// The verifier's log can be thousands of lines: keep the summary line.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.find("Verifier output") {
        Some(cut) => line[..cut].trim_end_matches([' ', '.']).to_string(),
        None => line.to_string(),
    }
}

/// Gives the heap the kernel BTF parses left behind back to the system. Reading offsets and
/// loading the programs parse all of /sys/kernel/btf/vmlinux (tens of MB of types), freed at
/// once but kept by the allocator: 55 MB of an idle daemon's 102 MB resident set.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Chooses a strategy and starts the kernel pipeline, or returns None for scan-only after
/// saying in one line what is missing.
pub(crate) async fn start_kernel_source(
    args: &Args,
    roots: Vec<WatchRoot>,
) -> anyhow::Result<Option<(Strategy, (EbpfSource, mpsc::Receiver<SourceItem>))>> {
    let offsets = match read_kernel_offsets(&args.btf) {
        Ok(offsets) => offsets,
        Err(error) => {
            tracing::error!("{error}; no kernel events, falling back to scan-only");
            return Ok(None);
        }
    };
    tracing::debug!(?offsets, "kernel offsets from BTF");
    release_freed_memory();
    let (candidates, mut refused) = strategy::candidates(args.strategy);
    let tracefs = strategy::tracefs_root().unwrap_or("/sys/kernel/tracing");
    let mut chosen = None;
    for candidate in candidates {
        match loader::load(candidate, &offsets, args.ring_bytes, tracefs) {
            Ok(loaded) => {
                chosen = Some((candidate, loaded));
                break;
            }
            Err(error) => refused.push({
                // The verifier's full log, for whoever debugs a refusal.
                tracing::debug!(strategy = %candidate, "load failed: {error}");
                strategy::Unavailable {
                    strategy: candidate,
                    reason: error.to_string(),
                }
            }),
        }
    }
    let reasons: Vec<String> = refused
        .iter()
        .map(|reason| first_line(&reason.to_string()))
        .collect();
    release_freed_memory();
    let Some((strategy, loaded)) = chosen else {
        if args.strategy != Requested::Auto {
            anyhow::bail!(
                "the requested strategy cannot run here: {}",
                reasons.join("; ")
            );
        }
        tracing::error!(
            "no kernel event strategy is usable ({}); falling back to scan-only",
            reasons.join("; ")
        );
        return Ok(None);
    };
    if !reasons.is_empty() {
        tracing::info!(
            "attach strategy {strategy} chosen; not usable here: {}",
            reasons.join("; ")
        );
    }
    if !loaded.missing.is_empty() {
        tracing::info!(
            "this kernel lacks {} tracepoints, skipped: {}",
            loaded.missing.len(),
            loaded.missing.join(", ")
        );
    }
    let attached = loaded.attached.len();
    let (sender, receiver) = mpsc::channel(4096);
    let (source, warnings) =
        EbpfSource::start(loaded, roots.clone(), sender).context("starting the event source")?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let watched: Vec<String> = roots
        .iter()
        .map(|root| root.path.display().to_string())
        .collect();
    tracing::info!(strategy = %strategy, programs = attached, roots = ?watched, "monitoring started");
    Ok(Some((strategy, (source, receiver))))
}
