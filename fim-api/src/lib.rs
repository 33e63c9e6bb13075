//! fim.v1, the gRPC API: generated code, conversions from engine types, the server, roles and
//! transports. The engine knows nothing of gRPC; this crate only uses its public handle.
//!
//! - [`convert`]: engine types to messages and validated requests back;
//! - [`service`]: the fim.v1.Fim calls over a [`fim_engine::daemon::DaemonHandle`];
//! - [`auth`]: owner and reader roles, applied in one tower layer;
//! - [`push`]: the agent's side of fim.collector.v1, shipping the journal to collectors;
//! - [`server`]: the local transport (the Unix socket, or a named pipe on Windows) and the
//!   optional mutual-TLS TCP listener.
//!
//! Platform code is in files named for their platform: `peer_unix.rs`, `socket_unix.rs`,
//! `access_unix.rs` (SO_PEERCRED, the socket's permissions, faccessat under the caller's ids)
//! and `pipe_windows.rs`, `security_windows.rs`, `client_windows.rs` (the named pipe, SIDs and
//! its DACL, the client's token).
pub mod access;
#[cfg(unix)]
mod access_unix;
pub mod auth;
mod author;
mod blocking;
#[cfg(windows)]
mod client_windows;
pub mod convert;
mod entities;
pub mod limits;
pub mod peer;
#[cfg(unix)]
mod peer_unix;
pub mod pipe;
#[cfg(windows)]
pub mod pipe_windows;
pub mod push;
mod running;
#[cfg(windows)]
mod security_windows;
pub mod server;
pub mod service;
#[cfg(unix)]
mod socket_unix;
mod watch;

pub use auth::Role;
pub use running::{group_flag, RunningApi, API_GRACE};
pub use server::{serve, ApiConfig, ApiError, ApiServer, TcpConfig};

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fim.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fim_v1_descriptor");
}

/// fim.collector.v1: agents reporting their journals to a workspace collector (the agent's
/// side is [`push`]; the collector is the `fim-collector` crate).
pub mod collector_pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fim.collector.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("fim_collector_v1_descriptor");
}

pub mod client;
