//! The database file's life while fimd owns it: lost at start, deleted or replaced while
//! running, and the chain head written outside it.
//!
//! A FIM that can be blinded by `rm /var/lib/fim/fim.db` and keeps saying all is well is
//! worse than none. So:
//! - A marker next to the database ([`MARKER`]) names the database this state directory
//!   holds and the last chain head fimd wrote out. At start, a missing or zero-length
//!   database (or another database in its place) where the marker says there was one is not a
//!   silent fresh start: the new journal opens with a `HistoryLost` record naming what was
//!   lost, and fimd says so at error level.
//! - While fimd runs, the path is checked every tick. When the file was deleted or replaced,
//!   fimd still holds the original open: it copies it (`VACUUM INTO`) back into place, moves
//!   an impostor aside, and journals `DatabaseRestored`. Nothing is lost, and recording never
//!   goes into a deleted file. Only if that copy fails does a new database start, with a
//!   `HistoryLost` record.
//! - Every [`ANCHOR_EVERY`], at start and at a clean stop, the chain head (sequence:hash) goes
//!   to the system log and the marker, so whoever keeps the log can run
//!   `fim verify --expect SEQ:HASH` and catch a chain rewritten end to end.
use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    change::{hex, ChangeRecord, MonitorColumns, MonitorEvent, Timestamp},
    identity::Computer,
    path_text::display_path,
    reconcile::{lock, Reconciler},
    store::Store,
};

use super::DaemonError;

/// Next to the database: which database this is and the last chain head written out.
pub const MARKER: &str = "fim.db.marker";
/// How often the chain head goes to the system log.
pub const ANCHOR_EVERY: Duration = Duration::from_secs(600);
/// Where syslog(3) writes; the daemon writes the same datagram itself.
pub const SYSLOG_SOCKET: &str = "/dev/log";
const DATABASE_ID: &str = crate::store::JOURNAL_ID_META;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Marker {
    database_id: String,
    head_sequence: u64,
    head_hash: String,
}

/// What went missing, for the `HistoryLost` record.
pub(super) struct Lost {
    detail: String,
}

/// The open database's identity on disk, to notice it being deleted or replaced.
pub(super) struct DatabaseWatch {
    path: PathBuf,
    marker: PathBuf,
    file: (u64, u64),
    syslog: PathBuf,
    last_anchor: Option<Instant>,
}

