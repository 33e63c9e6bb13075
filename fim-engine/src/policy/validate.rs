//! Validation of a [`Policy`]: every rule that does not depend on the TOML text.
//!
//! It runs on policies from a file (the parser places the findings at their spans), from code
//! (defaults, the CLI's edits) and again in [`super::compile`], so a policy can never be
//! compiled or saved without passing it. While checking a Linux entity it builds exactly what
//! the compiled entity needs (root, globs), so compile cannot disagree with validation.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use super::{
    diagnostic::{entity_label, name_is_printable, Field, Issue, Severity},
    paths::{self, EnvLookup, ExpandError, SplitError},
    specificity, Entity, EntityKind, Policy, Settings,
};
use crate::path_text::display_bytes;

/// A Linux entity as the engine will use it.
pub(crate) struct Prepared {
    pub root: PathBuf,
    pub glob: Option<String>,
    pub name_glob: Option<GlobMatcher>,
    pub ignore: GlobSet,
}

pub(crate) struct Checked {
    pub issues: Vec<Issue>,
    /// Per entity: the prepared form of a valid Linux entity.
    pub prepared: Vec<Option<Prepared>>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.issues
            .iter()
            .any(|issue| issue.severity == Severity::Error)
    }
}

/// A glob as the policy means it: `*` and `?` never match `/`.
pub(crate) fn build_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

pub(crate) fn check(policy: &Policy, env: EnvLookup<'_>) -> Checked {
    let mut issues = Vec::new();
    check_settings(&policy.settings, &mut issues);
    let mut names: HashSet<&str> = HashSet::new();
    let mut prepared = Vec::with_capacity(policy.entities.len());
    for (index, entity) in policy.entities.iter().enumerate() {
        let mut report = Reporter {
            issues: &mut issues,
            index,
            label: entity_label(index, Some(&entity.name)),
        };
        if entity.name.trim().is_empty() {
            report.error(Field::Name, "name is empty".into());
        } else if !name_is_printable(&entity.name) {
            report.error(Field::Name, "name contains a control character".into());
        } else if !names.insert(&entity.name) {
            report.error(Field::Name, "duplicate name".into());
        }
        let ignore = check_ignore(entity, &mut report);
        let linux = if entity.path.is_empty() {
            report.error(Field::Path, "path is empty".into());
            None
        } else if entity.path.contains('\0') {
            // The kernel takes paths as C strings: the NUL would silently cut the path short.
            report.error(Field::Path, "path contains a NUL byte".into());
            None
        } else if entity.kind.is_linux_file() {
            check_linux_path(entity, env, &mut report)
        } else {
            check_windows_path(entity, &mut report);
            None
        };
        prepared.push(match (linux, ignore) {
            (Some((root, glob, name_glob)), Some(ignore)) => Some(Prepared {
                root,
                glob,
                name_glob,
                ignore,
            }),
            _ => None,
        });
    }
    check_overlaps(policy, &prepared, &mut issues);
    check_windows_twins(policy, &mut issues);
    Checked { issues, prepared }
}

struct Reporter<'a> {
    issues: &'a mut Vec<Issue>,
    index: usize,
    label: String,
}

impl Reporter<'_> {
    fn push(&mut self, severity: Severity, field: Field, message: String) {
        self.issues.push(Issue {
            severity,
            entity: Some(self.index),
            field,
            message: format!("{}: {message}", self.label),
        });
    }

    fn error(&mut self, field: Field, message: String) {
        self.push(Severity::Error, field, message);
    }

    fn warning(&mut self, field: Field, message: String) {
        self.push(Severity::Warning, field, message);
    }
}

