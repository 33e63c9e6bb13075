//! fimsvc's gRPC API: the same fim.v1 service, roles and limits as fimd's (`fim-api`), on a
//! named pipe instead of a Unix socket, and optionally over TCP with mutual TLS. It is bound
//! before monitoring starts, so a pipe name another process holds stops start-up with one
//! line, and it is stopped after the engine has drained, like fimd's.
use anyhow::Context as _;
use fim_api::{group_flag, ApiConfig, RunningApi, TcpConfig};
use fim_engine::daemon::Daemon;

use crate::ApiArgs;

fn api_config(args: &ApiArgs) -> Result<ApiConfig, fim_api::ApiError> {
    Ok(ApiConfig {
        pipe: args.api_pipe.clone(),
        owner_group: group_flag(&args.api_owner_group),
        reader_group: group_flag(&args.api_reader_group),
        tcp: TcpConfig::from_flags(
            args.api_tcp,
            &args.api_tls_cert,
            &args.api_tls_key,
            &args.api_client_ca,
            &args.api_clients,
        )?,
    })
}

/// Binds the API now (a bad configuration or a taken pipe stops start-up) and serves it in
/// the background; None with `--no-api`.
pub async fn start(daemon: &Daemon, args: &ApiArgs) -> anyhow::Result<Option<RunningApi>> {
    if args.no_api {
        tracing::info!("the gRPC API is off (--no-api)");
        return Ok(None);
    }
    let config = api_config(args).context("starting the gRPC API")?;
    RunningApi::start(daemon.handle(), config)
        .await
        .map(Some)
        .context("starting the gRPC API")
}
