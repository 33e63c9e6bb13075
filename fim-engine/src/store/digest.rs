//! A digest of each entity's baseline, for the workspace's drift view: two machines whose
//! monitored trees hold the same objects with the same content, type, owner and permissions
//! report the same digest for that entity, whatever their inode numbers, devices or times.
//!
//! What goes in: for files, each path (in byte order) with its type, mode, owner, group,
//! content hash, link target and read error; for registry keys, the key and view with its
//! values, subkeys and security descriptor (not its last-write time, which differs per
//! machine); for services, the snapshot as stored. Every field is length-prefixed, so no two
//! different baselines encode alike.
use rusqlite::params;

use super::{Result, Store};
use crate::state::Digest;

/// One entity's baseline, summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityDigest {
    pub entity: String,
    /// Objects (paths, keys, services) in its baseline.
    pub objects: u64,
    pub digest: Digest,
}

/// Feeds one length-prefixed field.
fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn number(hasher: &mut blake3::Hasher, value: i64) {
    field(hasher, &value.to_le_bytes());
}

/// A registry snapshot without its last-write time (left as stored if it does not parse).
fn registry_part(snapshot: &str) -> Vec<u8> {
    match serde_json::from_str::<crate::registry::KeySnapshot>(snapshot) {
        Ok(mut parsed) => {
            parsed.last_write = 0;
            serde_json::to_vec(&parsed).unwrap_or_else(|_| snapshot.as_bytes().to_vec())
        }
        Err(_) => snapshot.as_bytes().to_vec(),
    }
}

impl Store {
    /// Every entity with a baseline, by name.
    pub fn entity_digests(&self) -> Result<Vec<EntityDigest>> {
        let fail = self.fail("summarising the baseline");
        let mut entities = self
            .conn
            .prepare("SELECT id, name FROM entity ORDER BY name")
            .map_err(&fail)?;
        let names = entities
            .query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        let mut digests = Vec::new();
        for (id, entity) in names {
            let mut hasher = blake3::Hasher::new();
            let objects = self.digest_files(id, &mut hasher)?
                + self.digest_registry(id, &mut hasher)?
                + self.digest_services(id, &mut hasher)?;
            if objects > 0 {
                digests.push(EntityDigest {
                    entity,
                    objects,
                    digest: *hasher.finalize().as_bytes(),
                });
            }
        }
        Ok(digests)
    }

    fn digest_files(&self, entity: i64, hasher: &mut blake3::Hasher) -> Result<u64> {
        let fail = self.fail("summarising the file baseline");
        let mut statement = self
            .conn
            .prepare(
                "SELECT path, file_type, mode, uid, gid, hash, symlink_target, error \
                 FROM baseline WHERE entity_id = ?1 ORDER BY path",
            )
            .map_err(&fail)?;
        let mut rows = statement.query(params![entity]).map_err(&fail)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(&fail)? {
            let blob = |index| row.get::<_, Option<Vec<u8>>>(index);
            field(hasher, b"file");
            field(hasher, &blob(0).map_err(&fail)?.unwrap_or_default());
            for index in 1..=4 {
                number(hasher, row.get::<_, i64>(index).map_err(&fail)?);
            }
            field(hasher, &blob(5).map_err(&fail)?.unwrap_or_default());
            field(hasher, &blob(6).map_err(&fail)?.unwrap_or_default());
            let error: Option<String> = row.get(7).map_err(&fail)?;
            field(hasher, error.unwrap_or_default().as_bytes());
            count += 1;
        }
        Ok(count)
    }

    fn digest_registry(&self, entity: i64, hasher: &mut blake3::Hasher) -> Result<u64> {
        let fail = self.fail("summarising the registry baseline");
        let mut statement = self
            .conn
            .prepare(
                "SELECT key, view, snapshot FROM registry_baseline WHERE entity_id = ?1 \
                 ORDER BY key, view",
            )
            .map_err(&fail)?;
        let mut rows = statement.query(params![entity]).map_err(&fail)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(&fail)? {
            field(hasher, b"key");
            field(hasher, row.get::<_, String>(0).map_err(&fail)?.as_bytes());
            number(hasher, row.get::<_, i64>(1).map_err(&fail)?);
            field(
                hasher,
                &registry_part(&row.get::<_, String>(2).map_err(&fail)?),
            );
            count += 1;
        }
        Ok(count)
    }

    fn digest_services(&self, entity: i64, hasher: &mut blake3::Hasher) -> Result<u64> {
        let fail = self.fail("summarising the service baseline");
        let mut statement = self
            .conn
            .prepare(
                "SELECT name, snapshot FROM service_baseline WHERE entity_id = ?1 ORDER BY name",
            )
            .map_err(&fail)?;
        let mut rows = statement.query(params![entity]).map_err(&fail)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(&fail)? {
            field(hasher, b"service");
            field(hasher, row.get::<_, String>(0).map_err(&fail)?.as_bytes());
            field(hasher, row.get::<_, String>(1).map_err(&fail)?.as_bytes());
            count += 1;
        }
        Ok(count)
    }
}
