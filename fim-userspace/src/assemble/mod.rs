//! From decoded kernel records to [`SourceItem`]s: path rebuild, filtering to the roots,
//! pairing entry records with their syscall results, and writer bookkeeping.
//!
//! Kept apart from `ebpf_source.rs`, which owns the maps and the ring: this half has no kernel
//! handles and is the part a test can drive with recorded records. Whatever needs the kernel
//! maps is handed back as a [`Followup`] ([`Assembler::take_followups`]) for the event source
//! to carry out, once per batch of records:
//!
//! - `change.rs`: one record to events (the path rules, moved roots, pairing with results);
//! - `links.rs`: symlinks into the roots (aliases) and hard links to monitored files.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use fim_common::event::op;
use fim_engine::{change::Timestamp, daemon::WatchRoot};

use crate::{
    decode::decode,
    paths::PathResolver,
    process_info::ProcessInfo,
    record::{FileEvent, GapNotice, SourceItem},
    roots::{plan_with_links, RootPlan, SymlinkAlias},
    wallclock::WallClock,
    writers::OpenWriters,
};

mod change;
mod links;
#[cfg(test)]
mod tests;

/// How long an entry event waits for its syscall result before it is reported anyway.
pub(crate) const RESULT_WAIT: Duration = Duration::from_millis(500);

/// A decoded event waiting for its syscall result.
struct Pending {
    event: FileEvent,
    since: Instant,
    /// Creates, moves or removes a root or one of its ancestors: re-plan once it happened.
    moves_roots: bool,
    /// Renames of roots implied by the rename of a directory above them (old, new).
    moved_roots: Vec<FileEvent>,
    /// Under a root (not only on the way to a missing one).
    reported: bool,
}

/// What the event source must do after a batch of records: the work that needs the kernel
/// maps, which the assembler has no handle on. In the order they are to be done.
#[derive(Debug, PartialEq)]
pub(crate) enum Followup {
    /// A hard link to a monitored file was made: register its inode under the monitored
    /// name ([`Assembler::register_link`]), so writes through either name are attributed.
    RegisterLink(FileEvent),
    /// A writer could not be tracked (the table is full): send this gap notice, which
    /// rescans every root.
    Rescan(GapNotice),
    /// The roots moved (a root or an ancestor was created, moved or removed, or a symlink
    /// into them appeared): plan these roots again and write the maps.
    Replan(Vec<WatchRoot>),
}

/// The assembler: the root plan the kernel maps were written from, the events waiting for
/// their results, the files open for writing, and what the event source must do next.
pub(crate) struct Assembler {
    plan: RootPlan,
    clock: WallClock,
    pending: HashMap<u32, Pending>,
    writers: OpenWriters,
    paths: PathResolver,
    processes: ProcessInfo,
    /// Symlinks leading into the roots, registered as aliases (see `probes/symlink.rs`).
    symlinks: Vec<SymlinkAlias>,
    /// Links whose creation was seen, waiting for the syscall to have made them.
    candidate_links: Vec<(SymlinkAlias, Instant)>,
    last_unresolved_rescan: Option<Instant>,
    /// Hard links made since the last batch (for [`Followup::RegisterLink`]).
    new_links: Vec<FileEvent>,
    /// A writer could not be tracked since the last batch (for [`Followup::Rescan`]).
    writer_table_full: bool,
    /// The roots moved since the last batch (for [`Followup::Replan`]).
    replan_requested: bool,
}

impl Assembler {
    pub(crate) fn new(plan: RootPlan) -> Self {
        Self {
            plan,
            clock: WallClock::now(),
            pending: HashMap::new(),
            writers: OpenWriters::default(),
            paths: PathResolver::default(),
            processes: ProcessInfo::default(),
            symlinks: Vec::new(),
            candidate_links: Vec::new(),
            last_unresolved_rescan: None,
            new_links: Vec::new(),
            writer_table_full: false,
            replan_requested: false,
        }
    }

    /// The plan in force: what the kernel maps hold.
    #[cfg(test)]
    fn plan(&self) -> &RootPlan {
        &self.plan
    }

    /// The symlink aliases known so far, for planning on another thread.
    pub(crate) fn symlink_aliases(&self) -> Vec<SymlinkAlias> {
        self.symlinks.clone()
    }

    /// A plan for `roots`, with the symlink aliases known so far.
    pub(crate) fn plan_for(&self, roots: &[WatchRoot]) -> RootPlan {
        plan_with_links(roots, &self.symlinks)
    }

    /// Puts `next` in force once `write` has written it into the kernel maps (`write` gets
    /// the plan they hold now and `next`). Aliases whose link is gone are forgotten first,
    /// whether the write succeeds or not. Returns the new plan's warnings.
    pub(crate) fn replace_plan<E>(
        &mut self,
        next: RootPlan,
        write: impl FnOnce(&RootPlan, &RootPlan) -> Result<(), E>,
    ) -> Result<Vec<String>, E> {
        self.symlinks.retain(SymlinkAlias::holds);
        write(&self.plan, &next)?;
        let warnings = next.warnings.clone();
        self.plan = next;
        // Cached directories were found under the old roots.
        self.paths.clear();
        Ok(warnings)
    }

