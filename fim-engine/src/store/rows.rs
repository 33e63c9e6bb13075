//! The journal's rows as they were hashed, for shipping them elsewhere (the collector push).
//!
//! Queries ([`super::query`]) parse records into [`crate::change::ChangeRecord`]s; a copy that
//! must chain at the other end needs the stored bytes themselves, with both hashes, so that
//! the receiver can recompute `hash = BLAKE3(prev_hash || record)` over exactly what this
//! journal hashed. The journal's identity is the database id fimd gives a new database
//! ([`JOURNAL_ID_META`]): a recreated database is a new journal, not a rewritten one.
use super::{Result, Store};
use crate::state::Digest;

/// The meta key of the database's stable id (written once, when fimd first opens it).
pub const JOURNAL_ID_META: &str = "database/id";

/// One journal row, bytes as hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRow {
    pub sequence: u64,
    pub record: String,
    pub prev_hash: Digest,
    pub hash: Digest,
}

impl Store {
    /// Up to `limit` rows after `sequence`, in sequence order.
    pub fn journal_rows_after(&self, sequence: u64, limit: usize) -> Result<Vec<JournalRow>> {
        let fail = self.fail("reading journal rows");
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT sequence, record, prev_hash, hash FROM journal WHERE sequence > ?1 \
                 ORDER BY sequence LIMIT ?2",
            )
            .map_err(&fail)?;
        let rows = statement
            .query_map(
                (
                    i64::try_from(sequence).unwrap_or(i64::MAX),
                    i64::try_from(limit).unwrap_or(i64::MAX),
                ),
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&fail)?;
        rows.into_iter()
            .map(|(sequence, record, prev_hash, hash)| {
                let digest = |bytes: Vec<u8>| {
                    Digest::try_from(bytes.as_slice()).map_err(|_| {
                        self.corrupt(
                            format!("journal record {sequence}"),
                            "a hash is not 32 bytes",
                        )
                    })
                };
                Ok(JournalRow {
                    sequence: u64::try_from(sequence).unwrap_or(0),
                    record,
                    prev_hash: digest(prev_hash)?,
                    hash: digest(hash)?,
                })
            })
            .collect()
    }

    /// The journal's stable id, if the database has been given one.
    pub fn journal_id(&self) -> Result<Option<String>> {
        self.get_meta(JOURNAL_ID_META)
    }
}
