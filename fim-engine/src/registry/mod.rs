//! Registry keys as monitored objects: what one key looks like when read ([`KeySnapshot`]), the
//! [`KeyReader`] interface a platform implements to read it, and (in [`diff`]) what changed
//! between two reads as change records.
//!
//! Everything here but `read_windows.rs` is platform-neutral on purpose: the comparison of a
//! key with its baseline, the text a value becomes in a record and the baseline store are the
//! same code on Linux and Windows, so they are unit-tested on the host against an in-memory
//! registry ([`memory::MemoryRegistry`]) and again under Wine against the real one.
//!
//! Keys are named with their long hive first (`HKEY_LOCAL_MACHINE\SOFTWARE\...`), the way
//! records carry them; a policy's `HKLM\...` is turned into that form once
//! ([`fim_model::object::long_hive_key`]). Windows compares key and value names without case,
//! so the baseline compares them that way too, but records keep the spelling the registry
//! returned.
use std::collections::BTreeMap;

pub mod memory;
#[cfg(windows)]
pub mod notify_windows;
#[cfg(windows)]
pub mod read_windows;

/// One registry value as read: its name ("" for the key's default value), its type, and its
/// raw bytes as the registry stores them (UTF-16LE for string types).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryValue {
    pub name: String,
    /// The REG_* type number (REG_SZ = 1, REG_DWORD = 4, ...); unknown numbers are kept.
    pub kind: u32,
    pub data: Vec<u8>,
}

/// One key as read: its values and the names of its direct subkeys, its security descriptor
/// and its last-write time.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeySnapshot {
    /// Values by their name folded to lower case (Windows compares them without case); each
    /// keeps its own spelling in [`RegistryValue::name`].
    pub values: BTreeMap<String, RegistryValue>,
    /// Direct subkeys by their name folded to lower case, each with its own spelling.
    pub subkeys: BTreeMap<String, String>,
    /// The key's security descriptor (owner, group, DACL) as SDDL, when it could be read.
    pub sddl: Option<String>,
    /// The key's last-write time as a Windows FILETIME (100 ns since 1601); it changes when a
    /// value or a direct subkey is added, removed or set, not for changes deeper down, so a
    /// recursive sweep still visits every subkey but reads the values of only those whose
    /// time moved.
    pub last_write: u64,
}

impl KeySnapshot {
    /// Adds a value (keyed by its folded name).
    pub fn insert_value(&mut self, value: RegistryValue) {
        self.values.insert(fold(&value.name), value);
    }

    /// Adds a direct subkey's name.
    pub fn insert_subkey(&mut self, name: &str) {
        self.subkeys.insert(fold(name), name.to_string());
    }
}

/// A key or value name as Windows compares it.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// `key`'s direct subkey `name`.
pub fn child_key(key: &str, name: &str) -> String {
    format!("{}\\{name}", key.trim_end_matches('\\'))
}

/// Why a key could not be read. An absent key is not an error: [`KeyReader::read_key`] returns
/// `Ok(None)` for it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{key}: access denied")]
    AccessDenied { key: String },
    #[error("{key}: {message} (error {code})")]
    Os {
        key: String,
        code: u32,
        message: String,
    },
    #[error("{key}: not a registry key (it does not start with a hive)")]
    NoHive { key: String },
    #[error("the registry is not available on this platform")]
    NotOnThisPlatform,
}

/// Which view of the registry a 64-bit process reads (WOW64 redirection): the native one, or
/// the 32-bit one that `WOW6432Node` keys show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RegistryView {
    #[default]
    Native,
    Wow32,
}

/// Reading keys from a registry: the real one on Windows (`read_windows.rs`), an in-memory one
/// for tests ([`memory::MemoryRegistry`]).
pub trait KeyReader: Send + Sync {
    /// Reads `key` (long hive first) in `view`: `Ok(None)` when it does not exist. Values are
    /// read only when `read_values` is true; otherwise [`KeySnapshot::values`] is empty (a
    /// sweep's shortcut when the last-write time did not move).
    fn read_key(
        &self,
        key: &str,
        view: RegistryView,
        read_values: bool,
    ) -> Result<Option<KeySnapshot>, RegistryError>;
}