    /// A gap notice for the roots `ids` (0: every root), now.
    pub(crate) fn gap_for(&self, ids: &[u32], dropped: u64) -> GapNotice {
        GapNotice::for_files(self.plan.root_paths(ids), dropped, Timestamp::now())
    }

    /// Tracks the writable descriptors and shared mappings that existed before the programs
    /// were attached (see `preexisting.rs`).
    pub(crate) fn track_preexisting_writers(&mut self) {
        let found = crate::preexisting::find(&self.plan, std::process::id());
        for (index, writer) in found.iter().enumerate() {
            let id = index as u64 + 1;
            let template = crate::preexisting::template(writer, Timestamp::now());
            tracing::info!(
                pid = writer.pid,
                process = %template.comm,
                path = %writer.path.display(),
                mapped = writer.mapped,
                "file already open for writing at start-up; tracking it"
            );
            self.writers.opened(id, writer.path.clone(), template);
            if writer.mapped {
                self.writers.mapped(id, writer.pid);
            }
        }
    }

    /// One ring-buffer record: its events go to `ready` (or wait for their result).
    pub(crate) fn handle_record(&mut self, record: &[u8], ready: &mut Vec<SourceItem>) {
        let raw = match decode(record) {
            Ok(raw) => raw,
            Err(error) => {
                tracing::warn!(
                    "undecodable kernel record ({} bytes): {error}",
                    record.len()
                );
                return;
            }
        };
        let header = &raw.header;
        tracing::trace!(op = header.op, flags = header.flags, pid = header.pid, arg = header.arg, paths = ?raw.paths, "kernel record");
        match header.op {
            op::SYSCALL_RESULT => {
                if let Some(pending) = self.pending.remove(&header.pid) {
                    if (header.arg as i64) >= 0 {
                        self.release(pending, false, ready);
                    }
                }
            }
            _ => self.handle_change(raw, ready),
        }
    }

    /// The periodic work between records: entry events whose result never came, symlinks
    /// that now exist, forgotten processes, and in-progress events of long-lived writers.
    pub(crate) fn tick(&mut self, now: Instant, ready: &mut Vec<SourceItem>) {
        self.expire_pending(ready, now);
        self.confirm_symlinks(now);
        self.processes.forget();
        let time = Timestamp::now();
        ready.extend(
            self.writers
                .poll(now, time)
                .into_iter()
                .map(SourceItem::Change),
        );
    }

    /// At a clean stop: every event still waiting for its result is reported, marked
    /// `result_unknown`.
    pub(crate) fn finish(&mut self, ready: &mut Vec<SourceItem>) {
        self.expire_pending(ready, Instant::now() + 2 * RESULT_WAIT);
    }

    /// What the event source must do now, in order; each is handed out once.
    pub(crate) fn take_followups(&mut self) -> Vec<Followup> {
        let mut followups: Vec<Followup> = std::mem::take(&mut self.new_links)
            .into_iter()
            .map(Followup::RegisterLink)
            .collect();
        if std::mem::take(&mut self.writer_table_full) {
            tracing::warn!("too many files open for writing to track; rescanning every root");
            followups.push(Followup::Rescan(self.gap_for(&[0], 0)));
        }
        if std::mem::take(&mut self.replan_requested) {
            let roots = self
                .plan
                .roots
                .values()
                .map(|root| root.spec.clone())
                .collect();
            followups.push(Followup::Replan(roots));
        }
        followups
    }

    fn expire_pending(&mut self, ready: &mut Vec<SourceItem>, now: Instant) {
        let stale: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, pending)| now - pending.since > RESULT_WAIT)
            .map(|(tid, _)| *tid)
            .collect();
        for tid in stale {
            if let Some(pending) = self.pending.remove(&tid) {
                self.release(pending, true, ready);
            }
        }
    }

    /// Waits for the result of `tid`'s syscall; an entry of the same thread still waiting
    /// (its result was lost) is reported now, `result_unknown`.
    fn await_result(&mut self, tid: u32, pending: Pending, ready: &mut Vec<SourceItem>) {
        if let Some(lost) = self.pending.insert(tid, pending) {
            self.release(lost, true, ready);
        }
    }

    /// An entry event whose result arrived (`result_unknown`: or never will).
    fn release(&mut self, mut pending: Pending, result_unknown: bool, ready: &mut Vec<SourceItem>) {
        if pending.moves_roots {
            self.replan_requested = true;
        }
        if pending.event.op == crate::record::Operation::Link {
            self.new_links.push(pending.event.clone());
        }
        for mut moved in std::mem::take(&mut pending.moved_roots) {
            moved.result_unknown = result_unknown;
            ready.push(SourceItem::Change(moved));
        }
        if pending.reported {
            pending.event.result_unknown = result_unknown;
            ready.push(SourceItem::Change(pending.event));
        }
    }
}
