//! File notifications as engine events: one overlapped `ReadDirectoryChangesW` per
//! [`WatchRoot`] (`dir_watch.rs`), each on its own thread, which waits on it with a timeout so
//! it sees the stop flag. A directory root is watched itself (with subtree when recursive); a
//! single-file root (or one that does not exist yet) through its parent directory without
//! subtree, passing on only that file's notifications. Each notification becomes a
//! [`FileEvent`] (no who-data on Windows yet: pid 0, comm ""), which the engine coalesces and
//! reconciles like fimd's kernel events.
//!
//! Why this loses nothing it can know about: the read is re-armed before the records are
//! handed on, and the system keeps changes for the handle between reads. When they do not fit
//! the buffer (a zero-byte completion, ERROR_NOTIFY_ENUM_DIR), or the watch broke and was
//! opened again, a [`GapNotice`] for the root makes the engine rescan that entity at once.
//!
//! Wine 8.0: PLATFORM.md notes that a subtree watch missed writes inside subdirectories that
//! existed before the watch began; with this handle (FILE_LIST_DIRECTORY, overlapped, the full
//! filter) they are seen (`tests/files_wine.rs` asserts it). Should they be missed, the
//! periodic sweep still finds them.
//!
//! One thread per root keeps the code simple; a policy with hundreds of file roots would want
//! the reads multiplexed (WaitForMultipleObjects over 64 events, as the registry source does).
//! `FIMSVC_TEST_NOTIFY_BUFFER` (bytes) shrinks the notification buffer, for tests only.
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use fim_engine::daemon::WatchRoot;
use fim_model::{
    source::{FileEvent, GapNotice, Operation, SourceItem},
    Timestamp,
};
use tokio::sync::{mpsc, watch};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_ACTION_ADDED, FILE_ACTION_REMOVED, FILE_ACTION_RENAMED_NEW_NAME,
    FILE_ACTION_RENAMED_OLD_NAME,
};

use crate::dir_watch::{decode, Completion, DirWatch, Notification};

/// How often a thread looks at the stop flag and retries a root it could not watch.
const POLL: Duration = Duration::from_millis(500);
/// The notification buffer: 64 KiB, the most a network share accepts.
const BUFFER_BYTES: usize = 64 * 1024;
/// Test-only: a smaller notification buffer, so a test can force an overflow.
const BUFFER_ENV: &str = "FIMSVC_TEST_NOTIFY_BUFFER";

/// What one thread watches for one root.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// The root as the engine knows it (a gap notice names its path).
    root: WatchRoot,
    /// The directory whose handle is watched.
    dir: PathBuf,
    subtree: bool,
    /// A single-file root: only its notifications are passed on.
    only: Option<PathBuf>,
}

impl Target {
    /// A directory is watched itself; anything else (a file, nothing yet) through its parent.
    fn of(root: &WatchRoot) -> Target {
        match root.path.parent() {
            Some(parent) if !root.path.is_dir() => Target {
                root: root.clone(),
                dir: parent.to_path_buf(),
                subtree: false,
                only: Some(root.path.clone()),
            },
            _ => Target {
                root: root.clone(),
                dir: root.path.clone(),
                subtree: root.recursive,
                only: None,
            },
        }
    }
}

pub struct FileSource {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FileSource {
    /// Starts one thread per root; returns once each has armed its first read (or failed to,
    /// and keeps retrying), so changes from then on are seen.
    pub fn start(
        roots: &[WatchRoot],
        events: &mpsc::Sender<SourceItem>,
    ) -> std::io::Result<FileSource> {
        let stop = Arc::new(AtomicBool::new(false));
        let buffer = buffer_bytes();
        let (armed_in, armed) = std::sync::mpsc::channel::<()>();
        let mut threads = Vec::new();
        for (index, root) in roots.iter().enumerate() {
            let target = Target::of(root);
            let (stop, events, armed_in) = (stop.clone(), events.clone(), armed_in.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("fim-files-{index}"))
                    .spawn(move || watch_loop(target, buffer, &events, &stop, &armed_in))?,
            );
        }
        drop(armed_in);
        for _ in 0..threads.len() {
            if armed.recv().is_err() {
                break;
            }
        }
        Ok(FileSource { stop, threads })
    }

