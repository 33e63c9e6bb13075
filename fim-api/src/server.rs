//! The API server: the local transport (a Unix socket, or a named pipe on Windows), an
//! optional TCP listener with mutual TLS, and the services both carry (fim.v1.Fim, gRPC
//! health, server reflection) behind the role layer. Only the local transport differs by
//! platform (`socket_unix.rs`, `pipe_windows.rs`); the services, roles and limits are shared.
//!
//! Binding is separate from serving ([`ApiServer::bind`], then [`ApiServer::serve`]) so the
//! daemon fails at start-up on a bad configuration (a certificate that does not load, a path
//! that is not a socket, a pipe name another process holds) instead of running without its
//! API. Shutdown is graceful: the
//! listeners stop accepting, live change streams end, calls in flight finish.
use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use fim_engine::{daemon::DaemonHandle, path_text::display_path};
use tokio::sync::watch;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

#[cfg(windows)]
use crate::pipe_windows::{PipeError, PipeListener};
use crate::{
    auth::{parse_fingerprint, AuthLayer, Role, Roles},
    limits::{LimitedIncoming, Limiter, KEEPALIVE, MAX_REQUEST_BYTES, TLS_HANDSHAKE},
    pb,
    service::FimService,
};
#[cfg(unix)]
use crate::{
    peer::group_id,
    socket_unix::{self, SocketError},
};

/// Where and to whom the API is offered.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The Unix socket.
    #[cfg(unix)]
    pub socket: PathBuf,
    /// The named pipe (`fim` or `\\.\pipe\fim`, see [`crate::pipe::pipe_path`]).
    #[cfg(windows)]
    pub pipe: String,
    /// Members are owners (root, or SYSTEM and Administrators on Windows, always are). None,
    /// or a group that does not exist: only those. On Windows a name or a SID string.
    pub owner_group: Option<String>,
    /// Members are readers.
    pub reader_group: Option<String>,
    pub tcp: Option<TcpConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            #[cfg(unix)]
            socket: PathBuf::from("/run/fim/fim.sock"),
            #[cfg(windows)]
            pipe: crate::pipe::DEFAULT_PIPE.to_string(),
            owner_group: Some("fim".into()),
            reader_group: Some("fim-readers".into()),
            tcp: None,
        }
    }
}

/// The remote listener: TLS with client certificates required.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    pub listen: SocketAddr,
    /// The server's certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM); others fail the handshake.
    pub client_ca: PathBuf,
    /// SHA-256 fingerprints (hex, colons allowed) of client certificates (DER) and their
    /// roles. A CA-signed certificate that is not listed has no role.
    pub clients: Vec<(String, Role)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[cfg(unix)]
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[cfg(windows)]
    #[error(transparent)]
    Pipe(#[from] PipeError),
    #[error("cannot look up group {name}: {source}")]
    Group {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot read the {what} {}: {source}", display_path(.path))]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a SHA-256 certificate fingerprint (64 hex digits, colons allowed)")]
    Fingerprint(String),
    #[error("the TLS configuration is unusable: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
    #[error("the API server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("--api-tcp needs {0}")]
    MissingFlag(&'static str),
}

/// The local listener of this platform.
#[cfg(unix)]
type Local = tokio::net::UnixListener;
#[cfg(windows)]
type Local = PipeListener;

