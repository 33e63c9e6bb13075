//! fimd's command line.
use std::path::PathBuf;

use clap::Parser;
use fim_common::maps::DEFAULT_RING_BYTES;
use fim_userspace::strategy::Requested;

#[derive(Parser, Debug)]
#[command(name = "fimd", version, about = "File integrity monitoring daemon")]
pub(crate) struct Args {
    /// Debugging: print raw kernel events under PATH (repeatable) instead of running the
    /// engine. No baseline, no journal.
    #[arg(long = "watch", value_name = "PATH")]
    pub(crate) watch: Vec<PathBuf>,
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
    pub(crate) strategy: Requested,
    /// Kernel ring buffer size in bytes (a power of two, at least one page).
    #[arg(long, default_value_t = DEFAULT_RING_BYTES)]
    pub(crate) ring_bytes: u32,
    /// Kernel BTF to read struct offsets from.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    pub(crate) btf: PathBuf,
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
    #[command(flatten)]
    pub(crate) reporting: fim_api::push::ReportingOptions,
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

#[cfg(test)]
mod tests {
    use super::*;

    // FIM_COLLECTOR goes through the same delimiter as the flag; the flag is tested because
    // setting the environment in a test would race other tests.
    #[test]
    fn collectors_split_on_commas() {
        let args = Args::try_parse_from(["fimd", "--collector", "a:1,b:2"]).unwrap();
        assert_eq!(args.reporting.collectors, ["a:1", "b:2"]);
    }
}
