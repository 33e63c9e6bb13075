//! The column groups of a record, one per kind of monitored object, named as in Azure's
//! ConfigurationChange table. A record fills exactly the group of its object's kind.
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The file-specific columns (Azure's names), current values and previous ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileColumns {
    pub file_system_path: String,
    /// Set on the record at a rename's destination: where the file came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Set on the record at a rename's source: where the file went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_file_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_modified: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_date_modified: Option<Timestamp>,
    /// ctime: user space cannot set it, so it shows a write that put everything
    /// else back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_change_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_group: Option<String>,
    /// Octal permission bits, e.g. "0644".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_acls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<String>,
    /// security.capability as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_capabilities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_selinux_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_symlink_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_links: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_inode: Option<u64>,
    /// BLAKE3, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_content_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_file_content_checksum: Option<String>,
    /// Unified diff, for file-content entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_diff: Option<String>,
    /// The file changed while it was hashed, on every attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unstable: bool,
    /// Why the content could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The registry columns: the key, the value (for a value's record) and the key's ACL.
///
/// Value data is text: REG_SZ and REG_EXPAND_SZ as the string, REG_MULTI_SZ one string per
/// line, REG_DWORD and REG_QWORD in decimal, everything else as hex. Data longer than
/// [`MAX_VALUE_DATA`] is stored capped (`ValueDataTruncated`) with the checksum and size of the
/// whole value, so a change past the cap still shows; a string that is not valid UTF-16 is
/// stored with replacement characters and `ValueDataInvalid`. Nothing is ever dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryColumns {
    /// The full key, hive first as in the policy: `HKEY_LOCAL_MACHINE\SOFTWARE\...`.
    pub registry_key: String,
    /// `HKEY_LOCAL_MACHINE`, `HKEY_USERS`, ...
    pub hive: String,
    /// The value's name ("" is the key's default value); None on a record about the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value_data: Option<String>,
    /// BLAKE3 of the raw value bytes, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_data_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value_data_checksum: Option<String>,
    /// The raw value's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_data_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value_data_size: Option<u64>,
    /// `ValueData` (or `PreviousValueData`) holds only the first [`MAX_VALUE_DATA`] bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_data_truncated: bool,
    /// The value was a string that is not valid UTF-16; replacement characters stand in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_data_invalid: bool,
    /// The key's security descriptor as SDDL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_acls: Option<String>,
}

/// The service columns, each with its previous value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceColumns {
    pub svc_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svc_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_svc_display_name: Option<String>,
    /// Running, Stopped, Paused, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svc_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_svc_state: Option<String>,
    /// Auto, Manual, Disabled, Boot, System.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svc_startup_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_svc_startup_type: Option<String>,
    /// The image path with its arguments, as the service control manager holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svc_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_svc_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svc_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_svc_account: Option<String>,
    /// A field was longer than [`MAX_VALUE_DATA`] or not valid UTF-16: stored capped or with
    /// replacement characters, never dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
}

/// The most bytes of one registry value or service field a record carries.
pub const MAX_VALUE_DATA: usize = 64 * 1024;

/// Text from UTF-16 as Windows APIs return it: up to the first NUL, unpaired surrogates
/// replaced. The flag says whether anything was replaced.
pub fn text_from_utf16(units: &[u16]) -> (String, bool) {
    let end = units
        .iter()
        .position(|unit| *unit == 0)
        .unwrap_or(units.len());
    utf16_lossy(&units[..end])
}

/// All of `units` as text (NULs included), unpaired surrogates replaced; the flag says
/// whether anything was replaced.
pub fn utf16_lossy(units: &[u16]) -> (String, bool) {
    let mut invalid = false;
    let text = char::decode_utf16(units.iter().copied())
        .map(|decoded| {
            decoded.unwrap_or_else(|_| {
                invalid = true;
                char::REPLACEMENT_CHARACTER
            })
        })
        .collect();
    (text, invalid)
}

/// At most [`MAX_VALUE_DATA`] bytes of `text`, cut at a character boundary. The flag says
/// whether it was cut.
pub fn cap_text(mut text: String) -> (String, bool) {
    if text.len() <= MAX_VALUE_DATA {
        return (text, false);
    }
    let mut end = MAX_VALUE_DATA;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_are_capped_at_a_character_boundary_and_marked() {
        let (short, cut) = cap_text("abc".into());
        assert_eq!((short.as_str(), cut), ("abc", false));
        let long = format!("a{}", "\u{e9}".repeat(MAX_VALUE_DATA));
        let (capped, cut) = cap_text(long);
        assert!(cut);
        assert!(capped.len() <= MAX_VALUE_DATA && capped.len() >= MAX_VALUE_DATA - 1);
        assert!(capped.starts_with("a\u{e9}"));
    }

    #[test]
    fn invalid_utf16_is_replaced_and_marked_not_dropped() {
        let (text, invalid) = text_from_utf16(&[0x61, 0xD800, 0x62, 0, 0x63]);
        assert_eq!(text, "a\u{fffd}b");
        assert!(invalid);
        let (text, invalid) = text_from_utf16(&[0x48, 0x69]);
        assert_eq!((text.as_str(), invalid), ("Hi", false));
    }
}
