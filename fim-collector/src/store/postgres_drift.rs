//! [`DriftStore`] on PostgreSQL.
use super::PostgresStore;
use crate::{
    error::CollectorError,
    store::drift::{DriftStore, EntityReport},
};

impl DriftStore for PostgresStore {
    fn report_entities(
        &self,
        computer_id: &str,
        entities: &[EntityReport],
    ) -> Result<(), CollectorError> {
        self.pool.run("recording entity digests", |client| {
            let mut tx = client.transaction()?;
            tx.execute(
                "DELETE FROM machine_entity WHERE computer_id = $1",
                &[&computer_id],
            )?;
            for report in entities {
                tx.execute(
                    "INSERT INTO machine_entity \
                     (computer_id, entity, objects, digest, reported_ns) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[
                        &computer_id,
                        &report.entity,
                        &i64::try_from(report.objects).unwrap_or(i64::MAX),
                        &report.digest.as_slice(),
                        &report.reported_ns,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn entity_reports(&self) -> Result<Vec<(String, EntityReport)>, CollectorError> {
        self.pool.run("listing entity digests", |client| {
            let rows = client.query(
                "SELECT computer_id, entity, objects, digest, reported_ns FROM machine_entity \
                 ORDER BY computer_id, entity",
                &[],
            )?;
            let mut reports = Vec::with_capacity(rows.len());
            for row in rows {
                let digest: Vec<u8> = row.try_get(3)?;
                reports.push((
                    row.try_get::<_, String>(0)?,
                    EntityReport {
                        entity: row.try_get(1)?,
                        objects: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
                        digest: digest.as_slice().try_into().unwrap_or([0; 32]),
                        reported_ns: row.try_get(4)?,
                    },
                ));
            }
            Ok(reports)
        })
    }
}
