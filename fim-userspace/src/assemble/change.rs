//! One kernel record to events: which path it names, whether it concerns the roots, and
//! whether it waits for its syscall's result.
use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf, time::Instant};

use fim_common::event::{flag, op, EventHeader, EXE_SLOT, LOGINUID_UNSET};

use super::{Assembler, Pending};
use crate::{
    decode::RawEvent,
    record::{FileEvent, Operation, SourceItem},
};

/// Untraceable io_uring operations rescan every root at most this often (a loop of them
/// cannot keep the scanner busy forever; the next rescan still finds what the last missed).
const UNRESOLVED_RESCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What a change record says about the roots, once its paths are resolved.
struct Subject {
    operation: Operation,
    path: PathBuf,
    truncated: bool,
    /// Rename and link destination, or symlink target (with its `truncated`).
    second: Option<(PathBuf, bool)>,
    /// Creates, moves or removes a root, an ancestor or the way to a missing one.
    moves_roots: bool,
    awaits_result: bool,
}

impl Assembler {
    pub(super) fn handle_change(&mut self, raw: RawEvent, ready: &mut Vec<SourceItem>) {
        let header = raw.header;
        if self.handle_mapping(&raw, ready) {
            return;
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
            self.closed_by_kernel_worker(&header, ready);
            return;
        }
        let Some((path, truncated)) = self.first_path(&raw) else {
            return;
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
        // The second path of a symlink is its target, which says nothing about the roots.
        let second_if_named = second.as_ref().filter(|_| operation != Operation::Symlink);
        let reported = self.plan.root_of(&path).is_some()
            || second_if_named.is_some_and(|(second, _)| self.plan.root_of(second).is_some());
        // An event that creates, moves or removes a root, an ancestor of one or the way to a
        // missing one (`mv cron.d cron.d.bak; mkdir cron.d`, `mkdir -p` of a parent) changes
        // which inodes the kernel must watch: once it has happened, the roots are re-planned.
        let moves_roots = changes_names(operation)
            && (self.plan.touches_roots(&path)
                || second_if_named.is_some_and(|(second, _)| self.plan.touches_roots(second)));
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
        let subject = Subject {
            operation,
            path,
            truncated,
            second,
            moves_roots,
            awaits_result,
        };
        if reported {
            self.report(&raw, subject, ready);
        } else {
            self.report_moved_roots(&raw, subject, ready);
        }
    }

    /// Shared mappings: a mapping of a tracked file, or the msync/munmap/exit of a mapper,
    /// which is a write of every file it mapped. True when `raw` was one of those.
    fn handle_mapping(&mut self, raw: &RawEvent, ready: &mut Vec<SourceItem>) -> bool {
        let header = &raw.header;
        match header.op {
            op::WRITE_MAPPED => {
                // The writer's `struct file *`.
                self.writers.mapped(header.arg, header.tgid);
                true
            }
            op::MAPPINGS_SYNCED => {
                let exited = header.flags & flag::AT_EXIT != 0;
                for path in self.writers.mapped_by(header.tgid, exited) {
                    let event = self.event_for(raw, Operation::WriteClosed, path, None, false);
                    ready.push(SourceItem::Change(event));
                }
                true
            }
            _ => false,
        }
    }

    /// The last reference went in a kernel worker (a mapping released by a dying process is
    /// put by a workqueue): the writer is its opener, not the worker.
    fn closed_by_kernel_worker(&mut self, header: &EventHeader, ready: &mut Vec<SourceItem>) {
        let writer_id = header.arg;
        if let Some(mut event) = self.writers.template_of(writer_id) {
            self.writers.closed(writer_id);
            event.op = Operation::WriteClosed;
            event.time = self.clock.at(header.time_ns);
            ready.push(SourceItem::Change(event));
        }
    }

    /// The record's file: from the writer table for records sent at exit (they carry only
    /// the writer's id), else resolved from the kernel's walk.
    fn first_path(&mut self, raw: &RawEvent) -> Option<(PathBuf, bool)> {
        let header = &raw.header;
        let writer_id = header.arg;
        if header.flags & flag::AT_EXIT != 0 {
            let path = if header.flags & flag::STILL_OPEN != 0 {
                self.writers.path_of(writer_id)
            } else {
                self.writers.closed(writer_id)
            };
            return path.map(|path| (path, false));
        }
        raw.paths[0]
            .as_ref()
            .and_then(|raw_path| self.paths.resolve(&self.plan, raw_path))
    }

    /// `mv /srv/app /srv/app.old` with the root /srv/app/conf: the event names no monitored
    /// path, but every root below the source moved with it. Each becomes a rename of its
    /// own, so the engine reports the tree where it went.
    fn report_moved_roots(
        &mut self,
        raw: &RawEvent,
        subject: Subject,
        ready: &mut Vec<SourceItem>,
    ) {
        let Subject {
            operation, path, ..
        } = &subject;
        let moved_roots: Vec<FileEvent> = match (operation, &subject.second) {
            (Operation::Rename, Some((destination, _))) => self
                .plan
                .roots_below(path)
                .into_iter()
                .filter_map(|root| {
                    let rest = root.strip_prefix(path).ok()?.to_path_buf();
                    let event =
                        self.event_for(raw, *operation, destination.join(rest), Some(root), false);
                    Some(event)
                })
                .collect(),
            _ => Vec::new(),
        };
        match moved_roots.first() {
            Some(template) if subject.awaits_result => {
                let pending = Pending {
                    event: template.clone(),
                    since: Instant::now(),
                    moves_roots: subject.moves_roots,
                    moved_roots,
                    reported: false,
                };
                self.await_result(raw.header.pid, pending, ready);
            }
            _ => ready.extend(moved_roots.into_iter().map(SourceItem::Change)),
        }
    }

    /// An event under the roots: named by its monitored path, with writer bookkeeping, sent
    /// now or once its syscall's result is known.
    fn report(&mut self, raw: &RawEvent, subject: Subject, ready: &mut Vec<SourceItem>) {
        let header = &raw.header;
        let writer_id = header.arg;
        let operation = subject.operation;
        let path = self.plan.canonical(subject.path);
        let second = subject.second.map(|(second, truncated)| {
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
        let event = self.event_for(raw, operation, path.clone(), old_path, subject.truncated);
        let opened = header.op == op::WRITE_OPENED;
        // Only records of an open carry a file pointer (and an inode); mknod's `arg` is a
        // device number.
        if (opened || operation == Operation::Create)
            && header.ino != 0
            && !self.writers.opened(writer_id, path, event.clone())
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
        if subject.awaits_result {
            let pending = Pending {
                event,
                since: Instant::now(),
                moves_roots: subject.moves_roots,
                moved_roots: Vec::new(),
                reported: true,
            };
            self.await_result(header.pid, pending, ready);
        } else {
            if event.op == Operation::Link {
                self.new_links.push(event.clone());
            }
            ready.push(SourceItem::Change(event));
        }
    }

    /// The event for `raw`'s process: who-data as the kernel captured it at the event.
    pub(super) fn event_for(
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
            time: self.clock.at(header.time_ns),
            truncated,
            result_unknown: false,
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
        ready.push(SourceItem::Gap(self.gap_for(&[0], 0)));
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
fn is_kernel_worker(header: &EventHeader) -> bool {
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
