//! [`DriftStore`] on SQLite.
use rusqlite::params;

use super::SqliteStore;
use crate::{
    error::CollectorError,
    store::drift::{DriftStore, EntityReport},
};

impl DriftStore for SqliteStore {
    fn report_entities(
        &self,
        computer_id: &str,
        entities: &[EntityReport],
    ) -> Result<(), CollectorError> {
        let mut conn = self.lock();
        let fail = self.fail("recording entity digests");
        let tx = conn.transaction().map_err(&fail)?;
        tx.execute(
            "DELETE FROM machine_entity WHERE computer_id = ?1",
            params![computer_id],
        )
        .map_err(&fail)?;
        for report in entities {
            tx.execute(
                "INSERT INTO machine_entity (computer_id, entity, objects, digest, reported_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![
                    computer_id,
                    report.entity,
                    i64::try_from(report.objects).unwrap_or(i64::MAX),
                    report.digest.to_vec(),
                    report.reported_ns
                ],
            )
            .map_err(&fail)?;
        }
        tx.commit().map_err(&fail)
    }

    fn entity_reports(&self) -> Result<Vec<(String, EntityReport)>, CollectorError> {
        let conn = self.lock();
        let fail = self.fail("listing entity digests");
        let mut statement = conn
            .prepare(
                "SELECT computer_id, entity, objects, digest, reported_ns FROM machine_entity \
                 ORDER BY computer_id, entity",
            )
            .map_err(&fail)?;
        let rows = statement
            .query_map([], |row| {
                let digest: Vec<u8> = row.get(3)?;
                Ok((
                    row.get::<_, String>(0)?,
                    EntityReport {
                        entity: row.get(1)?,
                        objects: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        digest: digest.as_slice().try_into().unwrap_or([0; 32]),
                        reported_ns: row.get(4)?,
                    },
                ))
            })
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        Ok(rows)
    }
}
