//! From decoded kernel records to [`SourceItem`]s: path rebuild, filtering to the roots,
//! pairing entry records with their syscall results, and writer bookkeeping.
//!
//! Kept apart from `ebpf_source.rs`, which owns the maps and the ring: this half has no kernel
//! handles and is the part a test can drive with recorded records.
use std::{
    collections::HashMap,
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use fim_common::event::{flag, op, EXE_SLOT, LOGINUID_UNSET};

use crate::{
    decode::{decode, RawEvent},
    paths::PathResolver,
    process_info::ProcessInfo,
    record::{FileEvent, GapNotice, Operation, SourceItem},
    roots::{RootPlan, SymlinkAlias},
    wallclock::WallClock,
    writers::OpenWriters,
};

/// How long an entry event waits for its syscall result before it is reported anyway.
pub(crate) const RESULT_WAIT: Duration = Duration::from_millis(500);
/// Bounds on symlink aliases: a process creating links in a loop cannot grow the plan.
const MAX_SYMLINK_ALIASES: usize = 1024;
const MAX_CANDIDATE_LINKS: usize = 1024;
/// Untraceable io_uring operations rescan every root at most this often (a loop of them
/// cannot keep the scanner busy forever; the next rescan still finds what the last missed).
const UNRESOLVED_RESCAN_EVERY: Duration = Duration::from_secs(10);

/// A decoded event waiting for its syscall result.
pub(crate) struct Pending {
    event: FileEvent,
    since: Instant,
    /// Creates, moves or removes a root or one of its ancestors: re-plan once it happened.
    moves_roots: bool,
    /// Renames of roots implied by the rename of a directory above them (old, new).
    moved_roots: Vec<FileEvent>,
    /// Under a root (not only on the way to a missing one).
    reported: bool,
}

pub(crate) struct State {
    pub(crate) plan: RootPlan,
    pub(crate) clock: WallClock,
    pub(crate) pending: HashMap<u32, Pending>,
    pub(crate) writers: OpenWriters,
    pub(crate) drops_seen: HashMap<u32, u64>,
    pub(crate) paths: PathResolver,
    pub(crate) processes: ProcessInfo,
    pub(crate) replan_requested: bool,
    /// Hard links made since the last drain: their inode must be registered, so writes through
    /// either name are attributed to the monitored one.
    pub(crate) new_links: Vec<FileEvent>,
    /// A writer could not be tracked (table full): the source raises a gap notice.
    pub(crate) writer_table_full: bool,
    /// Symlinks leading into the roots, registered as aliases (see `probes/symlink.rs`).
    pub(crate) symlinks: Vec<SymlinkAlias>,
    /// Links whose creation was seen, waiting for the syscall to have made them.
    candidate_links: Vec<(SymlinkAlias, Instant)>,
    last_unresolved_rescan: Option<Instant>,
    /// The kernel maps hold exactly `plan` (false after a write failed half-way: the next
    /// plan is then written whole instead of only what differs).
    pub(crate) maps_match_plan: bool,
}

impl State {
    pub(crate) fn new(plan: RootPlan) -> Self {
        Self {
            plan,
            clock: WallClock::now(),
            pending: HashMap::new(),
            writers: OpenWriters::default(),
            drops_seen: HashMap::new(),
            paths: PathResolver::default(),
            processes: ProcessInfo::default(),
            replan_requested: false,
            new_links: Vec::new(),
            writer_table_full: false,
            symlinks: Vec::new(),
            candidate_links: Vec::new(),
            last_unresolved_rescan: None,
            maps_match_plan: true,
        }
    }

    pub(crate) fn expire_pending(&mut self, ready: &mut Vec<SourceItem>, now: Instant) {
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

    fn handle_change(&mut self, raw: RawEvent, ready: &mut Vec<SourceItem>) {
        let header = raw.header;
        // The writer's `struct file *`, for open, close, exit and mapping records.
        let writer_id = header.arg;
        match header.op {
            op::WRITE_MAPPED => {
                self.writers.mapped(writer_id, header.tgid);
                return;
            }
            op::MAPPINGS_SYNCED => {
                let exited = header.flags & flag::AT_EXIT != 0;
                for path in self.writers.mapped_by(header.tgid, exited) {
                    let event = self.event_for(&raw, Operation::WriteClosed, path, None, false);
                    ready.push(SourceItem::Change(event));
                }
                return;
            }
            _ => {}
        }
        if header.flags & flag::UNRESOLVED != 0 {
            self.unresolved(&raw, ready);
            return;
        }
        if header.flags & flag::ALIAS != 0 {
            self.symlink_candidate(&raw);
            return;
        }
        let Some(operation) = operation(header.op) else {
            tracing::debug!(op = header.op, "unknown operation code");
            return;
        };
        if header.flags & flag::AT_EXIT != 0 && is_kernel_worker(&header) {
            // The last reference went in a kernel worker (a mapping released by a dying
            // process is put by a workqueue): the writer is its opener, not the worker.
            if let Some(mut event) = self.writers.template_of(writer_id) {
                self.writers.closed(writer_id);
                event.op = Operation::WriteClosed;
                event.time = self.clock.rfc3339(header.time_ns);
                ready.push(SourceItem::Change(event));
            }
            return;
        }
        let (path, truncated) = if header.flags & flag::AT_EXIT != 0 {
            let path = if header.flags & flag::STILL_OPEN != 0 {
                self.writers.path_of(writer_id)
            } else {
                self.writers.closed(writer_id)
            };
            match path {
                Some(path) => (path, false),
                None => return,
            }
        } else {
            match raw.paths[0]
                .as_ref()
                .map(|raw_path| self.paths.resolve(&self.plan, raw_path))
            {
                Some(Some(resolved)) => resolved,
                _ => return,
            }
        };
        let second = raw.paths[1].as_ref().and_then(|raw_path| {
            if operation == Operation::Symlink {
                raw_path
                    .string
                    .as_ref()
                    .map(|target| (PathBuf::from(OsStr::from_bytes(target)), false))
            } else {
                self.paths.resolve(&self.plan, raw_path)
            }
        });
        let reported = self.plan.root_of(&path).is_some()
            || (operation != Operation::Symlink
                && second
                    .as_ref()
                    .is_some_and(|(second, _)| self.plan.root_of(second).is_some()));
        // An event that creates, moves or removes a root, an ancestor of one or the way to a
        // missing one (`mv cron.d cron.d.bak; mkdir cron.d`, `mkdir -p` of a parent) changes
        // which inodes the kernel must watch: once it has happened, the roots are re-planned.
        let moves_roots = changes_names(operation)
            && (self.plan.touches_roots(&path)
                || (operation != Operation::Symlink
                    && second
                        .as_ref()
                        .is_some_and(|(second, _)| self.plan.touches_roots(second))));
        if operation == Operation::Symlink && !reported {
            // A new link outside the roots: does it lead into them? (The kernel sends such
            // links when it cannot rule that out.)
            if let Some((target, _)) = &second {
                self.symlink_candidate_at(path.clone(), target.clone());
            }
            return;
        }
        if !reported && !moves_roots {
            return;
        }
        let awaits_result = header.flags & flag::AWAITS_RESULT != 0;
        if !awaits_result && moves_roots {
            self.replan_requested = true;
        }
        // `mv /srv/app /srv/app.old` with the root /srv/app/conf: the event names no monitored
        // path, but every root below the source moved with it. Each becomes a rename of its
        // own, so the engine reports the tree where it went.
        let moved_roots = match (&operation, &second) {
            (Operation::Rename, Some((destination, _))) if !reported => self
                .plan
                .roots_below(&path)
                .into_iter()
                .filter_map(|root| {
                    let rest = root.strip_prefix(&path).ok()?.to_path_buf();
                    let event =
                        self.event_for(&raw, operation, destination.join(rest), Some(root), false);
                    Some(event)
                })
                .collect(),
            _ => Vec::new(),
        };
        if !reported {
            if awaits_result && !moved_roots.is_empty() {
                let template = moved_roots[0].clone();
                let pending = Pending {
                    event: template,
                    since: Instant::now(),
                    moves_roots,
                    moved_roots,
                    reported: false,
                };
                if let Some(lost) = self.pending.insert(header.pid, pending) {
                    self.release(lost, true, ready);
                }
            } else {
                ready.extend(moved_roots.into_iter().map(SourceItem::Change));
            }
            return;
        }
        let path = self.plan.canonical(path);
        let second = second.map(|(second, truncated)| {
            if operation == Operation::Symlink {
                (second, truncated)
            } else {
                (self.plan.canonical(second), truncated)
            }
        });
        // Renames and links carry (source, destination); the record names the destination.
        let (path, old_path) = match operation {
            Operation::Rename | Operation::Link => match second {
                Some((destination, _)) => (destination, Some(path)),
                None => (path, None),
            },
            Operation::Symlink => (path, second.map(|(target, _)| target)),
            _ => (path, None),
        };
        let event = self.event_for(&raw, operation, path.clone(), old_path, truncated);
        let opened = header.op == op::WRITE_OPENED;
        // Only records of an open carry a file pointer (and an inode); mknod's `arg` is a
        // device number.
        if (opened || operation == Operation::Create)
            && header.ino != 0
            && !self.writers.opened(writer_id, path.clone(), event.clone())
        {
            self.writer_table_full = true;
        }
        if operation == Operation::WriteClosed {
            if header.flags & flag::STILL_OPEN != 0 {
                self.writers.still_open(writer_id, header.tgid);
            } else {
                self.writers.closed(writer_id);
            }
        }
        if opened {
            // Bookkeeping only: the open itself is not a change.
            return;
        }
        if awaits_result {
            let pending = Pending {
                event,
                since: Instant::now(),
                moves_roots,
                moved_roots: Vec::new(),
                reported,
            };
            if let Some(lost) = self.pending.insert(header.pid, pending) {
                self.release(lost, true, ready);
            }
        } else {
            if event.op == Operation::Link {
                self.new_links.push(event.clone());
            }
            ready.push(SourceItem::Change(event));
        }
    }

    /// The event for `raw`'s process: who-data as the kernel captured it at the event.
    fn event_for(
        &mut self,
        raw: &RawEvent,
        operation: Operation,
        path: PathBuf,
        old_path: Option<PathBuf>,
        truncated: bool,
    ) -> FileEvent {
        let header = &raw.header;
        let (proc_exe, cgroup_path) = self.processes.lookup(header.tgid);
        // The executable the kernel saw at the event; /proc only when the record has none
        // (kernel threads), since by now the process may have exec'd something else.
        let exe = raw.paths[EXE_SLOT]
            .as_ref()
            .and_then(|raw_path| self.paths.resolve(&self.plan, raw_path))
            .map(|(path, _)| fim_engine::path_text::display_path(&path))
            .or(proc_exe);
        FileEvent {
            op: operation,
            path,
            old_path,
            pid: header.tgid,
            tid: header.pid,
            ppid: header.ppid,
            comm: comm(&header.comm),
            exe,
            cgroup_path,
            uid: header.uid,
            gid: header.gid,
            loginuid: (header.loginuid != LOGINUID_UNSET).then_some(header.loginuid),
            cgroup: header.cgroup_id,
            dev: if header.dev == 0 {
                0
            } else {
                libc::makedev(header.dev >> 20, header.dev & 0xfffff)
            },
            ino: header.ino,
            mode: matches!(operation, Operation::Chmod | Operation::Mkdir)
                .then_some(header.mode & 0o7777),
            owner: (operation == Operation::Chown)
                .then_some((header.arg as u32, (header.arg >> 32) as u32)),
            length: (operation == Operation::Truncate).then_some(header.arg),
            time: self.clock.rfc3339(header.time_ns),
            truncated,
            result_unknown: false,
        }
    }

    /// A symlink created outside the roots whose target may lead into them: once it exists
    /// (the syscall's result is not waited for), it is checked and registered.
    fn symlink_candidate(&mut self, raw: &RawEvent) {
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

    fn symlink_candidate_at(&mut self, link: PathBuf, target: PathBuf) {
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

    /// Registers candidate links that now exist (and re-plans); forgets stale ones.
    pub(crate) fn confirm_symlinks(&mut self, now: Instant) {
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

    /// An io_uring operation the kernel programs could not follow to a path: every root is
    /// rescanned at once, and the log names the process, so the change is found within
    /// seconds and the user knows who to look at.
    fn unresolved(&mut self, raw: &RawEvent, ready: &mut Vec<SourceItem>) {
        let header = &raw.header;
        let now = Instant::now();
        if self
            .last_unresolved_rescan
            .is_some_and(|last| now.duration_since(last) < UNRESOLVED_RESCAN_EVERY)
        {
            return;
        }
        self.last_unresolved_rescan = Some(now);
        let (exe, _) = self.processes.lookup(header.tgid);
        tracing::warn!(
            pid = header.tgid,
            process = %comm(&header.comm),
            exe = exe.as_deref().unwrap_or("unknown"),
            uid = header.uid,
            io_uring_opcode = header.arg,
            "an io_uring operation the kernel programs cannot follow to a path; rescanning every root"
        );
        ready.push(SourceItem::Gap(GapNotice::for_files(
            self.plan.root_paths(&[0]),
            0,
            self.clock.now_rfc3339(),
        )));
    }

    /// An entry event whose result arrived (`result_unknown`: or never will).
    fn release(&mut self, mut pending: Pending, result_unknown: bool, ready: &mut Vec<SourceItem>) {
        if pending.moves_roots {
            self.replan_requested = true;
        }
        if pending.event.op == Operation::Link {
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

fn operation(code: u8) -> Option<Operation> {
    Some(match code {
        op::WRITE_CLOSED => Operation::WriteClosed,
        // The open of a writer: its event is the template for in-progress events.
        op::WRITE_OPENED => Operation::WriteInProgress,
        op::CREATE => Operation::Create,
        op::RENAME => Operation::Rename,
        op::UNLINK => Operation::Unlink,
        op::CHMOD => Operation::Chmod,
        op::CHOWN => Operation::Chown,
        op::TRUNCATE => Operation::Truncate,
        op::SETATTR => Operation::Setattr,
        op::XATTR => Operation::Xattr,
        op::LINK => Operation::Link,
        op::SYMLINK => Operation::Symlink,
        op::MKDIR => Operation::Mkdir,
        op::RMDIR => Operation::Rmdir,
        _ => return None,
    })
}

/// A kernel thread (a child of kthreadd, pid 2, or kthreadd itself).
fn is_kernel_worker(header: &fim_common::event::EventHeader) -> bool {
    header.ppid == 2 || header.tgid == 2
}

/// Operations that create, move or remove a name (and so may move a root).
fn changes_names(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::Rename
            | Operation::Unlink
            | Operation::Rmdir
            | Operation::Mkdir
            | Operation::Create
            | Operation::Symlink
            | Operation::Link
    )
}

fn comm(bytes: &[u8; 16]) -> String {
    let end = bytes
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
