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
use fim_api::limits::{LimitedIncoming, Limiter, Timers};
use tokio::net::TcpListener;

use super::Limits;

/// The admitted connections of `listener`: a stream for tonic's `serve_with_incoming`. The
/// listener is closed when the stream is dropped (at shutdown, before connections drain).
/// fim-api's [`LimitedIncoming`] also pauses after a failed accept (EMFILE and its like fail
/// again at once, and retrying without a pause would spin a core) with a rate-limited warning.
pub fn incoming(listener: TcpListener, limits: &Limits) -> LimitedIncoming<TcpListener> {
    let limiter = Limiter::new(
        limits.max_connections.max(1),
        limits.max_connections_per_address.max(1),
    )
    .named("collector connection");
    let timers = Timers {
        first_byte: limits.first_byte_timeout,
        idle: limits.connection_idle_timeout,
    };
    LimitedIncoming::with_timers(listener, limiter, timers)
}
