//! Path text rules shared by validation and compilation: environment expansion, the
//! "wildcard only in the last segment" rule, lexical normalisation and the loose syntax checks
//! for Windows paths, registry keys and service names.
//!
//! Validation and compilation must agree exactly on what a path means (otherwise a policy could
//! validate and then fail to compile, or two entities could look distinct to one and identical to
//! the other), so both go through these functions. Expansion works on bytes: a variable's value
//! need not be UTF-8 on Linux (elsewhere a value's bytes are std's encoding of it).
use std::{ffi::OsString, path::PathBuf};

use crate::path_text::path_from_bytes;

/// Characters that make a Linux or Windows file path segment a glob.
pub(crate) const FILE_WILDCARDS: &[char] = &['*', '?', '[', '{'];
/// Registry key names legitimately contain `{GUID}` and `[...]`, so only these are wildcards.
const REGISTRY_WILDCARDS: &[char] = &['*', '?'];

/// Looks up an environment variable; `std::env::var_os` in production, a map in tests.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

pub(crate) fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Why a path's `$VAR` references could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    Unset(String),
    Unterminated,
    BadName(String),
}

/// Expands `$NAME` and `${NAME}`; `$$` is a literal `$`, and a `$` not followed by a name is
/// kept as it is.
pub(crate) fn expand_env(text: &str, env: EnvLookup<'_>) -> Result<Vec<u8>, ExpandError> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push(b'$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or(ExpandError::Unterminated)?;
            let name = &braced[..end];
            if !is_var_name(name) {
                return Err(ExpandError::BadName(name.to_string()));
            }
            out.extend_from_slice(lookup(name, env)?.as_encoded_bytes());
            rest = &braced[end + 1..];
        } else {
            let len = var_name_len(after);
            if len == 0 {
                out.push(b'$');
                rest = after;
            } else {
                out.extend_from_slice(lookup(&after[..len], env)?.as_encoded_bytes());
                rest = &after[len..];
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

fn lookup(name: &str, env: EnvLookup<'_>) -> Result<OsString, ExpandError> {
    env(name).ok_or_else(|| ExpandError::Unset(name.to_string()))
}

fn var_name_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() || *first == b'_' => bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count(),
        _ => 0,
    }
}

fn is_var_name(name: &str) -> bool {
    !name.is_empty() && var_name_len(name) == name.len()
}

pub(crate) fn has_wildcard(segment: &[u8], wildcards: &[char]) -> bool {
    segment
        .iter()
        .any(|byte| wildcards.contains(&char::from(*byte)))
}

/// A Linux path split into the literal root and the optional last-segment glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitPath {
    /// Normalised: absolute, no `.`/`..`/empty segments, no trailing slash.
    pub root: PathBuf,
    pub glob: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// A wildcard in a segment other than the last.
    WildcardNotLast,
    NotAbsolute,
    /// The wildcard segment is not UTF-8 (it came from a variable), so it cannot be a glob.
    GlobNotUtf8,
}

/// Splits and normalises an (expanded) Linux path. `..` is resolved lexically and never climbs
/// above `/`.
pub(crate) fn split_linux(path: &[u8]) -> Result<SplitPath, SplitError> {
    let segments: Vec<&[u8]> = path
        .split(|byte| *byte == b'/')
        .filter(|segment| !segment.is_empty())
        .collect();
    if let Some((_, parents)) = segments.split_last() {
        if parents
            .iter()
            .any(|segment| has_wildcard(segment, FILE_WILDCARDS))
        {
            return Err(SplitError::WildcardNotLast);
        }
    }
    if path.first() != Some(&b'/') {
        return Err(SplitError::NotAbsolute);
    }
    let (literal, glob) = match segments.split_last() {
        Some((last, parents)) if has_wildcard(last, FILE_WILDCARDS) => {
            let glob = std::str::from_utf8(last).map_err(|_| SplitError::GlobNotUtf8)?;
            (parents, Some(glob.to_string()))
        }
        _ => (segments.as_slice(), None),
    };
    let mut normal: Vec<&[u8]> = Vec::with_capacity(literal.len());
    for segment in literal {
        match *segment {
            b"." => {}
            b".." => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let mut root = Vec::with_capacity(path.len());
    for segment in &normal {
        root.push(b'/');
        root.extend_from_slice(segment);
    }
    if root.is_empty() {
        root.push(b'/');
    }
    Ok(SplitPath {
        root: path_from_bytes(&root),
        glob,
    })
}

/// A Windows path's segments (`\\` and `/` both separate).
pub(crate) fn windows_segments(path: &str) -> Vec<&str> {
    path.split(['\\', '/'])
        .filter(|segment| !segment.is_empty())
        .collect()
}

/// True when some segment but the last holds a wildcard (Windows files and registry keys).
pub(crate) fn windows_wildcard_not_last(path: &str, registry: bool) -> bool {
    let wildcards = if registry {
        REGISTRY_WILDCARDS
    } else {
        FILE_WILDCARDS
    };
    let segments = windows_segments(path);
    segments.split_last().is_some_and(|(_, parents)| {
        parents
            .iter()
            .any(|segment| has_wildcard(segment.as_bytes(), wildcards))
    })
}

/// Does the last segment hold a wildcard (which makes `recursive` default to false)?
pub(crate) fn last_segment_has_wildcard(path: &str, kind: super::EntityKind) -> bool {
    use super::EntityKind as K;
    let (last, wildcards) = match kind {
        K::LinuxFile | K::FileContent => (path.rsplit('/').find(|s| !s.is_empty()), FILE_WILDCARDS),
        K::WindowsFile => (windows_segments(path).pop(), FILE_WILDCARDS),
        K::WindowsRegistry => (windows_segments(path).pop(), REGISTRY_WILDCARDS),
        K::WindowsService => (Some(path), REGISTRY_WILDCARDS),
    };
    last.is_some_and(|last| has_wildcard(last.as_bytes(), wildcards))
}

/// A drive (`C:\`), a UNC share (`\\server\share`) or a leading `%VAR%`.
pub(crate) fn is_windows_file_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes.get(2), None | Some(b'\\') | Some(b'/'));
    let unc = path.starts_with("\\\\") && windows_segments(path).len() >= 2;
    let variable = path.starts_with('%') && path[1..].contains('%');
    drive || unc || variable
}

