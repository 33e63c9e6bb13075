//! Bounds on what a client can hold open: connections in total and per peer, and how long a
//! connection may sit silent.
//!
//! Every accepted connection costs the root daemon a task, buffers and a descriptor, and a
//! reader (or anyone who can reach the TCP port) could open them until the daemon runs out.
//! So each connection takes a slot from [`Limiter`] at accept time, counted per peer (the uid
//! on the Unix socket, the user SID on the named pipe, the IP address over TCP) and in total; one beyond either limit is
//! closed at once, with a rate-limited warning. A connection that sends nothing within
//! [`FIRST_BYTE`] (an idle probe), that has not finished its TLS handshake within
//! [`TLS_HANDSHAKE`] (a half-open one), or that sends nothing for [`IDLE`] after that is
//! closed: the server pings every [`KEEPALIVE`], so a live client, even one only
//! waiting on a quiet change stream, always has something to answer.
//!
//! The collector's agent listener (fim-collector) uses the same pieces with its own numbers
//! ([`Limiter::named`], [`Limited::with_timers`]): one accounting of slots and silence for
//! every server this project runs, rather than a second hand-written limiter that drifts.
//! Connections are taken from the listener by [`LimitedIncoming`], which also pauses after a
//! failed accept (out of descriptors: retried at once, it would spin a core).
//!
//! WatchChanges streams are the other thing a client can multiply (64 per connection would
//! be 2,048 per peer), so they take slots of their own ([`Limiter::streams`]). Root is never
//! refused for the total, only for its own per-peer share: readers filling the server must not
//! lock the administrator out.
use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Connections open at once, all peers together.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections open at once from one uid or one IP address.
pub const MAX_PER_PEER: usize = 32;
/// A new connection must send its first byte within this.
pub const FIRST_BYTE: Duration = Duration::from_secs(10);
/// A TCP client must finish its TLS handshake within this. A stalled handshake has sent its
/// first bytes, so [`FIRST_BYTE`] does not catch it, and until it finishes there is no HTTP/2
/// connection whose pings could prove the peer alive.
pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);
/// The server's HTTP/2 ping interval (answered pings count as activity).
pub const KEEPALIVE: Duration = Duration::from_secs(60);

/// The largest request message accepted (tonic's default is 4 MiB). The largest real one, an
/// entity with its ignore patterns, is a few KiB; a bigger one is refused with OUT_OF_RANGE
/// before it is buffered.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// WatchChanges streams open at once, all peers together.
pub const MAX_STREAMS: usize = 256;
/// WatchChanges streams open at once for one uid, IP address or client certificate.
pub const MAX_STREAMS_PER_PEER: usize = 16;

/// Who a connection counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerKey {
    Uid(u32),
    /// A named pipe client's user SID; `admin` when its token is SYSTEM or an elevated
    /// administrator (see [`crate::peer::WindowsPeer`]).
    Account {
        sid: String,
        admin: bool,
    },
    Address(std::net::IpAddr),
    Certificate(String),
    Unknown,
}

impl PeerKey {
    /// Root, or SYSTEM or an administrator on Windows: never refused for the total.
    pub fn is_root(&self) -> bool {
        matches!(self, PeerKey::Uid(0) | PeerKey::Account { admin: true, .. })
    }
}

mod accept;

pub use accept::{Accept, LimitedIncoming, ACCEPT_PAUSE};

/// A repeated warning (refused connections, failed accepts) is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A warning logged at most once per [`WARN_EVERY`], with the count of occurrences it stands
/// for: a flood must not flood the log too.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    /// Occurrences not yet reported by a warning.
    unreported: u64,
    /// An occurrence since [`Throttle::recovered`] last said the run was over.
    active: bool,
}

impl Throttle {
    /// Counts one occurrence; when a warning is due, the occurrences it reports (this one
    /// included).
    fn note(&mut self) -> Option<u64> {
        self.unreported += 1;
        self.active = true;
        if self.last.is_some_and(|last| last.elapsed() < WARN_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.unreported))
    }

    /// The end of a run of occurrences: those no warning reported, if there was a run.
    fn recovered(&mut self) -> Option<u64> {
        std::mem::take(&mut self.active).then(|| std::mem::take(&mut self.unreported))
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<PeerKey, usize>,
    refusals: Throttle,
}

/// The connection slots of one server.
#[derive(Clone)]
pub struct Limiter {
    counts: Arc<Mutex<Counts>>,
    total: usize,
    per_peer: usize,
    /// What a slot is, for the warning ("API connection", "change stream").
    what: &'static str,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(MAX_CONNECTIONS, MAX_PER_PEER)
    }
}

impl Limiter {
    /// Connection slots.
    pub fn new(total: usize, per_peer: usize) -> Self {
        Limiter {
            counts: Arc::default(),
            total,
            per_peer,
            what: "API connection",
        }
    }

    /// WatchChanges stream slots.
    pub fn streams() -> Self {
        Limiter {
            what: "change stream",
            ..Limiter::new(MAX_STREAMS, MAX_STREAMS_PER_PEER)
        }
    }

    /// The same limiter, naming its slots `what` in its warnings ("API connection" unless
    /// told), so a server's log says which listener refused.
    pub fn named(self, what: &'static str) -> Self {
        Limiter { what, ..self }
    }

