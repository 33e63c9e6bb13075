//! The agent's own journal, read for the push through a read-only connection of its own, so
//! the push never takes the daemon's lock and never blocks journaling (SQLite's WAL lets a
//! reader run beside the writer). Each session opens it afresh: fimd may have restored or
//! replaced the file since.
use std::{path::PathBuf, sync::Arc};

use fim_engine::{
    state::Digest,
    store::{JournalRow, Store},
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

#[derive(Clone)]
pub struct JournalReader {
    database: Arc<PathBuf>,
}

impl JournalReader {
    pub fn new(database: PathBuf) -> Self {
        JournalReader {
            database: Arc::new(database),
        }
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
