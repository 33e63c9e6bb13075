//! What a registry value becomes in a record: its type's name and its data as text, as
//! documented on [`fim_model::RegistryColumns`] (strings as themselves, REG_MULTI_SZ one string
//! per line, REG_DWORD/REG_QWORD in decimal, everything else as hex), capped at
//! [`fim_model::columns::MAX_VALUE_DATA`] bytes and marked when capped or not valid UTF-16.
use fim_model::columns::{cap_text, utf16_lossy as decode};

use super::RegistryValue;

pub const REG_NONE: u32 = 0;
pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
pub const REG_LINK: u32 = 6;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// The name Windows tools print for a value type; an unknown number as `REG_TYPE_<n>` (a
/// value of a private type is still monitored).
pub fn type_name(kind: u32) -> String {
    let known = match kind {
        REG_NONE => "REG_NONE",
        REG_SZ => "REG_SZ",
        REG_EXPAND_SZ => "REG_EXPAND_SZ",
        REG_BINARY => "REG_BINARY",
        REG_DWORD => "REG_DWORD",
        REG_DWORD_BIG_ENDIAN => "REG_DWORD_BIG_ENDIAN",
        REG_LINK => "REG_LINK",
        REG_MULTI_SZ => "REG_MULTI_SZ",
        8 => "REG_RESOURCE_LIST",
        9 => "REG_FULL_RESOURCE_DESCRIPTOR",
        10 => "REG_RESOURCE_REQUIREMENTS_LIST",
        REG_QWORD => "REG_QWORD",
        other => return format!("REG_TYPE_{other}"),
    };
    known.to_string()
}

/// A value's data as record text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueText {
    pub text: String,
    /// Only the first `MAX_VALUE_DATA` bytes of the text are kept.
    pub truncated: bool,
    /// A string value that is not valid UTF-16 (an unpaired surrogate or an odd byte count):
    /// replacement characters stand in.
    pub invalid: bool,
    /// BLAKE3 of the raw bytes, hex: a change past the cap still shows.
    pub checksum: String,
    pub size: u64,
}

/// Renders `value` (see the module docs).
pub fn value_text(value: &RegistryValue) -> ValueText {
    let (text, invalid) = match value.kind {
        REG_SZ | REG_EXPAND_SZ | REG_LINK => {
            let (units, odd) = utf16_units(&value.data);
            let end = units
                .iter()
                .position(|unit| *unit == 0)
                .unwrap_or(units.len());
            let (text, bad) = decode(&units[..end]);
            (text, bad || odd)
        }
        REG_MULTI_SZ => multi_string(&value.data),
        REG_DWORD if value.data.len() == 4 => (le_u64(&value.data).to_string(), false),
        REG_DWORD_BIG_ENDIAN if value.data.len() == 4 => (
            u32::from_be_bytes([value.data[0], value.data[1], value.data[2], value.data[3]])
                .to_string(),
            false,
        ),
        REG_QWORD if value.data.len() == 8 => (le_u64(&value.data).to_string(), false),
        // Binary, resource lists, unknown types, and a DWORD or QWORD of the wrong size (the
        // registry does not enforce sizes; showing the bytes hides nothing).
        _ => (hex_capped(&value.data), false),
    };
    let (text, truncated) = cap_text(text);
    ValueText {
        text,
        truncated,
        invalid,
        checksum: blake3::hash(&value.data).to_hex().to_string(),
        size: value.data.len() as u64,
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |number, byte| (number << 8) | u64::from(*byte))
}

/// Little-endian UTF-16 units; the flag says an odd trailing byte was left out.
fn utf16_units(bytes: &[u8]) -> (Vec<u16>, bool) {
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    (units, bytes.len() % 2 == 1)
}

