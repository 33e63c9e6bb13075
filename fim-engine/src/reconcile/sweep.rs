//! Whole-entity scans: the first baseline, the metadata sweep and the full rehash.
//!
//! Real-time events cannot see what happened while the daemon was stopped, behind the
//! kernel's back (another OS booted on the disk, a raw block write) or during a ring overflow,
//! so the baseline is also checked by walking. The sweep trusts unchanged metadata (ctime
//! included, which user space cannot set back) and is cheap enough to run every 15 minutes;
//! the full rehash reads everything and runs daily by default.
use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{atomic::Ordering, Mutex},
    time::{Duration, Instant},
};

use crate::{
    change::{Detection, Timestamp},
    policy::CompiledEntity,
    scan::{self, ScanItem, ScanMode, ScanOptions, ScanOutcome, ScanTarget},
};

use super::{lock, observe_for, subtree, Hint, ReconcileError, Reconciler, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepKind {
    /// Rehash only what changed in metadata.
    Metadata,
    /// Rehash everything.
    Full,
}

impl SweepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepKind::Metadata => "sweep",
            SweepKind::Full => "rehash",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    pub files: u64,
    /// Registry keys read (on a platform with a registry reader).
    pub keys: u64,
    pub directories: u64,
    pub bytes_hashed: u64,
    pub errors: u64,
    pub changes: u64,
    /// Entities scanned for the first time (their baseline was made silently).
    pub baselined: Vec<String>,
    /// Entities whose path does not exist.
    pub missing: Vec<String>,
    pub elapsed: Duration,
    /// Stopped early (shutdown): nothing was concluded about unvisited paths.
    pub cancelled: bool,
    /// Stopped because the policy changed under it; the caller runs it again.
    pub superseded: bool,
    /// Entities whose scan failed (logged), for the caller to retry.
    pub failed: Vec<String>,
}

/// Items are written in chunks: one transaction per chunk keeps scans fast, and the lock on
/// the reconciler is released between chunks so real-time events are not held up. A changed
/// item costs ~4 KB until its chunk is committed (both states, the verdict, the record and its
/// announcement): a gap rescan after a burst writes tens of thousands, 2 MB a chunk at this size.
const CHUNK: usize = 512;
/// Scan batches (up to 128 items each) waiting for the writer: enough to keep the workers busy
/// while a chunk commits, few enough that a rescan of changed files does not queue megabytes.
const QUEUED_BATCHES: usize = 16;
/// A first baseline reports nothing, so nobody waits for its commits: bigger transactions
/// (fewer fsyncs) make it faster. An interrupted one simply runs again.
const FIRST_CHUNK: usize = 20_000;

pub(super) fn baselined_key(entity: &str) -> String {
    format!("baselined/{entity}")
}

/// Scans the given entities (all enabled ones when `only` is None). `options.mode` is chosen
/// here from `kind`; `options.cancel` stops the sweep early without concluding anything.
pub fn sweep(
    reconciler: &Mutex<Reconciler>,
    only: Option<&[String]>,
    kind: SweepKind,
    detection: Detection,
    options: &ScanOptions,
) -> Result<SweepOutcome, ReconcileError> {
    let started = Instant::now();
    let started_at = Timestamp::now();
    let entities: Vec<CompiledEntity> = lock(reconciler)
        .policy
        .entities
        .iter()
        .filter(|entity| only.is_none_or(|names| names.contains(&entity.name)))
        .cloned()
        .collect();
    let mut outcome = SweepOutcome::default();
    for entity in &entities {
        if cancelled(options) {
            outcome.cancelled = true;
            break;
        }
        match sweep_entity(reconciler, entity, kind, detection, options, &mut outcome) {
            Ok(()) => {}
            // The caller holds everything back and retries once space returns.
            Err(error) if error.is_disk_full() => return Err(error),
            // One entity's failure must not leave the others unscanned.
            Err(error) => {
                tracing::error!(entity = %entity.name, "scan failed: {error}");
                outcome.errors += 1;
                outcome.failed.push(entity.name.clone());
            }
        }
        if outcome.superseded {
            break;
        }
    }
    if !outcome.cancelled && !outcome.superseded {
        super::keys::sweep_keys(reconciler, only, detection, &mut outcome)?;
        super::services::sweep_services(reconciler, only, detection, &mut outcome)?;
    }
    outcome.elapsed = started.elapsed();
    let reconciler = lock(reconciler);
    let run = crate::store::ScanRun {
        kind: match detection {
            Detection::GapRescan => "gap-rescan".to_string(),
            _ => kind.as_str().to_string(),
        },
        started: started_at,
        finished: Timestamp::now(),
        files: outcome.files,
        changes: outcome.changes,
        errors: outcome.errors,
    };
    let finished = Timestamp::now().to_rfc3339();
    let saved = reconciler
        .store
        .set_meta(&format!("last_{}", kind.as_str()), &finished)
        .and_then(|()| reconciler.store.record_scan(&run));
    if let Err(error) = saved {
        tracing::warn!("cannot record the scan: {error}");
    }
    Ok(outcome)
}