    /// Stops every thread (within [`POLL`]).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Keeps `source` on the daemon's roots until `stopping` turns true, starting the watches
/// again on each new root list (a policy reload). The event channel's senders held here are
/// dropped when this returns.
pub async fn supervise(
    mut source: FileSource,
    mut updates: mpsc::Receiver<Vec<WatchRoot>>,
    events: mpsc::Sender<SourceItem>,
    mut stopping: watch::Receiver<bool>,
) {
    // The guard wait_for returns is not Send: dropped inside this future.
    let stop = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            roots = updates.recv() => {
                let Some(roots) = roots else { break };
                let started = {
                    let events = events.clone();
                    let roots = roots.clone();
                    tokio::task::spawn_blocking(move || FileSource::start(&roots, &events)).await
                };
                match started {
                    Ok(Ok(next)) => {
                        let old = std::mem::replace(&mut source, next);
                        let _ = tokio::task::spawn_blocking(move || old.stop()).await;
                        tracing::info!(roots = roots.len(), "the file roots changed: watching the new set");
                    }
                    Ok(Err(error)) => tracing::error!("cannot watch the new file roots: {error}"),
                    Err(error) => tracing::error!("starting the file watches failed: {error}"),
                }
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || source.stop()).await;
}

fn buffer_bytes() -> usize {
    std::env::var(BUFFER_ENV)
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .filter(|bytes| *bytes > 0)
        .unwrap_or(BUFFER_BYTES)
}

fn watch_loop(
    first: Target,
    buffer: usize,
    events: &mpsc::Sender<SourceItem>,
    stop: &AtomicBool,
    armed: &std::sync::mpsc::Sender<()>,
) {
    let mut target = first;
    let mut watch = open(&target, buffer, true);
    // Whether changes may have gone unseen since (the watch is missing or was lost): the
    // root is rescanned once it is watched again.
    let mut lost = watch.is_none();
    let _ = armed.send(());
    while !stop.load(Ordering::Relaxed) {
        let Some(current) = watch.as_mut() else {
            std::thread::sleep(POLL);
            watch = open(&target, buffer, false);
            if watch.is_some() && lost {
                lost = false;
                if !send_gap(events, &target) {
                    return;
                }
            }
            continue;
        };
        let completion = match current.wait(POLL) {
            Ok(None) => continue,
            Ok(Some(completion)) => completion,
            Err(error) => {
                tracing::warn!(dir = %target.dir.display(), "the directory watch failed: {error}; opening it again");
                (watch, lost) = (None, true);
                continue;
            }
        };
        // Re-armed before the records are handed on (see the module docs).
        if let Err(error) = current.arm() {
            tracing::info!(dir = %target.dir.display(), "cannot watch the directory again ({error}); opening it again");
            (watch, lost) = (None, true);
        }
        let sent = match completion {
            Completion::Records(bytes) => send_events(events, &target, decode(&bytes)),
            Completion::Overflow => {
                tracing::warn!(root = %target.root.path.display(), "more changed than the notification buffer holds");
                send_gap(events, &target)
            }
        };
        if !sent {
            return;
        }
        // A single-file root that became a directory (or the reverse) is watched afresh.
        let now = Target::of(&target.root);
        if now != target {
            tracing::info!(root = %target.root.path.display(), "the root changed between file and directory: watching it afresh");
            (target, watch, lost) = (now, None, true);
        }
    }
}

fn open(target: &Target, buffer: usize, first: bool) -> Option<DirWatch> {
    match DirWatch::open(&target.dir, target.subtree, buffer) {
        Ok(watch) => Some(watch),
        Err(error) => {
            if first {
                tracing::warn!(dir = %target.dir.display(), "cannot watch the directory: {error}; retrying");
            }
            None
        }
    }
}

fn send_gap(events: &mpsc::Sender<SourceItem>, target: &Target) -> bool {
    let gap = GapNotice::for_files(vec![target.root.path.clone()], 1, Timestamp::now());
    events.blocking_send(SourceItem::Gap(gap)).is_ok()
}

fn send_events(
    events: &mpsc::Sender<SourceItem>,
    target: &Target,
    records: Vec<Notification>,
) -> bool {
    to_events(&target.dir, records, Timestamp::now())
        .into_iter()
        .filter_map(|event| keep(target, event))
        .all(|event| events.blocking_send(SourceItem::Change(event)).is_ok())
}

/// For a single-file root, only its own events, with its path spelled as the policy does
/// (Windows names are case-insensitive; the engine compares paths exactly).
fn keep(target: &Target, mut event: FileEvent) -> Option<FileEvent> {
    let Some(only) = &target.only else {
        return Some(event);
    };
    let same = |path: &Path| {
        path.as_os_str()
            .to_string_lossy()
            .eq_ignore_ascii_case(&only.as_os_str().to_string_lossy())
    };
    if same(&event.path) {
        event.path = only.clone();
        return Some(event);
    }
    if event.old_path.as_deref().is_some_and(same) {
        event.old_path = Some(only.clone());
        return Some(event);
    }
    None
}

/// Notifications to events: a RENAMED_OLD_NAME followed by its RENAMED_NEW_NAME is one
/// rename; an old name without its new one (moved out of the watched tree) is an unlink, a new
/// name without its old one (moved in) a create.
fn to_events(dir: &Path, records: Vec<Notification>, time: Timestamp) -> Vec<FileEvent> {
    let mut events = Vec::with_capacity(records.len());
    let mut renamed_from: Option<PathBuf> = None;
    for record in records {
        let path = dir.join(&record.name);
        if record.action != FILE_ACTION_RENAMED_NEW_NAME {
            if let Some(old) = renamed_from.take() {
                events.push(event(Operation::Unlink, old, None, time));
            }
        }
        match record.action {
            FILE_ACTION_RENAMED_OLD_NAME => renamed_from = Some(path),
            FILE_ACTION_RENAMED_NEW_NAME => match renamed_from.take() {
                Some(old) => events.push(event(Operation::Rename, path, Some(old), time)),
                None => events.push(event(Operation::Create, path, None, time)),
            },
            FILE_ACTION_ADDED => events.push(event(Operation::Create, path, None, time)),
            FILE_ACTION_REMOVED => events.push(event(Operation::Unlink, path, None, time)),
            // FILE_ACTION_MODIFIED, and anything newer: the engine looks at the path either
            // way.
            _ => {
                events.push(event(Operation::WriteClosed, path, None, time));
            }
        }
    }
    if let Some(old) = renamed_from {
        events.push(event(Operation::Unlink, old, None, time));
    }
    events
}

fn event(op: Operation, path: PathBuf, old_path: Option<PathBuf>, time: Timestamp) -> FileEvent {
    // No who-data on Windows yet (ETW is not consumable under Wine 8.0).
    FileEvent {
        old_path,
        ..FileEvent::anonymous(op, path, time)
    }
}

#[cfg(test)]
mod tests {
    use windows_sys::Win32::Storage::FileSystem::FILE_ACTION_MODIFIED;

