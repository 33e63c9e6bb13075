//! The real-time half of the loop: objects whose coalescing window closed are judged and
//! journaled in steps of [`REALTIME_STEP`], what cannot be journaled (full disk, damaged
//! database) is held and retried, and `--print-records` prints what was announced.
use std::collections::HashMap;

use fim_model::MonitoredObject;

use super::{lock, Announcement, Daemon, RETRY_EVERY};
use crate::{change::Detection, reconcile::Hint};

/// Paths that could not be journaled (full disk): kept, with their hints, and retried.
const MAX_HELD_PATHS: usize = 100_000;
/// Objects judged and journaled in one real-time step (one transaction). Each costs a few KB
/// while its step runs (its event hint, both states, the record and its announcement), so in a
/// burst of 100,000 files the step, not the burst, sets that memory.
pub(super) const REALTIME_STEP: usize = 512;

impl Daemon {
    /// Reconciles `due` [`REALTIME_STEP`] objects at a time (a retry of held paths or the
    /// last events at shutdown can be many more than one window's).
    pub(super) async fn reconcile(
        &self,
        mut due: Vec<(MonitoredObject, Hint)>,
        held: &mut HashMap<MonitoredObject, Hint>,
        needs_rescan: &mut bool,
    ) {
        while !due.is_empty() {
            let rest = due.split_off(due.len().min(REALTIME_STEP));
            self.reconcile_step(due, held, needs_rescan).await;
            due = rest;
        }
    }

    async fn reconcile_step(
        &self,
        due: Vec<(MonitoredObject, Hint)>,
        held: &mut HashMap<MonitoredObject, Hint>,
        needs_rescan: &mut bool,
    ) {
        let reconciler = self.reconciler.clone();
        // The objects come back with the outcome, to be held if they could not be recorded.
        let result = tokio::task::spawn_blocking(move || {
            let result = lock(&reconciler).reconcile(&due, Detection::Realtime);
            (result, due)
        })
        .await;
        match result {
            Ok((Ok(_records), _)) => {
                if held.is_empty() && self.status.borrow().degraded.is_some() {
                    tracing::warn!("the journal accepts records again");
                    self.status.send_modify(|status| status.degraded = None);
                }
            }
            Ok((Err(error), due)) => {
                // A full disk and a damaged database are handled alike: nothing is dropped,
                // the paths are held and retried, status says why, and a rescan follows.
                let reason = if error.is_disk_full() {
                    "the state directory's disk is full: changes cannot be journaled".to_string()
                } else {
                    format!("changes cannot be recorded: {error}")
                };
                // Said once per reason, not at every retry.
                if self.status.borrow().degraded.as_ref() != Some(&reason) {
                    tracing::error!(
                        "{reason}; holding them and retrying every {}s",
                        RETRY_EVERY.as_secs()
                    );
                }
                self.status
                    .send_modify(|status| status.degraded = Some(reason));
                for (object, hint) in due {
                    if held.len() >= MAX_HELD_PATHS {
                        *needs_rescan = true;
                        break;
                    }
                    // The newest hint wins (its actor made the latest change); operations and
                    // rename ends accumulate.
                    let merged = match held.remove(&object) {
                        Some(older) => hint.merged_over(older),
                        None => hint,
                    };
                    held.insert(object, merged);
                }
                *needs_rescan = true;
            }
            Err(join) => {
                tracing::error!("reconcile task failed: {join}");
                *needs_rescan = true;
            }
        }
    }
}

pub(super) fn spawn_printer(mut records: tokio::sync::broadcast::Receiver<Announcement>) {
    tokio::spawn(async move {
        use std::io::Write as _;
        loop {
            match records.recv().await {
                Ok(Announcement::Gap(_)) => {}
                Ok(Announcement::Record(record)) => {
                    let Ok(line) = serde_json::to_string(&*record) else {
                        continue;
                    };
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{line}");
                    let _ = stdout.flush();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        "stdout printer fell behind; {missed} records are only in the journal"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}
