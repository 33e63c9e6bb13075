//! Rebuilding a full path from what the kernel sent: an anchor (a root or ancestor whose
//! path user space knows), the dentry names walked below it, and the string the process
//! passed when the kernel had not resolved the path yet.
//!
//! Walks deeper than the kernel follows arrive with the (dev, ino) of the highest directory
//! reached; it is found by searching the roots once and cached.
use std::{collections::HashMap, ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf};

use fim_common::{event::path_flag, roots::InodeKey};

use crate::{
    decode::RawPath,
    roots::{kernel_dev, normalise, RootPlan},
};

#[derive(Default)]
pub struct PathResolver {
    inode_cache: HashMap<InodeKey, PathBuf>,
}

impl PathResolver {
    /// Forgets cached directories (after the roots change).
    pub fn clear(&mut self) {
        self.inode_cache.clear();
    }

    /// Rebuilds a path from its anchor, the walked names and the string. Returns the path and
    /// whether it had to be completed in user space.
    pub fn resolve(&mut self, plan: &RootPlan, raw: &RawPath) -> Option<(PathBuf, bool)> {
        let desc = &raw.desc;
        let mut truncated = false;
        let mut path = if desc.flags & path_flag::REACHED_TOP != 0 {
            PathBuf::from("/")
        } else if desc.flags & path_flag::WALK_TRUNCATED != 0 {
            truncated = true;
            let top = InodeKey {
                dev: desc.top_dev,
                _pad: 0,
                ino: desc.top_ino,
            };
            match self.find_directory(plan, top) {
                Some(path) => path,
                None => PathBuf::from("/\u{2026}"),
            }
        } else {
            let anchor = InodeKey {
                dev: desc.anchor_dev,
                _pad: 0,
                ino: desc.anchor_ino,
            };
            match plan.anchors.get(&anchor) {
                Some(path) => path.clone(),
                None => self.find_directory(plan, anchor)?,
            }
        };
        for name in raw.names.iter().rev() {
            path.push(OsStr::from_bytes(name));
        }
        if let Some(string) = &raw.string {
            let relative: &[u8] = {
                let mut bytes = string.as_slice();
                while let [b'/', rest @ ..] = bytes {
                    bytes = rest;
                }
                bytes
            };
            if !relative.is_empty() {
                path.push(OsStr::from_bytes(relative));
            }
        }
        if desc.flags & path_flag::UNNORMALISED != 0 {
            path = normalise(&path);
        }
        Some((path, truncated))
    }

    /// Finds a directory by (dev, ino) under the roots: for walks deeper than the kernel follows.
    fn find_directory(&mut self, plan: &RootPlan, key: InodeKey) -> Option<PathBuf> {
        if let Some(path) = self.inode_cache.get(&key) {
            return Some(path.clone());
        }
        use std::os::unix::fs::MetadataExt;
        for root in plan.roots.values() {
            let walker = walkdir::WalkDir::new(&root.watched_from).same_file_system(true);
            for entry in walker.into_iter().filter_map(Result::ok) {
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                if metadata.is_dir()
                    && metadata.ino() == key.ino
                    && kernel_dev(metadata.dev()) == key.dev
                {
                    let path = entry.path().to_path_buf();
                    self.inode_cache.insert(key, path.clone());
                    return Some(path);
                }
            }
        }
        None
    }
}
