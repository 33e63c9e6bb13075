//! Gathers real-time events per path for a short window before the path is rehashed.
//!
//! An editor's save is a burst (create temp, write, fsync, rename over, chmod): hashing after
//! every event would cost a read per event and report half-written states. The window starts
//! at a path's first event and is not extended by later ones, so a file written continuously
//! is still looked at every window (bounded latency, which the gRPC latency target depends on).
use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    change::Actor,
    source::{FileEvent, Operation},
};

/// What the events for one path said, merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint {
    /// The operations, in order, without repeats (`write-closed`, `rename`, ...).
    pub operations: Vec<String>,
    /// The last process that touched the path.
    pub actor: Option<Actor>,
    /// The path was the destination of a rename from here.
    pub renamed_from: Option<PathBuf>,
    /// The path was the source of a rename to here.
    pub renamed_to: Option<PathBuf>,
}

impl Hint {
    /// This (newer) hint combined with an older one for the same path.
    pub fn merged_over(self, older: Hint) -> Hint {
        let mut operations = older.operations;
        for operation in self.operations {
            if !operations.contains(&operation) {
                operations.push(operation);
            }
        }
        Hint {
            operations,
            actor: self.actor.or(older.actor),
            renamed_from: self.renamed_from.or(older.renamed_from),
            renamed_to: self.renamed_to.or(older.renamed_to),
        }
    }

    fn absorb(&mut self, operation: &str, actor: Actor) {
        if !self.operations.iter().any(|seen| seen == operation) {
            self.operations.push(operation.to_string());
        }
        self.actor = Some(actor);
    }
}

struct Gathering {
    hint: Hint,
}

pub struct Coalescer {
    window: Duration,
    paths: HashMap<PathBuf, Gathering>,
    /// Paths in the order their windows close (the window is the same for all, so that is
    /// arrival order): finding what is due never scans the whole map, even under a flood.
    order: VecDeque<(Instant, PathBuf)>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Coalescer {
            window,
            paths: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A new window applies to paths from now on.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Adds a real-time event: its path (and for a rename, both paths).
    pub fn push(&mut self, event: &FileEvent, now: Instant) {
        let operation = operation_name(event.op);
        let actor = actor_of(event);
        match (event.op, &event.old_path) {
            // A hard link changes the source's link count too.
            (Operation::Link, Some(source)) => {
                self.gather(source, now)
                    .hint
                    .absorb(operation, actor.clone());
                self.gather(&event.path, now).hint.absorb(operation, actor);
            }
            (Operation::Rename, Some(source)) => {
                self.gather(source, now)
                    .hint
                    .absorb(operation, actor.clone());
                self.gather(source, now).hint.renamed_to = Some(event.path.clone());
                let destination = self.gather(&event.path, now);
                destination.hint.absorb(operation, actor);
                destination.hint.renamed_from = Some(source.clone());
            }
            _ => self.gather(&event.path, now).hint.absorb(operation, actor),
        }
    }

    /// Adds a path to look at with no event behind it (a retry, a rescan's follow-up).
    pub fn push_path(&mut self, path: &Path, hint: Hint, now: Instant) {
        let gathering = self.gather(path, now);
        let older = std::mem::take(&mut gathering.hint);
        gathering.hint = hint.merged_over(older);
    }

    fn gather(&mut self, path: &Path, now: Instant) -> &mut Gathering {
        let due = now + self.window;
        let order = &mut self.order;
        self.paths.entry(path.to_path_buf()).or_insert_with(|| {
            order.push_back((due, path.to_path_buf()));
            Gathering {
                hint: Hint::default(),
            }
        })
    }

    /// The paths whose window has closed, oldest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<(PathBuf, Hint)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let Some((_, path)) = self.order.pop_front() else {
                break;
            };
            if let Some(gathering) = self.paths.remove(&path) {
                due.push((path, gathering.hint));
            }
        }
        due
    }

    /// Everything, due or not (shutdown).
    pub fn take_all(&mut self) -> Vec<(PathBuf, Hint)> {
        self.order.clear();
        self.paths
            .drain()
            .map(|(path, gathering)| (path, gathering.hint))
            .collect()
    }

    /// When the next window closes.
    pub fn next_due(&self) -> Option<Instant> {
        self.order.front().map(|(due, _)| *due)
    }
}

