//! Gathers real-time events per monitored object for a short window before the object is
//! looked at again.
//!
//! An editor's save is a burst (create temp, write, fsync, rename over, chmod): hashing after
//! every event would cost a read per event and report half-written states. The window starts
//! at a path's first event and is not extended by later ones, so a file written continuously
//! is still looked at every window (bounded latency, which the gRPC latency target depends on).
//! The same holds for a registry key written in a loop: the window is per object, whatever its
//! kind.
use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    time::{Duration, Instant},
};

use fim_model::MonitoredObject;

use crate::{
    change::{Actor, Contributor, UnixUser, UserIdentity, MAX_CONTRIBUTORS},
    source::{FileEvent, Operation},
};

/// What the events for one path said, merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hint {
    /// The operations, in order, without repeats (`write-closed`, `rename`, ...).
    pub operations: Vec<String>,
    /// The last process that touched the path.
    pub actor: Option<Actor>,
    /// Every process that touched the path, in order of first contribution, each with its own
    /// operations; at most [`MAX_CONTRIBUTORS`].
    pub contributors: Vec<Contributor>,
    /// Events from processes that did not fit in `contributors`.
    pub contributors_omitted: u64,
    /// The path was the destination of a rename from here.
    pub renamed_from: Option<PathBuf>,
    /// The path was the source of a rename to here.
    pub renamed_to: Option<PathBuf>,
}

impl Hint {
    /// This (newer) hint combined with an older one for the same path.
    pub fn merged_over(self, older: Hint) -> Hint {
        let mut merged = Hint {
            actor: self.actor.or(older.actor),
            renamed_from: self.renamed_from.or(older.renamed_from),
            renamed_to: self.renamed_to.or(older.renamed_to),
            contributors_omitted: older
                .contributors_omitted
                .saturating_add(self.contributors_omitted),
            operations: older.operations,
            contributors: older.contributors,
        };
        for operation in &self.operations {
            add_operation(&mut merged.operations, operation);
        }
        for contributor in self.contributors {
            // A process that no longer fits counts as one event per operation it did: at
            // least that many events were behind it.
            let events = contributor.operations.len().max(1) as u64;
            merged.contribute(&contributor.actor, &contributor.operations, events);
        }
        merged
    }

    fn absorb(&mut self, operation: &str, actor: Actor) {
        add_operation(&mut self.operations, operation);
        self.contribute(&actor, &[operation.to_string()], 1);
        self.actor = Some(actor);
    }

    /// Adds `operations` to the process's entry, or a new entry while there is room.
    fn contribute(&mut self, actor: &Actor, operations: &[String], events: u64) {
        let entry = match self
            .contributors
            .iter()
            .position(|known| same_process(&known.actor, actor))
        {
            Some(index) => &mut self.contributors[index],
            None if self.contributors.len() < MAX_CONTRIBUTORS => {
                self.contributors.push(Contributor {
                    actor: actor.clone(),
                    operations: Vec::new(),
                });
                let last = self.contributors.len() - 1;
                &mut self.contributors[last]
            }
            None => {
                self.contributors_omitted = self.contributors_omitted.saturating_add(events);
                return;
            }
        };
        // The latest event's thread (nothing else differs within one process), so the last
        // entry is exactly the record's Actor.
        entry.actor.thread_id = actor.thread_id;
        for operation in operations {
            add_operation(&mut entry.operations, operation);
        }
    }
}

fn add_operation(operations: &mut Vec<String>, operation: &str) {
    if !operations.iter().any(|seen| seen == operation) {
        operations.push(operation.to_string());
    }
}

/// One process, whichever of its threads acted: the pid and everything else the actor says
/// (a pid that exec'd another program or changed its user is another contributor).
fn same_process(a: &Actor, b: &Actor) -> bool {
    // Destructured so that a field added to Actor cannot be forgotten here.
    let Actor {
        process_id,
        thread_id: _,
        process_name,
        executable,
        parent_process_id,
        user,
    } = a;
    *process_id == b.process_id
        && *parent_process_id == b.parent_process_id
        && *user == b.user
        && *process_name == b.process_name
        && *executable == b.executable
}