/// A bound, not yet serving, API.
pub struct ApiServer {
    handle: DaemonHandle,
    roles: Arc<Roles>,
    /// The socket's path, or the pipe's name.
    socket_path: PathBuf,
    local: Local,
    tcp: Option<(tokio::net::TcpListener, Server)>,
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(
    handle: DaemonHandle,
    config: ApiConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    ApiServer::bind(handle, config).await?.serve(shutdown).await
}

/// A group's id; None (logged) when it is not configured or does not exist.
#[cfg(unix)]
fn resolve_group(name: Option<&str>, role: Role) -> Result<Option<u32>, ApiError> {
    let Some(name) = name else {
        return Ok(None);
    };
    let gid = group_id(name).map_err(|source| ApiError::Group {
        name: name.to_string(),
        source,
    })?;
    if gid.is_none() {
        match role {
            Role::Owner => tracing::info!("group {name} does not exist: only root is an API owner"),
            Role::Reader => tracing::info!("group {name} does not exist: there are no API readers"),
        }
    }
    Ok(gid)
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ApiError> {
    std::fs::read(path).map_err(|source| ApiError::Pem {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl ApiServer {
    pub async fn bind(handle: DaemonHandle, config: ApiConfig) -> Result<ApiServer, ApiError> {
        #[cfg(unix)]
        let owner_gid = resolve_group(config.owner_group.as_deref(), Role::Owner)?;
        #[cfg(unix)]
        let reader_gid = resolve_group(config.reader_group.as_deref(), Role::Reader)?;
        // On Windows the groups are SIDs checked against each client's token at connect time
        // (pipe_windows.rs); there are no group ids.
        #[cfg(windows)]
        let (owner_gid, reader_gid) = (None, None);
        let mut clients = HashMap::new();
        let mut tcp = None;
        if let Some(tcp_config) = &config.tcp {
            for (text, role) in &tcp_config.clients {
                let fingerprint =
                    parse_fingerprint(text).ok_or_else(|| ApiError::Fingerprint(text.clone()))?;
                clients.insert(fingerprint, *role);
            }
            let identity = Identity::from_pem(
                read_pem("server certificate", &tcp_config.cert)?,
                read_pem("server key", &tcp_config.key)?,
            );
            let client_ca = Certificate::from_pem(read_pem("client CA", &tcp_config.client_ca)?);
            // Client certificates are required: client_auth_optional stays false.
            let tls = ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(client_ca)
                .timeout(TLS_HANDSHAKE);
            let server = bounded(Server::builder())
                .tls_config(tls)
                .map_err(ApiError::Tls)?;
            let listener = tokio::net::TcpListener::bind(tcp_config.listen)
                .await
                .map_err(|source| ApiError::Listen {
                    addr: tcp_config.listen,
                    source,
                })?;
            tcp = Some((listener, server));
        }
        #[cfg(unix)]
        let (local, socket_path) = (
            socket_unix::bind(&config.socket, owner_gid, reader_gid)?,
            config.socket,
        );
        #[cfg(windows)]
        let (local, socket_path) = {
            let path = crate::pipe::pipe_path(&config.pipe);
            let listener = PipeListener::bind(
                &path,
                config.owner_group.as_deref(),
                config.reader_group.as_deref(),
            )?;
            (listener, PathBuf::from(path))
        };
        Ok(ApiServer {
            handle,
            roles: Arc::new(Roles {
                owner_gid,
                reader_gid,
                clients,
            }),
            socket_path,
            local,
            tcp,
        })
    }

    /// The socket's path, or on Windows the pipe's (`\\.\pipe\fim`).
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then stops gracefully and removes the socket.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ApiError> {
        let (stop, stopping) = watch::channel(false);
        let fim = pb::fim_server::FimServer::new(FimService::new(self.handle, stopping.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_service_status("fim.v1.Fim", tonic_health::ServingStatus::Serving)
            .await;
        // Both reflection versions: grpcurl and grpcio's reflection client still ask v1alpha
        // first (or only), newer tools ask v1.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|error| ApiError::Reflection(error.to_string()))?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|error| ApiError::Reflection(error.to_string()))?;
        let layer = AuthLayer::new(self.roles.clone());

        #[cfg(unix)]
        let roles = format!(
            "owner: root{}, readers: {}",
            self.roles
                .owner_gid
                .map(|gid| format!(", group {gid}"))
                .unwrap_or_default(),
            self.roles
                .reader_gid
                .map(|gid| format!("group {gid}"))
                .unwrap_or_else(|| "none".into()),
        );
        #[cfg(windows)]
        let roles = self.local.roles.clone();
        // A pipe name is text fimsvc built; display_path's escapes (for Unix bytes) would double
        // its backslashes.
        #[cfg(unix)]
        let listening = display_path(&self.socket_path);
        #[cfg(windows)]
        let listening = self.socket_path.to_string_lossy().into_owned();
        tracing::info!("api listening on {listening} ({roles})");
        // Both listeners share one set of slots: the total bounds the daemon's memory.
        let limiter = Limiter::default();
        #[cfg(unix)]
        let incoming = socket_unix::incoming(self.local, limiter.clone());
        #[cfg(windows)]
        let incoming = self.local.incoming(limiter.clone());
        let local = bounded(Server::builder())
            .layer(layer.clone())
            .add_service(fim.clone())
            .add_service(health.clone())
            .add_service(reflection.clone())
            .add_service(reflection_alpha.clone())
            .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
        let tcp = async {
            let Some((listener, server)) = self.tcp else {
                return Ok(());
            };
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("api listening on {addr} (TLS, client certificates required)");
            }
            server
                .layer(layer)
                .add_service(fim)
                .add_service(health)
                .add_service(reflection)
                .add_service(reflection_alpha)
                .serve_with_incoming_shutdown(
                    LimitedIncoming::new(listener, limiter),
                    stopped(stopping),
                )
                .await
        };
        let servers = async { tokio::try_join!(local, tcp) };
        tokio::pin!(servers);
        let result = tokio::select! {
            ended = &mut servers => ended,
            () = shutdown => {
                let _ = stop.send(true);
                health_reporter
                    .set_service_status("fim.v1.Fim", tonic_health::ServingStatus::NotServing)
                    .await;
                servers.await
            }
        };
        // The pipe goes away with its last handle; a socket file stays unless removed.
        #[cfg(unix)]
        socket_unix::remove(&self.socket_path);
        result.map(|_| ()).map_err(ApiError::Serve)?;
        tracing::info!("api stopped");
        Ok(())
    }
}

/// The server settings every listener shares: keepalive pings (so a silent but live client
/// has something to answer, see `limits`), and bounded streams per connection.
fn bounded(builder: Server) -> Server {
    builder
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .max_concurrent_streams(Some(64))
        .tcp_nodelay(true)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}
