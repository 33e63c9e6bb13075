//! Reading the baseline: one row per monitored path, keyed by the raw path bytes.
//!
//! Sweeps need the quick metadata of every file of an entity at once ([`Store::quick_map`]:
//! one SELECT, no per-file lookups) to skip rehashing unchanged files; reconcile needs single
//! rows ([`Store::get`]); directory renames and removals need every path below a directory
//! ([`Store::paths_under`]), which is a range scan of the primary key because paths sort
//! bytewise. Writes go through [`crate::store::Batch`].
use std::path::{Path, PathBuf};

use rusqlite::{types::Type, OptionalExtension, Row};

use super::{Result, Store};
use crate::{
    path_text::{path_bytes, path_from_bytes},
    scan::KnownMap,
    state::QuickMeta,
    state::{Digest, FileState, FileType},
};

/// A baseline row: which entity the path belongs to, and its last known state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineEntry {
    pub entity: String,
    pub state: FileState,
}

/// The state columns in the order [`state_from_row`] reads them.
pub(crate) const STATE_COLUMNS: &str = "file_type, size, mtime_ns, ctime_ns, ino, dev, mode, \
     uid, gid, nlink, attributes, unstable, content_truncated, hash, symlink_target, acl, \
     selinux, capability, error, content";

/// Stable codes of the `file_type` column (documented in the schema).
pub(crate) fn file_type_code(file_type: FileType) -> i64 {
    match file_type {
        FileType::Unknown => 0,
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::Symlink => 3,
        FileType::Fifo => 4,
        FileType::Socket => 5,
        FileType::CharDevice => 6,
        FileType::BlockDevice => 7,
    }
}

fn file_type_from_code(code: i64) -> Option<FileType> {
    Some(match code {
        0 => FileType::Unknown,
        1 => FileType::Regular,
        2 => FileType::Directory,
        3 => FileType::Symlink,
        4 => FileType::Fifo,
        5 => FileType::Socket,
        6 => FileType::CharDevice,
        7 => FileType::BlockDevice,
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String);

fn invalid(index: usize, kind: Type, reason: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, kind, Box::new(Invalid(reason)))
}

fn file_type_at(row: &Row<'_>, index: usize) -> rusqlite::Result<FileType> {
    let code: i64 = row.get(index)?;
    file_type_from_code(code).ok_or_else(|| {
        invalid(
            index,
            Type::Integer,
            format!("unknown file type code {code}"),
        )
    })
}

/// Unsigned 64-bit values are stored bit-for-bit in SQLite's signed integers.
fn u64_at(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(index)? as u64)
}

fn digest_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Digest>> {
    let Some(bytes) = row.get::<_, Option<Vec<u8>>>(index)? else {
        return Ok(None);
    };
    Digest::try_from(bytes.as_slice()).map(Some).map_err(|_| {
        invalid(
            index,
            Type::Blob,
            format!("a hash of {} bytes", bytes.len()),
        )
    })
}

/// Decodes [`STATE_COLUMNS`] starting at column `first`.
pub(crate) fn state_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<FileState> {
    let at = |offset: usize| first + offset;
    Ok(FileState {
        file_type: file_type_at(row, at(0))?,
        size: u64_at(row, at(1))?,
        mtime_ns: row.get(at(2))?,
        ctime_ns: row.get(at(3))?,
        ino: u64_at(row, at(4))?,
        dev: u64_at(row, at(5))?,
        mode: row.get(at(6))?,
        uid: row.get(at(7))?,
        gid: row.get(at(8))?,
        nlink: u64_at(row, at(9))?,
        attributes: row.get(at(10))?,
        unstable: row.get(at(11))?,
        content_truncated: row.get(at(12))?,
        hash: digest_at(row, at(13))?,
        symlink_target: row.get(at(14))?,
        acl: row.get(at(15))?,
        selinux: row.get(at(16))?,
        capability: row.get(at(17))?,
        error: row.get(at(18))?,
        content: row.get(at(19))?,
    })
}

/// Path bytes without trailing slashes ("/" becomes empty: everything is below it).
fn directory_key(prefix: &Path) -> &[u8] {
    let mut bytes = path_bytes(prefix);
    while let Some(rest) = bytes.strip_suffix(b"/") {
        bytes = rest;
    }
    bytes
}

