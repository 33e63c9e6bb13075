//! Monitored roots, turned into what the kernel programs look up.
//!
//! For every root the kernel needs: the root's own (dev, ino) in the inode map; every ancestor
//! directory (not itself under a root) as an *ancestor* entry with an id; and, per ancestor,
//! the path strings that lead from it into the root, in the prefix trie. Files under a root
//! with more than one hard link are registered by inode too, so a write through a link outside
//! the root is still attributed to the monitored file.
//!
//! A root that does not exist yet is watched from its nearest existing ancestor: events there
//! reach user space, which drops those outside the root and re-plans when the root appears.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Component, Path, PathBuf},
};

use fim_common::roots::{
    InodeEntry, InodeKey, PrefixData, PrefixEntry, INODE_ANCESTOR, INODE_ROOT, PREFIX_PATH_BYTES,
};
use fim_engine::daemon::WatchRoot;

/// Hard-link registration stops after this many directory entries per root, so a huge tree
/// cannot stall start-up; the limit is logged when hit.
const HARDLINK_SCAN_LIMIT: usize = 500_000;

/// The kernel's view of a set of roots, and what user space needs to read events back.
#[derive(Debug, Default)]
pub struct RootPlan {
    pub inodes: HashMap<InodeKey, InodeEntry>,
    /// (prefix length in bits, data) -> entry.
    pub prefixes: HashMap<(u32, PrefixData), PrefixEntry>,
    /// Known paths of every anchor the kernel may report.
    pub anchors: HashMap<InodeKey, PathBuf>,
    /// Root id -> the root's state.
    pub roots: BTreeMap<u32, PlannedRoot>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct PlannedRoot {
    pub spec: WatchRoot,
    /// The root's canonical path (symlinks resolved), or the given path while it is missing.
    pub path: PathBuf,
    /// Other spellings of the same root (the path as given, when it went through symlinks).
    pub aliases: Vec<PathBuf>,
    /// Where the kernel watches it from: the root itself, or its nearest existing ancestor.
    pub watched_from: PathBuf,
    pub exists: bool,
}

impl RootPlan {
    /// Does `path` fall under one of the roots (by canonical path or alias)? Returns its id.
    pub fn root_of(&self, path: &Path) -> Option<u32> {
        self.roots
            .iter()
            .filter(|(_, root)| {
                std::iter::once(&root.path)
                    .chain(&root.aliases)
                    .any(|base| {
                        path == base
                            || (root.spec.recursive && path.starts_with(base))
                            || (!root.spec.recursive && path.parent() == Some(base.as_path()))
                    })
            })
            .map(|(id, _)| *id)
            .next()
    }

    /// Rewrites a path spelled through a root's alias (a symlink such as /bin -> /usr/bin)
    /// to the canonical spelling, so one file is always reported under one name.
    pub fn canonical(&self, path: PathBuf) -> PathBuf {
        for root in self.roots.values() {
            for alias in &root.aliases {
                if let Ok(rest) = path.strip_prefix(alias) {
                    return if rest.as_os_str().is_empty() {
                        root.path.clone()
                    } else {
                        root.path.join(rest)
                    };
                }
            }
        }
        path
    }

    /// Paths of the given root ids (for gap notices); all roots for id 0 (unknown).
    pub fn root_paths(&self, ids: &[u32]) -> Vec<PathBuf> {
        if ids.contains(&0) {
            return self.roots.values().map(|root| root.path.clone()).collect();
        }
        ids.iter()
            .filter_map(|id| self.roots.get(id).map(|root| root.path.clone()))
            .collect()
    }

    /// Roots strictly below `path` (their canonical paths): what moves when `path` is renamed.
    pub fn roots_below(&self, path: &Path) -> Vec<PathBuf> {
        self.roots
            .values()
            .filter(|root| root.exists && root.path != path && root.path.starts_with(path))
            .map(|root| root.path.clone())
            .collect()
    }

    /// Is `path` a root, or a directory above one (by any spelling)? Creating, moving or
    /// removing such a path changes which inode the root is: the kernel must be re-planned.
    /// A path below a root the plan thinks missing counts too: the root exists by now (its
    /// creation may have raced the last re-plan).
    pub fn touches_roots(&self, path: &Path) -> bool {
        self.roots.values().any(|root| {
            (!root.exists && path.starts_with(&root.path))
                || std::iter::once(&root.path)
                    .chain(&root.aliases)
                    .any(|spelling| spelling.starts_with(path))
        })
    }
}

/// Kernel `dev_t` encoding (MKDEV: major << 20 | minor) from a user-space st_dev.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

fn inode_key(metadata: &std::fs::Metadata) -> InodeKey {
    InodeKey {
        dev: kernel_dev(metadata.dev()),
        _pad: 0,
        ino: metadata.ino(),
    }
}

/// Lexically normalises an absolute path (`.` and `..`), without touching the filesystem.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    out
}

