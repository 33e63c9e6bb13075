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

pub mod diff;
pub mod memory;
#[cfg(windows)]
pub mod notify_windows;
#[cfg(windows)]
pub mod read_windows;
pub mod text;

/// One registry value as read: its name ("" for the key's default value), its type, and its
/// raw bytes as the registry stores them (UTF-16LE for string types).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryValue {
    pub name: String,
    /// The REG_* type number (REG_SZ = 1, REG_DWORD = 4, ...); unknown numbers are kept.
    pub kind: u32,
    /// Hex in the baseline's JSON (a 2 MB REG_BINARY would be 8 MB as a JSON array).
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
}

mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&fim_model::change::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex of an odd length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|at| {
                text.get(at..at + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom("not hex"))
            })
            .collect()
    }
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

/// One registry entity's tree, compiled from the policy: its key with the long hive first,
/// and how deep it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRoot {
    pub entity: String,
    /// The key the entity names; with [`KeyRoot::subkeys`], the parent of its keys.
    pub key: String,
    /// A wildcard last segment (`*` and `?`, compared without case): the entity is every
    /// direct subkey of `key` whose name matches, not `key` itself.
    pub subkeys: Option<String>,
    pub recursive: bool,
    pub view: RegistryView,
}

impl KeyRoot {
    /// Whether `key` (either hive spelling) is one of this entity's keys or below one.
    pub fn covers(&self, key: &str) -> bool {
        let key = fold(&fim_model::object::long_hive_key(key));
        let root = fold(&self.key);
        let Some(rest) = key.strip_prefix(&root) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix('\\') else {
            return rest.is_empty() && self.subkeys.is_none();
        };
        let mut segments = rest.split('\\');
        let first = segments.next().unwrap_or_default();
        let deeper = segments.next().is_some();
        match &self.subkeys {
            None => self.recursive,
            Some(pattern) => wildcard_match(&fold(pattern), first) && (self.recursive || !deeper),
        }
    }

    /// Whether a direct subkey named `name` is one of the entity's keys (with a wildcard).
    pub fn admits(&self, name: &str) -> bool {
        self.subkeys
            .as_ref()
            .is_none_or(|pattern| wildcard_match(&fold(pattern), &fold(name)))
    }
}

/// `*` (any run) and `?` (one character) over characters; both sides already folded.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // The classic two-pointer match with backtracking to the last star: linear in practice.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
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

impl RegistryView {
    /// The baseline's code for the view (0 native, 1 the 32-bit view).
    pub fn code(self) -> i64 {
        match self {
            RegistryView::Native => 0,
            RegistryView::Wow32 => 1,
        }
    }
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