pub fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::WriteClosed => "write-closed",
        Operation::WriteInProgress => "write-in-progress",
        Operation::Create => "create",
        Operation::Rename => "rename",
        Operation::Unlink => "unlink",
        Operation::Chmod => "chmod",
        Operation::Chown => "chown",
        Operation::Truncate => "truncate",
        Operation::Setattr => "setattr",
        Operation::Xattr => "xattr",
        Operation::Link => "link",
        Operation::Symlink => "symlink",
        Operation::Mkdir => "mkdir",
        Operation::Rmdir => "rmdir",
    }
}

pub fn actor_of(event: &FileEvent) -> Actor {
    Actor {
        process_id: event.pid,
        thread_id: event.tid,
        process_name: event.comm.clone(),
        executable: event.exe.clone(),
        parent_process_id: event.ppid,
        user_id: event.uid,
        user_name: crate::users::user_name(event.uid),
        group_id: event.gid,
        login_user_id: event.loginuid,
        cgroup_id: event.cgroup,
        cgroup: event.cgroup_path.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: Operation, path: &str, old: Option<&str>, pid: u32) -> FileEvent {
        FileEvent {
            op,
            path: path.into(),
            old_path: old.map(PathBuf::from),
            pid,
            tid: pid,
            ppid: 1,
            comm: "sed".into(),
            exe: Some("/usr/bin/sed".into()),
            uid: 0,
            gid: 0,
            loginuid: Some(1000),
            cgroup: 9,
            cgroup_path: None,
            dev: 0,
            ino: 0,
            mode: None,
            owner: None,
            length: None,
            time: String::new(),
            truncated: false,
            result_unknown: false,
        }
    }

    #[test]
    fn a_save_burst_becomes_one_look_per_path() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        coalescer.push(&event(Operation::Create, "/etc/sedX", None, 5), start);
        coalescer.push(&event(Operation::WriteClosed, "/etc/sedX", None, 5), start);
        coalescer.push(
            &event(Operation::Rename, "/etc/a.conf", Some("/etc/sedX"), 5),
            start + Duration::from_millis(10),
        );
        assert!(coalescer
            .take_due(start + Duration::from_millis(49))
            .is_empty());
        let due = coalescer.take_due(start + Duration::from_millis(60));
        assert_eq!(due.len(), 2);
        let (path, hint) = &due
            .iter()
            .find(|(p, _)| p == Path::new("/etc/a.conf"))
            .unwrap();
        assert_eq!(path, Path::new("/etc/a.conf"));
        assert_eq!(hint.operations, vec!["rename"]);
        assert_eq!(hint.renamed_from.as_deref(), Some(Path::new("/etc/sedX")));
        let (_, temp) = &due
            .iter()
            .find(|(p, _)| p == Path::new("/etc/sedX"))
            .unwrap();
        assert_eq!(temp.operations, vec!["create", "write-closed", "rename"]);
        assert_eq!(temp.renamed_to.as_deref(), Some(Path::new("/etc/a.conf")));
        assert_eq!(temp.actor.as_ref().unwrap().process_name, "sed");
        assert!(coalescer.is_empty());
    }

    #[test]
    fn the_window_is_not_extended_by_later_events() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        for step in 0..10 {
            coalescer.push(
                &event(Operation::WriteInProgress, "/var/log/x", None, 1),
                start + Duration::from_millis(step * 10),
            );
        }
        assert_eq!(
            coalescer.next_due(),
            Some(start + Duration::from_millis(50))
        );
    }
}
