//! A directory that appears in one step (`mv dir /etc/`, `tar x`, `cp -r`) brings content
//! the kernel reports no events for: walk it once and judge every covered path below.
use std::path::Path;

use super::{observe_for, Hint, ReconcileError, Reconciler, Verdict};

/// A moved-in tree bigger than this is left to the next sweep, so one `mv` cannot stall the
/// real-time path for minutes; the limit is logged.
const MAX_TREE_ENTRIES: usize = 100_000;

pub(super) fn added_below(
    reconciler: &Reconciler,
    directory: &Path,
    hint: &Hint,
    verdicts: &mut Vec<Verdict>,
) -> Result<(), ReconcileError> {
    let walker = walkdir::WalkDir::new(directory)
        .min_depth(1)
        .follow_links(false)
        .same_file_system(!reconciler.policy.settings.cross_filesystems);
    for (seen, entry) in walker.into_iter().enumerate() {
        if seen >= MAX_TREE_ENTRIES {
            tracing::warn!(
                directory = %crate::path_text::display_path(directory),
                "directory has more than {MAX_TREE_ENTRIES} entries; the rest is left to the next sweep"
            );
            break;
        }
        // A subdirectory that vanished mid-walk is judged by its own event.
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Some(entity) = reconciler.policy.entity_for(path) else {
            continue;
        };
        let before = reconciler.store.get(path)?.map(|entry| entry.state);
        let after = observe_for(entity, path, reconciler.policy.settings.content_limit)?;
        let renamed_from = hint.renamed_from.as_ref().and_then(|from| {
            path.strip_prefix(directory)
                .ok()
                .map(|rest| from.join(rest))
        });
        verdicts.push(Verdict {
            path: path.to_path_buf(),
            entity: entity.name.clone(),
            before,
            after,
            hint: Hint {
                renamed_from,
                renamed_to: None,
                ..hint.clone()
            },
            own_event: false,
        });
    }
    Ok(())
}
