//! Accepting connections under the limits, without spinning when accept(2) fails.
//!
//! An accept that fails for lack of descriptors (EMFILE, ENFILE) or memory leaves the pending
//! connection in the kernel's queue, so the listener is ready again at once and fails again:
//! retried without a pause, it spins a core for as long as the shortage lasts (tonic's serve
//! loop only logs such errors and asks for the next connection). So after a failure
//! [`LimitedIncoming`] pauses for [`ACCEPT_PAUSE`] and warns at most once per
//! [`super::WARN_EVERY`], with the count of failures the warning stands for.
//!
//! fimd's TCP listener and local socket take their connections through it, each with its own
//! slots and timers. (fim-collector's agent listener, `server/listener.rs`, still has a copy
//! of this loop; it can become `LimitedIncoming::with_timers` with the collector's numbers.)
use std::{
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    time::Sleep,
};
use tokio_stream::Stream;

use super::{Limited, Limiter, PeerKey, Throttle, Timers};

/// How long accepting pauses after a failed accept.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Refused connections closed in one poll before the task yields, so a flood of them cannot
/// keep the accepting task from letting others run.
const REFUSALS_PER_POLL: usize = 64;

/// A listener [`LimitedIncoming`] takes connections from, and who each one counts against.
pub trait Accept {
    type Stream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, PeerKey)>>;
}

/// TCP connections count against their IP address.
impl Accept for TcpListener {
    type Stream = TcpStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, PeerKey)>> {
        let (stream, address) = ready!(TcpListener::poll_accept(self, cx))?;
        // Small answers (and the collector's acks) go out without Nagle's delay.
        let _ = stream.set_nodelay(true);
        Poll::Ready(Ok((stream, PeerKey::Address(address.ip()))))
    }
}

/// The admitted connections of a listener, each with its slot and silence timers: a stream
/// for tonic's `serve_with_incoming`. Refused ones are closed at once (the limiter warns).
/// Dropping it closes the listener.
pub struct LimitedIncoming<L> {
    listener: L,
    limiter: Limiter,
    timers: Timers,
    pause: Option<Pin<Box<Sleep>>>,
    failures: Throttle,
}

impl<L: Accept> LimitedIncoming<L> {
    /// With the API's timers ([`Timers::default`]).
    pub fn new(listener: L, limiter: Limiter) -> Self {
        LimitedIncoming::with_timers(listener, limiter, Timers::default())
    }

    pub fn with_timers(listener: L, limiter: Limiter, timers: Timers) -> Self {
        LimitedIncoming {
            listener,
            limiter,
            timers,
            pause: None,
            failures: Throttle::default(),
        }
    }

    pub fn listener(&self) -> &L {
        &self.listener
    }

    /// A failed accept: warn (rate-limited) and pause.
    fn failed(&mut self, error: &io::Error) {
        if let Some(failures) = self.failures.note() {
            tracing::warn!(
                failures,
                "{}: accept failed: {error}; pausing {} ms after each failure",
                self.limiter.what,
                ACCEPT_PAUSE.as_millis()
            );
        }
        self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
    }
}

impl<L: Accept + Unpin> Stream for LimitedIncoming<L> {
    type Item = io::Result<Limited<L::Stream>>;

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
                    this.failed(&error);
                    continue;
                }
            };
            if let Some(failures) = this.failures.recovered() {
                tracing::info!(failures, "{}: accepting again", this.limiter.what);
            }
            // Refused: dropping the stream closes it.
            let Some(slot) = this.limiter.admit(peer) else {
                refused += 1;
                if refused >= REFUSALS_PER_POLL {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            };
            return Poll::Ready(Some(Ok(Limited::with_timers(stream, slot, this.timers))));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        cell::Cell,
        sync::Arc,
        task::{Wake, Waker},
        time::Instant,
    };

    use tokio_stream::StreamExt as _;

    use super::*;

    /// Fails its first `failures` accepts, then connects from `peer` every time.
    struct Scripted {
        failures: Cell<usize>,
        polls: Cell<usize>,
        peer: PeerKey,
    }

    impl Scripted {
        fn new(failures: usize) -> Self {
            Scripted {
                failures: Cell::new(failures),
                polls: Cell::new(0),
                peer: PeerKey::Uid(1000),
            }
        }
    }

    impl Accept for Scripted {
        type Stream = tokio::io::DuplexStream;

        fn poll_accept(&self, _: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, PeerKey)>> {
            self.polls.set(self.polls.get() + 1);
            if self.failures.get() > 0 {
                self.failures.set(self.failures.get() - 1);
                return Poll::Ready(Err(io::Error::other("Too many open files")));
            }
            Poll::Ready(Ok((tokio::io::duplex(64).0, self.peer.clone())))
        }
    }

    #[tokio::test]
    async fn a_failed_accept_pauses_before_the_next_attempt() {
        let mut incoming = LimitedIncoming::new(Scripted::new(3), Limiter::new(4, 4));
        let started = Instant::now();
        let admitted = incoming.next().await;
        assert!(
            matches!(admitted, Some(Ok(_))),
            "a connection after the failures"
        );
        let waited = started.elapsed();
        // Three failures, three pauses; without them the loop asks again at once (a spin).
        assert_eq!(incoming.listener().polls.get(), 4);
        assert!(waited >= ACCEPT_PAUSE * 3, "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    struct Noop;

    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[tokio::test]
    async fn a_flood_of_refused_connections_yields_between_batches() {
        let limiter = Limiter::new(1, 1);
        let mut incoming = LimitedIncoming::new(Scripted::new(0), limiter.clone());
        let first = incoming.next().await;
        assert!(matches!(first, Some(Ok(_))));
        // The peer holds its one slot: every further connection is refused and closed, and
        // the stream gives the thread back after a batch of them instead of looping forever.
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut incoming).poll_next(&mut cx).is_pending());
        assert_eq!(incoming.listener().polls.get(), 1 + REFUSALS_PER_POLL);
        assert_eq!(limiter.open(), 1);
    }
}
