//! Connecting to a daemon: over its Unix socket (the default), its named pipe on Windows
//! (`client_windows.rs`), or over TCP with a client certificate. Shared by `fim`, the tests
//! and the benchmark, so they all speak to fimd and fimsvc the same way.
#[cfg(unix)]
use std::path::{Path, PathBuf};

#[cfg(unix)]
use hyper_util::rt::TokioIo;
#[cfg(unix)]
use tonic::transport::Uri;
use tonic::transport::{Channel, Endpoint};

#[cfg(windows)]
pub use crate::client_windows::connect_pipe;
use crate::pb::fim_client::FimClient;

/// The largest response a client accepts (a page of records with their content).
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {path}: {source}")]
    Local {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {address}: {source}")]
    Tcp {
        address: String,
        source: tonic::transport::Error,
    },
}

/// Connects to the daemon's Unix socket.
#[cfg(unix)]
pub async fn connect_unix(path: &Path) -> Result<FimClient<Channel>, ConnectError> {
    let socket: PathBuf = path.to_path_buf();
    // The URI is required by the builder but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://fimd.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| ConnectError::Local {
            path: fim_engine::path_text::display_path(path),
            source,
        })?;
    Ok(FimClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}

/// Connects over TCP with TLS and a client certificate.
pub async fn connect_tls(
    address: &str,
    server_name: &str,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<FimClient<Channel>, ConnectError> {
    let tcp_error = |source| ConnectError::Tcp {
        address: address.to_string(),
        source,
    };
    let tls = tonic::transport::ClientTlsConfig::new()
        .domain_name(server_name)
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .map_err(tcp_error)?
        .tls_config(tls)
        .map_err(tcp_error)?
        .connect()
        .await
        .map_err(tcp_error)?;
    Ok(FimClient::new(channel))
}
