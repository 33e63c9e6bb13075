//! What a running daemon offers its API layer (gRPC today): announcements, live status,
//! commands, and where its store and policy are.
//!
//! The API never reaches into the engine loop: it reads the store through its own read-only
//! connections (SQLite WAL lets it read while the daemon writes), edits the policy file (the
//! loop follows it), and asks for scans through a bounded command channel. That keeps the
//! engine free of any transport, and the Windows companion can offer the same handle.
use std::path::{Path, PathBuf};

use tokio::sync::{broadcast, mpsc, watch};

use crate::{
    identity::Computer,
    reconcile::{Announcement, HashProgress},
    store::{Store, StoreError},
};

/// Counters and depths that change every second; read with [`DaemonHandle::live_status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveStatus {
    /// "lsm", "fentry", "tracepoint" or "scan-only".
    pub strategy: String,
    pub roots: Vec<PathBuf>,
    /// RFC 3339.
    pub started: crate::change::Timestamp,
    /// Kernel events lost since start (each loss triggered a rescan).
    pub dropped_events: u64,
    pub gap_notices: u64,
    /// Paths waiting in the coalescing window.
    pub coalescing_paths: u64,
    /// Paths held because the journal could not be written (full disk, damaged database).
    pub held_paths: u64,
    /// Why the journal cannot be written now; None when all is well.
    pub degraded: Option<String>,
    /// Source events read but not yet processed.
    pub queued_events: u64,
    pub scan_running: bool,
    pub scans_queued: u64,
    /// Large files being hashed beside the event path (their verdicts come when done).
    pub hashing: Vec<HashProgress>,
    /// Large files waiting for the background hasher.
    pub hashes_queued: u64,
}

/// Requests from the API to the engine loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Scan these entities (None: all); `full` rehashes everything.
    Scan {
        only: Option<Vec<String>>,
        full: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("the daemon is busy: too many commands are waiting; try again")]
    Busy,
    #[error("the daemon is stopping")]
    Stopped,
}

/// A cheap, cloneable view of a running daemon.
#[derive(Clone)]
pub struct DaemonHandle {
    pub(super) database: PathBuf,
    pub(super) policy: PathBuf,
    pub(super) computer: Computer,
    pub(super) announcements: broadcast::Sender<Announcement>,
    pub(super) status: watch::Receiver<LiveStatus>,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) edits: std::sync::Arc<super::PolicyEdits>,
}

impl DaemonHandle {
    /// The API saved the policy file for `author`: the reload that applies this version of
    /// the file journals its changes as theirs.
    pub fn note_policy_edit(&self, author: super::PolicyAuthor) {
        let stamp = super::policy_file::stamp(&super::PolicySource::File(self.policy.clone()));
        self.edits.note(stamp, author);
    }

    /// Announcements from now on. A receiver that falls behind gets `Lagged` and must catch
    /// up from the journal (records are there before they are announced).
    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.announcements.subscribe()
    }

    /// A fresh read-only connection to the daemon's store.
    pub fn open_store(&self) -> Result<Store, StoreError> {
        Store::open_read_only(&self.database)
    }

    pub fn live_status(&self) -> LiveStatus {
        self.status.borrow().clone()
    }

    /// Asks for a scan; it runs after the one in progress, if any.
    pub fn trigger_scan(&self, only: Option<Vec<String>>, full: bool) -> Result<(), HandleError> {
        self.commands
            .try_send(Command::Scan { only, full })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => HandleError::Busy,
                mpsc::error::TrySendError::Closed(_) => HandleError::Stopped,
            })
    }

    /// The policy file the daemon follows (entity edits go there).
    pub fn policy_path(&self) -> &Path {
        &self.policy
    }

    pub fn computer(&self) -> &Computer {
        &self.computer
    }
}
