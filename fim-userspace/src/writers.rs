//! Files open for writing, as user space knows them from the open records.
//!
//! The kernel coalesces writes into one record per close and does not hook write(2) at all.
//! For writers that keep a file open, this table polls the file's metadata at most once a
//! second and turns a change into a `write-in-progress` event attributed to the opener. It
//! also supplies the path of records that carry only the writer's id (the `struct file *`):
//! those sent at process exit or at the release of the last reference, and msync/munmap of
//! a process that mapped tracked files.
//!
//! Writers are keyed by the open file, like in the kernel: a close that leaves the file open
//! elsewhere (`STILL_OPEN`) keeps the entry, and an entry whose last holder is gone (the
//! tracepoint strategy has no hook on the final release) is dropped after a last look.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use fim_engine::change::Timestamp;

use crate::record::{FileEvent, Operation};

/// How often a long-lived writer's file is looked at.
pub const IN_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on the table; the kernel's own writer map is an LRU map of 131072 entries.
const MAX_WRITERS: usize = 131072;

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
    /// The last process seen holding it (opener, closer of a shared copy, mapper).
    holder: u32,
    /// Processes that mapped it shared: their msync, munmap and exit are its writes.
    mappers: Vec<u32>,
}

/// Writers keyed by the writer id (the kernel's `struct file *`).
#[derive(Default)]
pub struct OpenWriters {
    open: HashMap<u64, OpenWriter>,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    Some((
        metadata.size(),
        metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        metadata.ctime() * 1_000_000_000 + metadata.ctime_nsec(),
    ))
}

fn process_alive(tgid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{tgid}")).exists()
}

impl OpenWriters {
    /// A file under a root was opened for writing by `template`'s process. Returns false
    /// when the table is full and the writer is not tracked (the caller raises a gap).
    pub fn opened(&mut self, id: u64, path: PathBuf, template: FileEvent) -> bool {
        if self.open.len() >= MAX_WRITERS && !self.open.contains_key(&id) {
            return false;
        }
        let stamp = stamp(&path);
        let holder = template.pid;
        self.open.insert(
            id,
            OpenWriter {
                template,
                path,
                stamp,
                checked: Instant::now(),
                holder,
                mappers: Vec::new(),
            },
        );
        true
    }

    /// The event a writer was opened with (its opener's who-data).
    pub fn template_of(&self, id: u64) -> Option<FileEvent> {
        self.open.get(&id).map(|writer| writer.template.clone())
    }

    /// The path a writer was opened under.
    pub fn path_of(&self, id: u64) -> Option<PathBuf> {
        self.open.get(&id).map(|writer| writer.path.clone())
    }

    /// The writer closed for good; returns the path it was opened under.
    pub fn closed(&mut self, id: u64) -> Option<PathBuf> {
        self.open.remove(&id).map(|writer| writer.path)
    }

    /// One descriptor closed, the file stays open in `holder` or elsewhere.
    pub fn still_open(&mut self, id: u64, holder: u32) {
        if let Some(writer) = self.open.get_mut(&id) {
            writer.holder = holder;
        }
    }

    /// `tgid` mapped the writer's file shared.
    pub fn mapped(&mut self, id: u64, tgid: u32) {
        if let Some(writer) = self.open.get_mut(&id) {
            if !writer.mappers.contains(&tgid) && writer.mappers.len() < 64 {
                writer.mappers.push(tgid);
            }
        }
    }

    /// Paths of the files `tgid` mapped (its msync, munmap or exit may have written them).
    /// At exit the process no longer maps them.
    pub fn mapped_by(&mut self, tgid: u32, exited: bool) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for writer in self.open.values_mut() {
            if writer.mappers.contains(&tgid) {
                paths.push(writer.path.clone());
                if exited {
                    writer.mappers.retain(|mapper| *mapper != tgid);
                }
            }
        }
        paths
    }

    /// How many writers are tracked.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// In-progress events for writers open at least an interval whose file changed since it
    /// was last looked at; each writer is looked at no more than once per interval. A writer
    /// whose holder and mappers are all gone gets its last look and is dropped.
    pub fn poll(&mut self, now: Instant, time: Timestamp) -> Vec<FileEvent> {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for (id, writer) in self.open.iter_mut() {
            if now.saturating_duration_since(writer.checked) < IN_PROGRESS_INTERVAL {
                continue;
            }
            writer.checked = now;
            let current = stamp(&writer.path);
            if current.is_some() && current != writer.stamp {
                if writer.stamp.is_some() {
                    let mut event = writer.template.clone();
                    event.op = Operation::WriteInProgress;
                    event.time = time;
                    events.push(event);
                }
                writer.stamp = current;
            }
            writer.mappers.retain(|tgid| process_alive(*tgid));
            if writer.mappers.is_empty() && !process_alive(writer.holder) {
                gone.push(*id);
            }
        }
        // Nobody holds these any more: a last write-closed, since the final release (or writes
        // through a mapping, which change no timestamp on tmpfs) left no other trace.
        for id in gone {
            if let Some(writer) = self.open.remove(&id) {
                let mut event = writer.template;
                event.op = Operation::WriteClosed;
                event.time = time;
                events.push(event);
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
            pid: std::process::id(),
            tid: 7,
            ppid: 1,
            comm: "writer".into(),
            ..FileEvent::anonymous(
                Operation::WriteInProgress,
                path.into(),
                Timestamp::UNIX_EPOCH,
            )
        }
    }

    #[test]
    fn only_writers_open_a_full_interval_get_in_progress_events() {
        let file = std::env::temp_dir().join(format!("fim-writers-{}", std::process::id()));
        std::fs::write(&file, b"a").unwrap();
        let mut writers = OpenWriters::default();
        let opened = Instant::now();
        writers.opened(3, file.clone(), template(&file.to_string_lossy()));
        std::fs::write(&file, b"ab").unwrap();
        // Changed, but open for less than an interval: nothing.
        assert!(writers
            .poll(
                opened + Duration::from_millis(500),
                Timestamp::from_unix_nanos(1)
            )
            .is_empty());
        // A full interval later: one event, attributed to the opener, with the poll's time.
        let events = writers.poll(
            opened + Duration::from_millis(1100),
            Timestamp::from_unix_nanos(2),
        );
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].op, events[0].pid, events[0].time),
            (
                Operation::WriteInProgress,
                std::process::id(),
                Timestamp::from_unix_nanos(2)
            )
        );
        // Unchanged since: nothing, and never more than one look per interval.
        assert!(writers
            .poll(
                opened + Duration::from_millis(2200),
                Timestamp::from_unix_nanos(3)
            )
            .is_empty());
        std::fs::write(&file, b"abc").unwrap();
        assert!(writers
            .poll(
                opened + Duration::from_millis(2500),
                Timestamp::from_unix_nanos(4)
            )
            .is_empty());
        assert_eq!(
            writers
                .poll(
                    opened + Duration::from_millis(3300),
                    Timestamp::from_unix_nanos(5)
                )
                .len(),
            1
        );
        assert_eq!(writers.closed(3), Some(file.clone()));
        std::fs::remove_file(&file).unwrap();
    }
}
