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

use fim_common::event::{flag, op, LOGINUID_UNSET};

use crate::{
    decode::{decode, RawEvent},
    paths::PathResolver,
    process_info::ProcessInfo,
    record::{FileEvent, Operation, SourceItem},
    roots::RootPlan,
    wallclock::WallClock,
    writers::OpenWriters,
};

/// How long an entry event waits for its syscall result before it is reported anyway.
pub(crate) const RESULT_WAIT: Duration = Duration::from_millis(500);

/// A decoded event waiting for its syscall result.
pub(crate) struct Pending {
    event: FileEvent,
    since: Instant,
    affects_missing_root: bool,
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
        let Some(operation) = operation(header.op) else {
            tracing::debug!(op = header.op, "unknown operation code");
            return;
        };
        // The writer's fd (tracepoint strategy) or `struct file *` (LSM, fentry).
        let writer_id = header.arg;
        let (path, truncated) = if header.flags & flag::AT_EXIT != 0 {
            match self.writers.closed(header.tgid, writer_id) {
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
        // An event on the way to a root that does not exist yet (mkdir of its parent...) is
        // not reported, but once it has happened the roots are re-planned.
        let affects_missing_root = self.plan.leads_to_missing_root(&path)
            || second
                .as_ref()
                .is_some_and(|(second, _)| self.plan.leads_to_missing_root(second));
        if !reported && !affects_missing_root {
            return;
        }
        let awaits_result = header.flags & flag::AWAITS_RESULT != 0;
        if !reported && !awaits_result {
            self.replan_requested = true;
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
        let (exe, cgroup_path) = self.processes.lookup(header.tgid);
        let event = FileEvent {
            op: operation,
            path: path.clone(),
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
        };
        let opened = header.op == op::WRITE_OPENED;
        if opened || operation == Operation::Create {
            self.writers
                .opened(header.tgid, writer_id, path.clone(), event.clone());
        }
        if operation == Operation::WriteClosed {
            self.writers.closed(header.tgid, writer_id);
        }
        if opened {
            // Bookkeeping only: the open itself is not a change.
            return;
        }
        if awaits_result {
            let pending = Pending {
                event,
                since: Instant::now(),
                affects_missing_root,
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

    /// An entry event whose result arrived (`result_unknown`: or never will).
    fn release(&mut self, mut pending: Pending, result_unknown: bool, ready: &mut Vec<SourceItem>) {
        if pending.affects_missing_root {
            self.replan_requested = true;
        }
        if pending.event.op == Operation::Link {
            self.new_links.push(pending.event.clone());
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

fn comm(bytes: &[u8; 16]) -> String {
    let end = bytes
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
