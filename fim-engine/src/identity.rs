//! Computer identity, stamped on every record from day one so a multi-machine workspace can
//! tell hosts apart even when host names repeat.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Computer {
    /// The host name (Azure's Computer column).
    pub name: String,
    /// /etc/machine-id (systemd's stable host id), or the host name when there is none.
    pub id: String,
}

impl Computer {
    pub fn of_this_host() -> Self {
        let name = host_name();
        let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .find_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                let text = text.trim();
                (!text.is_empty()).then(|| text.to_string())
            })
            .unwrap_or_else(|| name.clone());
        Computer { name, id }
    }
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return "localhost".to_string();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}