fn check_settings(settings: &Settings, issues: &mut Vec<Issue>) {
    let mut error = |key: &'static str, message: &str| {
        issues.push(Issue {
            severity: Severity::Error,
            entity: None,
            field: Field::Setting(key),
            message: format!("settings: \"{key}\" {message}"),
        })
    };
    if settings.scan_bytes_per_second == Some(0) {
        error(
            "scan_bytes_per_second",
            "must be at least 1 (leave it out for no limit)",
        );
    }
    if settings.sweep_interval_secs == 0 {
        error("sweep_interval_secs", "must be at least 1");
    }
    if settings.rehash_interval_secs == 0 {
        error("rehash_interval_secs", "must be at least 1");
    }
    if settings.journal_keep_days == Some(0) {
        error(
            "journal_keep_days",
            "must be at least 1 (leave it out to keep everything)",
        );
    }
    if settings.journal_keep_records == Some(0) {
        error(
            "journal_keep_records",
            "must be at least 1 (leave it out to keep everything)",
        );
    }
    match (
        settings.journal_hard_cap_records,
        settings.journal_keep_records,
    ) {
        (Some(0), _) => error(
            "journal_hard_cap_records",
            "must be at least 1 (leave it out for no cap)",
        ),
        (Some(cap), Some(keep)) if cap < keep => error(
            "journal_hard_cap_records",
            "must be at least journal_keep_records (the cap is what is kept when the \
             workspace is unreachable, beyond the usual retention)",
        ),
        _ => {}
    }
    // Upper bounds: beyond these a value is a typo (ms for s, an extra zero) that would make
    // the engine stall, exhaust threads or memory, or effectively never check.
    let too_big = |value: u64, max: u64| value > max;
    if too_big(settings.coalesce_ms, MAX_COALESCE_MS) {
        error(
            "coalesce_ms",
            &format!("must be at most {MAX_COALESCE_MS} (1 minute)"),
        );
    }
    if settings.scan_workers > MAX_SCAN_WORKERS {
        error(
            "scan_workers",
            &format!("must be at most {MAX_SCAN_WORKERS} (0 = automatic)"),
        );
    }
    if too_big(settings.content_limit, MAX_CONTENT_LIMIT) {
        error(
            "content_limit",
            &format!("must be at most {MAX_CONTENT_LIMIT} (64 MiB)"),
        );
    }
    if too_big(settings.sweep_interval_secs, MAX_INTERVAL_SECS) {
        error(
            "sweep_interval_secs",
            &format!("must be at most {MAX_INTERVAL_SECS} (1 year)"),
        );
    }
    if too_big(settings.rehash_interval_secs, MAX_INTERVAL_SECS) {
        error(
            "rehash_interval_secs",
            &format!("must be at most {MAX_INTERVAL_SECS} (1 year)"),
        );
    }
}

const MAX_COALESCE_MS: u64 = 60_000;
const MAX_SCAN_WORKERS: usize = 256;
const MAX_CONTENT_LIMIT: u64 = 64 * 1024 * 1024;
const MAX_INTERVAL_SECS: u64 = 365 * 24 * 60 * 60;

fn check_ignore(entity: &Entity, report: &mut Reporter<'_>) -> Option<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    let mut valid = true;
    for (at, pattern) in entity.ignore.iter().enumerate() {
        if pattern.is_empty() {
            report.error(Field::Ignore(at), "ignore pattern is empty".into());
            valid = false;
            continue;
        }
        match build_glob(pattern) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(err) => {
                let message = format!("invalid ignore pattern \"{pattern}\": {}", err.kind());
                report.error(Field::Ignore(at), message);
                valid = false;
            }
        }
    }
    if !valid {
        return None;
    }
    match builder.build() {
        Ok(set) => Some(set),
        Err(err) => {
            report.error(Field::Table, format!("ignore patterns: {err}"));
            None
        }
    }
}

/// `"P"`, or `"P" (expanded: "E")` when variables changed it.
fn shown(written: &str, expanded: &[u8]) -> String {
    if written.as_bytes() == expanded {
        format!("\"{written}\"")
    } else {
        format!("\"{written}\" (expanded: \"{}\")", display_bytes(expanded))
    }
}

type LinuxParts = (PathBuf, Option<String>, Option<GlobMatcher>);

fn check_linux_path(
    entity: &Entity,
    env: EnvLookup<'_>,
    report: &mut Reporter<'_>,
) -> Option<LinuxParts> {
    let written = entity.path.as_str();
    let expanded = match paths::expand_env(written, env) {
        Ok(expanded) => expanded,
        Err(err) => {
            let message = match err {
                ExpandError::Unset(name) => {
                    format!("environment variable \"{name}\" is not set (in path \"{written}\")")
                }
                ExpandError::Unterminated => format!("unterminated \"${{\" in path \"{written}\""),
                ExpandError::BadName(name) => {
                    format!("invalid variable name \"${{{name}}}\" in path \"{written}\"")
                }
            };
            report.error(Field::Path, message);
            return None;
        }
    };
    let split = match paths::split_linux(&expanded) {
        Ok(split) => split,
        Err(err) => {
            let path = shown(written, &expanded);
            let message = match err {
                SplitError::WildcardNotLast => {
                    format!("wildcard only allowed in the last segment of {path}")
                }
                SplitError::NotAbsolute => {
                    format!("path {path} is not absolute (Linux paths start with \"/\")")
                }
                SplitError::GlobNotUtf8 => format!("the wildcard in {path} is not valid UTF-8"),
            };
            report.error(Field::Path, message);
            return None;
        }
    };
    let name_glob = match &split.glob {
        None => None,
        Some(glob) => match build_glob(glob) {
            Ok(glob) => Some(glob.compile_matcher()),
            Err(err) => {
                let message = format!(
                    "invalid wildcard \"{glob}\" in path {}: {}",
                    shown(written, &expanded),
                    err.kind()
                );
                report.error(Field::Path, message);
                return None;
            }
        },
    };
    let whole_filesystem = split.root == Path::new("/")
        && (split.glob.is_none() || entity.recursive || split.glob.as_deref() == Some("*"));
    if whole_filesystem {
        let message = format!("path {} is overly general", shown(written, &expanded));
        report.warning(Field::Path, message);
    }
    Some((split.root, split.glob, name_glob))
}

