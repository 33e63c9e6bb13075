//! The workspace collector: many agents report their hash-chained journals to it, and it
//! keeps them in one database without loss or duplicates.
//!
//! Agents speak fim.collector.v1 (fim-api's `collector_pb`; their side is
//! `fim_api::push`). This crate is the other end, and knows nothing of any kernel or
//! platform:
//! - [`chain`]: the check of every link as records arrive (the engine's `chain_hash`), and of
//!   an agent's head against what the workspace acknowledged: breaks, edits, rollbacks and
//!   rewrites flag the machine and are refused;
//! - [`store`]: the storage contract ([`store::CollectorStore`]) and its SQLite and PostgreSQL backends;
//!   acknowledged heads live in the database only, so collectors can share one;
//! - [`server`]: the gRPC services over TCP with their limits (admission, connections,
//!   message and batch sizes): agents' Report stream, and the Workspace API (queries,
//!   machines) for holders of an API token ([`auth`]), and Enrollment;
//! - [`ca`] and [`enrollment`]: the workspace CA, enrollment tokens, and the certificates
//!   agents report with over mutual TLS (who may write which machine's journal).
pub mod auth;
pub mod ca;
pub mod chain;
pub mod enrollment;
mod error;
pub mod server;
pub mod store;

pub use error::CollectorError;
