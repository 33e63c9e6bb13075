//! Accepting TCP connections under limits, so a flood of clients cannot exhaust the
//! collector's descriptors or memory, and a client cannot hold a place by connecting and then
//! saying nothing.
//!
//! The accounting is fim-api's ([`fim_api::limits`]), the one fimd's API listeners use, so
//! there is one implementation of it to get right: each accepted connection takes a slot,
//! counted in total ([`Limits::max_connections`]) and per IP address
//! ([`Limits::max_connections_per_address`], generous because agents behind one NAT share an
//! address); a connection beyond either is closed at once (the agent backs off and retries),
//! with a rate-limited warning. An admitted connection is closed when it sends nothing within
//! [`Limits::first_byte_timeout`], or nothing for [`Limits::connection_idle_timeout`] after
//! that (a live agent answers the server's pings); its slot comes back when it closes.
//! Without those timers, a client that opens TCP and sends nothing would hold its slot
//! forever, and enough of them would lock every agent out.
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use fim_api::limits::{Limited, Limiter, PeerKey, Timers};
use tokio::{
    net::{TcpListener, TcpStream},
    time::Sleep,
};
use tokio_stream::Stream;

use super::Limits;

/// How long to pause accepting after an accept error: EMFILE and its like fail again at once,
/// and retrying without a pause would spin a core.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Refused connections closed in one poll before the task yields, so a flood of them cannot
/// keep the accepting task from letting others run.
const REFUSALS_PER_POLL: usize = 64;

/// The admitted connections of `listener`: a stream for tonic's `serve_with_incoming`. The
/// listener is closed when the stream is dropped (at shutdown, before connections drain).
pub struct LimitedIncoming {
    listener: TcpListener,
    limiter: Limiter,
    timers: Timers,
    pause: Option<Pin<Box<Sleep>>>,
}

impl LimitedIncoming {
    pub fn new(listener: TcpListener, limits: &Limits) -> Self {
        LimitedIncoming {
            listener,
            limiter: Limiter::new(
                limits.max_connections.max(1),
                limits.max_connections_per_address.max(1),
            )
            .named("collector connection"),
            timers: Timers {
                first_byte: limits.first_byte_timeout,
                idle: limits.connection_idle_timeout,
            },
            pause: None,
        }
    }
}

impl Stream for LimitedIncoming {
    type Item = io::Result<Limited<TcpStream>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut refused = 0;
        loop {
            if let Some(pause) = this.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            let (stream, peer) = match ready!(this.listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("accepting a connection failed: {error}");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                    continue;
                }
            };
            // Refused: dropping the stream closes it (the limiter logs the refusal).
            let Some(slot) = this.limiter.admit(PeerKey::Address(peer.ip())) else {
                refused += 1;
                if refused >= REFUSALS_PER_POLL {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            };
            // Acks and small batches go out without Nagle's delay.
            let _ = stream.set_nodelay(true);
            return Poll::Ready(Some(Ok(Limited::with_timers(stream, slot, this.timers))));
        }
    }
}
