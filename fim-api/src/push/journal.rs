//! The agent's own journal, read for the push through a read-only connection of its own, so
//! the push never takes the daemon's lock and never blocks journaling (SQLite's WAL lets a
//! reader run beside the writer). Each session opens it afresh: fimd may have restored or
//! replaced the file since.
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fim_engine::{
    state::Digest,
    store::{EntityDigest, JournalRow, Store},
};

use super::PushError;

/// Where the journal stands, for the Hello.
#[derive(Clone, Debug)]
pub struct JournalHead {
    pub journal_id: String,
    pub sequence: u64,
    pub hash: Digest,
    pub strategy: String,
    /// The last record retention pruned, and its hash (0 and genesis when none was).
    pub base: (u64, Digest),
}

/// How long entity digests are reused: computing them reads the whole baseline, and a
/// heartbeat goes out at every session (at least once a minute).
const DIGESTS_FOR: Duration = Duration::from_secs(300);

type DigestCache = Arc<Mutex<Option<(Instant, Vec<EntityDigest>)>>>;

#[derive(Clone)]
pub struct JournalReader {
    database: Arc<PathBuf>,
    digests: DigestCache,
}

impl JournalReader {
    pub fn new(database: PathBuf) -> Self {
        JournalReader {
            database: Arc::new(database),
            digests: Arc::default(),
        }
    }

    /// Each entity's baseline digest, computed at most every [`DIGESTS_FOR`].
    pub async fn entity_digests(&self) -> Result<Vec<EntityDigest>, PushError> {
        let cached = self
            .digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some((at, digests)) = cached {
            if at.elapsed() < DIGESTS_FOR {
                return Ok(digests);
            }
        }
        let digests = self.with_store(|store| store.entity_digests()).await?;
        *self
            .digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((Instant::now(), digests.clone()));
        Ok(digests)
    }

    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> fim_engine::store::Result<T> + Send + 'static,
    ) -> Result<T, PushError> {
        let database = Arc::clone(&self.database);
        tokio::task::spawn_blocking(move || {
            let store = Store::open_read_only(database.as_path())?;
            work(&store)
        })
        .await
        .map_err(|error| PushError::Journal(error.to_string()))?
        .map_err(|error| PushError::Journal(error.to_string()))
    }

    pub async fn head(&self) -> Result<JournalHead, PushError> {
        self.with_store(|store| {
            let (sequence, hash) = store.head()?;
            let journal_id = store.journal_id()?.unwrap_or_default();
            let strategy = store.get_meta("daemon/strategy")?.unwrap_or_default();
            let base = store.chain_base()?;
            Ok(JournalHead {
                journal_id,
                sequence,
                hash,
                strategy,
                base,
            })
        })
        .await
    }

    pub async fn rows_after(
        &self,
        sequence: u64,
        limit: usize,
    ) -> Result<Vec<JournalRow>, PushError> {
        self.with_store(move |store| store.journal_rows_after(sequence, limit))
            .await
    }
}
