//! The policy: which entities are monitored, and the engine's settings.
//!
//! [`Policy`] is what the TOML file says (see `policy.example.toml`); [`CompiledPolicy`] is
//! what the engine uses: environment variables expanded, paths normalised, globs built, and a
//! fast answer to "which entity does this path belong to". Parsing, validation, defaults and
//! persistence live in the submodules:
//!
//! - `parse`: TOML text to [`Policy`], problems as `FILE:LINE:COLUMN: message`;
//! - `validate`: the rules (wildcards, overlaps, variables, Windows syntax);
//! - `compile`: [`Policy`] to [`CompiledPolicy`];
//! - `defaults`: the recommended entities (data only);
//! - `document`: comment-preserving edits, atomic saves, and the defaults as a file.
use std::path::{Path, PathBuf};

use globset::{GlobMatcher, GlobSet};
use serde::{Deserialize, Serialize};

mod compile;
#[cfg(windows)]
mod compile_windows;
mod defaults;
mod diagnostic;
mod document;
mod parse;
mod paths;
mod read;
#[cfg(test)]
mod tests;
mod validate;

pub use compile::compile;
pub use defaults::{default_policy, platform_default_policy, windows_default_policy};
pub use diagnostic::{Diagnostic, Location, PolicyError, Severity};
pub use document::{default_policy_toml, EntityPatch, PolicyDocument};
pub use parse::{load, load_trusted, parse, Parsed};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntityKind {
    LinuxFile,
    /// Small text files whose content is kept, so a change shows a diff.
    FileContent,
    WindowsFile,
    WindowsRegistry,
    WindowsService,
}

impl EntityKind {
    pub const ALL: [EntityKind; 5] = [
        EntityKind::LinuxFile,
        EntityKind::FileContent,
        EntityKind::WindowsFile,
        EntityKind::WindowsRegistry,
        EntityKind::WindowsService,
    ];

    /// The inverse of [`EntityKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::LinuxFile => "linux-file",
            EntityKind::FileContent => "file-content",
            EntityKind::WindowsFile => "windows-file",
            EntityKind::WindowsRegistry => "windows-registry",
            EntityKind::WindowsService => "windows-service",
        }
    }

    /// Whether an entity of this kind at `path` is recursive unless told otherwise: yes,
    /// except where the last segment holds a wildcard of this kind (`/etc/*.conf` matches
    /// files in one directory). The one rule for the policy file, the API and the CLI.
    pub fn recursive_by_default(self, path: &str) -> bool {
        !paths::last_segment_has_wildcard(path, self)
    }

    /// The names of every kind, for messages: "linux-file, file-content, ... or windows-service".
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    /// Kinds the Linux engine scans; the Windows kinds validate and are kept for the companion.
    pub fn is_linux_file(self) -> bool {
        matches!(self, EntityKind::LinuxFile | EntityKind::FileContent)
    }

    /// Kinds this platform's engine scans as files: the Linux kinds on Unix, windows-file on
    /// Windows.
    pub fn is_host_file(self) -> bool {
        if cfg!(windows) {
            self == EntityKind::WindowsFile
        } else {
            self.is_linux_file()
        }
    }
}

/// One monitored entity, as written in the policy file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    pub kind: EntityKind,
    /// A path (files) or key (registry) or service name; `$VAR`/`${VAR}` are expanded, and a
    /// wildcard may stand only in the last segment.
    pub path: String,
    pub recursive: bool,
    pub enabled: bool,
    /// Glob patterns (globset syntax) for paths to leave out.
    pub ignore: Vec<String>,
}