/// Builds the plan for `specs`. Root ids are 1-based positions in `specs`.
pub fn plan(specs: &[WatchRoot]) -> RootPlan {
    plan_with_links(specs, &[])
}

/// A symlink outside the roots that leads to a root or a directory above one: operations
/// spelled through it (`rm /tmp/x/passwd` with /tmp/x -> /etc) name the roots too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymlinkAlias {
    pub link: PathBuf,
    /// The canonical path the link resolved to when it was registered.
    pub target: PathBuf,
}

impl SymlinkAlias {
    /// Still a link to the same place? (It may have been removed or re-pointed since.)
    pub fn holds(&self) -> bool {
        std::fs::symlink_metadata(&self.link).is_ok_and(|m| m.file_type().is_symlink())
            && std::fs::canonicalize(&self.link).is_ok_and(|target| target == self.target)
    }
}

/// Symlinks directly inside `dir` that lead to `roots` or above them (`/bin -> usr/bin`).
fn symlinks_in(dir: &Path, roots: &[PathBuf]) -> Vec<SymlinkAlias> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_symlink()))
        .filter_map(|entry| {
            let link = entry.path();
            let target = std::fs::canonicalize(&link).ok()?;
            roots
                .iter()
                .any(|root| root.starts_with(&target))
                .then_some(SymlinkAlias { link, target })
        })
        .collect()
}

/// [`plan`] with symlinks seen being created (`links`); those in the directories above the
/// roots are found here too. Every link becomes an alias of each root it leads to.
pub fn plan_with_links(specs: &[WatchRoot], links: &[SymlinkAlias]) -> RootPlan {
    let canonical: Vec<PathBuf> = specs.iter().map(|spec| resolve_spec(spec).1).collect();
    let mut found: Vec<SymlinkAlias> = links.iter().filter(|link| link.holds()).cloned().collect();
    let mut dirs: Vec<PathBuf> = canonical
        .iter()
        .flat_map(|root| root.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        found.extend(symlinks_in(dir, &canonical));
    }
    let aliases: Vec<(u32, Vec<PathBuf>)> = canonical
        .iter()
        .enumerate()
        .map(|(index, root)| {
            let spellings = found
                .iter()
                .filter_map(|link| {
                    let rest = root.strip_prefix(&link.target).ok()?;
                    Some(if rest.as_os_str().is_empty() {
                        link.link.clone()
                    } else {
                        link.link.join(rest)
                    })
                })
                .inspect(|alias| {
                    tracing::debug!(root = %root.display(), alias = %alias.display(), "symlink alias")
                })
                .collect();
            (index as u32 + 1, spellings)
        })
        .collect();
    plan_from(specs, &aliases)
}

/// A root as given, made absolute and normalised; its canonical path (symlinks resolved, or
/// the absolute path while it is missing); whether it exists.
fn resolve_spec(spec: &WatchRoot) -> (PathBuf, PathBuf, bool) {
    let absolute = normalise(
        &std::env::current_dir()
            .unwrap_or_else(|_| "/".into())
            .join(&spec.path),
    );
    match std::fs::canonicalize(&absolute) {
        Ok(canonical) => (absolute, canonical, true),
        Err(_) => (absolute.clone(), absolute, false),
    }
}

