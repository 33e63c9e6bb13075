//! The drift half of the storage contract ([`DriftStore`]): each computer's latest entity
//! digests (from its heartbeat, the Hello), replaced whole on every report, and the grouping
//! of computers whose monitored trees differ ([`groups`]), done once here for every backend.
use std::collections::BTreeMap;

use crate::error::CollectorError;
use fim_engine::state::Digest;

/// One entity's baseline digest as a computer reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityReport {
    pub entity: String,
    pub objects: u64,
    pub digest: Digest,
    pub reported_ns: i64,
}

/// The most entities one heartbeat may carry (a policy has tens).
pub const MAX_ENTITIES: usize = 1024;

/// The longest entity name accepted.
pub const MAX_ENTITY_NAME_BYTES: usize = 256;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS machine_entity (
    computer_id TEXT    NOT NULL,
    entity      TEXT    NOT NULL,
    objects     BIGINT  NOT NULL,
    digest      {BLOB}  NOT NULL,
    reported_ns BIGINT  NOT NULL,
    PRIMARY KEY (computer_id, entity)
);
"#;

/// The table for SQLite (`sqlite`) or PostgreSQL.
pub(super) fn tables(sqlite: bool) -> String {
    TABLES.replace("{BLOB}", if sqlite { "BLOB" } else { "BYTEA" })
}

pub trait DriftStore {
    /// Replaces what the workspace holds of `computer_id`'s entities with `entities`.
    fn report_entities(
        &self,
        computer_id: &str,
        entities: &[EntityReport],
    ) -> Result<(), CollectorError>;

    /// Every computer's entities, by computer id then entity.
    fn entity_reports(&self) -> Result<Vec<(String, EntityReport)>, CollectorError>;
}

/// One variant of an entity's tree: the computers that hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub digest: Digest,
    pub objects: u64,
    pub computers: Vec<String>,
}

/// For each entity, its variants, the most common first (ties by digest); an entity whose
/// machines all agree has one. A computer that reports no such entity is listed under
/// `missing`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityDrift {
    pub entity: String,
    pub variants: Vec<Variant>,
    pub missing: Vec<String>,
}

pub fn groups(reports: &[(String, EntityReport)]) -> Vec<EntityDrift> {
    let computers: std::collections::BTreeSet<&str> = reports
        .iter()
        .map(|(computer, _)| computer.as_str())
        .collect();
    let mut by_entity: BTreeMap<&str, BTreeMap<(Digest, u64), Vec<String>>> = BTreeMap::new();
    for (computer, report) in reports {
        by_entity
            .entry(report.entity.as_str())
            .or_default()
            .entry((report.digest, report.objects))
            .or_default()
            .push(computer.clone());
    }
    by_entity
        .into_iter()
        .map(|(entity, variants)| {
            let mut variants: Vec<Variant> = variants
                .into_iter()
                .map(|((digest, objects), computers)| Variant {
                    digest,
                    objects,
                    computers,
                })
                .collect();
            variants.sort_by(|a, b| {
                b.computers
                    .len()
                    .cmp(&a.computers.len())
                    .then(a.digest.cmp(&b.digest))
            });
            let holding: std::collections::BTreeSet<&str> = variants
                .iter()
                .flat_map(|variant| variant.computers.iter().map(String::as_str))
                .collect();
            let missing = computers
                .difference(&holding)
                .map(|computer| computer.to_string())
                .collect();
            EntityDrift {
                entity: entity.to_string(),
                variants,
                missing,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(entity: &str, digest: u8) -> EntityReport {
        EntityReport {
            entity: entity.into(),
            objects: 3,
            digest: [digest; 32],
            reported_ns: 1,
        }
    }

    #[test]
    fn machines_are_grouped_by_what_their_trees_hold() {
        let reports = vec![
            ("a".to_string(), report("etc", 1)),
            ("b".to_string(), report("etc", 1)),
            ("c".to_string(), report("etc", 2)),
            ("a".to_string(), report("cron", 7)),
            ("c".to_string(), report("cron", 7)),
        ];
        let drift = groups(&reports);
        assert_eq!(drift.len(), 2);
        assert_eq!(drift[0].entity, "cron");
        assert_eq!(drift[0].variants.len(), 1, "a and c agree on cron");
        assert_eq!(drift[0].missing, ["b"]);
        assert_eq!(drift[1].entity, "etc");
        assert_eq!(
            drift[1].variants[0].computers,
            ["a", "b"],
            "the majority first"
        );
        assert_eq!(drift[1].variants[1].computers, ["c"]);
        assert!(drift[1].missing.is_empty());
    }
}
