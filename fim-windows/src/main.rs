//! fimsvc: the Windows companion of fimd.
//!
//! It links the same engine, store, journal and policy format as fimd; what differs is where
//! events come from. Here registry notifications (`registry_source`) say which registry entity
//! to look at again, and the engine's registry reader compares its keys with their baseline;
//! service events (`service_source`) make it compare the services; directory change
//! notifications (`file_source`) say which files to look at. It runs as a Windows
//! service (`service`: install, start, stop, uninstall) or in the foreground (`fimsvc run`, a
//! console or Wine on the build machine). It serves the same gRPC API as fimd (`api`) on a
//! named pipe (`\\.\pipe\fim`), which `fim.exe` talks to; who made a change comes from an ETW
//! session where the system can consume one (`who_data.rs`). Built on
//! other platforms it only says that it runs on Windows.
#[cfg(windows)]
mod api;
#[cfg(windows)]
mod dir_watch;
#[cfg(windows)]
mod file_source;
#[cfg(windows)]
mod registry_source;
#[cfg(windows)]
mod run;
#[cfg(windows)]
mod service;
#[cfg(windows)]
mod service_source;
#[cfg(windows)]
mod usn_source;
#[cfg(windows)]
mod who_data;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "fimsvc",
    version,
    about = "File integrity monitoring for Windows: files, registry keys and services in real time"
)]
struct Args {
    #[command(subcommand)]
    command: Task,
}

/// The name the service is installed under unless told otherwise.
const DEFAULT_SERVICE: &str = "fimsvc";

#[derive(Subcommand, Debug)]
enum Task {
    /// Monitor in the foreground until Ctrl-C: the start-up scan, then registry and service
    /// notifications, every change journaled.
    Run(RunArgs),
    /// Install fimsvc as a Windows service (demand start) with this policy and state directory.
    Install {
        #[arg(long, default_value = DEFAULT_SERVICE)]
        name: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Start the installed service; returns once it monitors (RUNNING).
    Start {
        #[arg(long, default_value = DEFAULT_SERVICE)]
        name: String,
    },
    /// Stop the service; returns once its pending work is journaled (STOPPED).
    Stop {
        #[arg(long, default_value = DEFAULT_SERVICE)]
        name: String,
    },
    /// Stop and delete the service.
    Uninstall {
        #[arg(long, default_value = DEFAULT_SERVICE)]
        name: String,
    },
    /// What the service control manager runs (not for use by hand).
    #[command(hide = true)]
    Service {
        #[arg(long, default_value = DEFAULT_SERVICE)]
        name: String,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(clap::Args, Debug, Clone)]
// Read only by the Windows build.
#[cfg_attr(not(windows), allow(dead_code))]
pub struct RunArgs {
    /// The policy file (the same format as fimd's; Linux kinds are not applicable here). The
    /// recommended Windows entities while it does not exist.
    #[arg(long)]
    pub policy: PathBuf,
    /// Where the database lives.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Print every committed record as a JSON line on stdout.
    #[arg(long)]
    pub print_records: bool,
    #[command(flatten)]
    pub reporting: fim_api::push::ReportingOptions,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// The gRPC API's options (fimd's names, with a pipe for fimd's socket).
#[derive(clap::Args, Debug, Clone)]
#[cfg_attr(not(windows), allow(dead_code))]
pub struct ApiArgs {
    /// The named pipe the gRPC API is served on (`fim` means `\\.\pipe\fim`). Starting
    /// fails when the pipe exists already (another fimsvc, or a process squatting the name).
    #[arg(long, value_name = "NAME", default_value = fim_api::pipe::DEFAULT_PIPE)]
    pub api_pipe: String,
    /// Members of this group (a name or a SID string) are API owners; SYSTEM and
    /// Administrators always are. "" for administrators only.
    #[arg(long, value_name = "GROUP", default_value = "fim")]
    pub api_owner_group: String,
    /// Members of this group (a name or a SID string) are API readers; "" for none.
    #[arg(long, value_name = "GROUP", default_value = "fim-readers")]
    pub api_reader_group: String,
    /// Do not offer the gRPC API.
    #[arg(long, conflicts_with = "api_tcp")]
    pub no_api: bool,
    /// Also offer the API over TCP with TLS; clients must present a certificate from
    /// --api-client-ca whose fingerprint is listed with --api-client.
    #[arg(long, value_name = "ADDR", requires_all = ["api_tls_cert", "api_tls_key", "api_client_ca"])]
    pub api_tcp: Option<std::net::SocketAddr>,
    /// The server certificate chain for --api-tcp (PEM).
    #[arg(long, value_name = "PATH")]
    pub api_tls_cert: Option<PathBuf>,
    /// The server key for --api-tcp (PEM).
    #[arg(long, value_name = "PATH")]
    pub api_tls_key: Option<PathBuf>,
    /// The CA that signs client certificates for --api-tcp (PEM).
    #[arg(long, value_name = "PATH")]
    pub api_client_ca: Option<PathBuf>,
    /// A TLS client and its role: the SHA-256 fingerprint of its DER certificate (hex, colons
    /// allowed) and "owner" or "reader", e.g. `ab12...=reader` (repeatable).
    #[arg(long = "api-client", value_name = "FINGERPRINT=ROLE", value_parser = fim_api::auth::parse_client)]
    pub api_clients: Vec<(String, fim_api::Role)>,
}

impl ApiArgs {
    /// The same options as arguments, for the installed service's command line.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--api-pipe".into(),
            self.api_pipe.clone().into(),
            "--api-owner-group".into(),
            self.api_owner_group.clone().into(),
            "--api-reader-group".into(),
            self.api_reader_group.clone().into(),
        ];
        if self.no_api {
            args.push("--no-api".into());
        }
        if let Some(listen) = self.api_tcp {
            args.extend(["--api-tcp".into(), listen.to_string().into()]);
        }
        for (flag, path) in [
            ("--api-tls-cert", &self.api_tls_cert),
            ("--api-tls-key", &self.api_tls_key),
            ("--api-client-ca", &self.api_client_ca),
        ] {
            if let Some(path) = path {
                args.extend([flag.into(), path.clone().into_os_string()]);
            }
        }
        for (fingerprint, role) in &self.api_clients {
            args.extend([
                "--api-client".into(),
                format!("{fingerprint}={role}").into(),
            ]);
        }
        args
    }
}

/// Logs to `writer`; `FIM_LOG` sets the filter (default info).
pub(crate) fn init_logging<W>(writer: W, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !matches!(args.command, Task::Service { .. }) {
        use std::io::IsTerminal as _;
        init_logging(std::io::stderr, std::io::stderr().is_terminal());
    }
    match execute(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(windows)]
fn execute(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Run(args) => foreground(args),
        Task::Install { name, run } => service::install(&name, &run),
        Task::Start { name } => service::start(&name),
        Task::Stop { name } => service::stop(&name),
        Task::Uninstall { name } => service::uninstall(&name),
        Task::Service { name, run } => service::dispatch(name, run),
    }
}

#[cfg(windows)]
fn foreground(args: RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run::run(
        args,
        async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: stopping");
        },
        || {},
    ))
}

#[cfg(not(windows))]
fn execute(_task: Task) -> anyhow::Result<()> {
    anyhow::bail!("fimsvc runs on Windows only (fimd is the Linux agent)")
}