/// REG_MULTI_SZ: NUL-terminated strings ending with an empty one. Empty strings inside are
/// kept (as empty lines): the registry stores them, and dropping them would hide a change.
fn multi_string(bytes: &[u8]) -> (String, bool) {
    let (mut units, odd) = utf16_units(bytes);
    // The list's terminator: the final string's NUL and the closing empty string's NUL.
    while units.len() >= 2 && units[units.len() - 1] == 0 && units[units.len() - 2] == 0 {
        units.pop();
    }
    if units.last() == Some(&0) {
        units.pop();
    }
    let mut invalid = odd;
    let lines: Vec<String> = units
        .split(|unit| *unit == 0)
        .map(|string| {
            let (text, bad) = decode(string);
            invalid |= bad;
            text
        })
        .collect();
    (lines.join("\n"), invalid)
}

/// Hex of at most as many bytes as fit in the cap (so a 100 MB value is not turned into
/// 200 MB of text first).
fn hex_capped(bytes: &[u8]) -> String {
    let limit = fim_model::columns::MAX_VALUE_DATA / 2 + 1;
    fim_model::change::hex(&bytes[..bytes.len().min(limit)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kind: u32, data: &[u8]) -> RegistryValue {
        RegistryValue {
            name: "v".into(),
            kind,
            data: data.to_vec(),
        }
    }

    fn utf16z(text: &str) -> Vec<u8> {
        text.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect()
    }

    #[test]
    fn strings_numbers_and_binary_become_their_documented_text() {
        let sz = value_text(&value(REG_SZ, &utf16z(r"C:\Program Files\x.exe")));
        assert_eq!(sz.text, r"C:\Program Files\x.exe");
        assert!(!sz.invalid && !sz.truncated);
        assert_eq!(sz.size, 46);
        assert_eq!(value_text(&value(REG_DWORD, &[1, 2, 0, 0])).text, "513");
        assert_eq!(
            value_text(&value(REG_DWORD_BIG_ENDIAN, &[0, 0, 2, 1])).text,
            "513"
        );
        assert_eq!(
            value_text(&value(REG_QWORD, &u64::MAX.to_le_bytes())).text,
            "18446744073709551615"
        );
        assert_eq!(value_text(&value(REG_BINARY, &[0, 0xab, 7])).text, "00ab07");
        // A DWORD of the wrong size shows its bytes.
        assert_eq!(value_text(&value(REG_DWORD, &[1, 2, 3])).text, "010203");
        assert_eq!(value_text(&value(REG_NONE, &[])).text, "");
        assert_eq!(type_name(REG_EXPAND_SZ), "REG_EXPAND_SZ");
        assert_eq!(type_name(0x1234), "REG_TYPE_4660");
    }

    #[test]
    fn multi_strings_keep_empty_strings_inside_as_empty_lines() {
        let mut data: Vec<u8> = Vec::new();
        for part in ["one", "", "three"] {
            data.extend(utf16z(part));
        }
        data.extend([0, 0]);
        assert_eq!(value_text(&value(REG_MULTI_SZ, &data)).text, "one\n\nthree");
        assert_eq!(value_text(&value(REG_MULTI_SZ, &[0, 0])).text, "");
    }

    #[test]
    fn strings_that_are_not_utf16_are_marked_and_kept() {
        // "a", an unpaired high surrogate, "b".
        let data = [0x61, 0, 0x00, 0xd8, 0x62, 0, 0, 0];
        let text = value_text(&value(REG_SZ, &data));
        assert_eq!(text.text, "a\u{fffd}b");
        assert!(text.invalid);
        // An odd byte count.
        assert!(value_text(&value(REG_SZ, &[0x61, 0, 0x62])).invalid);
    }

    #[test]
    fn huge_values_are_capped_with_the_checksum_and_size_of_the_whole() {
        let big = vec![0x5au8; 5 * 1024 * 1024];
        let text = value_text(&value(REG_BINARY, &big));
        assert!(text.truncated);
        assert_eq!(text.text.len(), fim_model::columns::MAX_VALUE_DATA);
        assert_eq!(text.size, 5 * 1024 * 1024);
        assert_eq!(text.checksum, blake3::hash(&big).to_hex().to_string());
        let mut changed = big.clone();
        changed[4 * 1024 * 1024] = 0;
        assert_ne!(
            value_text(&value(REG_BINARY, &changed)).checksum,
            text.checksum
        );
    }
}