struct Gathering {
    hint: Hint,
}

pub struct Coalescer {
    window: Duration,
    objects: HashMap<MonitoredObject, Gathering>,
    /// Objects in the order their windows close (the window is the same for all, so that is
    /// arrival order): finding what is due never scans the whole map, even under a flood.
    order: VecDeque<(Instant, MonitoredObject)>,
}

impl Coalescer {
    pub fn new(window: Duration) -> Self {
        Coalescer {
            window,
            objects: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A new window applies to paths from now on.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Adds a real-time file event: its path (and for a rename or a hard link, both paths).
    pub fn push(&mut self, event: &FileEvent, now: Instant) {
        let operation = operation_name(event.op);
        let actor = actor_of(event);
        let file = |path: &PathBuf| MonitoredObject::File(path.clone());
        match (event.op, &event.old_path) {
            // A hard link changes the source's link count too.
            (Operation::Link, Some(source)) => {
                self.gather(file(source), now)
                    .hint
                    .absorb(operation, actor.clone());
                self.gather(file(&event.path), now)
                    .hint
                    .absorb(operation, actor);
            }
            (Operation::Rename, Some(source)) => {
                let source_hint = &mut self.gather(file(source), now).hint;
                source_hint.absorb(operation, actor.clone());
                source_hint.renamed_to = Some(event.path.clone());
                let destination = &mut self.gather(file(&event.path), now).hint;
                destination.absorb(operation, actor);
                destination.renamed_from = Some(source.clone());
            }
            _ => self
                .gather(file(&event.path), now)
                .hint
                .absorb(operation, actor),
        }
    }

    /// Adds an object to look at with no event behind it (a retry, a rescan's follow-up), or
    /// what an event source other than the kernel's gathered for it.
    pub fn push_object(&mut self, object: MonitoredObject, hint: Hint, now: Instant) {
        let gathering = self.gather(object, now);
        let older = std::mem::take(&mut gathering.hint);
        gathering.hint = hint.merged_over(older);
    }

    fn gather(&mut self, object: MonitoredObject, now: Instant) -> &mut Gathering {
        let due = now + self.window;
        let order = &mut self.order;
        self.objects.entry(object).or_insert_with_key(|object| {
            order.push_back((due, object.clone()));
            Gathering {
                hint: Hint::default(),
            }
        })
    }

    /// The objects whose window has closed, oldest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<(MonitoredObject, Hint)> {
        self.take_due_at_most(now, usize::MAX)
    }

    /// The oldest `limit` objects whose window has closed; the rest stay due (and keep
    /// gathering events) until the next call.
    pub fn take_due_at_most(&mut self, now: Instant, limit: usize) -> Vec<(MonitoredObject, Hint)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.order.front() {
            if *at > now || due.len() >= limit {
                break;
            }
            let Some((_, object)) = self.order.pop_front() else {
                break;
            };
            if let Some(gathering) = self.objects.remove(&object) {
                due.push((object, gathering.hint));
            }
        }
        due
    }

