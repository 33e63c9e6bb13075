//! Windows services as monitored objects: what one service looks like to the service control
//! manager ([`ServiceSnapshot`]), the [`ServiceReader`] a platform implements to list them,
//! how a change becomes a WindowsServices record ([`diff`]) and the entity a service belongs
//! to ([`ServiceRoot`]).
//!
//! Like the registry module, everything but the Windows reader is platform-neutral and tested
//! on the host against an in-memory list ([`memory::MemoryServices`]). A service is keyed by
//! its key name (not its display name, which anyone who can reconfigure it can change),
//! compared without case as Windows does.
use serde::{Deserialize, Serialize};

pub mod diff;
pub mod memory;
#[cfg(windows)]
pub mod read_windows;

/// One service as the service control manager reports it. Text fields are capped and marked
/// (`capped`) by the reader when too long or not valid UTF-16, never dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    /// The key name (`Spooler`), with its spelling.
    pub name: String,
    pub display_name: String,
    /// Running, Stopped, Paused, StartPending, StopPending, ContinuePending, PausePending.
    pub state: String,
    /// Boot, System, Auto, Manual, Disabled.
    pub startup_type: String,
    /// The image path with its arguments.
    pub path: String,
    /// The account it runs as (`LocalSystem`, `NT AUTHORITY\LocalService`, ...).
    pub account: String,
    /// A field was capped or had invalid UTF-16 replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
}

/// Why the services could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the service control manager refused: access denied")]
    AccessDenied,
    #[error("{what}: {message} (error {code})")]
    Os {
        what: String,
        code: u32,
        message: String,
    },
    #[error("services are not available on this platform")]
    NotOnThisPlatform,
}

/// Listing the services of a machine: the service control manager on Windows, an in-memory
/// list in tests.
pub trait ServiceReader: Send + Sync {
    /// Every service (Win32 services and drivers), in any order. A service that disappears
    /// while it is being queried is left out, not an error.
    fn list(&self) -> Result<Vec<ServiceSnapshot>, ServiceError>;
}

/// One windows-service entity, compiled from the policy: a service name or a pattern (`*` and
/// `?`, compared without case; `*` alone is every service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRoot {
    pub entity: String,
    pub pattern: String,
}

impl ServiceRoot {
    pub fn covers(&self, name: &str) -> bool {
        crate::registry::wildcard_match(&fold(&self.pattern), &fold(name))
    }
}

/// A service name as Windows compares it.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}
