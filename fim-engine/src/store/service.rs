//! The baseline of Windows services: one row per service, keyed by its folded key name, the
//! [`ServiceSnapshot`] as JSON. Written in the same [`Batch`] as the records.
use rusqlite::params;

use super::{Batch, Result, Store};
use crate::service::{fold, ServiceSnapshot};

/// A service's baseline row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceBaseline {
    pub entity: String,
    pub snapshot: ServiceSnapshot,
}

impl Batch<'_> {
    /// Inserts or replaces the baseline of `snapshot.name`.
    pub fn put_service(&mut self, entity: &str, snapshot: &ServiceSnapshot) -> Result<()> {
        let entity_id = self.entity_id_or_insert(entity)?;
        let json = serde_json::to_string(snapshot).map_err(|error| {
            self.store
                .corrupt("a service's baseline", error.to_string())
        })?;
        self.tx
            .prepare_cached(
                "INSERT INTO service_baseline (name, entity_id, snapshot) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET entity_id = excluded.entity_id, \
                 snapshot = excluded.snapshot",
            )
            .and_then(|mut statement| {
                statement.execute(params![fold(&snapshot.name), entity_id, json])
            })
            .map_err(self.store.fail("writing a service's baseline"))?;
        self.puts += 1;
        Ok(())
    }

    /// Removes the baseline of the service `name`; says whether it had one.
    pub fn delete_service(&mut self, name: &str) -> Result<bool> {
        let removed = self
            .tx
            .prepare_cached("DELETE FROM service_baseline WHERE name = ?1")
            .and_then(|mut statement| statement.execute([fold(name)]))
            .map_err(self.store.fail("deleting a service's baseline"))?;
        self.deletes += removed as u64;
        Ok(removed > 0)
    }
}

impl Store {
    /// Every service baseline, in name order.
    pub fn service_baselines(&self) -> Result<Vec<ServiceBaseline>> {
        let rows: Vec<(String, String, String)> = self
            .conn
            .prepare_cached(
                "SELECT s.name, e.name, s.snapshot FROM service_baseline s \
                 JOIN entity e ON e.id = s.entity_id ORDER BY s.name",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect()
            })
            .map_err(self.fail("reading service baselines"))?;
        rows.into_iter()
            .map(|(name, entity, json)| {
                let snapshot = serde_json::from_str(&json).map_err(|error| {
                    self.corrupt("a service's baseline", format!("{name}: {error}"))
                })?;
                Ok(ServiceBaseline { entity, snapshot })
            })
            .collect()
    }
}