/// Engine settings (the `[settings]` table); every field has a documented default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Scan threads (0 = automatic: 4 per CPU, at least 4, at most 32). More threads than
    /// CPUs keep more reads in flight, which is what a cold tree needs: measured on 2 CPUs,
    /// 8 threads made the first scan of a cold 100k-file tree 2.2x faster than 2.
    pub scan_workers: usize,
    /// Read budget for scans, bytes per second (None = unlimited).
    pub scan_bytes_per_second: Option<u64>,
    /// Scan with idle IO priority (ioprio class idle).
    pub scan_idle_io: bool,
    /// Let scans cross into other filesystems mounted below an entity's path.
    pub cross_filesystems: bool,
    /// How much content file-content entities keep, in bytes.
    pub content_limit: u64,
    /// Seconds between metadata sweeps (default 900: 15 minutes).
    pub sweep_interval_secs: u64,
    /// Seconds between full rehashes (default 86400: daily).
    pub rehash_interval_secs: u64,
    /// How long kernel events for one path are gathered before it is rehashed, ms.
    pub coalesce_ms: u64,
    /// Journal retention: records older than this many days are pruned (None: kept).
    #[serde(default)]
    pub journal_keep_days: Option<u64>,
    /// Journal retention: at most this many records are kept (None: all). On an agent that
    /// reports to a workspace, only records the workspace acknowledged are pruned by this
    /// and by `journal_keep_days`.
    #[serde(default)]
    pub journal_keep_records: Option<u64>,
    /// The most records kept even when the workspace has not acknowledged them (None: no
    /// cap, so an agent cut off from its workspace keeps everything until its disk is full).
    /// Records pruned past it before the workspace had them show there as a gap.
    #[serde(default)]
    pub journal_hard_cap_records: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            scan_workers: 0,
            scan_bytes_per_second: None,
            scan_idle_io: true,
            cross_filesystems: false,
            content_limit: 1024 * 1024,
            sweep_interval_secs: 15 * 60,
            rehash_interval_secs: 24 * 60 * 60,
            coalesce_ms: 50,
            journal_keep_days: None,
            journal_keep_records: None,
            journal_hard_cap_records: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub entities: Vec<Entity>,
    pub settings: Settings,
}

/// An enabled entity ready for matching.
#[derive(Clone, Debug)]
pub struct CompiledEntity {
    pub name: String,
    pub kind: EntityKind,
    /// The expanded, normalised path without the wildcard segment: for `/etc/*.conf` this is
    /// `/etc`, for `/etc/crontab` it is `/etc/crontab`.
    pub root: PathBuf,
    /// Descend below `root` (for a wildcard entity: match the pattern in subdirectories too).
    pub recursive: bool,
    /// The last-segment wildcard (`*.conf`), matched against file names.
    pub name_glob: Option<GlobMatcher>,
    /// Paths to leave out, matched against the full path and against the file name.
    pub ignore: GlobSet,
    /// Keep content for diffs (file-content entities).
    pub keep_content: bool,
    /// Directories left out whatever the policy says: fimd's own state directory.
    pub excluded: Vec<PathBuf>,
}

impl CompiledEntity {
    /// Does `path` belong to this entity (ignoring other entities)?
    pub fn covers(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        if self.excluded.iter().any(|dir| path.starts_with(dir)) {
            return false;
        }
        let depth = relative.components().count();
        let in_reach = match (&self.name_glob, self.recursive) {
            // `/etc/*.conf`: direct children whose name matches, or any depth if recursive.
            (Some(glob), recursive) => {
                depth >= 1
                    && (recursive || depth == 1)
                    && path.file_name().is_some_and(|name| glob.is_match(name))
            }
            (None, true) => true,
            // A non-recursive directory: itself and its direct children.
            (None, false) => depth <= 1,
        };
        in_reach && !self.is_ignored(path)
    }

    /// Is `path` left out by an ignore pattern? A pattern matches the full path or a file
    /// name (`*` never crosses `/`; `**` does). Ignoring a directory ignores everything below
    /// it, so the path's ancestors below `root` are checked too: `ignore = ["cache"]` leaves out
    /// `ROOT/cache/a/b`, as a scan that skips the directory would.
    pub fn is_ignored(&self, path: &Path) -> bool {
        if self.ignore.is_empty() {
            return false;
        }
        let matches = |path: &Path| {
            self.ignore.is_match(path)
                || path
                    .file_name()
                    .is_some_and(|name| self.ignore.is_match(name))
        };
        matches(path)
            || (path.starts_with(&self.root)
                && path
                    .ancestors()
                    .skip(1)
                    .take_while(|ancestor| *ancestor != self.root)
                    .any(matches))
    }