    /// Everything, due or not (shutdown).
    pub fn take_all(&mut self) -> Vec<(MonitoredObject, Hint)> {
        self.order.clear();
        self.objects
            .drain()
            .map(|(object, gathering)| (object, gathering.hint))
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
        user: UserIdentity::Unix(UnixUser {
            user_id: event.uid,
            user_name: crate::users::user_name(event.uid),
            group_id: event.gid,
            login_user_id: event.loginuid,
            cgroup_id: event.cgroup,
            cgroup: event.cgroup_path.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn event(op: Operation, path: &str, old: Option<&str>, pid: u32) -> FileEvent {
        FileEvent {
            old_path: old.map(PathBuf::from),
            pid,
            tid: pid,
            ppid: 1,
            comm: "sed".into(),
            exe: Some("/usr/bin/sed".into()),
            loginuid: Some(1000),
            cgroup: 9,
            ..FileEvent::anonymous(op, path.into(), crate::change::Timestamp::UNIX_EPOCH)
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
        let file = |path: &str| MonitoredObject::File(path.into());
        let (_, hint) = &due
            .iter()
            .find(|(object, _)| *object == file("/etc/a.conf"))
            .unwrap();
        assert_eq!(hint.operations, vec!["rename"]);
        assert_eq!(hint.renamed_from.as_deref(), Some(Path::new("/etc/sedX")));
        let (_, temp) = &due
            .iter()
            .find(|(object, _)| *object == file("/etc/sedX"))
            .unwrap();
        assert_eq!(temp.operations, vec!["create", "write-closed", "rename"]);
        assert_eq!(temp.renamed_to.as_deref(), Some(Path::new("/etc/a.conf")));
        assert_eq!(temp.actor.as_ref().unwrap().process_name, "sed");
        assert!(coalescer.is_empty());
    }

    #[test]
    fn due_objects_are_taken_oldest_first_at_most_a_limit_at_a_time() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        for index in 0..5 {
            let path = format!("/etc/f{index}");
            let at = start + Duration::from_millis(index);
            coalescer.push(&event(Operation::WriteClosed, &path, None, 5), at);
        }
        let later = start + Duration::from_millis(100);
        let paths = |due: Vec<(MonitoredObject, Hint)>| -> Vec<String> {
            due.into_iter()
                .map(|(object, _)| object.to_string())
                .collect()
        };
        assert_eq!(
            paths(coalescer.take_due_at_most(later, 2)),
            ["/etc/f0", "/etc/f1"]
        );
        // The rest are still due, and an event for one of them joins its gathering.
        coalescer.push(&event(Operation::Chmod, "/etc/f3", None, 5), later);
        assert_eq!(coalescer.len(), 3);
        let rest = coalescer.take_due_at_most(later, 10);
        assert_eq!(rest[1].1.operations, ["write-closed", "chmod"]);
        assert_eq!(paths(rest), ["/etc/f2", "/etc/f3", "/etc/f4"]);
        assert!(coalescer.is_empty());
    }

    #[test]
    fn objects_of_every_kind_share_the_window_and_stay_apart() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        let key = |value: &str| MonitoredObject::RegistryKey {
            key: r"HKEY_LOCAL_MACHINE\SOFTWARE\Run".into(),
            value: Some(value.into()),
        };
        let hint = |operation: &str| Hint {
            operations: vec![operation.into()],
            ..Hint::default()
        };
        coalescer.push_object(key("a"), hint("set-value"), start);
        coalescer.push_object(key("a"), hint("delete-value"), start);
        coalescer.push_object(key("b"), hint("set-value"), start);
        coalescer.push_object(
            MonitoredObject::Service("Spooler".into()),
            hint("config"),
            start,
        );
        // A file whose path spells the key is another object.
        coalescer.push(
            &event(
                Operation::WriteClosed,
                r"HKEY_LOCAL_MACHINE\SOFTWARE\Run",
                None,
                5,
            ),
            start,
        );
        assert!(coalescer
            .take_due(start + Duration::from_millis(49))
            .is_empty());
        let mut due = coalescer.take_due(start + Duration::from_millis(50));
        due.sort_by(|a, b| a.0.cmp(&b.0));
        let seen: Vec<(String, Vec<String>)> = due
            .into_iter()
            .map(|(object, hint)| (object.to_string(), hint.operations))
            .collect();
        let ops = |list: &[&str]| list.iter().map(|op| op.to_string()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            vec![
                // A file's display escapes its backslashes on Unix, not on Windows.
                (
                    if cfg!(unix) {
                        r"HKEY_LOCAL_MACHINE\\SOFTWARE\\Run"
                    } else {
                        r"HKEY_LOCAL_MACHINE\SOFTWARE\Run"
                    }
                    .to_string(),
                    ops(&["write-closed"])
                ),
                (
                    r#"HKEY_LOCAL_MACHINE\SOFTWARE\Run @ "a""#.to_string(),
                    ops(&["set-value", "delete-value"])
                ),
                (
                    r#"HKEY_LOCAL_MACHINE\SOFTWARE\Run @ "b""#.to_string(),
                    ops(&["set-value"])
                ),
                ("service Spooler".to_string(), ops(&["config"])),
            ]
        );
        assert!(coalescer.is_empty());
    }

    fn by(comm: &str, op: Operation, pid: u32, tid: u32) -> FileEvent {
        FileEvent {
            comm: comm.into(),
            tid,
            ..event(op, "/etc/passwd", None, pid)
        }
    }

    fn due_hint(coalescer: &mut Coalescer, start: Instant) -> Hint {
        let mut due = coalescer.take_due(start + Duration::from_millis(60));
        assert_eq!(due.len(), 1);
        due.remove(0).1
    }

    #[test]
    fn every_process_in_a_window_is_named_with_its_own_operations() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        coalescer.push(&by("bash", Operation::WriteClosed, 5, 5), start);
        coalescer.push(&by("touch", Operation::Setattr, 6, 6), start);
        // The writer again, from another thread: the same contributor.
        coalescer.push(&by("bash", Operation::Truncate, 5, 9), start);
        let hint = due_hint(&mut coalescer, start);
        assert_eq!(hint.operations, vec!["write-closed", "setattr", "truncate"]);
        let named: Vec<(u32, u32, &str, Vec<&str>)> = hint
            .contributors
            .iter()
            .map(|c| {
                let operations = c.operations.iter().map(String::as_str).collect();
                let actor = &c.actor;
                (
                    actor.process_id,
                    actor.thread_id,
                    actor.process_name.as_str(),
                    operations,
                )
            })
            .collect();
        assert_eq!(
            named,
            vec![
                (5, 9, "bash", vec!["write-closed", "truncate"]),
                (6, 6, "touch", vec!["setattr"]),
            ]
        );
        assert_eq!(hint.contributors_omitted, 0);
        // Actor stays the last process, as old readers expect.
        let actor = hint.actor.unwrap();
        assert_eq!((actor.process_id, actor.process_name.as_str()), (5, "bash"));
    }

    #[test]
    fn a_pid_that_execs_another_program_is_another_contributor() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        coalescer.push(&by("sh", Operation::WriteClosed, 5, 5), start);
        coalescer.push(&by("evil", Operation::Chmod, 5, 5), start);
        let hint = due_hint(&mut coalescer, start);
        let names: Vec<&str> = hint
            .contributors
            .iter()
            .map(|c| c.actor.process_name.as_str())
            .collect();
        assert_eq!(names, vec!["sh", "evil"]);
    }

