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
}

/// Writers keyed by (tgid, writer id).
#[derive(Default)]
pub struct OpenWriters {
    open: HashMap<(u32, u64), OpenWriter>,
    last_poll: Option<Instant>,
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
            },
        );
    }

    /// The writer closed; returns the path it was opened under.
    pub fn closed(&mut self, tgid: u32, id: u64) -> Option<PathBuf> {
        self.open.remove(&(tgid, id)).map(|writer| writer.path)
    }

    /// At most once per interval: in-progress events for files that changed since last seen.
    pub fn poll(&mut self, now: Instant, time: &str) -> Vec<FileEvent> {
        if self
            .last_poll
            .is_some_and(|last| now - last < IN_PROGRESS_INTERVAL)
        {
            return Vec::new();
        }
        self.last_poll = Some(now);
        let mut events = Vec::new();
        for writer in self.open.values_mut() {
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
