//! Computer identity, stamped on every record from day one so a multi-machine workspace can
//! tell hosts apart even when host names repeat.
use serde::{Deserialize, Serialize};

#[cfg(unix)]
use crate::identity_unix as platform;
#[cfg(windows)]
use crate::identity_windows as platform;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Computer {
    /// The host name (Azure's Computer column).
    pub name: String,
    /// /etc/machine-id (systemd's stable host id) on Linux, the registry's MachineGuid on
    /// Windows, or the host name when there is none.
    pub id: String,
}

impl Computer {
    pub fn of_this_host() -> Self {
        let name = platform::host_name();
        let id = platform::machine_id().unwrap_or_else(|| name.clone());
        Computer { name, id }
    }
}