const HIVES: &[&str] = &[
    "HKLM",
    "HKEY_LOCAL_MACHINE",
    "HKCU",
    "HKEY_CURRENT_USER",
    "HKCR",
    "HKEY_CLASSES_ROOT",
    "HKU",
    "HKEY_USERS",
    "HKCC",
    "HKEY_CURRENT_CONFIG",
];

/// A registry key starts with a hive name (`HKLM\SOFTWARE\...`).
pub(crate) fn is_registry_key(path: &str) -> bool {
    let hive = path.split('\\').next().unwrap_or_default();
    HIVES.iter().any(|known| known.eq_ignore_ascii_case(hive))
}

/// Service names are one segment: no slashes, at most 256 characters.
pub(crate) fn is_service_name(path: &str) -> bool {
    !path.contains(['\\', '/']) && path.chars().count() <= 256
}

/// `C:\`, `C:\*`, `C:\*.*`, a bare hive: paths that watch a whole drive or hive.
pub(crate) fn is_overly_general_windows(path: &str, recursive: bool) -> bool {
    let segments = windows_segments(path);
    match segments.as_slice() {
        [_] => true,
        [_, last] => {
            recursive && has_wildcard(last.as_bytes(), FILE_WILDCARDS)
                || *last == "*"
                || *last == "*.*"
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<OsString> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some("".into()),
            // A value that is not UTF-8 exists only where names are bytes.
            #[cfg(unix)]
            "RAW" => Some(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/r\xff").into(),
            ),
            _ => None,
        }
    }

    #[test]
    fn expands_both_forms_and_keeps_lone_dollars() {
        let expand = |text: &str| expand_env(text, &env);
        assert_eq!(expand("$HOME/.ssh").unwrap(), b"/home/me/.ssh");
        assert_eq!(expand("${HOME}x/$EMPTY").unwrap(), b"/home/mex/");
        assert_eq!(expand("/a$$b/$/c$").unwrap(), b"/a$b/$/c$");
        #[cfg(unix)]
        assert_eq!(expand("$RAW/x").unwrap(), b"/r\xff/x");
        assert_eq!(expand("$NOPE/x"), Err(ExpandError::Unset("NOPE".into())));
        assert_eq!(expand("${HOME"), Err(ExpandError::Unterminated));
        assert_eq!(expand("${A-B}"), Err(ExpandError::BadName("A-B".into())));
        assert_eq!(expand("${}"), Err(ExpandError::BadName("".into())));
    }

    #[test]
    fn splits_and_normalises_linux_paths() {
        let split = |text: &str| split_linux(text.as_bytes());
        let ok = |root: &str, glob: Option<&str>| {
            Ok(SplitPath {
                root: PathBuf::from(root),
                glob: glob.map(str::to_string),
            })
        };
        assert_eq!(split("/etc/*.conf"), ok("/etc", Some("*.conf")));
        assert_eq!(split("//etc/./ssh/../x/"), ok("/etc/x", None));
        assert_eq!(split("/../.."), ok("/", None));
        assert_eq!(split("/"), ok("/", None));
        assert_eq!(split("/*"), ok("/", Some("*")));
        assert_eq!(split("/a/../b/{x,y}.d/"), ok("/b", Some("{x,y}.d")));
        assert_eq!(split("/e[t]c/x"), Err(SplitError::WildcardNotLast));
        assert_eq!(split("etc/x"), Err(SplitError::NotAbsolute));
        assert_eq!(split(""), Err(SplitError::NotAbsolute));
    }

    #[test]
    fn windows_syntax_is_checked_loosely() {
        assert!(is_windows_file_path("C:\\Windows\\win.ini"));
        assert!(is_windows_file_path("c:"));
        assert!(is_windows_file_path("\\\\server\\share\\x"));
        assert!(is_windows_file_path("%SystemRoot%\\system32"));
        assert!(!is_windows_file_path("/etc/passwd"));
        assert!(!is_windows_file_path("CC:\\x"));
        assert!(is_registry_key("HKLM\\SOFTWARE\\Microsoft"));
        assert!(is_registry_key("hkey_local_machine"));
        assert!(!is_registry_key("HKXX\\SOFTWARE"));
        assert!(is_service_name("Netlogon"));
        assert!(!is_service_name("a\\b"));
        assert!(windows_wildcard_not_last("C:\\*\\x.dll", false));
        assert!(!windows_wildcard_not_last("C:\\folder\\*.dll", false));
        assert!(!windows_wildcard_not_last("HKLM\\X\\{C689AAB8}\\Y", true));
        assert!(is_overly_general_windows("C:\\", true));
        assert!(is_overly_general_windows("C:\\*.*", false));
        assert!(!is_overly_general_windows("C:\\Windows", true));
    }
}