fn check_windows_path(entity: &Entity, report: &mut Reporter<'_>) {
    let path = entity.path.as_str();
    let (valid, expected, wildcards_checked) = match entity.kind {
        EntityKind::WindowsFile => (
            paths::is_windows_file_path(path),
            "a Windows file path (a drive such as C:\\ or a share such as \\\\server\\share)",
            Some(false),
        ),
        EntityKind::WindowsRegistry => (
            paths::is_registry_key(path),
            "a registry key starting with a hive such as HKLM\\",
            Some(true),
        ),
        _ => (
            paths::is_service_name(path),
            "a service name (no \\ or /, at most 256 characters)",
            None,
        ),
    };
    if !valid {
        report.error(Field::Path, format!("\"{path}\" is not {expected}"));
        return;
    }
    if let Some(registry) = wildcards_checked {
        if paths::windows_wildcard_not_last(path, registry) {
            let message = format!("wildcard only allowed in the last segment of \"{path}\"");
            report.error(Field::Path, message);
        } else if paths::is_overly_general_windows(path, entity.recursive) {
            report.warning(Field::Path, format!("path \"{path}\" is overly general"));
        }
    }
}

fn full_path(prepared: &Prepared) -> String {
    let mut text = crate::path_text::display_path(&prepared.root);
    if let Some(glob) = &prepared.glob {
        if !text.ends_with('/') {
            text.push('/');
        }
        text.push_str(glob);
    }
    text
}

/// Does `outer` cover some path that `inner` also covers? Conservative where globs make the
/// answer undecidable cheaply (a recursive wildcard entity is assumed to reach into anything
/// below it; two different wildcards on one root are assumed disjoint).
fn reaches_into(outer: (&Entity, &Prepared), inner: (&Entity, &Prepared)) -> bool {
    let ((outer_entity, outer), (_, inner)) = (outer, inner);
    let Ok(relative) = inner.root.strip_prefix(&outer.root) else {
        return false;
    };
    let depth = relative.components().count();
    if depth == 0 {
        return outer.glob.is_none() || inner.glob.is_none() || outer.glob == inner.glob;
    }
    match (&outer.name_glob, outer_entity.recursive) {
        (None, true) | (Some(_), true) => true,
        // The outer entity covers the inner root itself, which the inner one covers only
        // without a wildcard.
        (None, false) => depth == 1 && inner.glob.is_none(),
        (Some(glob), false) => {
            depth == 1
                && inner.glob.is_none()
                && inner
                    .root
                    .file_name()
                    .is_some_and(|name| glob.is_match(name))
        }
    }
}

type Live<'a> = (usize, &'a Entity, &'a Prepared);