    use super::*;

    fn note(action: u32, name: &str) -> Notification {
        Notification {
            action,
            name: name.into(),
        }
    }

    fn summary(events: &[FileEvent]) -> Vec<(Operation, String, Option<String>)> {
        events
            .iter()
            .map(|event| {
                (
                    event.op,
                    event.path.display().to_string(),
                    event.old_path.as_ref().map(|old| old.display().to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn rename_pairs_become_one_rename_and_halves_become_unlink_or_create() {
        let events = to_events(
            Path::new(r"C:\d"),
            vec![
                note(FILE_ACTION_ADDED, "a"),
                note(FILE_ACTION_MODIFIED, "a"),
                note(FILE_ACTION_RENAMED_OLD_NAME, "a"),
                note(FILE_ACTION_RENAMED_NEW_NAME, "b"),
                note(FILE_ACTION_RENAMED_OLD_NAME, "c"),
                note(FILE_ACTION_REMOVED, "b"),
                note(FILE_ACTION_RENAMED_NEW_NAME, "e"),
                note(FILE_ACTION_RENAMED_OLD_NAME, "f"),
            ],
            Timestamp::UNIX_EPOCH,
        );
        let path = |name: &str| format!(r"C:\d\{name}");
        assert_eq!(
            summary(&events),
            vec![
                (Operation::Create, path("a"), None),
                (Operation::WriteClosed, path("a"), None),
                (Operation::Rename, path("b"), Some(path("a"))),
                (Operation::Unlink, path("c"), None),
                (Operation::Unlink, path("b"), None),
                (Operation::Create, path("e"), None),
                (Operation::Unlink, path("f"), None),
            ]
        );
    }

    #[test]
    fn a_single_file_root_passes_only_its_own_events() {
        let target = Target {
            root: WatchRoot {
                path: r"C:\d\Win.ini".into(),
                recursive: false,
            },
            dir: r"C:\d".into(),
            subtree: false,
            only: Some(r"C:\d\Win.ini".into()),
        };
        let time = Timestamp::UNIX_EPOCH;
        let own = event(Operation::WriteClosed, r"C:\d\WIN.INI".into(), None, time);
        let sibling = event(
            Operation::WriteClosed,
            r"C:\d\system.ini".into(),
            None,
            time,
        );
        let moved = event(
            Operation::Rename,
            r"C:\d\old.ini".into(),
            Some(r"C:\d\win.ini".into()),
            time,
        );
        assert_eq!(
            keep(&target, own).map(|event| event.path),
            Some(r"C:\d\Win.ini".into())
        );
        assert!(keep(&target, sibling).is_none());
        assert_eq!(
            keep(&target, moved).and_then(|event| event.old_path),
            Some(r"C:\d\Win.ini".into())
        );
    }
}
