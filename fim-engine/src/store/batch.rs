//! All writes: baseline rows and journal records, committed together or not at all.
//!
//! A reconcile step changes the baseline and journals what changed; if only one half reached
//! the disk, a restart would either report the change twice or never. A [`Batch`] is one
//! SQLite transaction (BEGIN IMMEDIATE, so it takes the write lock up front and never fails
//! half-way on a lock upgrade), and dropping it without [`Batch::commit`] rolls everything
//! back. Scans put thousands of rows per batch, so every statement is prepared once and
//! cached on the connection.
use std::{collections::HashMap, path::Path, sync::LazyLock};

use rusqlite::{params, Transaction, TransactionBehavior};

use super::{
    baseline::{file_type_code, STATE_COLUMNS},
    journal::{chain_hash, IndexedColumns},
    Result, Store, StoreError,
};
use crate::{change::ChangeRecord, path_text::path_bytes, state::Digest, state::FileState};

/// `INSERT ... ON CONFLICT DO UPDATE` of a whole baseline row (also valid PostgreSQL).
static PUT_SQL: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = STATE_COLUMNS.split(',').map(str::trim).collect();
    let placeholders: Vec<String> = (3..=columns.len() + 2).map(|n| format!("?{n}")).collect();
    let updates: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    format!(
        "INSERT INTO baseline (path, entity_id, {}) VALUES (?1, ?2, {}) \
         ON CONFLICT (path) DO UPDATE SET entity_id = excluded.entity_id, {}",
        columns.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )
});

const INSERT_RECORD_SQL: &str = "INSERT INTO journal (sequence, time_ns, computer, \
     computer_id, change_type, category, entity, path, record, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// One write transaction. See the module docs.
pub struct Batch<'s> {
    pub(super) store: &'s Store,
    pub(super) tx: Transaction<'s>,
    /// The chain head as of the last append in this batch.
    head_sequence: u64,
    head_hash: Digest,
    appended: u64,
    pub(super) puts: u64,
    pub(super) deletes: u64,
    /// Entity ids resolved or created inside this transaction; they reach the store's cache
    /// only when the batch commits.
    entity_ids: HashMap<String, i64>,
}

impl Store {
    /// Starts a write transaction, waiting up to the busy timeout for another writer. One
    /// batch at a time per store: a second one fails while the first is open. Reads on this
    /// store during a batch see the batch's own writes.
    pub fn batch(&self) -> Result<Batch<'_>> {
        self.writable()?;
        let fail = self.fail("starting a write transaction");
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(&fail)?;
        let (sequence, hash) = tx
            .prepare_cached("SELECT sequence, hash FROM chain_head WHERE id = 1")
            .and_then(|mut statement| {
                statement.query_row([], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
            })
            .map_err(self.fail("reading the chain head"))?;
        let head_sequence = u64::try_from(sequence)
            .map_err(|_| self.corrupt("chain head", format!("sequence {sequence}")))?;
        let head_hash = Digest::try_from(hash.as_slice())
            .map_err(|_| self.corrupt("chain head", format!("a hash of {} bytes", hash.len())))?;
        Ok(Batch {
            store: self,
            tx,
            head_sequence,
            head_hash,
            appended: 0,
            puts: 0,
            deletes: 0,
            entity_ids: HashMap::new(),
        })
    }
}

