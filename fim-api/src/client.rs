//! Connecting to a daemon: over its Unix socket (the default), or over TCP with a client
//! certificate. Shared by `fim`, the tests and the benchmark, so they all speak to fimd the
//! same way.
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::pb::fim_client::FimClient;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {path}: {source}")]
    Unix {
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
        .map_err(|source| ConnectError::Unix {
            path: fim_engine::path_text::display_path(path),
            source,
        })?;
    Ok(FimClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
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