    pub fn per_peer(&self) -> usize {
        self.per_peer
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counters: consistent after any panic.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for `peer`, or None when it (or everyone together) has too many open.
    pub fn admit(&self, peer: PeerKey) -> Option<Slot> {
        let mut counts = self.counts();
        let mine = counts.per_peer.get(&peer).copied().unwrap_or(0);
        let full = counts.total >= self.total && !peer.is_root();
        if full || mine >= self.per_peer {
            if let Some(refused) = counts.refusals.note() {
                tracing::warn!(
                    peer = ?peer,
                    refused,
                    open = counts.total,
                    "{} refused: at most {} per peer and {} in all",
                    self.what,
                    self.per_peer,
                    self.total
                );
            }
            return None;
        }
        counts.total += 1;
        *counts.per_peer.entry(peer.clone()).or_insert(0) += 1;
        Some(Slot {
            limiter: self.clone(),
            peer,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

/// One admitted connection's place; given back when the connection is dropped.
pub struct Slot {
    limiter: Limiter,
    peer: PeerKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

/// How long a connection may stay silent: before its first byte, and between bytes after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub first_byte: Duration,
    pub idle: Duration,
}

impl Default for Timers {
    /// The API's: [`FIRST_BYTE`] and [`IDLE`].
    fn default() -> Self {
        Timers {
            first_byte: FIRST_BYTE,
            idle: IDLE,
        }
    }
}

/// An admitted connection: its slot, and the silence timer that closes it.
pub struct Limited<S> {
    inner: S,
    slot: Slot,
    silence: Pin<Box<tokio::time::Sleep>>,
    idle: Duration,
    heard: bool,
}

impl<S> Limited<S> {
    /// With the API's timers ([`Timers::default`]).
    pub fn new(inner: S, slot: Slot) -> Self {
        Limited::with_timers(inner, slot, Timers::default())
    }

    pub fn with_timers(inner: S, slot: Slot, timers: Timers) -> Self {
        Limited {
            inner,
            slot,
            silence: Box::pin(tokio::time::sleep(timers.first_byte)),
            idle: timers.idle,
            heard: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.heard = true;
                    let deadline = tokio::time::Instant::now() + self.idle;
                    self.silence.as_mut().reset(deadline);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.silence.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let what = if self.heard {
                        "idle for too long"
                    } else {
                        "sent nothing after connecting"
                    };
                    let slots = self.slot.limiter.what;
                    tracing::debug!(peer = ?self.slot.peer, "{slots} closed: {what}");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: Connected> Connected for Limited<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_peer_and_in_total_and_come_back() {
        let limiter = Limiter::new(3, 2);
        let a = PeerKey::Uid(1001);
        let first = limiter.admit(a.clone()).expect("first");
        let _second = limiter.admit(a.clone()).expect("second");
        assert!(limiter.admit(a.clone()).is_none(), "a third from one peer");
        let _other = limiter.admit(PeerKey::Uid(7)).expect("another peer");
        assert!(limiter.admit(PeerKey::Uid(8)).is_none(), "over the total");
        let root = limiter
            .admit(PeerKey::Uid(0))
            .expect("root is not refused for the total");
        let root_again = limiter.admit(PeerKey::Uid(0)).expect("root's second");
        assert!(
            limiter.admit(PeerKey::Uid(0)).is_none(),
            "root beyond its own share"
        );
        drop(root);
        drop(first);
        assert_eq!(limiter.open(), 3);
        assert!(
            limiter.admit(a.clone()).is_none(),
            "still full: root's connections count"
        );
        drop(root_again);
        assert!(limiter.admit(a).is_some(), "a slot came back");
    }

    /// A read on `limited`, to its end or its error.
    async fn read(limited: &mut Limited<tokio::net::TcpStream>) -> io::Result<usize> {
        let mut bytes = [0u8; 16];
        std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut bytes);
            Pin::new(&mut *limited)
                .poll_read(cx, &mut buf)
                .map_ok(|()| buf.filled().len())
        })
        .await
    }

    async fn accept(
        listener: &tokio::net::TcpListener,
        limiter: &Limiter,
        timers: Timers,
    ) -> Limited<tokio::net::TcpStream> {
        let (stream, peer) = listener.accept().await.unwrap();
        let slot = limiter.admit(PeerKey::Address(peer.ip())).unwrap();
        Limited::with_timers(stream, slot, timers)
    }

    #[tokio::test]
    async fn silence_closes_a_connection_at_the_first_byte_limit_then_at_the_idle_one() {
        use std::io::Write as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limiter = Limiter::new(2, 2).named("test connection");
        let timers = Timers {
            first_byte: Duration::from_millis(200),
            idle: Duration::from_millis(500),
        };

        // Each clock is read before the timer it measures is set: tokio's never fire early.
        let _silent = std::net::TcpStream::connect(address).unwrap();
        let started = Instant::now();
        let mut limited = accept(&listener, &limiter, timers).await;
        let error = read(&mut limited).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        let waited = started.elapsed();
        assert!(
            waited >= timers.first_byte && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        drop(limited);
        assert_eq!(limiter.open(), 0, "the slot came back");

        // Once heard from, the idle limit applies instead of the first-byte one.
        let mut talker = std::net::TcpStream::connect(address).unwrap();
        let mut limited = accept(&listener, &limiter, timers).await;
        talker.write_all(b"x").unwrap();
        let heard = Instant::now();
        assert_eq!(read(&mut limited).await.unwrap(), 1);
        let error = read(&mut limited).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        let waited = heard.elapsed();
        assert!(
            waited >= timers.idle && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }

    #[test]
    fn windows_administrators_count_as_root_for_the_total() {
        let limiter = Limiter::new(1, 2);
        let user = |sid: &str, admin| PeerKey::Account {
            sid: sid.into(),
            admin,
        };
        let _first = limiter
            .admit(user("S-1-5-21-1-2-3-1001", false))
            .expect("first");
        assert!(limiter.admit(user("S-1-5-21-1-2-3-1002", false)).is_none());
        assert!(limiter.admit(user("S-1-5-21-1-2-3-500", true)).is_some());
        assert!(limiter.admit(user("S-1-5-18", true)).is_some());
    }
}
