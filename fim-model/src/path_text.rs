//! Paths as text. On Unix: UTF-8 as is, every other byte as `\xNN`, a backslash as `\\`. On
//! Windows: the path as Windows shows it (single backslashes), a control character or a byte
//! of an unpaired surrogate as `|xNN`.
//!
//! Linux names are bytes, records and JSON are text. The escape is reversible
//! ([`parse_display`]), so a path printed in a record can be looked up again, and a newline or
//! invalid byte in a hostile name can never forge a second line or column.
//!
//! On Windows a path is UTF-16 and its bytes here are its UTF-8 form: every name that is valid
//! UTF-16 survives the round trip. The escape character is `|`, which Win32 forbids in names
//! (as it forbids control characters), so `C:\Temp\x0a` stays a directory named `x0a` and no
//! real name is mistaken for an escape. A name with an unpaired surrogate (which Win32 permits
//! but no tool creates by accident) is shown as its WTF-8 bytes escaped, and read back with the
//! replacement character: storing it still works, looking it up again by text does not.
use std::path::{Path, PathBuf};

use serde::Serializer;

/// What starts an escape: `\` on Unix (where it is escaped itself), `|` on Windows (where no
/// name may contain it and `\` is the separator).
#[cfg(unix)]
const ESCAPE: char = '\\';
#[cfg(not(unix))]
const ESCAPE: char = '|';

/// Renders path bytes for humans and JSON.
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                c if c == ESCAPE => {
                    out.push(ESCAPE);
                    out.push(ESCAPE);
                }
                // Control characters (newline, tab, escape) would break lines and terminals.
                c if c.is_control() => out.push_str(&format!("{ESCAPE}x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("{ESCAPE}x{byte:02x}"));
        }
    }
    out
}

pub fn display_path(path: &Path) -> String {
    display_bytes(path_bytes(path))
}

/// The inverse of [`display_bytes`]. Returns None for text that no path renders to.
pub fn parse_display(text: &str) -> Option<PathBuf> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut at = 0;
    let escape = ESCAPE as u8;
    while at < bytes.len() {
        if bytes[at] != escape {
            out.push(bytes[at]);
            at += 1;
            continue;
        }
        match bytes.get(at + 1)? {
            next if *next == escape => {
                out.push(escape);
                at += 2;
            }
            b'x' => {
                let hex = text.get(at + 2..at + 4)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 4;
            }
            _ => return None,
        }
    }
    Some(path_from_bytes(&out))
}

pub fn serialize_path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&display_path(path))
}

pub fn serialize_opt_path<S: Serializer>(
    path: &Option<PathBuf>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serializer.serialize_str(&display_path(path)),
        None => serializer.serialize_none(),
    }
}

pub fn serialize_paths<S: Serializer>(paths: &[PathBuf], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(paths.iter().map(|path| display_path(path)))
}

/// Path bytes, for storage keys: the name's own bytes on Unix, its (WTF-)8 form on Windows.
pub fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// The inverse of [`path_bytes`].
#[cfg(unix)]
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// The inverse of [`path_bytes`] for every valid UTF-16 name (see the module doc).
#[cfg(not(unix))]
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn escapes_round_trip() {
        let raw = path_from_bytes(b"/a\xffb\\c\nd\x1b");
        let text = display_path(&raw);
        assert_eq!(text, "/a\\xffb\\\\c\\x0ad\\x1b");
        assert_eq!(parse_display(&text), Some(raw));
        assert_eq!(parse_display("/bad\\q"), None);
    }

    #[cfg(unix)]
    #[test]
    fn control_characters_and_backslashes_are_escaped_on_unix() {
        let raw = path_from_bytes("C:\\Temp\\a\nb".as_bytes());
        let text = display_path(&raw);
        assert_eq!(text, "C:\\\\Temp\\\\a\\x0ab");
        assert_eq!(parse_display(&text), Some(raw));
    }

    #[cfg(not(unix))]
    #[test]
    fn windows_paths_show_as_windows_shows_them_and_control_characters_are_escaped() {
        let raw = path_from_bytes("C:\\Temp\\x0a\\a\nb|c".as_bytes());
        let text = display_path(&raw);
        // `\x0a` is a directory named x0a, not an escape; `|` cannot be in a real name.
        assert_eq!(text, "C:\\Temp\\x0a\\a|x0ab||c");
        assert_eq!(parse_display(&text), Some(raw));
        assert_eq!(parse_display("C:\\bad|q"), None);
        assert_eq!(
            parse_display("C:\\Windows\\System32"),
            Some(PathBuf::from("C:\\Windows\\System32"))
        );
    }
}
