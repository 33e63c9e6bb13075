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
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    change::Detection,
    policy::CompiledEntity,
    scan::{self, ScanItem, ScanMode, ScanOptions},
};

use super::{observe_for, Hint, ReconcileError, Reconciler, Verdict};

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
}

/// Items are written in chunks: one transaction per chunk keeps scans fast, and the lock on
/// the reconciler is released between chunks so real-time events are not held up.
const CHUNK: usize = 2000;

fn baselined_key(entity: &str) -> String {
    format!("baselined/{entity}")
}

/// Scans the given entities (all enabled ones when `only` is None).
pub fn sweep(
    reconciler: &Mutex<Reconciler>,
    only: Option<&[String]>,
    kind: SweepKind,
    detection: Detection,
    options: &ScanOptions,
    cancel: &AtomicBool,
) -> Result<SweepOutcome, ReconcileError> {
    let started = Instant::now();
    let entities: Vec<CompiledEntity> = {
        let reconciler = lock(reconciler);
        reconciler
            .policy
            .entities
            .iter()
            .filter(|entity| only.is_none_or(|names| names.contains(&entity.name)))
            .cloned()
            .collect()
    };
    let mut outcome = SweepOutcome::default();
    for entity in &entities {
        if cancel.load(Ordering::Relaxed) {
            outcome.cancelled = true;
            break;
        }
        sweep_entity(
            reconciler,
            entity,
            kind,
            detection,
            options,
            cancel,
            &mut outcome,
        )?;
    }
    outcome.elapsed = started.elapsed();
    let reconciler = lock(reconciler);
    let finished = crate::change::now_rfc3339();
    if let Err(error) = reconciler
        .store
        .set_meta(&format!("last_{}", kind.as_str()), &finished)
    {
        tracing::warn!("cannot record the scan time: {error}");
    }
    Ok(outcome)
}

fn lock(reconciler: &Mutex<Reconciler>) -> std::sync::MutexGuard<'_, Reconciler> {
    // A panic while holding the lock leaves the data as consistent as SQLite made it.
    reconciler
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sweep_entity(
    reconciler: &Mutex<Reconciler>,
    entity: &CompiledEntity,
    kind: SweepKind,
    detection: Detection,
    options: &ScanOptions,
    cancel: &AtomicBool,
    outcome: &mut SweepOutcome,
) -> Result<(), ReconcileError> {
    let (known, first) = {
        let reconciler = lock(reconciler);
        let known = reconciler.store.quick_map(&entity.name)?;
        let first = known.is_empty()
            && reconciler
                .store
                .get_meta(&baselined_key(&entity.name))?
                .is_none();
        (known, first)
    };
    let mode = match kind {
        SweepKind::Metadata if !first => ScanMode::Sweep,
        _ => ScanMode::Full,
    };
    let (sender, receiver) = crossbeam_channel::bounded::<ScanItem>(4 * CHUNK);
    let mut seen: HashSet<PathBuf> = HashSet::with_capacity(known.len());
    let summary = std::thread::scope(|scope| -> Result<scan::ScanSummary, ReconcileError> {
        let scanner = scope.spawn(|| {
            scan::scan(
                std::slice::from_ref(entity),
                options,
                mode,
                Some(&known),
                sender,
            )
        });
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut result = Ok(());
        for item in receiver.iter() {
            if cancel.load(Ordering::Relaxed) {
                // Dropping the receiver below makes the scanner's next send fail: it stops.
                break;
            }
            if result.is_err() {
                // Keep draining so the scanner finishes; the error is returned below.
                continue;
            }
            chunk.push(item);
            if chunk.len() >= CHUNK || receiver.is_empty() && chunk.len() >= 64 {
                result = write_chunk(
                    reconciler, entity, &mut chunk, first, detection, &mut seen, outcome,
                );
            }
        }
        drop(receiver);
        if result.is_ok() && !cancel.load(Ordering::Relaxed) {
            result = write_chunk(
                reconciler, entity, &mut chunk, first, detection, &mut seen, outcome,
            );
        }
        let summary = scanner.join().unwrap_or_default();
        result.map(|()| summary)
    })?;
    outcome.files += summary.files;
    outcome.directories += summary.directories;
    outcome.bytes_hashed += summary.bytes_hashed;
    outcome.errors += summary.errors;
    if cancel.load(Ordering::Relaxed) {
        // An interrupted walk did not meet everything: concluding "removed" would be wrong.
        outcome.cancelled = true;
        return Ok(());
    }
    // What the baseline has and the walk did not meet is gone (or no longer covered).
    let mut reconciler = lock(reconciler);
    let mut verdicts = Vec::new();
    let mut pruned = Vec::new();
    for path in known.keys().filter(|path| !seen.contains(*path)) {
        let Some(before) = reconciler.store.get(path)? else {
            continue;
        };
        let covering = reconciler.policy.entity_for(path).map(|e| e.name.clone());
        if covering.as_deref() != Some(entity.name.as_str()) {
            pruned.push(Verdict {
                path: path.clone(),
                entity: before.entity,
                before: Some(before.state),
                after: None,
                hint: Hint::default(),
            });
            continue;
        }
        // Made again since the walk passed by: judge what is there now.
        let after = observe_for(entity, path, reconciler.policy.settings.content_limit)?;
        verdicts.push(Verdict {
            path: path.clone(),
            entity: entity.name.clone(),
            before: Some(before.state),
            after,
            hint: Hint::default(),
        });
    }
    outcome.changes += reconciler.commit(verdicts, detection, !first)?.len() as u64;
    reconciler.commit(pruned, detection, false)?;
    if first {
        outcome.baselined.push(entity.name.clone());
        let now = crate::change::now_rfc3339();
        reconciler
            .store
            .set_meta(&baselined_key(&entity.name), &now)?;
    }
    if summary.missing_roots > 0 {
        outcome.missing.push(entity.name.clone());
    }
    Ok(())
}

fn write_chunk(
    reconciler: &Mutex<Reconciler>,
    entity: &CompiledEntity,
    chunk: &mut Vec<ScanItem>,
    first: bool,
    detection: Detection,
    seen: &mut HashSet<PathBuf>,
    outcome: &mut SweepOutcome,
) -> Result<(), ReconcileError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let mut reconciler = lock(reconciler);
    let mut verdicts = Vec::new();
    for item in chunk.drain(..) {
        let Some((path, state)) = item.into_changed(seen) else {
            continue;
        };
        let before = reconciler.store.get(&path)?.map(|entry| entry.state);
        if before.as_ref() == Some(&state) {
            continue;
        }
        let after = if first || before.is_none() {
            Some(state)
        } else {
            // The walk's view may predate a real-time change already journaled: judge what is
            // there now, never an older state.
            observe_for(entity, &path, reconciler.policy.settings.content_limit)?
        };
        verdicts.push(Verdict {
            path,
            entity: entity.name.clone(),
            before,
            after,
            hint: Hint::default(),
        });
    }
    outcome.changes += reconciler.commit(verdicts, detection, !first)?.len() as u64;
    Ok(())
}
