//! windows-file entities as the file entities the engine sweeps and reconciles, on Windows.
//!
//! Validation has checked the written path's syntax (a drive, a share or a leading `%VAR%`; a
//! wildcard only in the last segment). Here `%VAR%` is expanded from the environment (so
//! `%SystemRoot%\System32\*.dll` means this machine's Windows directory), `.` and `..` are
//! resolved lexically, and a wildcard last segment becomes the name glob, as `/etc/*.conf`
//! does on Linux. Windows names are case-insensitive, so the name glob and the ignore
//! patterns are too. An entity that cannot be made concrete here (a variable not set on this
//! machine) is not monitored and named in [`super::CompiledPolicy::warnings`]: the same policy
//! file must still load on a machine that lacks it.
use std::path::PathBuf;

use globset::{Glob, GlobBuilder, GlobSetBuilder};

use super::{
    paths::{self, EnvLookup, FILE_WILDCARDS},
    CompiledEntity, Entity, EntityKind, Policy,
};

/// The enabled windows-file entities, in policy order; the Linux kinds are named in
/// `warnings` as not applicable.
pub(super) fn file_entities(
    policy: &Policy,
    env: EnvLookup<'_>,
    warnings: &mut Vec<String>,
) -> Vec<CompiledEntity> {
    let mut entities = Vec::new();
    for entity in policy.entities.iter().filter(|entity| entity.enabled) {
        if entity.kind == EntityKind::WindowsFile {
            match file_entity(entity, env) {
                Ok(compiled) => entities.push(compiled),
                Err(why) => warnings.push(format!(
                    "entity \"{}\": {why}; it is not monitored",
                    entity.name
                )),
            }
        } else if entity.kind.is_linux_file() {
            warnings.push(format!(
                "entity \"{}\": {} entities are not applicable on this platform; it is not monitored",
                entity.name,
                entity.kind.as_str()
            ));
        }
    }
    entities
}

fn file_entity(entity: &Entity, env: EnvLookup<'_>) -> Result<CompiledEntity, String> {
    let expanded = expand_percent(&entity.path, env)?;
    let (root, glob) = split_windows(&expanded)?;
    let name_glob = match glob {
        Some(glob) => Some(
            windows_glob(&glob)
                .map_err(|error| format!("invalid wildcard \"{glob}\": {}", error.kind()))?
                .compile_matcher(),
        ),
        None => None,
    };
    let mut ignore = GlobSetBuilder::new();
    for pattern in &entity.ignore {
        ignore.add(
            windows_glob(pattern).map_err(|error| {
                format!("invalid ignore pattern \"{pattern}\": {}", error.kind())
            })?,
        );
    }
    Ok(CompiledEntity {
        name: entity.name.clone(),
        kind: EntityKind::WindowsFile,
        root,
        recursive: entity.recursive,
        name_glob,
        ignore: ignore
            .build()
            .map_err(|error| format!("ignore patterns: {error}"))?,
        keep_content: false,
        excluded: Vec::new(),
    })
}

/// A glob as the policy means it (`*` never crosses a separator), ignoring case like NTFS.
fn windows_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(true)
        .build()
}