/// The plan itself; `extra_aliases` adds spellings per root id.
fn plan_from(specs: &[WatchRoot], extra_aliases: &[(u32, Vec<PathBuf>)]) -> RootPlan {
    let mut plan = RootPlan::default();
    for (index, spec) in specs.iter().enumerate() {
        let id = index as u32 + 1;
        let (absolute, path, exists) = resolve_spec(spec);
        let watched_from = if exists {
            path.clone()
        } else {
            nearest_existing(&path)
        };
        let mut aliases = if absolute != path {
            vec![absolute]
        } else {
            Vec::new()
        };
        for (_, extra) in extra_aliases.iter().filter(|(root_id, _)| *root_id == id) {
            for alias in extra {
                if !aliases.contains(alias) && *alias != path {
                    aliases.push(alias.clone());
                }
            }
        }
        if path == Path::new("/") {
            plan.warnings.push(format!(
                "root {} covers the whole filesystem",
                spec.path.display()
            ));
        }
        plan.roots.insert(
            id,
            PlannedRoot {
                spec: spec.clone(),
                path,
                aliases,
                watched_from,
                exists,
            },
        );
    }
    let recursive_dirs: HashSet<PathBuf> = plan
        .roots
        .values()
        .filter(|root| root.spec.recursive || !root.exists)
        .map(|root| root.watched_from.clone())
        .collect();
    let mut ancestor_ids: HashMap<PathBuf, u32> = HashMap::new();
    let roots: Vec<(u32, PlannedRoot)> = plan
        .roots
        .iter()
        .map(|(id, root)| (*id, root.clone()))
        .collect();
    for (id, root) in roots {
        let Ok(metadata) = std::fs::metadata(&root.watched_from) else {
            continue;
        };
        let key = inode_key(&metadata);
        let max_depth = if !root.exists || root.spec.recursive {
            u8::MAX
        } else if metadata.is_dir() {
            1
        } else {
            0
        };
        plan.inodes.insert(
            key,
            InodeEntry {
                kind: INODE_ROOT,
                max_depth,
                _pad: 0,
                id,
            },
        );
        plan.anchors.insert(key, root.watched_from.clone());
        if root.exists && metadata.is_dir() {
            register_hard_links(&mut plan, id, &root, metadata.dev());
        }
        for spelling in std::iter::once(&root.watched_from).chain(&root.aliases) {
            add_ancestors(
                &mut plan,
                &mut ancestor_ids,
                &recursive_dirs,
                spelling,
                id,
                metadata.is_dir(),
            );
        }
    }
    plan
}

fn nearest_existing(path: &Path) -> PathBuf {
    let mut candidate = path.to_path_buf();
    while !candidate.exists() {
        if !candidate.pop() {
            return PathBuf::from("/");
        }
    }
    std::fs::canonicalize(&candidate).unwrap_or(candidate)
}

fn add_ancestors(
    plan: &mut RootPlan,
    ancestor_ids: &mut HashMap<PathBuf, u32>,
    recursive_dirs: &HashSet<PathBuf>,
    root_path: &Path,
    root_id: u32,
    is_dir: bool,
) {
    let mut ancestor = root_path.to_path_buf();
    while ancestor.pop() {
        // A set looked up along the ancestor's own ancestors: with 20,000 roots, scanning every
        // recursive root for every ancestor of every root took minutes.
        let under_a_root = ancestor
            .ancestors()
            .any(|above| recursive_dirs.contains(above));
        if under_a_root {
            continue;
        }
        let next_id = ancestor_ids.len() as u32 + 1;
        let ancestor_id = *ancestor_ids.entry(ancestor.clone()).or_insert(next_id);
        if let Ok(metadata) = std::fs::metadata(&ancestor) {
            let key = inode_key(&metadata);
            plan.inodes.entry(key).or_insert(InodeEntry {
                kind: INODE_ANCESTOR,
                max_depth: 0,
                _pad: 0,
                id: ancestor_id,
            });
            plan.anchors.entry(key).or_insert_with(|| ancestor.clone());
        }
        let Ok(relative) = root_path.strip_prefix(&ancestor) else {
            continue;
        };
        let relative = relative.as_os_str().as_bytes();
        // Relative strings ("etc/passwd" from cwd /) and absolute ones ("/etc/passwd", resolved
        // from a task root that is this ancestor).
        for lead in [&b""[..], &b"/"[..]] {
            // Every directory between the ancestor and the root, exactly ("srv\0" and
            // "srv/app\0" for the root srv/app/conf): renaming or removing one of them moves
            // the root away, and user space must hear of it to follow.
            for (at, _) in relative
                .iter()
                .enumerate()
                .filter(|(_, byte)| **byte == b'/')
            {
                let mut intermediate = lead.to_vec();
                intermediate.extend_from_slice(&relative[..at]);
                intermediate.push(0);
                insert_prefix(plan, ancestor_id, &intermediate, root_id);
            }
            let mut text = lead.to_vec();
            text.extend_from_slice(relative);
            let mut exact = text.clone();
            exact.push(0);
            insert_prefix(plan, ancestor_id, &exact, root_id);
            if is_dir {
                text.push(b'/');
                insert_prefix(plan, ancestor_id, &text, root_id);
            }
        }
    }
}

fn insert_prefix(plan: &mut RootPlan, ancestor_id: u32, text: &[u8], root_id: u32) {
    if text.len() > PREFIX_PATH_BYTES {
        plan.warnings.push(format!(
            "path {} is longer than the kernel prefix table holds; operations on it by that spelling \
             are matched by directory walk only",
            String::from_utf8_lossy(text)
        ));
        return;
    }
    let mut data: PrefixData = [0; 4 + PREFIX_PATH_BYTES];
    data[..4].copy_from_slice(&ancestor_id.to_be_bytes());
    data[4..4 + text.len()].copy_from_slice(text);
    let bits = ((4 + text.len()) * 8) as u32;
    plan.prefixes
        .insert((bits, data), PrefixEntry { root_id, _pad: 0 });
}