impl Batch<'_> {
    /// Sets a meta value in this batch's transaction (with the records it describes).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut statement| statement.execute([key, value]))
            .map_err(self.store.fail("writing a meta value"))?;
        Ok(())
    }

    /// Inserts or replaces the baseline row of `path`.
    pub fn put(&mut self, path: &Path, entity: &str, state: &FileState) -> Result<()> {
        let entity_id = self.entity_id_or_insert(entity)?;
        let store = self.store;
        let fail = store.fail("writing the baseline");
        let mut statement = self.tx.prepare_cached(&PUT_SQL).map_err(&fail)?;
        statement
            .execute(params![
                path_bytes(path),
                entity_id,
                file_type_code(state.file_type),
                state.size as i64,
                state.mtime_ns,
                state.ctime_ns,
                state.ino as i64,
                state.dev as i64,
                state.mode,
                state.uid,
                state.gid,
                state.nlink as i64,
                state.attributes,
                state.unstable,
                state.content_truncated,
                state.hash.as_ref().map(|hash| hash.as_slice()),
                state.symlink_target,
                state.acl,
                state.selinux,
                state.capability,
                state.error,
                state.content,
            ])
            .map_err(&fail)?;
        self.puts += 1;
        Ok(())
    }

    /// Removes the baseline row of `path`; false when there was none.
    pub fn delete(&mut self, path: &Path) -> Result<bool> {
        let fail = self.store.fail("deleting from the baseline");
        let removed = self
            .tx
            .prepare_cached("DELETE FROM baseline WHERE path = ?1")
            .and_then(|mut statement| statement.execute([path_bytes(path)]))
            .map_err(&fail)?;
        self.deletes += removed as u64;
        Ok(removed > 0)
    }

    /// Removes every baseline row of `entity`; returns how many.
    pub fn delete_entity(&mut self, entity: &str) -> Result<u64> {
        let id = match self.entity_ids.get(entity) {
            Some(&id) => Some(id),
            None => self.store.entity_id(entity)?,
        };
        let Some(id) = id else {
            return Ok(0);
        };
        let mut removed = 0;
        for table in ["baseline", "registry_baseline", "service_baseline"] {
            removed += self
                .tx
                .prepare_cached(&format!("DELETE FROM {table} WHERE entity_id = ?1"))
                .and_then(|mut statement| statement.execute([id]))
                .map_err(self.store.fail("deleting an entity from the baseline"))?;
        }
        self.deletes += removed as u64;
        tracing::info!(
            entity,
            rows = removed,
            "removed the entity from the baseline"
        );
        Ok(removed as u64)
    }

    /// Journals `record`: assigns the next sequence number (written into the record), stores
    /// its JSON with `hash = BLAKE3(prev_hash || json)`, and returns the sequence. The number
    /// is only real once [`Batch::commit`] succeeds; on error the record keeps its old one.
    pub fn append(&mut self, record: &mut ChangeRecord) -> Result<u64> {
        let sequence = self.head_sequence + 1;
        let previous = std::mem::replace(&mut record.sequence, sequence);
        match self.insert_record(record, sequence) {
            Ok(hash) => {
                self.head_sequence = sequence;
                self.head_hash = hash;
                self.appended += 1;
                Ok(sequence)
            }
            Err(error) => {
                record.sequence = previous;
                Err(error)
            }
        }
    }

    /// The sequence the last record of this batch got (or the committed head before any).
    pub fn last_sequence(&self) -> u64 {
        self.head_sequence
    }

    /// Writes the chain head and commits. On error (a full disk at commit time included)
    /// nothing of the batch is kept.
    pub fn commit(self) -> Result<()> {
        let store = self.store;
        if self.appended > 0 {
            self.tx
                .prepare_cached("UPDATE chain_head SET sequence = ?1, hash = ?2 WHERE id = 1")
                .and_then(|mut statement| {
                    statement.execute(params![
                        self.head_sequence as i64,
                        self.head_hash.as_slice()
                    ])
                })
                .map_err(store.fail("writing the chain head"))?;
        }
        self.tx.commit().map_err(store.fail("committing"))?;
        store.remember_entity_ids(self.entity_ids);
        tracing::debug!(
            puts = self.puts,
            deletes = self.deletes,
            records = self.appended,
            head = self.head_sequence,
            "committed a batch"
        );
        Ok(())
    }

    fn insert_record(&mut self, record: &ChangeRecord, sequence: u64) -> Result<Digest> {
        let store = self.store;
        let bad = |reason: String| StoreError::BadRecord {
            path: store.path.clone(),
            reason: format!("record {sequence}: {reason}"),
        };
        let columns = IndexedColumns::of_record(record);
        let json = serde_json::to_string(record).map_err(|error| bad(error.to_string()))?;
        let hash = chain_hash(&self.head_hash, json.as_bytes());
        self.tx
            .prepare_cached(INSERT_RECORD_SQL)
            .and_then(|mut statement| {
                statement.execute(params![
                    sequence as i64,
                    columns.time_ns,
                    columns.computer,
                    columns.computer_id,
                    columns.change_type,
                    columns.category,
                    columns.entity,
                    columns.path,
                    json,
                    self.head_hash.as_slice(),
                    hash.as_slice(),
                ])
            })
            .map_err(store.fail("appending to the journal"))?;
        Ok(hash)
    }

    pub(super) fn entity_id_or_insert(&mut self, entity: &str) -> Result<i64> {
        if let Some(&id) = self.entity_ids.get(entity) {
            return Ok(id);
        }
        let id = match self.store.entity_id(entity)? {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO entity (name) VALUES (?1)")
                    .and_then(|mut statement| statement.execute([entity]))
                    .map_err(self.store.fail("adding an entity name"))?;
                self.tx.last_insert_rowid()
            }
        };
        self.entity_ids.insert(entity.to_string(), id);
        Ok(id)
    }
}