impl Store {
    /// The baseline row of `path`, if it has one.
    pub fn get(&self, path: &Path) -> Result<Option<BaselineEntry>> {
        let fail = self.fail("reading the baseline");
        let sql = format!(
            "SELECT entity.name, {STATE_COLUMNS} FROM baseline \
             JOIN entity ON entity.id = baseline.entity_id WHERE baseline.path = ?1"
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(&fail)?;
        statement
            .query_row([path_bytes(path)], |row| {
                Ok(BaselineEntry {
                    entity: row.get(0)?,
                    state: state_from_row(row, 1)?,
                })
            })
            .optional()
            .map_err(&fail)
    }

    /// The quick metadata of every baseline path of `entity`, in one query (for sweeps).
    /// Empty for an entity the baseline does not know.
    pub fn quick_map(&self, entity: &str) -> Result<KnownMap> {
        let fail = self.fail("loading the baseline");
        let Some(entity_id) = self.entity_id(entity)? else {
            return Ok(KnownMap::new());
        };
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT path, file_type, size, mtime_ns, ctime_ns, ino, dev FROM baseline \
                 WHERE entity_id = ?1",
            )
            .map_err(&fail)?;
        let mut rows = statement.query([entity_id]).map_err(&fail)?;
        let mut map = KnownMap::new();
        while let Some(row) = rows.next().map_err(&fail)? {
            let read = || -> rusqlite::Result<(&[u8], QuickMeta)> {
                let path = row.get_ref(0)?.as_blob()?;
                let meta = QuickMeta {
                    file_type: file_type_at(row, 1)?,
                    size: u64_at(row, 2)?,
                    mtime_ns: row.get(3)?,
                    ctime_ns: row.get(4)?,
                    ino: u64_at(row, 5)?,
                    dev: u64_at(row, 6)?,
                };
                Ok((path, meta))
            };
            let (path, meta) = read().map_err(&fail)?;
            map.insert_bytes(path, meta);
        }
        Ok(map)
    }

    /// `prefix` itself and every baseline path below it, sorted bytewise. Component-aware:
    /// `/etc/a` covers `/etc/a` and `/etc/a/x`, not `/etc/ab` or `/etc/a.conf`.
    pub fn paths_under(&self, prefix: &Path) -> Result<Vec<PathBuf>> {
        let fail = self.fail("listing baseline paths");
        let base = directory_key(prefix);
        // Everything below `base/` sorts in [base, base + '0'), '0' being the byte after '/';
        // that range also holds siblings like `base.conf`, which the component check drops.
        let mut upper = base.to_vec();
        upper.push(b'/' + 1);
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT path FROM baseline WHERE path >= ?1 AND path < ?2 ORDER BY path",
            )
            .map_err(&fail)?;
        let mut rows = statement.query((base, upper)).map_err(&fail)?;
        let mut paths = Vec::new();
        while let Some(row) = rows.next().map_err(&fail)? {
            let bytes = row
                .get_ref(0)
                .and_then(|value| Ok(value.as_blob()?))
                .map_err(&fail)?;
            let below = bytes.len() == base.len() || bytes.get(base.len()) == Some(&b'/');
            if below && !bytes.is_empty() {
                paths.push(path_from_bytes(bytes));
            }
        }
        Ok(paths)
    }

    /// The number of baseline rows.
    pub fn count(&self) -> Result<u64> {
        let count: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM baseline")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(self.fail("counting the baseline"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The entities that have at least one baseline row, sorted by name.
    pub fn entities_in_baseline(&self) -> Result<Vec<String>> {
        let fail = self.fail("listing baseline entities");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT name FROM entity WHERE id IN (SELECT DISTINCT entity_id FROM baseline) \
                 ORDER BY name",
            )
            .map_err(&fail)?;
        let names = statement
            .query_map([], |row| row.get(0))
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(&fail)?;
        Ok(names)
    }

    /// Removes every baseline row of `entity` (it left the policy), in its own transaction.
    /// Returns how many rows went. The journal is untouched.
    pub fn delete_entity(&self, entity: &str) -> Result<u64> {
        let mut batch = self.batch()?;
        let removed = batch.delete_entity(entity)?;
        batch.commit()?;
        Ok(removed)
    }

    /// The id of a committed entity name (cached), or None when the name has no id yet.
    pub(crate) fn entity_id(&self, name: &str) -> Result<Option<i64>> {
        if let Some(&id) = self.entity_ids.borrow().get(name) {
            return Ok(Some(id));
        }
        let id: Option<i64> = self
            .conn
            .prepare_cached("SELECT id FROM entity WHERE name = ?1")
            .and_then(|mut statement| statement.query_row([name], |row| row.get(0)).optional())
            .map_err(self.fail("reading entity names"))?;
        // Outside a transaction the row is committed and safe to cache; inside one it may be a
        // batch's own insert that could still roll back.
        if let Some(id) = id.filter(|_| self.conn.is_autocommit()) {
            self.entity_ids.borrow_mut().insert(name.to_string(), id);
        }
        Ok(id)
    }

    /// Remembers ids that are known to be committed.
    pub(crate) fn remember_entity_ids(&self, ids: impl IntoIterator<Item = (String, i64)>) {
        self.entity_ids.borrow_mut().extend(ids);
    }
}