/// Expands `%NAME%` from `env`; `%%` is a literal `%`. Unlike cmd.exe, an unset variable is an
/// error rather than left as text: a path with `%SystemRoot%` in it would watch nothing.
pub(super) fn expand_percent(text: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find('%')
            .ok_or_else(|| format!("unterminated \"%\" in path \"{text}\""))?;
        let name = &after[..end];
        if name.is_empty() {
            out.push('%');
        } else {
            let value = env(name).ok_or_else(|| {
                format!("environment variable \"{name}\" is not set (in path \"{text}\")")
            })?;
            let value = value.into_string().map_err(|_| {
                format!("environment variable \"{name}\" is not valid Unicode (in path \"{text}\")")
            })?;
            out.push_str(&value);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits an expanded path into its normalised root (`C:\dir`, `\\server\share\dir`, `C:\`
/// for a drive) and the wildcard last segment, if any.
pub(super) fn split_windows(path: &str) -> Result<(PathBuf, Option<String>), String> {
    let segments = paths::windows_segments(path);
    let unc = path.starts_with("\\\\") || path.starts_with("//");
    let (prefix, rest) = match segments.as_slice() {
        [server, share, rest @ ..] if unc => (format!(r"\\{server}\{share}"), rest),
        [drive, rest @ ..] if is_drive(drive) && !unc => (drive.to_uppercase(), rest),
        _ => return Err(format!("\"{path}\" is not an absolute Windows path")),
    };
    let wild = |segment: &&str| paths::has_wildcard(segment.as_bytes(), FILE_WILDCARDS);
    let (literal, glob) = match rest.split_last() {
        Some((last, parents)) if wild(last) => (parents, Some((*last).to_string())),
        _ => (rest, None),
    };
    if literal.iter().any(wild) {
        return Err(format!(
            "wildcard only allowed in the last segment of \"{path}\""
        ));
    }
    let mut normal: Vec<&str> = Vec::with_capacity(literal.len());
    for segment in literal {
        match *segment {
            "." => {}
            ".." => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let root = format!(r"{prefix}\{}", normal.join(r"\"));
    Ok((PathBuf::from(root), glob))
}

fn is_drive(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    bytes.len() == 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsString, path::Path};

    use super::*;
    use crate::policy::{Entity, Policy};

    fn env(name: &str) -> Option<OsString> {
        match name {
            "SystemRoot" => Some(r"C:\windows".into()),
            "ProgramFiles" => Some(r"C:\Program Files".into()),
            _ => None,
        }
    }

    fn entity(name: &str, kind: EntityKind, path: &str, recursive: bool) -> Entity {
        Entity {
            name: name.into(),
            kind,
            path: path.into(),
            recursive,
            enabled: true,
            ignore: Vec::new(),
        }
    }

    #[test]
    fn variables_expand_and_unset_ones_are_errors() {
        let expand = |text: &str| expand_percent(text, &env);
        assert_eq!(
            expand(r"%SystemRoot%\System32").as_deref(),
            Ok(r"C:\windows\System32")
        );
        assert_eq!(
            expand(r"%ProgramFiles%\a%%b\$x").as_deref(),
            Ok(r"C:\Program Files\a%b\$x")
        );
        assert_eq!(
            expand(r"%NOPE%\x"),
            Err(r#"environment variable "NOPE" is not set (in path "%NOPE%\x")"#.into())
        );
        assert_eq!(
            expand(r"C:\50%"),
            Err(r#"unterminated "%" in path "C:\50%""#.into())
        );
    }

    #[test]
    fn paths_split_into_a_normalised_root_and_a_name_glob() {
        let split = |text: &str| split_windows(text);
        let ok = |root: &str, glob: Option<&str>| Ok((PathBuf::from(root), glob.map(String::from)));
        assert_eq!(
            split(r"c:\Windows\.\x\..\*.ini"),
            ok(r"C:\Windows", Some("*.ini"))
        );
        assert_eq!(
            split(r"C:/Windows/win.ini/"),
            ok(r"C:\Windows\win.ini", None)
        );
        assert_eq!(split(r"C:\"), ok(r"C:\", None));
        assert_eq!(split(r"C:\..\.."), ok(r"C:\", None));
        assert_eq!(
            split(r"\\srv\share\dir\*"),
            ok(r"\\srv\share\dir", Some("*"))
        );
        assert!(split(r"C:\*\x").is_err());
        assert!(split(r"windows\x").is_err());
    }

    #[test]
    fn windows_files_compile_and_linux_kinds_are_not_applicable() {
        let mut wildcard = entity(
            "dlls",
            EntityKind::WindowsFile,
            r"%SystemRoot%\System32\*.DLL",
            false,
        );
        wildcard.ignore = vec!["*.tmp".into(), "cache".into()];
        let mut off = entity("off", EntityKind::WindowsFile, r"C:\off", true);
        off.enabled = false;
        let policy = Policy {
            entities: vec![
                entity("etc", EntityKind::LinuxFile, "/etc", true),
                wildcard,
                off,
                entity("ini", EntityKind::WindowsFile, r"C:\Windows\win.ini", false),
                entity("gone", EntityKind::WindowsFile, r"%FIM_UNSET%\x", true),
                entity(
                    "run",
                    EntityKind::WindowsRegistry,
                    r"HKLM\SOFTWARE\Run",
                    true,
                ),
            ],
            ..Policy::default()
        };
        let mut warnings = Vec::new();
        let compiled = file_entities(&policy, &env, &mut warnings);
        assert_eq!(
            warnings,
            [
                "entity \"etc\": linux-file entities are not applicable on this platform; it is not monitored",
                r#"entity "gone": environment variable "FIM_UNSET" is not set (in path "%FIM_UNSET%\x"); it is not monitored"#,
            ]
        );
        let names: Vec<&str> = compiled.iter().map(|entity| entity.name.as_str()).collect();
        assert_eq!(names, ["dlls", "ini"]);
        let dlls = &compiled[0];
        assert_eq!(dlls.root, Path::new(r"C:\windows\System32"));
        assert!(dlls.covers(Path::new(r"C:\windows\System32\kernel32.dll")));
        assert!(!dlls.covers(Path::new(r"C:\windows\System32\drivers\x.dll")));
        assert!(!dlls.covers(Path::new(r"C:\windows\System32\x.exe")));
        assert!(!dlls.covers(Path::new(r"C:\windows\System32\x.tmp")));
        let ini = &compiled[1];
        assert!(ini.covers(Path::new(r"C:\Windows\win.ini")));
        assert!(!ini.covers(Path::new(r"C:\Windows\system.ini")));
        assert_eq!(ini.max_depth(), Some(1));
    }

    #[test]
    fn ignore_patterns_leave_out_files_and_directories() {
        let mut tree = entity("tree", EntityKind::WindowsFile, r"C:\data", true);
        tree.ignore = vec!["*.log".into(), "cache".into()];
        let policy = Policy {
            entities: vec![tree],
            ..Policy::default()
        };
        let compiled = file_entities(&policy, &env, &mut Vec::new());
        let tree = &compiled[0];
        assert!(tree.covers(Path::new(r"C:\data\a\b.txt")));
        assert!(!tree.covers(Path::new(r"C:\data\a\B.LOG")));
        assert!(!tree.covers(Path::new(r"C:\data\cache\x.txt")));
    }
}
