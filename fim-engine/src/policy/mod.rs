//! The policy: which entities are monitored, and the engine's settings.
//!
//! [`Policy`] is what the TOML file says (see `policy.example.toml`); [`CompiledPolicy`] is
//! what the engine uses: environment variables expanded, paths normalised, globs built, and a
//! fast answer to "which entity does this path belong to". Parsing, validation, defaults and
//! persistence live in the submodules.
use std::path::{Path, PathBuf};

use globset::{GlobMatcher, GlobSet};
use serde::{Deserialize, Serialize};

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
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::LinuxFile => "linux-file",
            EntityKind::FileContent => "file-content",
            EntityKind::WindowsFile => "windows-file",
            EntityKind::WindowsRegistry => "windows-registry",
            EntityKind::WindowsService => "windows-service",
        }
    }

    /// Kinds the Linux engine scans; the Windows kinds validate and are kept for the companion.
    pub fn is_linux_file(self) -> bool {
        matches!(self, EntityKind::LinuxFile | EntityKind::FileContent)
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
    /// Hashing threads for scans (0 = number of CPUs).
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
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
}

impl CompiledEntity {
    /// Does `path` belong to this entity (ignoring other entities)?
    pub fn covers(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
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

    pub fn is_ignored(&self, path: &Path) -> bool {
        !self.ignore.is_empty()
            && (self.ignore.is_match(path)
                || path.file_name().is_some_and(|name| self.ignore.is_match(name)))
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
    pub entities: Vec<CompiledEntity>,
    pub settings: Settings,
}

impl CompiledPolicy {
    /// The entity a path belongs to: the most specific (longest root) that covers it.
    pub fn entity_for(&self, path: &Path) -> Option<&CompiledEntity> {
        self.entities
            .iter()
            .filter(|entity| entity.covers(path))
            .max_by_key(|entity| entity.root.as_os_str().len())
    }
}