/// Overlap errors and warnings between enabled Linux entities, attached to the later entity
/// of each pair, in policy order. Only pairs that share a root, or whose roots are ancestor
/// and descendant, can overlap, so candidates come from an index by root instead of from all
/// pairs: 20,000 entities check in milliseconds rather than minutes.
fn check_overlaps(policy: &Policy, prepared: &[Option<Prepared>], issues: &mut Vec<Issue>) {
    let live: Vec<Live<'_>> = policy
        .entities
        .iter()
        .zip(prepared)
        .enumerate()
        .filter_map(|(index, (entity, prepared))| {
            let prepared = prepared.as_ref()?;
            entity.enabled.then_some((index, entity, prepared))
        })
        .collect();
    let mut by_root: HashMap<&Path, HashMap<Option<&str>, Vec<usize>>> = HashMap::new();
    for (at, (_, _, prepared)) in live.iter().enumerate() {
        by_root
            .entry(prepared.root.as_path())
            .or_default()
            .entry(prepared.glob.as_deref())
            .or_default()
            .push(at);
    }
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut pair = |a: usize, b: usize| {
        if a != b {
            pairs.push((a.max(b), a.min(b)));
        }
    };
    for (at, (_, _, prepared)) in live.iter().enumerate() {
        let Some(same_root) = by_root.get(prepared.root.as_path()) else {
            continue;
        };
        // On one root, two different wildcards are taken as disjoint; a plain entity meets
        // every entity on its root.
        match prepared.glob.as_deref() {
            None => same_root
                .values()
                .flatten()
                .for_each(|&other| pair(at, other)),
            glob => [None, Some(glob)]
                .into_iter()
                .filter_map(|key| same_root.get(&key.flatten()))
                .flatten()
                .for_each(|&other| pair(at, other)),
        }
        for ancestor in prepared.root.ancestors().skip(1) {
            let Some(outer) = by_root.get(ancestor) else {
                continue;
            };
            for &other in outer.values().flatten() {
                let (_, entity, outer_prepared) = live[other];
                if reaches_into((entity, outer_prepared), (live[at].1, prepared)) {
                    pair(at, other);
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    for (later, earlier) in pairs {
        if let Some(issue) = overlap_issue(live[earlier], live[later]) {
            issues.push(issue);
        }
    }
}

/// What two enabled entities, `other` before `entity` in the policy, have to say about each
/// other: an error when they are the same, a warning naming the winner when paths belong to
/// both.
fn overlap_issue((_, other, earlier): Live<'_>, (index, entity, later): Live<'_>) -> Option<Issue> {
    let issue = |severity, message: String| Issue {
        severity,
        entity: Some(index),
        field: Field::Path,
        message,
    };
    if other.kind == entity.kind && earlier.root == later.root && earlier.glob == later.glob {
        let message = format!(
            "entity \"{}\": overlapping entities: \"{}\" has the same kind and path \"{}\"",
            entity.name,
            other.name,
            full_path(later)
        );
        return Some(issue(Severity::Error, message));
    }
    let key = |entity: &Entity, prepared: &Prepared| {
        specificity(
            &prepared.root,
            prepared.glob.is_some(),
            entity.kind == EntityKind::FileContent,
        )
    };
    // Ties go to the earlier entity, as in `CompiledPolicy::entity_for`.
    let winner = if key(entity, later) > key(other, earlier) {
        &entity.name
    } else {
        &other.name
    };
    let (a, b) = ((other, earlier), (entity, later));
    let message = if earlier.root == later.root && reaches_into(a, b) {
        format!(
            "entities \"{}\" (\"{}\") and \"{}\" (\"{}\") overlap; paths in both belong to \"{winner}\"",
            other.name,
            full_path(earlier),
            entity.name,
            full_path(later)
        )
    } else {
        let (outer, inner) = [(a, b), (b, a)]
            .into_iter()
            .find(|(outer, inner)| reaches_into(*outer, *inner))?;
        format!(
            "entity \"{}\" (\"{}\") is nested inside entity \"{}\" (\"{}\"); paths in both belong to \"{winner}\"",
            inner.0.name,
            full_path(inner.1),
            outer.0.name,
            full_path(outer.1)
        )
    };
    Some(issue(Severity::Warning, message))
}

/// Two enabled Windows entities of one kind naming the same path or key. Windows paths are
/// case-insensitive and take either slash, so they are compared in that form.
fn check_windows_twins(policy: &Policy, issues: &mut Vec<Issue>) {
    let mut seen: HashMap<(EntityKind, String), &str> = HashMap::new();
    for (index, entity) in policy.entities.iter().enumerate() {
        if !entity.enabled || entity.kind.is_linux_file() || entity.path.is_empty() {
            continue;
        }
        let canonical = paths::windows_segments(&entity.path)
            .join("\\")
            .to_lowercase();
        match seen.get(&(entity.kind, canonical.clone())) {
            Some(first) => issues.push(Issue {
                severity: Severity::Error,
                entity: Some(index),
                field: Field::Path,
                message: format!(
                    "entity \"{}\": overlapping entities: \"{first}\" has the same kind and path \"{}\"",
                    entity.name, entity.path
                ),
            }),
            None => {
                seen.insert((entity.kind, canonical), &entity.name);
            }
        }
    }
}
