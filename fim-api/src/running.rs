//! The API as the daemons run it (fimd, fimsvc): built from their command-line flags, bound
//! before monitoring starts (a bad configuration or a taken socket or pipe stops start-up),
//! served in the background, and stopped after the engine has drained, giving calls in flight
//! a grace period.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use fim_engine::daemon::DaemonHandle;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{ApiConfig, ApiError, ApiServer, Role, TcpConfig};

/// How long calls in flight may take to finish once the engine has stopped.
pub const API_GRACE: Duration = Duration::from_secs(5);

impl TcpConfig {
    /// The TCP listener the daemons' `--api-tcp`, `--api-tls-cert`, `--api-tls-key`,
    /// `--api-client-ca` and `--api-client` flags ask for; None without `--api-tcp`.
    pub fn from_flags(
        listen: Option<SocketAddr>,
        cert: &Option<PathBuf>,
        key: &Option<PathBuf>,
        client_ca: &Option<PathBuf>,
        clients: &[(String, Role)],
    ) -> Result<Option<TcpConfig>, ApiError> {
        let Some(listen) = listen else {
            return Ok(None);
        };
        // clap enforces these with --api-tcp (requires_all); this says which one if not.
        let path = |value: &Option<PathBuf>, flag: &'static str| {
            value.clone().ok_or(ApiError::MissingFlag(flag))
        };
        Ok(Some(TcpConfig {
            listen,
            cert: path(cert, "--api-tls-cert")?,
            key: path(key, "--api-tls-key")?,
            client_ca: path(client_ca, "--api-client-ca")?,
            clients: clients.to_vec(),
        }))
    }
}

/// An empty group flag means no group.
pub fn group_flag(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_string())
}

/// A served API and the way to stop it.
pub struct RunningApi {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ApiError>>,
}

impl RunningApi {
    /// Binds now and serves in the background.
    pub async fn start(handle: DaemonHandle, config: ApiConfig) -> Result<RunningApi, ApiError> {
        let server = ApiServer::bind(handle, config).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Ok(RunningApi { stop, task })
    }

    /// Stops accepting, ends the change streams and waits up to [`API_GRACE`] for calls in
    /// flight.
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
