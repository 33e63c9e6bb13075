//! What one client may make the collector hold, with defaults sized for one host or a
//! small estate.
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Limits {
    /// The most records per batch (told to agents in the Welcome).
    pub max_batch_records: usize,
    /// The largest message a client may send (a batch and its records).
    pub max_message_bytes: usize,
    /// Report streams served at once; more are answered Busy (the admission limit).
    pub max_streams: usize,
    /// TCP connections held at once; more are closed on accept.
    pub max_connections: usize,
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
            retry_after: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
        }
    }
}
