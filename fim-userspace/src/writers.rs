//! Files open for writing, as user space knows them from the open records.
//!
//! The kernel coalesces writes into one record at close and does not hook write(2) at all.
//! For writers that keep a file open, this table polls the file's metadata at most once a
//! second and turns a change into a `write-in-progress` event attributed to the opener. It
//! also supplies the path of a write-closed record sent at process exit, which carries only
//! the writer's id (fd or `struct file *`).
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::record::{FileEvent, Operation};

/// How often a long-lived writer's file is looked at.
pub const IN_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on the table; the kernel's own writer maps are LRU maps of this size.
const MAX_WRITERS: usize = 65536;

/// (size, mtime ns, ctime ns): what a write changes.
type Stamp = (u64, i64, i64);

struct OpenWriter {
    /// The open's event, re-used (with a new op and time) for in-progress events.
    template: FileEvent,
    path: PathBuf,
    stamp: Option<Stamp>,
    /// When the file was last looked at (first: the open). A writer is looked at only a full
    /// interval later, so short-lived writers never get an in-progress event.
    checked: Instant,
}

/// Writers keyed by (tgid, writer id).
#[derive(Default)]
pub struct OpenWriters {
    open: HashMap<(u32, u64), OpenWriter>,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    Some((
        metadata.size(),
        metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
    ))
}

impl OpenWriters {
    /// A file under a root was opened for writing by `template`'s process.
    pub fn opened(&mut self, tgid: u32, id: u64, path: PathBuf, template: FileEvent) {
        if self.open.len() >= MAX_WRITERS {
            self.open.clear();
        }
        let stamp = stamp(&path);
        self.open.insert(
            (tgid, id),
            OpenWriter {
                template,
                path,
                stamp,
                checked: Instant::now(),
            },
        );
    }

    /// The writer closed; returns the path it was opened under.
    pub fn closed(&mut self, tgid: u32, id: u64) -> Option<PathBuf> {
        self.open.remove(&(tgid, id)).map(|writer| writer.path)
    }

    /// In-progress events for writers open at least an interval whose file changed since it
    /// was last looked at; each writer is looked at no more than once per interval.
    pub fn poll(&mut self, now: Instant, time: &str) -> Vec<FileEvent> {
        let mut events = Vec::new();
        for writer in self.open.values_mut() {
            if now.saturating_duration_since(writer.checked) < IN_PROGRESS_INTERVAL {
                continue;
            }
            writer.checked = now;
            let current = stamp(&writer.path);
            if current.is_some() && current != writer.stamp {
                if writer.stamp.is_some() {
                    let mut event = writer.template.clone();
                    event.op = Operation::WriteInProgress;
                    event.time = time.to_string();
                    events.push(event);
                }
                writer.stamp = current;
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(path: &str) -> FileEvent {
        FileEvent {
            op: Operation::WriteInProgress,
            path: path.into(),
            old_path: None,
            pid: 7,
            tid: 7,
            ppid: 1,
            comm: "writer".into(),
            exe: None,
            uid: 0,
            gid: 0,
            loginuid: None,
            cgroup: 0,
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
    fn only_writers_open_a_full_interval_get_in_progress_events() {
        let file = std::env::temp_dir().join(format!("fim-writers-{}", std::process::id()));
        std::fs::write(&file, b"a").unwrap();
        let mut writers = OpenWriters::default();
        let opened = Instant::now();
        writers.opened(7, 3, file.clone(), template(&file.to_string_lossy()));
        std::fs::write(&file, b"ab").unwrap();
        // Changed, but open for less than an interval: nothing.
        assert!(writers
            .poll(opened + Duration::from_millis(500), "t1")
            .is_empty());
        // A full interval later: one event, attributed to the opener, with the poll's time.
        let events = writers.poll(opened + Duration::from_millis(1100), "t2");
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].op, events[0].pid, events[0].time.as_str()),
            (Operation::WriteInProgress, 7, "t2")
        );
        // Unchanged since: nothing, and never more than one look per interval.
        assert!(writers
            .poll(opened + Duration::from_millis(2200), "t3")
            .is_empty());
        std::fs::write(&file, b"abc").unwrap();
        assert!(writers
            .poll(opened + Duration::from_millis(2500), "t4")
            .is_empty());
        assert_eq!(
            writers
                .poll(opened + Duration::from_millis(3300), "t5")
                .len(),
            1
        );
        assert_eq!(writers.closed(7, 3), Some(file.clone()));
        std::fs::remove_file(&file).unwrap();
    }
}
