//! Directories that appear, vanish or are swapped in one step.
//!
//! `mv dir /etc/`, `tar x`, `cp -r`, `rm -r` or `mv d d.old && mv evil d` change many paths
//! while the kernel reports only the top one (or a few): everything the baseline had below the
//! directory is looked at again, and the directory's new content is walked once.
use std::{collections::HashSet, path::Path};

use crate::{change::Detection, path_text::display_path, state::FileState};

use super::{observe_for, Hint, ReconcileError, Reconciler, Verdict};

/// A moved-in tree bigger than this is left to the next sweep, so one `mv` cannot stall the
/// real-time path for minutes; the limit is logged.
const MAX_TREE_ENTRIES: usize = 100_000;

/// Judges what the baseline had below `directory`, and (when it is a directory now) what is
/// there now. Paths already judged by their own event are filtered out by the caller.
pub(super) fn judge_subtree(
    reconciler: &Reconciler,
    directory: &Path,
    is_dir_now: bool,
    hint: &Hint,
    detection: Detection,
    verdicts: &mut Vec<Verdict>,
) -> Result<(), ReconcileError> {
    let content_limit = reconciler.policy.settings.content_limit;
    let mut old = HashSet::new();
    for below in reconciler.store.paths_under(directory)? {
        if below == directory {
            continue;
        }
        let Some(entry) = reconciler.store.get(&below)? else {
            continue;
        };
        let entity = reconciler.policy.entity_for(&below);
        // Still there and large: it was not renamed away, so the plain hint goes with it.
        let plain = Hint {
            renamed_to: None,
            renamed_from: None,
            ..hint.clone()
        };
        if entity.is_some() && reconciler.defer_if_large(&below, &plain, detection) {
            old.insert(below);
            continue;
        }
        let after = match entity {
            Some(entity) => observe_or_skip(observe_for(entity, &below, content_limit), &below),
            None => None,
        };
        let Some(after) = after else { continue };
        let renamed_to = match (&after, &hint.renamed_to) {
            (None, Some(to)) => below.strip_prefix(directory).ok().map(|rest| to.join(rest)),
            _ => None,
        };
        verdicts.push(Verdict {
            path: below.clone(),
            entity: entry.entity,
            before: Some(entry.state),
            after,
            hint: Hint {
                renamed_to,
                ..plain
            },
            own_event: false,
        });
        old.insert(below);
    }
    if !is_dir_now || !reaches_below(reconciler, directory) {
        return Ok(());
    }
    let walker = walkdir::WalkDir::new(directory)
        .min_depth(1)
        .follow_links(false)
        .same_file_system(!reconciler.policy.settings.cross_filesystems);
    for (seen, entry) in walker.into_iter().enumerate() {
        if seen >= MAX_TREE_ENTRIES {
            tracing::warn!(
                directory = %display_path(directory),
                "directory has more than {MAX_TREE_ENTRIES} entries; the rest is left to the next sweep"
            );
            break;
        }
        // A subdirectory that vanished mid-walk is judged by its own event.
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if old.contains(path) {
            continue;
        }
        let Some(entity) = reconciler.policy.entity_for(path) else {
            continue;
        };
        let renamed_from = hint.renamed_from.as_ref().and_then(|from| {
            path.strip_prefix(directory)
                .ok()
                .map(|rest| from.join(rest))
        });
        let moved = Hint {
            renamed_from,
            renamed_to: None,
            ..hint.clone()
        };
        if reconciler.defer_if_large(path, &moved, detection) {
            continue;
        }
        let Some(after) = observe_or_skip(observe_for(entity, path, content_limit), path) else {
            continue;
        };
        verdicts.push(Verdict {
            path: path.to_path_buf(),
            entity: entity.name.clone(),
            before: None,
            after,
            hint: moved,
            own_event: false,
        });
    }
    Ok(())
}

/// Can any entity cover a path below `directory`? (A recursive wildcard entity covers files
/// in subdirectories it does not cover itself.)
fn reaches_below(reconciler: &Reconciler, directory: &Path) -> bool {
    reconciler.policy.entities.iter().any(|entity| {
        (directory.starts_with(&entity.root) && (entity.recursive || directory == entity.root))
            || entity.root.starts_with(directory)
    })
}

/// One path that cannot be examined (ELOOP, ENAMETOOLONG, EACCES on a parent) must not sink
/// the whole step: it is logged and left to the next sweep. Outer None: skip the path.
pub(super) fn observe_or_skip(
    observed: Result<Option<FileState>, crate::scan::ScanError>,
    path: &Path,
) -> Option<Option<FileState>> {
    match observed {
        Ok(state) => Some(state),
        Err(error) => {
            tracing::warn!(path = %display_path(path), "{error}; left to the next sweep");
            None
        }
    }
}