    /// How deep below `root` a scan or the kernel must look (None = unlimited).
    pub fn max_depth(&self) -> Option<usize> {
        match (&self.name_glob, self.recursive) {
            (_, true) => None,
            (Some(_), false) | (None, false) => Some(1),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CompiledPolicy {
    /// The file entities: the Linux kinds on Unix, windows-file on Windows.
    pub entities: Vec<CompiledEntity>,
    /// The registry entities, for a platform with a registry reader (compiled everywhere, so
    /// the policy means the same on every machine; only the Windows companion sweeps them).
    pub registry: Vec<crate::registry::KeyRoot>,
    /// The service entities, likewise for the Windows companion.
    pub services: Vec<crate::service::ServiceRoot>,
    pub settings: Settings,
    /// Entities that validated but are not monitored on this platform, one sentence each, for
    /// the log (always empty on Unix; on Windows the Linux kinds, and a windows-file entity
    /// whose `%VAR%` is not set).
    pub warnings: Vec<String>,
}

impl CompiledPolicy {
    /// The registry entity a key belongs to: the one with the longest key that covers it
    /// (the first defined on a tie).
    pub fn key_root_for(&self, key: &str) -> Option<&crate::registry::KeyRoot> {
        let mut best: Option<&crate::registry::KeyRoot> = None;
        for root in self.registry.iter().filter(|root| root.covers(key)) {
            if best.is_none_or(|best| root.key.len() > best.key.len()) {
                best = Some(root);
            }
        }
        best
    }

    /// The service entity a service belongs to: one naming it exactly, else the one with the
    /// longest pattern that matches (the first defined on a tie).
    pub fn service_root_for(&self, name: &str) -> Option<&crate::service::ServiceRoot> {
        let rank = |root: &crate::service::ServiceRoot| {
            let exact = !root.pattern.contains(['*', '?']);
            (exact, root.pattern.len())
        };
        let mut best: Option<&crate::service::ServiceRoot> = None;
        for root in self.services.iter().filter(|root| root.covers(name)) {
            if best.is_none_or(|best| rank(root) > rank(best)) {
                best = Some(root);
            }
        }
        best
    }

    /// Leaves `dir` out of every entity that would reach it; returns the names of those
    /// entities (for one warning). fimd's own database must never be monitored: its every
    /// commit would be a change, and a sweep recording it would commit again.
    pub fn exclude(&mut self, dir: &Path) -> Vec<String> {
        let mut touched = Vec::new();
        for entity in &mut self.entities {
            if dir.starts_with(&entity.root) || entity.root.starts_with(dir) {
                entity.excluded.push(dir.to_path_buf());
                touched.push(entity.name.clone());
            }
        }
        touched
    }

    /// The entity a path belongs to: the most specific one that covers it. More specific means
    /// a longer root, then a wildcard over none (`/etc/*.conf` beats `/etc`), then file-content
    /// over linux-file; on a full tie the entity defined first wins.
    pub fn entity_for(&self, path: &Path) -> Option<&CompiledEntity> {
        let mut best: Option<(&CompiledEntity, Specificity)> = None;
        for entity in self.entities.iter().filter(|entity| entity.covers(path)) {
            let key = specificity(
                &entity.root,
                entity.name_glob.is_some(),
                entity.keep_content,
            );
            if best.as_ref().is_none_or(|(_, best_key)| key > *best_key) {
                best = Some((entity, key));
            }
        }
        best.map(|(entity, _)| entity)
    }
}

/// How specific an entity is, for [`CompiledPolicy::entity_for`] and the overlap warnings.
pub(crate) type Specificity = (usize, bool, bool);

pub(crate) fn specificity(root: &Path, has_glob: bool, keep_content: bool) -> Specificity {
    (root.as_os_str().len(), has_glob, keep_content)
}