/// Does the path still have the quick metadata the walk saw? None: it is gone.
fn still_current(path: &std::path::Path, state: &crate::state::FileState) -> Option<bool> {
    let now = scan::quick_metadata(path).ok()?;
    Some(now == scan::QuickMeta::from(state))
}

fn cancelled(options: &ScanOptions) -> bool {
    options
        .cancel
        .as_ref()
        .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
}

/// What the walk could not settle: paths it saw vanish, and directories it could not list
/// (nothing below those may be concluded removed). Paths it met are marked in the KnownMap.
#[derive(Default)]
struct Unsettled {
    vanished: Vec<PathBuf>,
    unlisted: Vec<PathBuf>,
}

/// One entity's scan, and what it means for the baseline.
struct EntitySweep<'a> {
    reconciler: &'a Mutex<Reconciler>,
    entity: &'a CompiledEntity,
    /// No baseline yet: record it silently.
    first: bool,
    /// A full rehash: large files are read again whatever their metadata says.
    full: bool,
    detection: Detection,
    unsettled: Unsettled,
    changes: u64,
    /// The policy generation the walk started under.
    generation: u64,
    superseded: bool,
}

fn sweep_entity(
    reconciler: &Mutex<Reconciler>,
    entity: &CompiledEntity,
    kind: SweepKind,
    detection: Detection,
    options: &ScanOptions,
    outcome: &mut SweepOutcome,
) -> Result<(), ReconcileError> {
    let (known, first, generation, beside) = {
        let mut reconciler = lock(reconciler);
        let known = reconciler.store.quick_map(&entity.name)?;
        // Decided by the marker alone: rows written by an interrupted first scan or by real-time
        // events before it finished must not turn the rest of the entity into "Added".
        let first = !reconciler.is_baselined(&entity.name)?;
        let beside = reconciler.hashes_large_files_beside();
        (known, first, reconciler.generation(), beside)
    };
    let options = ScanOptions {
        mode: match kind {
            SweepKind::Metadata if !first => ScanMode::Sweep,
            _ => ScanMode::Full,
        },
        // Unchanged paths are only marked seen in `known`: nothing is sent or allocated.
        report_unchanged: false,
        // A changed terabyte file must not hold up the records of everything else this scan
        // finds: it goes to the background hasher. Not in a first baseline: a daemon stopped
        // before that hash is done would find the file without a row and call it Added.
        defer_large: (beside && !first).then_some(super::LARGE_FILE),
        ..options.clone()
    };
    let mut sweep = EntitySweep {
        reconciler,
        entity,
        first,
        full: kind == SweepKind::Full,
        detection,
        unsettled: Unsettled::default(),
        changes: 0,
        generation,
        superseded: false,
    };
    let (sender, receiver) = crossbeam_channel::bounded::<scan::ScanBatch>(QUEUED_BATCHES);
    let summary = std::thread::scope(|scope| -> Result<scan::ScanSummary, ReconcileError> {
        let target = ScanTarget::with_known(entity, &known);
        let options = &options;
        let scanner = scope.spawn(move || {
            let result = scan::scan(&[target], options, &sender);
            drop(sender);
            result
        });
        let chunk_size = if first { FIRST_CHUNK } else { CHUNK };
        let mut chunk = Vec::with_capacity(chunk_size);
        let mut result = Ok(());
        for batch in receiver.iter() {
            if cancelled(options) {
                break;
            }
            chunk.extend(batch);
            if chunk.len() >= chunk_size {
                result = sweep.write_chunk(&mut chunk, &known);
                // Stop at once: the rest would only pile up in memory.
                if result.is_err() || sweep.superseded {
                    break;
                }
            }
        }
        // Dropping the receiver makes the scanner's next send fail, so it stops too.
        drop(receiver);
        if result.is_ok() && !sweep.superseded && !cancelled(options) {
            result = sweep.write_chunk(&mut chunk, &known);
        }
        let summary = match scanner.join() {
            Ok(Ok(summary)) => summary,
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => return Err(ReconcileError::ScannerPanicked),
        };
        result.map(|()| summary)
    })?;
    outcome.files += summary.files;
    outcome.directories += summary.directories;
    outcome.bytes_hashed += summary.bytes_hashed;
    outcome.errors += summary.errors;
    if sweep.superseded {
        outcome.superseded = true;
        return Ok(());
    }
    if cancelled(&options) || summary.cancelled {
        // An interrupted walk did not meet everything: concluding "removed" would be wrong.
        outcome.cancelled = true;
        outcome.changes += sweep.changes;
        return Ok(());
    }
    sweep.judge_unseen(&known)?;
    outcome.changes += sweep.changes;
    if sweep.superseded {
        outcome.superseded = true;
        return Ok(());
    }
    if first {
        outcome.baselined.push(entity.name.clone());
        lock(reconciler).mark_baselined(&entity.name)?;
    }
    lock(reconciler).scan_completed(&entity.name);
    if summary.missing_roots > 0 {
        outcome.missing.push(entity.name.clone());
    }
    Ok(())
}

