//! The daemon's side of the background hasher (`reconcile::deferred`): its thread, its
//! progress in the status, and stopping it first at shutdown.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex, TryLockError},
    thread::JoinHandle,
};

use tokio::sync::watch;

use super::LiveStatus;
use crate::{
    path_text::display_path,
    reconcile::{lock, run_worker, Deferred, HashProgress, Reconciler},
};

/// The meta key `fim --local status` reads the running hashes from (a JSON object).
pub const HASHING_META: &str = "daemon/hashing";

pub(super) struct Hasher {
    deferred: Arc<Deferred>,
    thread: Option<JoinHandle<()>>,
    /// What was last saved for `fim --local status`, to write only changes.
    saved: String,
}

impl Hasher {
    /// Attaches a queue to the reconciler; large files wait in it until [`Hasher::start`].
    pub(super) fn attach(reconciler: &mut Reconciler) -> Self {
        let deferred = Deferred::new();
        reconciler.hash_large_files_beside(deferred.clone());
        Hasher {
            deferred,
            thread: None,
            saved: String::new(),
        }
    }

    pub(super) fn start(&mut self, reconciler: &Arc<Mutex<Reconciler>>) {
        let deferred = self.deferred.clone();
        let shared = reconciler.clone();
        let spawned = std::thread::Builder::new()
            .name("fim-hasher".to_string())
            .spawn(move || run_worker(&deferred, &shared));
        match spawned {
            Ok(thread) => self.thread = Some(thread),
            Err(error) => {
                // Without the worker, queued files would never be judged: hash them inline.
                tracing::error!(
                    "cannot start the background hasher ({error}); large files are hashed inline"
                );
                lock(reconciler.as_ref()).hash_large_files_inline();
            }
        }
    }

    /// Cancels the running hash at once (SIGTERM must not wait for a 16 TB file).
    pub(super) fn cancel(&self) {
        let dropped = self.deferred.stop();
        if dropped > 0 {
            tracing::info!(
                files = dropped,
                "large files not hashed yet are left to the next start-up scan"
            );
        }
    }

    pub(super) fn join(&mut self, reconciler: &Mutex<Reconciler>) {
        self.cancel();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the background hasher panicked");
            }
        }
        self.save(reconciler, String::new());
    }

    /// Puts the progress into the live status, and (when it changed and the reconciler is
    /// free this instant) into the store for `fim --local status`.
    pub(super) fn publish(
        &mut self,
        status: &watch::Sender<LiveStatus>,
        reconciler: &Mutex<Reconciler>,
    ) {
        let (hashing, queued) = self.deferred.status();
        let text = if hashing.is_empty() && queued == 0 {
            String::new()
        } else {
            saved_text(&hashing, queued)
        };
        status.send_modify(|status| {
            status.hashing = hashing;
            status.hashes_queued = queued;
        });
        if text != self.saved {
            self.save(reconciler, text);
        }
    }

    fn save(&mut self, reconciler: &Mutex<Reconciler>, text: String) {
        // try_lock: this runs on the event loop, which must never wait for a reconcile step;
        // a busy reconciler only delays the saved copy to the next second.
        let reconciler = match reconciler.try_lock() {
            Ok(reconciler) => reconciler,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let saved = if text.is_empty() {
            reconciler.store().delete_meta(HASHING_META)
        } else {
            reconciler.store().set_meta(HASHING_META, &text)
        };
        match saved {
            Ok(()) => self.saved = text,
            Err(error) => tracing::debug!("cannot save the hashing status: {error}"),
        }
    }
}

/// `{"queued": N, "files": [{"path", "size", "done"}]}`.
fn saved_text(hashing: &[HashProgress], queued: u64) -> String {
    let files: Vec<serde_json::Value> = hashing
        .iter()
        .map(|file| {
            serde_json::json!({
                "path": display_path(&file.path),
                "size": file.size,
                "done": file.done,
            })
        })
        .collect();
    serde_json::json!({ "queued": queued, "files": files }).to_string()
}

/// Reads back what [`Hasher::publish`] saved: (files being hashed, paths queued).
pub fn saved_hashing(text: &str) -> (Vec<HashProgress>, u64) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return (Vec::new(), 0);
    };
    let files = value["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|file| HashProgress {
                    path: PathBuf::from(file["path"].as_str().unwrap_or("?")),
                    size: file["size"].as_u64().unwrap_or(0),
                    done: file["done"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    (files, value["queued"].as_u64().unwrap_or(0))
}
