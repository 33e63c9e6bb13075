//! What the daemon reports, engine → fim.v1: status pieces (timestamps, scan runs, hashing
//! progress), baseline states, journal verification and entities.
use fim_engine::{
    change,
    path_text::{display_bytes, display_path},
    policy::{Entity, EntityKind},
    store::{BaselineEntry, ScanRun, VerifyProblem, VerifyReport},
};

use super::Content;
use crate::pb;

/// Nanoseconds since the epoch as a protobuf timestamp.
pub fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

pub fn scan_run(run: &ScanRun) -> pb::ScanRun {
    pb::ScanRun {
        kind: run.kind.clone(),
        started: Some(timestamp(run.started.unix_nanos())),
        finished: Some(timestamp(run.finished.unix_nanos())),
        files: run.files,
        changes: run.changes,
        errors: run.errors,
    }
}

pub fn hash_progress(progress: &fim_engine::reconcile::HashProgress) -> pb::HashProgress {
    pb::HashProgress {
        path: display_path(&progress.path),
        size: progress.size,
        done: progress.done,
    }
}

/// A baseline state as `content` allows.
pub fn baseline_state_for(entry: &BaselineEntry, content: Content) -> pb::BaselineState {
    let mut out = baseline_state(entry);
    if content == Content::Stripped {
        out.content = None;
        out.content_truncated = false;
    }
    out
}

pub fn baseline_state(entry: &BaselineEntry) -> pb::BaselineState {
    let state = &entry.state;
    pb::BaselineState {
        file_type: state.file_type.as_str().to_string(),
        size: state.size,
        mode: state.mode,
        uid: state.uid,
        gid: state.gid,
        mtime: Some(timestamp(state.mtime_ns)),
        ctime: Some(timestamp(state.ctime_ns)),
        inode: state.ino,
        device: state.dev,
        links: state.nlink,
        symlink_target: state.symlink_target.as_deref().map(display_bytes),
        checksum: state.hash.as_ref().map(|hash| change::hex(hash)),
        acl: state.acl.clone(),
        selinux_context: state.selinux.as_deref().map(|raw| {
            String::from_utf8_lossy(raw.strip_suffix(b"\0").unwrap_or(raw)).into_owned()
        }),
        capabilities: state.capability.as_deref().map(change::hex),
        content: state.content.clone(),
        content_truncated: state.content_truncated,
        error: state.error.clone(),
        unstable: state.unstable,
    }
}

pub fn verify_report(report: &VerifyReport) -> pb::VerifyJournalResponse {
    pb::VerifyJournalResponse {
        intact: report.is_ok(),
        checked: report.checked,
        head_sequence: report.head_sequence,
        problem: report
            .problem
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        problem_sequence: report.problem.as_ref().map_or(0, problem_sequence),
        head_hash: report.head_hash.clone(),
    }
}

/// The sequence a problem is at: the first record that is wrong or absent.
fn problem_sequence(problem: &VerifyProblem) -> u64 {
    match problem {
        VerifyProblem::Missing { expected, .. } => *expected,
        VerifyProblem::Edited { sequence, .. }
        | VerifyProblem::Reordered { sequence }
        | VerifyProblem::AnchorMismatch { sequence }
        | VerifyProblem::HeadMismatch { sequence } => *sequence,
        VerifyProblem::AnchorMissing { last_present, .. } => last_present + 1,
        VerifyProblem::Damaged { .. } => 0,
        VerifyProblem::TruncatedTail { last_present, .. } => last_present + 1,
        VerifyProblem::BeyondHead { head_sequence, .. } => head_sequence + 1,
        // Zero or negative: no sequence a chain can have.
        VerifyProblem::Foreign { .. } => 0,
    }
}

pub fn entity(entity: &Entity) -> pb::Entity {
    pb::Entity {
        name: entity.name.clone(),
        kind: entity_kind(entity.kind) as i32,
        path: entity.path.clone(),
        recursive: entity.recursive,
        enabled: entity.enabled,
        ignore: entity.ignore.clone(),
    }
}

pub fn entity_kind(kind: EntityKind) -> pb::EntityKind {
    match kind {
        EntityKind::LinuxFile => pb::EntityKind::LinuxFile,
        EntityKind::FileContent => pb::EntityKind::FileContent,
        EntityKind::WindowsFile => pb::EntityKind::WindowsFile,
        EntityKind::WindowsRegistry => pb::EntityKind::WindowsRegistry,
        EntityKind::WindowsService => pb::EntityKind::WindowsService,
    }
}
