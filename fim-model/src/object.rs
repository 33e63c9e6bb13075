//! The monitored object: a file path, a registry key (optionally one of its values) or a
//! service, whatever the platform.
//!
//! Event sources, gap notices and records name what they are about with this one type, so a
//! registry notification overflow can ask for a rescan of its keys exactly as a lost kernel
//! event asks for a rescan of its directories. File paths keep their exact bytes (a Linux name
//! is bytes, not text); keys and service names are text, as Windows gives them.
use std::{fmt, path::PathBuf};

use serde::{Serialize, Serializer};

use crate::{change::ConfigChangeType, path_text::display_path};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MonitoredObject {
    File(PathBuf),
    /// `key` is the full key with its hive first (`HKEY_LOCAL_MACHINE\SOFTWARE\...`, or the
    /// short `HKLM\...`); `value` names one of its values ("" is the default value).
    RegistryKey {
        key: String,
        value: Option<String>,
    },
    /// The service's key name (not its display name).
    Service(String),
}

/// The kind of a [`MonitoredObject`], for routing to an observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    File,
    RegistryKey,
    Service,
}

impl MonitoredObject {
    pub fn kind(&self) -> ObjectKind {
        match self {
            MonitoredObject::File(_) => ObjectKind::File,
            MonitoredObject::RegistryKey { .. } => ObjectKind::RegistryKey,
            MonitoredObject::Service(_) => ObjectKind::Service,
        }
    }

    /// The ConfigChangeType of records about this object.
    pub fn change_type(&self) -> ConfigChangeType {
        match self.kind() {
            ObjectKind::File => ConfigChangeType::Files,
            ObjectKind::RegistryKey => ConfigChangeType::Registry,
            ObjectKind::Service => ConfigChangeType::WindowsServices,
        }
    }

    pub fn as_file(&self) -> Option<&std::path::Path> {
        match self {
            MonitoredObject::File(path) => Some(path),
            _ => None,
        }
    }

    /// The registry hive a key starts with, in its long form (`HKEY_LOCAL_MACHINE`), or None
    /// when the first segment is not a hive.
    pub fn hive(&self) -> Option<&'static str> {
        let MonitoredObject::RegistryKey { key, .. } = self else {
            return None;
        };
        hive_of(key)
    }
}

/// The long name of the hive `key` starts with (`HKLM` and `HKEY_LOCAL_MACHINE` alike, any
/// case, as Windows compares key names).
pub fn hive_of(key: &str) -> Option<&'static str> {
    let first = key.split('\\').next().unwrap_or(key);
    const HIVES: [(&str, &str); 6] = [
        ("HKLM", "HKEY_LOCAL_MACHINE"),
        ("HKU", "HKEY_USERS"),
        ("HKCU", "HKEY_CURRENT_USER"),
        ("HKCR", "HKEY_CLASSES_ROOT"),
        ("HKCC", "HKEY_CURRENT_CONFIG"),
        ("HKPD", "HKEY_PERFORMANCE_DATA"),
    ];
    HIVES
        .iter()
        .find(|(short, long)| first.eq_ignore_ascii_case(short) || first.eq_ignore_ascii_case(long))
        .map(|(_, long)| *long)
}

/// `key` with its hive spelled out (`HKLM\SOFTWARE` is `HKEY_LOCAL_MACHINE\SOFTWARE`), so
/// that the two spellings Windows accepts compare equal; a key without a known hive as it is.
pub fn long_hive_key(key: &str) -> std::borrow::Cow<'_, str> {
    let (first, rest) = match key.split_once('\\') {
        Some((first, rest)) => (first, Some(rest)),
        None => (key, None),
    };
    match (hive_of(first), rest) {
        (Some(long), _) if long == first => std::borrow::Cow::Borrowed(key),
        (Some(long), Some(rest)) => std::borrow::Cow::Owned(format!("{long}\\{rest}")),
        (Some(long), None) => std::borrow::Cow::Borrowed(long),
        (None, _) => std::borrow::Cow::Borrowed(key),
    }
}

/// A registry key, or one of its values, as people read it: `KEY`, or `KEY @ "VALUE"` (the
/// value quoted, since "" is the default value and names may hold spaces or backslashes).
pub fn key_text(key: &str, value: Option<&str>) -> String {
    match value {
        Some(value) => format!("{key} @ {value:?}"),
        None => key.to_string(),
    }
}

/// As records and logs print it: a path escaped as in [`crate::path_text`], a key as
/// [`key_text`], a service by name.
impl fmt::Display for MonitoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitoredObject::File(path) => f.write_str(&display_path(path)),
            MonitoredObject::RegistryKey { key, value } => {
                f.write_str(&key_text(key, value.as_deref()))
            }
            MonitoredObject::Service(name) => write!(f, "service {name}"),
        }
    }
}

/// Serialised as its display text (a file as its escaped path, as gap notices always were).
impl Serialize for MonitoredObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hives_are_spelled_out_and_the_rest_kept() {
        assert_eq!(
            long_hive_key(r"HKLM\SOFTWARE\x"),
            r"HKEY_LOCAL_MACHINE\SOFTWARE\x"
        );
        assert_eq!(
            long_hive_key(r"hkcu\Software"),
            r"HKEY_CURRENT_USER\Software"
        );
        assert_eq!(long_hive_key("HKU"), "HKEY_USERS");
        assert_eq!(
            long_hive_key(r"HKEY_LOCAL_MACHINE\SYSTEM"),
            r"HKEY_LOCAL_MACHINE\SYSTEM"
        );
        // Lower-case long names become upper case, as the hives are named.
        assert_eq!(
            long_hive_key(r"hkey_users\S-1-5-18"),
            r"HKEY_USERS\S-1-5-18"
        );
        assert_eq!(long_hive_key(r"SOFTWARE\x"), r"SOFTWARE\x");
        assert_eq!(long_hive_key(r"HKLMX\x"), r"HKLMX\x");
    }

    #[test]
    fn objects_name_their_kind_type_and_hive() {
        let key = MonitoredObject::RegistryKey {
            key: r"hklm\SOFTWARE\Microsoft\Windows\CurrentVersion\Run".into(),
            value: Some("Updater".into()),
        };
        assert_eq!(key.kind(), ObjectKind::RegistryKey);
        assert_eq!(key.change_type(), ConfigChangeType::Registry);
        assert_eq!(key.hive(), Some("HKEY_LOCAL_MACHINE"));
        assert_eq!(
            key.to_string(),
            r#"hklm\SOFTWARE\Microsoft\Windows\CurrentVersion\Run @ "Updater""#
        );
        assert_eq!(hive_of(r"HKEY_USERS\S-1-5-18"), Some("HKEY_USERS"));
        assert_eq!(hive_of(r"SOFTWARE\x"), None);
        let service = MonitoredObject::Service("Spooler".into());
        assert_eq!(service.change_type(), ConfigChangeType::WindowsServices);
        assert_eq!(service.hive(), None);
        let file = MonitoredObject::File(crate::path_text::path_from_bytes(b"/etc/a\nb"));
        assert_eq!(file.change_type(), ConfigChangeType::Files);
        // The path escape: `\` on Unix, `|` on Windows (see path_text).
        let escaped = if cfg!(unix) {
            "/etc/a\\x0ab"
        } else {
            "/etc/a|x0ab"
        };
        assert_eq!(file.to_string(), escaped);
    }
}
