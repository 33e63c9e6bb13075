//! Helpers for the API tests: real tonic clients over the daemon's real socket or TLS port.
use std::{future::Future, path::Path, process::Command, time::Duration};

use fim_api::pb::fim_client::FimClient;
use tonic::transport::{Channel, Endpoint};

/// Runs a future on a fresh single-threaded runtime (each test owns its client runtime).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// A channel over the daemon's Unix socket.
pub async fn unix_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("unix:{}", socket.display()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

pub async fn unix_client(socket: &Path) -> FimClient<Channel> {
    FimClient::new(
        unix_channel(socket)
            .await
            .expect("connect to the API socket"),
    )
}

/// Creates a group if it is missing (asking for `gid`) and returns its real id.
pub fn ensure_group(name: &str, gid: u32) -> u32 {
    let status = Command::new("groupadd")
        .args(["-f", "-g", &gid.to_string(), name])
        .status()
        .expect("run groupadd");
    assert!(status.success(), "groupadd {name} failed");
    let output = Command::new("getent")
        .args(["group", name])
        .output()
        .expect("run getent");
    let line = String::from_utf8_lossy(&output.stdout);
    line.trim()
        .split(':')
        .nth(2)
        .and_then(|gid| gid.parse().ok())
        .unwrap_or_else(|| panic!("no gid for group {name}: {line:?}"))
}

/// The gRPC code of a call's outcome, by name ("Ok", "PermissionDenied", ...).
pub fn code<T>(result: &Result<T, tonic::Status>) -> String {
    match result {
        Ok(_) => "Ok".to_string(),
        Err(status) => format!("{:?}", status.code()),
    }
}

/// fimd with its API on the workspace's socket, `owners` and `readers` as the role groups.
pub fn start_with_role_groups(
    workspace: &crate::engine::Workspace,
    owners: &str,
    readers: &str,
) -> crate::engine::Engine {
    crate::engine::Engine::start_with(
        workspace,
        &[
            "--api-socket",
            workspace.socket.to_str().expect("utf-8 path"),
            "--api-owner-group",
            owners,
            "--api-reader-group",
            readers,
        ],
    )
}
