//! The baseline of registry keys: one row per key and view, its [`KeySnapshot`] as JSON.
//!
//! Keys are looked up by their folded name (Windows compares key names without case), and a
//! key's subtree is a range of the primary key (`key\` up to `key]`, since `]` follows `\` in
//! byte order), so a deleted key's whole subtree is found with one query. Writes go through
//! the same [`Batch`] as file rows and journal records, so a key's new baseline and the
//! records that describe the change commit together.
use rusqlite::{params, OptionalExtension};

use super::{Batch, Result, Store};
use crate::registry::{fold, KeySnapshot, RegistryView};

/// A key's baseline row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBaseline {
    /// The key as the registry spelled it when it was last read.
    pub key: String,
    pub entity: String,
    pub snapshot: KeySnapshot,
}

impl Batch<'_> {
    /// Inserts or replaces the baseline of `key` in `view`.
    pub fn put_key(
        &mut self,
        key: &str,
        view: RegistryView,
        entity: &str,
        snapshot: &KeySnapshot,
    ) -> Result<()> {
        let entity_id = self.entity_id_or_insert(entity)?;
        let json = serde_json::to_string(snapshot).map_err(|error| {
            self.store
                .corrupt("a registry key's baseline", error.to_string())
        })?;
        self.tx
            .prepare_cached(
                "INSERT INTO registry_baseline (key, view, name, entity_id, snapshot) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key, view) DO UPDATE SET \
                 name = excluded.name, entity_id = excluded.entity_id, \
                 snapshot = excluded.snapshot",
            )
            .and_then(|mut statement| {
                statement.execute(params![fold(key), view.code(), key, entity_id, json])
            })
            .map_err(self.store.fail("writing a registry key's baseline"))?;
        self.puts += 1;
        Ok(())
    }

    /// Removes the baseline of `key` in `view` (not its subkeys'); says whether it had one.
    pub fn delete_key(&mut self, key: &str, view: RegistryView) -> Result<bool> {
        let removed = self
            .tx
            .prepare_cached("DELETE FROM registry_baseline WHERE key = ?1 AND view = ?2")
            .and_then(|mut statement| statement.execute(params![fold(key), view.code()]))
            .map_err(self.store.fail("deleting a registry key's baseline"))?;
        self.deletes += removed as u64;
        Ok(removed > 0)
    }
}

impl Store {
    /// The baseline of `key` in `view`.
    pub fn key_baseline(&self, key: &str, view: RegistryView) -> Result<Option<KeyBaseline>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT r.name, e.name, r.snapshot FROM registry_baseline r \
                 JOIN entity e ON e.id = r.entity_id WHERE r.key = ?1 AND r.view = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![fold(key), view.code()], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get::<_, String>(2)?))
                    })
                    .optional()
            })
            .map_err(self.fail("reading a registry key's baseline"))?;
        row.map(|row| self.key_row(row)).transpose()
    }

    /// The baselines of every key strictly below `key` in `view`, in name order.
    pub fn keys_under(&self, key: &str, view: RegistryView) -> Result<Vec<KeyBaseline>> {
        let folded = fold(key.trim_end_matches('\\'));
        let rows: Vec<(String, String, String)> = self
            .conn
            .prepare_cached(
                "SELECT r.name, e.name, r.snapshot FROM registry_baseline r \
                 JOIN entity e ON e.id = r.entity_id \
                 WHERE r.view = ?1 AND r.key > ?2 AND r.key < ?3 ORDER BY r.key",
            )
            .and_then(|mut statement| {
                statement
                    .query_map(
                        params![view.code(), format!("{folded}\\"), format!("{folded}]")],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )?
                    .collect()
            })
            .map_err(self.fail("reading registry key baselines"))?;
        rows.into_iter().map(|row| self.key_row(row)).collect()
    }

    /// How many registry keys `entity` has in the baseline.
    pub fn key_count(&self, entity: &str) -> Result<u64> {
        let count: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM registry_baseline r JOIN entity e ON e.id = r.entity_id \
                 WHERE e.name = ?1",
            )
            .and_then(|mut statement| statement.query_row([entity], |row| row.get(0)))
            .map_err(self.fail("counting registry keys"))?;
        Ok(count.max(0) as u64)
    }

    fn key_row(&self, (key, entity, json): (String, String, String)) -> Result<KeyBaseline> {
        let snapshot = serde_json::from_str(&json).map_err(|error| {
            self.corrupt("a registry key's baseline", format!("{key}: {error}"))
        })?;
        Ok(KeyBaseline {
            key,
            entity,
            snapshot,
        })
    }
}
