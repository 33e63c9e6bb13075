//! The sweep's view of the baseline: [`QuickMeta`] by path.
//!
//! A sweep of an unchanged tree does one `statx` and one lookup here per path, so the lookup
//! must be cheap: keys are the path's raw bytes (one memcmp to compare, one pass to hash),
//! not `PathBuf`s, whose hashing and equality walk path components. The store keeps paths as
//! bytes too ([`crate::path_text::path_bytes`]), so loading needs no conversion.
//!
//! Each entry also has a "seen" flag the scan sets (atomically, the map is shared by the
//! workers) for every path it finds, so after a sweep with `report_unchanged: false` the
//! caller gets the removed paths from [`KnownMap::unseen`] without receiving, and
//! allocating, one item per unchanged path.
use std::{
    collections::HashMap,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::path_text::path_bytes;

#[cfg(unix)]
use super::known_unix::{key_of_stored, path_of_key};
#[cfg(windows)]
use super::known_windows::{key_of_stored, path_of_key};

pub use crate::state::QuickMeta;

/// One entity's baseline for a sweep: quick metadata by path, with a "seen" flag each.
#[derive(Debug, Default)]
pub struct KnownMap {
    by_path: HashMap<Box<[u8]>, Known>,
}

#[derive(Debug)]
struct Known {
    quick: QuickMeta,
    seen: AtomicBool,
}

impl KnownMap {
    pub fn new() -> Self {
        KnownMap::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        KnownMap {
            by_path: HashMap::with_capacity(capacity),
        }
    }

    pub fn insert(&mut self, path: &Path, quick: QuickMeta) {
        self.insert_key(path_bytes(path).into(), quick);
    }

    /// Inserts by the path's raw bytes (as the store keeps them).
    pub fn insert_bytes(&mut self, path: &[u8], quick: QuickMeta) {
        self.insert_key(key_of_stored(path), quick);
    }

    fn insert_key(&mut self, key: Box<[u8]>, quick: QuickMeta) {
        let known = Known {
            quick,
            seen: AtomicBool::new(false),
        };
        self.by_path.insert(key, known);
    }

    pub fn get(&self, path: &Path) -> Option<&QuickMeta> {
        self.by_path.get(path_bytes(path)).map(|known| &known.quick)
    }

    /// Every path in the map, in no particular order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> + '_ {
        self.by_path.keys().map(|bytes| path_of_key(bytes))
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Marks `path` seen; true when its quick metadata equals `quick`.
    pub(super) fn see(&self, path: &Path, quick: &QuickMeta) -> bool {
        match self.by_path.get(path_bytes(path)) {
            Some(known) => {
                known.seen.store(true, Ordering::Relaxed);
                known.quick == *quick
            }
            None => false,
        }
    }

    /// Marks `path` seen (it exists, whatever its state).
    pub(super) fn mark_seen(&self, path: &Path) {
        if let Some(known) = self.by_path.get(path_bytes(path)) {
            known.seen.store(true, Ordering::Relaxed);
        }
    }

    /// Baseline paths no scan with this map has found since it was built (or since
    /// [`KnownMap::clear_seen`]): removed, unless at or below a path reported `ListFailed` or
    /// `Error`, or the scan was cancelled.
    pub fn unseen(&self) -> impl Iterator<Item = &Path> + '_ {
        self.by_path
            .iter()
            .filter(|(_, known)| !known.seen.load(Ordering::Relaxed))
            .map(|(path, _)| path_of_key(path))
    }

    pub fn clear_seen(&mut self) {
        for known in self.by_path.values_mut() {
            *known.seen.get_mut() = false;
        }
    }
}

impl<P: AsRef<Path>> FromIterator<(P, QuickMeta)> for KnownMap {
    fn from_iter<I: IntoIterator<Item = (P, QuickMeta)>>(iter: I) -> Self {
        let mut known = KnownMap::new();
        for (path, quick) in iter {
            known.insert(path.as_ref(), quick);
        }
        known
    }
}
