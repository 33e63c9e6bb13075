//! fim.collector.v1 over TCP: agents' Report stream under an admission limit, Enrollment
//! ([`enrollment`]), and the Workspace API ([`workspace`]: queries, machines) for holders of
//! an API token.
//!
//! Security: by default everything is TLS with the workspace CA ([`crate::ca`]). Client
//! certificates are optional at the handshake (an agent enrolling has none yet) and required
//! by Report: the stream is refused unless its certificate is one the workspace issued and
//! has not revoked, and the Hello's computer id must be the certificate's. With
//! `--insecure-plaintext` (labs, protocol tests) there is no TLS: Report is unauthenticated,
//! Enrollment is refused, and the Workspace API answers on loopback only.
//!
//! Admission: at most [`Limits::max_streams`] Report streams run at once; the next agent is
//! answered `Busy` with a retry-after (jittered by the agent) instead of being queued, so a
//! thousand agents returning together are drained a slice at a time rather than all holding
//! memory and database time. Connections are limited on accept, in total and per address,
//! and closed when silent ([`listener`]); messages by size (tonic's decoding limit); batches
//! by record count ([`crate::chain`]); TLS handshakes by time.
use std::{net::SocketAddr, pin::Pin, sync::Arc};

use fim_api::collector_pb::{
    collector_message,
    collector_server::{Collector, CollectorServer},
    enrollment_server::EnrollmentServer,
    AgentMessage, Busy, CollectorMessage,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, Semaphore},
};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{
    transport::{Certificate, Identity, ServerTlsConfig},
    Request, Response, Status, Streaming,
};

use crate::{ca::WorkspaceCa, error::CollectorError, store::CollectorStore};

pub mod enrollment;
pub mod limits;
mod listener;
mod stream;
pub mod workspace;

pub use enrollment::EnrollmentService;
pub use limits::Limits;
pub use workspace::{QueryLimits, WorkspaceService};

pub struct CollectorService {
    store: Arc<dyn CollectorStore>,
    limits: Limits,
    admission: Arc<Semaphore>,
    /// Whether Report needs an enrolled certificate (every TLS collector).
    certificates: bool,
}

impl CollectorService {
    /// `certificates`: refuse Report streams without a certificate the workspace issued.
    pub fn new(store: Arc<dyn CollectorStore>, limits: Limits, certificates: bool) -> Self {
        CollectorService {
            admission: Arc::new(Semaphore::new(limits.max_streams)),
            store,
            limits,
            certificates,
        }
    }

    /// The computer id the stream's certificate was issued to (None without TLS), or why
    /// the stream is refused.
    async fn certified_computer<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        if !self.certificates {
            return Ok(None);
        }
        let leaf = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|cert| cert.as_ref().to_vec()));
        let Some(leaf) = leaf else {
            tracing::warn!(peer = ?request.remote_addr(), "report refused: no client certificate");
            return Err(Status::unauthenticated(
                "this agent is not enrolled: report with the certificate the workspace \
                 issued (enroll with a token from `fim-collector enroll create`)",
            ));
        };
        let fingerprint = crate::ca::fingerprint(&leaf);
        let store = Arc::clone(&self.store);
        let lookup = fingerprint.clone();
        let found = tokio::task::spawn_blocking(move || store.agent_certificate(&lookup))
            .await
            .map_err(|error| Status::internal(format!("the lookup task failed: {error}")))?
            .map_err(|error| {
                tracing::error!("looking up an agent certificate: {error}");
                Status::unavailable("the workspace database failed; try again later")
            })?;
        let Some(certificate) = found else {
            tracing::warn!(%fingerprint, "report refused: a certificate the workspace has no record of");
            return Err(Status::unauthenticated(
                "the workspace has no record of this certificate; enroll again",
            ));
        };
        if let Some(reason) = certificate.refusal(fim_model::Timestamp::now().unix_nanos()) {
            tracing::warn!(computer_id = %certificate.computer_id, "report refused: {reason}");
            return Err(Status::permission_denied(reason));
        }
        Ok(Some(certificate.computer_id))
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Collector for CollectorService {
    type ReportStream = ReplyStream;

    async fn report(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let certified = self.certified_computer(&request).await?;
        let (replies, outgoing) = mpsc::channel(4);
        match Arc::clone(&self.admission).try_acquire_owned() {
            Ok(permit) => {
                let store = Arc::clone(&self.store);
                let limits = self.limits.clone();
                tokio::spawn(stream::serve(
                    store,
                    limits,
                    certified,
                    request.into_inner(),
                    replies,
                    permit,
                ));
            }
            Err(_) => {
                let retry_after = self.limits.retry_after;
                tracing::info!(
                    max_streams = self.limits.max_streams,
                    "agent refused at admission: asked to retry in {retry_after:?}"
                );
                let busy = Busy {
                    retry_after_ms: u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX),
                    reason: format!(
                        "{} agents are reporting, the most this collector serves at once",
                        self.limits.max_streams
                    ),
                };
                let _ = replies
                    .send(Ok(CollectorMessage {
                        kind: Some(collector_message::Kind::Busy(busy)),
                    }))
                    .await;
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(outgoing))))
    }
}

/// A bound listener, ready to serve (bound first so the address can be printed, and a port
/// already in use fails start-up).
pub struct Bound {
    listener: TcpListener,
    pub address: SocketAddr,
}

pub async fn bind(address: &str) -> Result<Bound, CollectorError> {
    let fail = |source| CollectorError::Listen {
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(fail)?;
    let address = listener.local_addr().map_err(fail)?;
    Ok(Bound { listener, address })
}

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` resolves: over TLS with the workspace CA when `ca` is given
/// (with Enrollment), over plain TCP otherwise.
pub async fn serve(
    bound: Bound,
    service: CollectorService,
    workspace: WorkspaceService,
    ca: Option<Arc<WorkspaceCa>>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CollectorError> {
    let limits = service.limits.clone();
    let store = Arc::clone(&service.store);
    let incoming = listener::incoming(bound.listener, &limits);
    let server = CollectorServer::new(service)
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(16))
        .http2_keepalive_interval(Some(self::limits::KEEPALIVE));
    let enrollment = match &ca {
        Some(ca) => {
            let (cert, key) = ca.server_identity()?;
            let tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(cert, key))
                .client_ca_root(Certificate::from_pem(ca.ca_pem()))
                .client_auth_optional(true)
                .timeout(TLS_HANDSHAKE);
            builder = builder.tls_config(tls)?;
            Some(EnrollmentServer::new(EnrollmentService::new(
                store,
                Arc::clone(ca),
            )))
        }
        None => None,
    };
    builder
        .add_service(server)
        .add_service(fim_api::collector_pb::workspace_server::WorkspaceServer::new(workspace))
        .add_optional_service(enrollment)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
