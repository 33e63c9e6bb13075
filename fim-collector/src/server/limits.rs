//! What one client may make the collector hold, with defaults sized for one host or a
//! small estate.
use std::time::Duration;

/// The server's HTTP/2 ping interval. Answered pings count as a connection's activity, so
/// [`Limits::connection_idle_timeout`] must be well above it.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Limits {
    /// The most records per batch (told to agents in the Welcome).
    pub max_batch_records: usize,
    /// The largest message a client may send (a batch and its records).
    pub max_message_bytes: usize,
    /// Report streams served at once; more are answered Busy (the admission limit).
    pub max_streams: usize,
    /// TCP connections held at once, all addresses together; more are closed on accept.
    pub max_connections: usize,
    /// TCP connections held at once from one IP address; more are closed on accept. Agents
    /// behind one NAT share an address, so this is generous; it is there so that one address
    /// cannot take every connection and lock the rest of the estate out.
    pub max_connections_per_address: usize,
    /// A new connection that sends nothing within this is closed (an agent sends the HTTP/2
    /// preface at once; a client that only opens TCP would otherwise hold its slot forever).
    pub first_byte_timeout: Duration,
    /// A connection that sends nothing for this long is closed (a live agent answers the
    /// server's pings every [`KEEPALIVE`], so only a dead or stalled one gets here).
    pub connection_idle_timeout: Duration,
    /// What a Busy answer asks the agent to wait.
    pub retry_after: Duration,
    /// A stream that sends nothing for this long is ended (its admission slot freed).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_records: 500,
            max_message_bytes: 8 * 1024 * 1024,
            max_streams: 64,
            max_connections: 1024,
            max_connections_per_address: 256,
            first_byte_timeout: Duration::from_secs(10),
            connection_idle_timeout: 4 * KEEPALIVE,
            retry_after: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
        }
    }
}
