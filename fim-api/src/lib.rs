//! fim.v1, the gRPC API: generated code, conversions from engine types, the server, roles and
//! transports. The engine knows nothing of gRPC; this crate only uses its public handle.
//!
//! - [`convert`]: engine types to messages and validated requests back;
//! - [`service`]: the fim.v1.Fim calls over a [`fim_engine::daemon::DaemonHandle`];
//! - [`auth`]: owner and reader roles, applied in one tower layer;
//! - [`server`]: the Unix socket and optional mutual-TLS TCP listener.
pub mod access;
pub mod auth;
mod author;
mod blocking;
pub mod convert;
mod entities;
pub mod limits;
pub mod peer;
pub mod server;
pub mod service;
mod socket;
mod watch;

pub use auth::Role;
pub use server::{serve, ApiConfig, ApiError, ApiServer, TcpConfig};

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fim.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fim_v1_descriptor");
}

pub mod client;
