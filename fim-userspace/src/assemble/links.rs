//! Links the roots must follow: symlinks that lead into them (registered as aliases of the
//! roots, with prefixes, on the next plan) and hard links to monitored files (their inode is
//! registered under the monitored name).
use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf, time::Instant};

use fim_common::roots::{InodeEntry, InodeKey, INODE_ROOT};

use super::{Assembler, RESULT_WAIT};
use crate::{
    decode::RawEvent,
    record::FileEvent,
    roots::{kernel_dev, SymlinkAlias},
};

/// Bounds on symlink aliases: a process creating links in a loop cannot grow the plan.
const MAX_SYMLINK_ALIASES: usize = 1024;
const MAX_CANDIDATE_LINKS: usize = 1024;

impl Assembler {
    /// A symlink created outside the roots whose target may lead into them: once it exists
    /// (the syscall's result is not waited for), it is checked and registered.
    pub(super) fn symlink_candidate(&mut self, raw: &RawEvent) {
        let link = raw.paths[0]
            .as_ref()
            .and_then(|raw_path| self.paths.resolve(&self.plan, raw_path));
        let target = raw.paths[1]
            .as_ref()
            .and_then(|raw_path| raw_path.string.clone());
        if let (Some((link, _)), Some(target)) = (link, target) {
            self.symlink_candidate_at(link, PathBuf::from(OsStr::from_bytes(&target)));
        }
    }

    pub(super) fn symlink_candidate_at(&mut self, link: PathBuf, target: PathBuf) {
        let target = match link.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
        let Ok(target) = std::fs::canonicalize(&target) else {
            return;
        };
        if !self.plan.touches_roots(&target) {
            return;
        }
        tracing::debug!(link = %link.display(), target = %target.display(), "symlink into the roots created");
        if self.candidate_links.len() < MAX_CANDIDATE_LINKS {
            self.candidate_links
                .push((SymlinkAlias { link, target }, Instant::now()));
        }
    }

    /// Registers candidate links that now exist (and asks for a re-plan); forgets stale ones.
    pub(super) fn confirm_symlinks(&mut self, now: Instant) {
        let mut confirmed = false;
        let candidates = std::mem::take(&mut self.candidate_links);
        for (alias, since) in candidates {
            if alias.holds() {
                tracing::info!(
                    link = %alias.link.display(),
                    target = %alias.target.display(),
                    "a symlink leads into the monitored roots; operations through it are watched"
                );
                if !self.symlinks.contains(&alias) && self.symlinks.len() < MAX_SYMLINK_ALIASES {
                    self.symlinks.push(alias);
                    confirmed = true;
                }
            } else if now.duration_since(since) < RESULT_WAIT * 4 {
                self.candidate_links.push((alias, since));
            }
        }
        if confirmed {
            self.replan_requested = true;
        }
    }

    /// Registers the inode of a new hard link ([`super::Followup::RegisterLink`]) under the
    /// monitored name, through `insert`, which writes the kernel's inode map. Nothing is
    /// registered for a link outside the roots, one that is gone or not a regular file, or
    /// an inode the plan already has.
    pub(crate) fn register_link<E: std::fmt::Display>(
        &mut self,
        link: &FileEvent,
        insert: impl FnOnce(&InodeKey, &InodeEntry) -> Result<(), E>,
    ) {
        use std::os::unix::fs::MetadataExt;
        let new = PathBuf::from(&link.path);
        let old = link.old_path.as_ref().map(PathBuf::from);
        let (anchor, root_id) = match (
            self.plan.root_of(&new),
            old.as_ref()
                .and_then(|old| self.plan.root_of(old).map(|id| (old, id))),
        ) {
            (_, Some((old, id))) => (old.clone(), id),
            (Some(id), None) => (new.clone(), id),
            (None, None) => return,
        };
        tracing::trace!(new = %new.display(), anchor = %anchor.display(), "registering hard link");
        let Ok(metadata) = std::fs::symlink_metadata(&new) else {
            return;
        };
        if !metadata.is_file() {
            return;
        }
        let key = InodeKey {
            dev: kernel_dev(metadata.dev()),
            _pad: 0,
            ino: metadata.ino(),
        };
        let entry = InodeEntry {
            kind: INODE_ROOT,
            max_depth: 0,
            _pad: 0,
            id: root_id,
        };
        if self.plan.inodes.contains_key(&key) {
            return;
        }
        match insert(&key, &entry) {
            Ok(()) => {
                tracing::debug!(link = %new.display(), anchor = %anchor.display(), "hard link registered");
                self.plan.inodes.insert(key, entry);
                self.plan.anchors.insert(key, anchor);
            }
            Err(error) => tracing::warn!("cannot register hard link {}: {error}", new.display()),
        }
    }
}