impl EntitySweep<'_> {
    fn write_chunk(
        &mut self,
        chunk: &mut Vec<ScanItem>,
        known: &scan::KnownMap,
    ) -> Result<(), ReconcileError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut reconciler = lock(self.reconciler);
        if reconciler.generation() != self.generation {
            self.superseded = true;
            chunk.clear();
            return Ok(());
        }
        let content_limit = reconciler.policy.settings.content_limit;
        let mut verdicts = Vec::new();
        for item in chunk.drain(..) {
            let (path, state) = match item.outcome {
                ScanOutcome::State(state) => (item.path, *state),
                ScanOutcome::Large(_) => {
                    if reconciler.defer_scanned(&item.path, self.detection, self.full) {
                        continue;
                    }
                    // No room beside: read it here after all (slow, never lost).
                    match subtree::observe_or_skip(
                        observe_for(self.entity, &item.path, content_limit),
                        &item.path,
                    ) {
                        Some(Some(state)) => (item.path, state),
                        Some(None) => {
                            self.unsettled.vanished.push(item.path);
                            continue;
                        }
                        None => continue,
                    }
                }
                // Unchanged, or unreadable right now: the baseline entry stands.
                ScanOutcome::Unchanged | ScanOutcome::Error(_) | ScanOutcome::Missing => continue,
                ScanOutcome::ListFailed(_) => {
                    self.unsettled.unlisted.push(item.path);
                    continue;
                }
                // Judged at the end with the paths the walk did not meet.
                ScanOutcome::Vanished => {
                    self.unsettled.vanished.push(item.path);
                    continue;
                }
            };
            // A first baseline's new paths have no row (the map holds every row the entity had
            // when the walk began): skip 100k point lookups. Real-time rows written since are
            // overwritten silently, which is what a first baseline does anyway.
            let before = if self.first && known.get(&path).is_none() {
                None
            } else {
                reconciler.store.get(&path)?.map(|entry| entry.state)
            };
            if before.as_ref() == Some(&state) {
                continue;
            }
            // The walk's view may predate a real-time change already journaled (or the file may
            // be gone): judge what is there now, never an older state. An unchanged lstat lets
            // the walk's state stand without reading the file again.
            let after = match still_current(&path, &state) {
                Some(true) => Some(state),
                // Changed since the walk, and large: hashed beside, judged when done.
                Some(false)
                    if reconciler.defer_if_large(&path, &Hint::default(), self.detection) =>
                {
                    continue
                }
                Some(false) => {
                    match subtree::observe_or_skip(
                        observe_for(self.entity, &path, content_limit),
                        &path,
                    ) {
                        Some(after) => after,
                        None => continue,
                    }
                }
                None => None,
            };
            verdicts.push(Verdict {
                path,
                entity: self.entity.name.clone(),
                before,
                after,
                hint: Hint::default(),
                own_event: false,
            });
        }
        // Whether each verdict is a record is the reconciler's call (`retire`): during a first
        // baseline, only paths that had a baseline row before are.
        self.changes += reconciler.commit(verdicts, self.detection)?.len() as u64;
        Ok(())
    }

    /// What the baseline has and the walk did not meet is gone, or no longer covered.
    fn judge_unseen(&mut self, known: &scan::KnownMap) -> Result<(), ReconcileError> {
        let mut reconciler = lock(self.reconciler);
        if reconciler.generation() != self.generation {
            self.superseded = true;
            return Ok(());
        }
        let content_limit = reconciler.policy.settings.content_limit;
        let mut verdicts = Vec::new();
        let mut pruned = Vec::new();
        let unlisted = &self.unsettled.unlisted;
        let unseen = known
            .unseen()
            .filter(|path| !unlisted.iter().any(|dir| path.starts_with(dir)))
            .chain(self.unsettled.vanished.iter().map(PathBuf::as_path));
        let mut judged = HashSet::new();
        for path in unseen {
            if !judged.insert(path) {
                continue;
            }
            let Some(before) = reconciler.store.get(path)? else {
                continue;
            };
            let covering = reconciler.policy.entity_for(path).map(|e| e.name.clone());
            if covering.as_deref() != Some(self.entity.name.as_str()) {
                // No longer this entity's (an ignore pattern, a narrower path): kept aside, so
                // the path is compared with it again if coverage returns.
                if before.entity == self.entity.name {
                    pruned.push((path.to_path_buf(), before.entity, before.state));
                }
                continue;
            }
            // Made again since the walk passed by: judge what is there now.
            if reconciler.defer_if_large(path, &Hint::default(), self.detection) {
                continue;
            }
            let Some(after) =
                subtree::observe_or_skip(observe_for(self.entity, path, content_limit), path)
            else {
                continue;
            };
            verdicts.push(Verdict {
                path: path.to_path_buf(),
                entity: self.entity.name.clone(),
                before: Some(before.state),
                after,
                hint: Hint::default(),
                own_event: false,
            });
        }
        self.changes += reconciler.commit(verdicts, self.detection)?.len() as u64;
        reconciler.retire_rows(pruned)?;
        Ok(())
    }
}
