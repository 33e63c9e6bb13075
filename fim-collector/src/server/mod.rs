//! fim.collector.v1 over TCP: agents' Report stream under an admission limit, and the
//! Workspace API ([`workspace`]: queries, machines) for holders of an API token. The Report
//! stream itself is not authenticated yet (enrollment will add it), which is why machine
//! heads are served only to token holders: a head would let anyone forge records chaining
//! onto another machine's journal.
//!
//! Admission: at most [`Limits::max_streams`] Report streams run at once; the next agent is
//! answered `Busy` with a retry-after (jittered by the agent) instead of being queued, so a
//! thousand agents returning together are drained a slice at a time rather than all holding
//! memory and database time. Connections are limited on accept, in total and per address,
//! and closed when silent ([`listener`]); messages by size (tonic's decoding limit); batches
//! by record count ([`crate::chain`]).
use std::{net::SocketAddr, pin::Pin, sync::Arc};

use fim_api::collector_pb::{
    collector_message,
    collector_server::{Collector, CollectorServer},
    AgentMessage, Busy, CollectorMessage,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, Semaphore},
};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

use crate::{error::CollectorError, store::CollectorStore};

pub mod limits;
mod listener;
mod stream;
pub mod workspace;

pub use limits::Limits;
pub use workspace::{QueryLimits, WorkspaceService};

pub struct CollectorService {
    store: Arc<dyn CollectorStore>,
    limits: Limits,
    admission: Arc<Semaphore>,
}

impl CollectorService {
    pub fn new(store: Arc<dyn CollectorStore>, limits: Limits) -> Self {
        CollectorService {
            admission: Arc::new(Semaphore::new(limits.max_streams)),
            store,
            limits,
        }
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
        let (replies, outgoing) = mpsc::channel(4);
        match Arc::clone(&self.admission).try_acquire_owned() {
            Ok(permit) => {
                let store = Arc::clone(&self.store);
                let limits = self.limits.clone();
                tokio::spawn(stream::serve(
                    store,
                    limits,
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

/// Serves until `shutdown` resolves.
pub async fn serve(
    bound: Bound,
    service: CollectorService,
    workspace: WorkspaceService,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), CollectorError> {
    let limits = service.limits.clone();
    let incoming = listener::LimitedIncoming::new(bound.listener, &limits);
    let server = CollectorServer::new(service)
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(16))
        .http2_keepalive_interval(Some(self::limits::KEEPALIVE))
        .add_service(server)
        .add_service(fim_api::collector_pb::workspace_server::WorkspaceServer::new(workspace))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