    #[test]
    fn a_flood_of_processes_is_bounded_and_counted() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        for pid in 100..200 {
            coalescer.push(&by("w", Operation::WriteClosed, pid, pid), start);
            coalescer.push(&by("w", Operation::Chmod, pid, pid), start);
        }
        let hint = due_hint(&mut coalescer, start);
        assert_eq!(hint.contributors.len(), MAX_CONTRIBUTORS);
        let first: Vec<u32> = hint
            .contributors
            .iter()
            .map(|c| c.actor.process_id)
            .collect();
        assert_eq!(first, (100..116).collect::<Vec<u32>>());
        assert_eq!(hint.contributors_omitted, 2 * (100 - 16));
        assert_eq!(hint.actor.map(|a| a.process_id), Some(199));
        assert_eq!(hint.operations, vec!["write-closed", "chmod"]);
    }

    #[test]
    fn merging_held_hints_keeps_every_contributor() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(Duration::from_millis(50));
        coalescer.push(&by("bash", Operation::WriteClosed, 5, 5), start);
        let older = due_hint(&mut coalescer, start);
        coalescer.push(&by("touch", Operation::Setattr, 6, 6), start);
        coalescer.push(&by("bash", Operation::Chmod, 5, 5), start);
        let newer = due_hint(&mut coalescer, start);
        let merged = newer.merged_over(older);
        let named: Vec<(u32, Vec<String>)> = merged
            .contributors
            .iter()
            .map(|c| (c.actor.process_id, c.operations.clone()))
            .collect();
        assert_eq!(
            named,
            vec![
                (5, vec!["write-closed".to_string(), "chmod".to_string()]),
                (6, vec!["setattr".to_string()]),
            ]
        );
        assert_eq!(merged.actor.map(|a| a.process_id), Some(5));
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