fn register_hard_links(plan: &mut RootPlan, id: u32, root: &PlannedRoot, dev: u64) {
    let walker = walkdir::WalkDir::new(&root.path)
        .same_file_system(true)
        .follow_links(false);
    let walker = if root.spec.recursive {
        walker
    } else {
        walker.max_depth(1)
    };
    for (seen, entry) in walker.into_iter().enumerate() {
        if seen >= HARDLINK_SCAN_LIMIT {
            plan.warnings.push(format!(
                "{}: more than {HARDLINK_SCAN_LIMIT} entries; hard links beyond them are not registered",
                root.path.display()
            ));
            break;
        }
        let Ok(entry) = entry else { continue };
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_file() && metadata.nlink() > 1 && metadata.dev() == dev {
            let key = inode_key(&metadata);
            plan.inodes.entry(key).or_insert(InodeEntry {
                kind: INODE_ROOT,
                max_depth: 0,
                _pad: 0,
                id,
            });
            plan.anchors
                .entry(key)
                .or_insert_with(|| entry.path().to_path_buf());
        }
    }
}

pub use fim_engine::path_text::{display_bytes, display_path};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_resolves_dots_lexically() {
        assert_eq!(normalise(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalise(Path::new("/../../x")), PathBuf::from("/x"));
    }

    #[test]
    fn plan_registers_root_ancestors_and_prefixes() {
        let dir = std::env::temp_dir().join(format!("fim-plan-{}", std::process::id()));
        let root = dir.join("watched");
        std::fs::create_dir_all(&root).unwrap();
        let plan = plan(&[WatchRoot::recursive(&root)]);
        let root_key = inode_key(&std::fs::metadata(&root).unwrap());
        assert_eq!(plan.inodes[&root_key].kind, INODE_ROOT);
        let parent_key = inode_key(&std::fs::metadata(&dir).unwrap());
        assert_eq!(plan.inodes[&parent_key].kind, INODE_ANCESTOR);
        // From the parent, "watched/" leads into root 1.
        let parent_id = plan.inodes[&parent_key].id;
        let mut data: PrefixData = [0; 4 + PREFIX_PATH_BYTES];
        data[..4].copy_from_slice(&parent_id.to_be_bytes());
        data[4..12].copy_from_slice(b"watched/");
        assert_eq!(plan.prefixes[&(12 * 8, data)].root_id, 1);
        assert_eq!(plan.root_of(&root.join("x")), Some(1));
        assert_eq!(plan.root_of(&dir.join("watchedx")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_root_is_watched_from_nearest_ancestor() {
        let dir = std::env::temp_dir().join(format!("fim-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = plan(&[WatchRoot::recursive(dir.join("a/b"))]);
        let root = &plan.roots[&1];
        assert!(!root.exists);
        assert_eq!(root.watched_from, std::fs::canonicalize(&dir).unwrap());
        assert!(plan.touches_roots(&dir.join("a")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    fn prefixes_of(plan: &RootPlan) -> Vec<String> {
        let mut texts: Vec<String> = plan
            .prefixes
            .keys()
            .map(|(bits, data)| {
                let len = (*bits as usize / 8) - 4;
                String::from_utf8_lossy(&data[4..4 + len]).into_owned()
            })
            .collect();
        texts.sort();
        texts
    }

    #[test]
    fn a_symlink_above_a_root_becomes_an_alias_with_prefixes() {
        let dir = std::env::temp_dir().join(format!("fim-links-{}", std::process::id()));
        let root = dir.join("etc").join("cron.d");
        std::fs::create_dir_all(&root).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let root = dir.join("etc").join("cron.d");
        std::os::unix::fs::symlink(dir.join("etc"), dir.join("etc-link")).unwrap();
        let plan = plan_with_links(&[WatchRoot::recursive(&root)], &[]);
        assert_eq!(plan.roots[&1].aliases, vec![dir.join("etc-link/cron.d")]);
        let alias_text = format!("{}/", dir.join("etc-link/cron.d").display());
        let texts = prefixes_of(&plan);
        assert!(
            texts.contains(&alias_text),
            "{alias_text} not in {texts:#?}"
        );
        assert_eq!(plan.root_of(&dir.join("etc-link/cron.d/job")), Some(1));
        assert_eq!(
            plan.canonical(dir.join("etc-link/cron.d/job")),
            root.join("job")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