/// Opens (or creates) the database, and says what was lost when a database this state
/// directory held is gone.
pub(super) fn open(
    state_dir: &Path,
    path: &Path,
    syslog: &Path,
) -> Result<(Store, DatabaseWatch, Option<Lost>), DaemonError> {
    let marker_path = state_dir.join(MARKER);
    let marker: Option<Marker> = std::fs::read_to_string(&marker_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let size = std::fs::metadata(path).map(|meta| meta.len()).ok();
    let store = Store::open(path)?;
    if let Some(detail) = store.damage()? {
        return Err(DaemonError::Damaged {
            path: display_path(path),
            detail,
        });
    }
    let id = match store.get_meta(DATABASE_ID)? {
        Some(id) => id,
        None => {
            let id = new_id();
            store.set_meta(DATABASE_ID, &id)?;
            id
        }
    };
    let lost = marker
        .filter(|marker| marker.database_id != id)
        .map(|marker| {
            let what = match size {
                None => "was missing",
                Some(0) => "was empty (zero length)",
                Some(_) => "is another database than the one fimd wrote",
            };
            Lost {
                detail: format!(
                    "the database {} {what} at start; the one this state directory held (id {}) \
                 had journaled at least {} records (chain head {}:{}); this journal starts anew",
                    display_path(path),
                    marker.database_id,
                    marker.head_sequence,
                    marker.head_sequence,
                    marker.head_hash
                ),
            }
        });
    let watch = DatabaseWatch {
        path: path.to_path_buf(),
        marker: marker_path,
        file: identity(path).unwrap_or_default(),
        syslog: syslog.to_path_buf(),
        last_anchor: None,
    };
    watch.write_marker(&store, &id);
    Ok((store, watch, lost))
}

/// Journals that history was lost (at start, or when the running database could not be
/// restored), loudly.
pub(super) fn journal_lost(
    reconciler: &mut Reconciler,
    computer: &Computer,
    lost: Lost,
) -> Result<(), crate::reconcile::ReconcileError> {
    tracing::error!("HISTORY LOST: {}", lost.detail);
    let record = monitor_record(computer, MonitorEvent::HistoryLost, lost.detail);
    reconciler.journal_monitor(
        vec![record],
        ("database/history-lost", &Timestamp::now().to_rfc3339()),
    )?;
    Ok(())
}

impl DatabaseWatch {
    /// Once per tick: restores a deleted or replaced database, and writes the chain head out
    /// when it is due.
    pub(super) fn check(&mut self, reconciler: &Mutex<Reconciler>, computer: &Computer) {
        if identity(&self.path) != Some(self.file) {
            self.restore(reconciler, computer);
        }
        if self
            .last_anchor
            .is_none_or(|last| last.elapsed() >= ANCHOR_EVERY)
        {
            self.anchor(&lock(reconciler));
        }
    }

    /// Writes the chain head to the system log and the marker.
    pub(super) fn anchor(&mut self, reconciler: &Reconciler) {
        self.last_anchor = Some(Instant::now());
        let store = reconciler.store();
        let Ok((sequence, hash)) = store.head() else {
            return;
        };
        let line = format!("fim chain head {sequence}:{}", hex(&hash));
        tracing::info!(database = %display_path(&self.path), "{line}");
        send_syslog(&self.syslog, &line);
        if let Ok(Some(id)) = store.get_meta(DATABASE_ID) {
            self.write_marker(store, &id);
        }
    }

    fn restore(&mut self, reconciler: &Mutex<Reconciler>, computer: &Computer) {
        let mut reconciler = lock(reconciler);
        let what = if self.path.exists() {
            "replaced by another file"
        } else {
            "deleted"
        };
        tracing::error!(database = %display_path(&self.path), "the database was {what} while fimd ran; restoring it from the open copy");
        let copy = self.path.with_extension("db.restoring");
        let _ = std::fs::remove_file(&copy);
        let copied = reconciler.store().copy_to(&copy);
        if self.path.exists() {
            let aside = self
                .path
                .with_extension(format!("db.replaced-{}", std::process::id()));
            match std::fs::rename(&self.path, &aside) {
                Ok(()) => {
                    tracing::error!(impostor = %display_path(&aside), "the file put in the database's place was moved aside")
                }
                Err(error) => {
                    tracing::error!("cannot move the file in the database's place aside: {error}")
                }
            }
        }
        let restored = copied.and_then(|()| {
            // Closing the old connection removes its -wal and -shm files by name, before the
            // copy takes the name: they must not be replayed into the copy.
            reconciler.close_store();
            std::fs::rename(&copy, &self.path).map_err(|source| crate::store::StoreError::Io {
                path: self.path.clone(),
                action: "putting the restored database in place",
                source,
            })?;
            Store::open(&self.path)
        });
        let (store, event, detail) = match restored {
            Ok(store) => (
                store,
                MonitorEvent::DatabaseRestored,
                format!(
                    "the database {} was {what} while fimd ran; it was rebuilt from the copy \
                     fimd held open: nothing was lost",
                    display_path(&self.path)
                ),
            ),
            Err(error) => {
                tracing::error!("cannot restore the database: {error}; starting a new one");
                reconciler.close_store();
                let _ = std::fs::remove_file(&self.path);
                match Store::open(&self.path) {
                    Ok(store) => (
                        store,
                        MonitorEvent::HistoryLost,
                        format!(
                            "the database {} was {what} while fimd ran and could not be \
                             restored ({error}): the journal and baseline before this record \
                             are lost",
                            display_path(&self.path)
                        ),
                    ),
                    Err(error) => {
                        tracing::error!("cannot open a new database either: {error}");
                        return;
                    }
                }
            }
        };
        if event == MonitorEvent::HistoryLost {
            let _ = store.set_meta(DATABASE_ID, &new_id());
        }
        reconciler.replace_store(store);
        self.file = identity(&self.path).unwrap_or_default();
        let record = monitor_record(computer, event, detail.clone());
        match reconciler.journal_monitor(
            vec![record],
            ("database/restored", &Timestamp::now().to_rfc3339()),
        ) {
            Ok(_) => tracing::error!("{detail}"),
            Err(error) => tracing::error!("cannot journal the restoration: {error}"),
        }
        self.anchor(&reconciler);
    }

    fn write_marker(&self, store: &Store, id: &str) {
        let (head_sequence, hash) = store.head().unwrap_or_default();
        let marker = Marker {
            database_id: id.to_string(),
            head_sequence,
            head_hash: hex(&hash),
        };
        let Ok(text) = serde_json::to_string(&marker) else {
            return;
        };
        let temp = self.marker.with_extension("tmp");
        let written =
            std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, &self.marker));
        if let Err(error) = written {
            tracing::warn!(marker = %display_path(&self.marker), "cannot write the database marker: {error}");
        }
    }
}

