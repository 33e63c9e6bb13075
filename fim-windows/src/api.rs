//! fimsvc's gRPC API: the same fim.v1 service, roles and limits as fimd's (`fim-api`), on a
//! named pipe instead of a Unix socket, and optionally over TCP with mutual TLS. It is bound
//! before monitoring starts, so a pipe name another process holds stops start-up with one
//! line, and it is stopped after the engine has drained, like fimd's.
use std::time::Duration;

use anyhow::Context as _;
use fim_api::{ApiConfig, ApiServer, TcpConfig};
use fim_engine::daemon::Daemon;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::ApiArgs;

/// How long calls in flight may take to finish once the engine has stopped.
const API_GRACE: Duration = Duration::from_secs(5);

fn api_config(args: &ApiArgs) -> anyhow::Result<ApiConfig> {
    let group = |name: &str| (!name.is_empty()).then(|| name.to_string());
    let tcp = match args.api_tcp {
        None => None,
        Some(listen) => {
            // clap enforces these with --api-tcp (requires_all).
            let path = |value: &Option<std::path::PathBuf>, flag: &str| {
                value
                    .clone()
                    .with_context(|| format!("--api-tcp needs {flag}"))
            };
            Some(TcpConfig {
                listen,
                cert: path(&args.api_tls_cert, "--api-tls-cert")?,
                key: path(&args.api_tls_key, "--api-tls-key")?,
                client_ca: path(&args.api_client_ca, "--api-client-ca")?,
                clients: args.api_clients.clone(),
            })
        }
    };
    Ok(ApiConfig {
        pipe: args.api_pipe.clone(),
        owner_group: group(&args.api_owner_group),
        reader_group: group(&args.api_reader_group),
        tcp,
    })
}

/// The running API and the way to stop it.
pub struct Api {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), fim_api::ApiError>>,
}

impl Api {
    /// Binds now (a bad configuration or a taken pipe stops start-up) and serves in the
    /// background.
    pub async fn start(daemon: &Daemon, args: &ApiArgs) -> anyhow::Result<Option<Api>> {
        if args.no_api {
            tracing::info!("the gRPC API is off (--no-api)");
            return Ok(None);
        }
        let server = ApiServer::bind(daemon.handle(), api_config(args)?)
            .await
            .context("starting the gRPC API")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Ok(Some(Api { stop, task }))
    }

    /// Stops accepting, ends the change streams and waits (a while) for calls in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(API_GRACE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::error!("{error}"),
            Ok(Err(join)) => tracing::error!("the API task failed: {join}"),
            Err(_) => tracing::warn!(
                "API calls were still running after {}s; stopping anyway",
                API_GRACE.as_secs()
            ),
        }
    }
}