/// Prunes the journal as the retention settings say (at start and then every minute). With
/// a workspace (`acknowledged`), only what it acknowledged goes, unless the hard cap forces
/// more; the marker record then says how many records the workspace never had.
pub(super) fn prune(
    reconciler: &mut Reconciler,
    settings: &crate::policy::Settings,
    computer: &Computer,
    acknowledged: Option<&crate::store::Acknowledged>,
) {
    const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;
    let retention = crate::store::Retention {
        max_age_ns: settings.journal_keep_days.map(|days| {
            i64::try_from(days)
                .unwrap_or(i64::MAX / NS_PER_DAY)
                .saturating_mul(NS_PER_DAY)
        }),
        max_records: settings.journal_keep_records,
        acknowledged: acknowledged.map(crate::store::Acknowledged::get),
        hard_cap_records: settings.journal_hard_cap_records,
    };
    if retention.max_age_ns.is_none()
        && retention.max_records.is_none()
        && retention.hard_cap_records.is_none()
    {
        return;
    }
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|now| now.as_nanos() as i64)
        .unwrap_or(0);
    let store = reconciler.store();
    let through = match store.prunable_through(retention, now_ns) {
        Ok(Some(through)) => through,
        Ok(None) => return,
        Err(error) => {
            tracing::error!("cannot apply the journal retention: {error}");
            return;
        }
    };
    let (base, _) = store.chain_base().unwrap_or_default();
    let mut detail = format!(
        "records {} to {through} were pruned by the retention settings \
         (journal_keep_days {:?}, journal_keep_records {:?}, journal_hard_cap_records {:?}); \
         the chain continues from record {through}'s hash",
        base + 1,
        settings.journal_keep_days,
        settings.journal_keep_records,
        settings.journal_hard_cap_records
    );
    let mut unshipped = false;
    if let Some(acked) = retention.acknowledged.filter(|&acked| acked < through) {
        unshipped = true;
        let first = acked.max(base) + 1;
        let known = acknowledged.is_some_and(crate::store::Acknowledged::known);
        detail.push_str(&if known {
            format!(
                "; records {first} to {through} ({} records) had not been acknowledged by the \
                 workspace and never reached it (the hard cap)",
                through - first + 1
            )
        } else {
            "; no collector has answered since fimd started, so the hard cap may have pruned \
             records the workspace never received: any such records show there as a gap"
                .to_string()
        });
    }
    let mut record = monitor_record(computer, MonitorEvent::JournalPruned, detail.clone());
    if let Some(monitor) = record.monitor.as_mut() {
        monitor.source = "retention".to_string();
    }
    match store.prune_through(through, &mut record) {
        Ok(()) => {
            if unshipped {
                tracing::error!("{detail}");
            } else {
                tracing::info!("{detail}");
            }
            reconciler.announce_record(record);
        }
        Err(error) => tracing::error!("cannot prune the journal: {error}"),
    }
}

fn monitor_record(computer: &Computer, event: MonitorEvent, detail: String) -> ChangeRecord {
    let columns = MonitorColumns {
        event,
        source: "database".to_string(),
        by: None,
        policy_file: None,
        previous: None,
        current: None,
        detail: Some(detail),
    };
    crate::change::monitor_record(columns, computer, String::new(), Vec::new(), None)
}

/// (device, inode) of the file at `path`, None when there is none.
fn identity(path: &Path) -> Option<(u64, u64)> {
    crate::platform::file_id(path).ok()
}

/// 128 random bits, hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if crate::platform::random_bytes(&mut bytes).is_err() {
        // No randomness: time and pid still tell two databases of one host apart.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(now.as_nanos() as u64).to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex(&bytes)
}

/// One RFC 3164 line to the system log socket (authpriv.notice), best effort: a host without
/// a syslog daemon still has the line in fimd's own log.
fn send_syslog(socket: &Path, line: &str) {
    const AUTHPRIV_NOTICE: u8 = 10 * 8 + 5;
    let message = format!("<{AUTHPRIV_NOTICE}>fimd[{}]: {line}", std::process::id());
    let sent = crate::platform::send_log_datagram(socket, message.as_bytes());
    if let Err(error) = sent {
        tracing::debug!(socket = %display_path(socket), "cannot write to the system log: {error}");
    }
}
