//! The hash chain and `fim verify`.
//!
//! Every journal row stores the record's JSON exactly as it was hashed, the previous row's
//! hash, and `hash = BLAKE3(prev_hash || json)`; the first record chains to 32 zero bytes. A
//! one-row `chain_head` (last sequence and hash) is written in the same transaction as the
//! records. [`Store::verify`] walks the rows in sequence order and names the first break:
//! a gap (a deleted record), a row that does not chain to its predecessor (swapped or
//! re-chained rows), a row whose hash or query columns disagree with its text (an edit), or a
//! journal that ends before or after the head says it does (a cut tail, or rows written
//! outside fim). It proves nothing against someone who rewrites the whole chain and the head
//! together; it finds edits made with `sqlite3` or by a careless tool, and silent corruption.
use std::{borrow::Cow, fmt};

use rusqlite::{OptionalExtension, TransactionBehavior};
use serde::Deserialize;

use super::{Result, Store};
use crate::{
    change::{ChangeRecord, Timestamp},
    state::Digest,
};

/// What the first record chains to.
pub const GENESIS_HASH: Digest = [0; 32];

/// `BLAKE3(prev_hash || record_json)`.
pub fn chain_hash(prev_hash: &Digest, record_json: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev_hash);
    hasher.update(record_json);
    *hasher.finalize().as_bytes()
}

/// A record's TimeGenerated text (RFC 3339) as nanoseconds since the Unix epoch; None for text
/// that is not a time (a tampered record).
fn time_ns(time_generated: &str) -> Option<i64> {
    Timestamp::parse_rfc3339(time_generated)
        .ok()
        .map(Timestamp::unix_nanos)
}

/// The journal columns that copy fields of the record, for queries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IndexedColumns<'a> {
    pub time_ns: i64,
    pub computer: Cow<'a, str>,
    pub computer_id: Cow<'a, str>,
    pub change_type: Cow<'a, str>,
    pub category: Cow<'a, str>,
    pub entity: Cow<'a, str>,
    pub path: Option<Cow<'a, str>>,
}

impl<'a> IndexedColumns<'a> {
    pub fn of_record(record: &'a ChangeRecord) -> Self {
        IndexedColumns {
            time_ns: record.time_generated.unix_nanos(),
            computer: Cow::Borrowed(&record.computer),
            computer_id: Cow::Borrowed(&record.computer_id),
            change_type: Cow::Borrowed(record.config_change_type.as_str()),
            category: Cow::Borrowed(record.change_category.as_str()),
            entity: Cow::Borrowed(&record.entity),
            path: record.subject().map(Cow::Borrowed),
        }
    }
}

/// The fields of a record's JSON that verify compares with the columns, borrowed where the
/// text has no escapes (verify parses every record, so it skips the rest of the record).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IndexedJson<'a> {
    sequence: u64,
    #[serde(borrow)]
    time_generated: Cow<'a, str>,
    #[serde(borrow)]
    computer: Cow<'a, str>,
    #[serde(borrow)]
    computer_id: Cow<'a, str>,
    #[serde(borrow)]
    config_change_type: Cow<'a, str>,
    #[serde(borrow)]
    change_category: Cow<'a, str>,
    #[serde(borrow)]
    entity: Cow<'a, str>,
    #[serde(borrow, default)]
    file: Option<IndexedSubject<'a>>,
    #[serde(borrow, default)]
    registry: Option<IndexedSubject<'a>>,
    #[serde(borrow, default)]
    service: Option<IndexedSubject<'a>>,
}

/// The one field of a column group that the `path` column copies (see
/// [`ChangeRecord::subject`]): FileSystemPath, RegistryKey or SvcName.
#[derive(Deserialize)]
struct IndexedSubject<'a> {
    #[serde(
        borrow,
        alias = "FileSystemPath",
        alias = "RegistryKey",
        alias = "SvcName"
    )]
    subject: Cow<'a, str>,
}

/// How a record was found edited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditDetail {
    /// The stored hash is not BLAKE3(prev_hash || record text).
    HashMismatch,
    /// A query column (named) disagrees with the record text.
    Column(&'static str),
    /// The record text names another sequence number.
    SequenceField { found: u64 },
    /// The text is not a change record at all.
    NotARecord(String),
}

/// The first break in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyProblem {
    /// Record `expected` is gone: the next row present is `next_present`.
    Missing { expected: u64, next_present: u64 },
    /// Record `sequence` was changed after it was journaled.
    Edited { sequence: u64, detail: EditDetail },
    /// Record `sequence` does not chain to the row before it (rows swapped or re-chained).
    Reordered { sequence: u64 },
    /// The chain head says `head_sequence` was committed; the journal ends at `last_present`.
    TruncatedTail {
        head_sequence: u64,
        last_present: u64,
    },
    /// Rows exist past the chain head: written by something other than fim.
    BeyondHead {
        head_sequence: u64,
        last_present: u64,
    },
    /// The last record is where the head says, but its hash is not the head's: the chain was
    /// recomputed after an edit.
    HeadMismatch { sequence: u64 },
    /// A row whose sequence number no chain can have (zero or negative).
    Foreign { sequence: i64 },
    /// SQLite's own integrity check failed: pages or indexes of the file are damaged.
    Damaged { detail: String },
    /// Record `sequence` does not have the hash recorded elsewhere ([`Anchor`]): the chain
    /// was rewritten from that record on, or before it.
    AnchorMismatch { sequence: u64 },
    /// The journal ends before the anchored record `sequence`.
    AnchorMissing { sequence: u64, last_present: u64 },
}

/// A chain head recorded outside the database (`fim verify --expect SEQ:HASH`, from the
/// system log or a SIEM): an attacker who rewrites the whole chain cannot match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub sequence: u64,
    pub hash: Digest,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (sequence, hash) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not SEQUENCE:HASH"))?;
        let sequence = sequence
            .parse()
            .map_err(|_| format!("{sequence:?} is not a record sequence"))?;
        let hash = blake3::Hash::from_hex(hash)
            .map_err(|_| format!("{hash:?} is not a 64-digit hex hash"))?;
        Ok(Anchor {
            sequence,
            hash: *hash.as_bytes(),
        })
    }
}

impl fmt::Display for EditDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditDetail::HashMismatch => write!(f, "its hash does not match its content"),
            EditDetail::Column(column) => {
                write!(f, "its `{column}` column disagrees with the record text")
            }
            EditDetail::SequenceField { found } => {
                write!(f, "its text says it is record {found}")
            }
            EditDetail::NotARecord(reason) => {
                write!(f, "its text is not a change record ({reason})")
            }
        }
    }
}

/// "record 7 is" or "records 7 to 9 are".
fn span(noun: &str, first: u64, last: u64) -> String {
    if first == last {
        format!("{noun} {first} is")
    } else {
        format!("{noun}s {first} to {last} are")
    }
}

impl fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyProblem::Missing {
                expected,
                next_present,
            } => write!(
                f,
                "record {expected} is missing: the journal skips from {} to {next_present}",
                expected - 1
            ),
            VerifyProblem::Edited { sequence, detail } => {
                write!(f, "record {sequence} was edited: {detail}")
            }
            VerifyProblem::Reordered { sequence } => write!(
                f,
                "record {sequence} is out of order: it does not chain to the record before it \
                 (records were swapped or re-chained)"
            ),
            VerifyProblem::TruncatedTail {
                head_sequence,
                last_present,
            } => write!(
                f,
                "the journal was truncated: {} committed (the chain head is at \
                 {head_sequence}) but gone",
                span("record", last_present + 1, *head_sequence)
            ),
            VerifyProblem::BeyondHead {
                head_sequence,
                last_present,
            } => write!(
                f,
                "{} past the chain head ({head_sequence}): not written by fim",
                span("record", head_sequence + 1, *last_present)
            ),
            VerifyProblem::HeadMismatch { sequence } => write!(
                f,
                "record {sequence} does not match the chain head's hash: the journal was \
                 rewritten"
            ),
            VerifyProblem::Foreign { sequence } => write!(
                f,
                "a row numbered {sequence} cannot belong to the journal (records start at 1)"
            ),
            VerifyProblem::Damaged { detail } => write!(
                f,
                "the database file is damaged (SQLite integrity check: {detail})"
            ),
            VerifyProblem::AnchorMismatch { sequence } => write!(
                f,
                "record {sequence} does not have the expected hash: the journal was rewritten"
            ),
            VerifyProblem::AnchorMissing {
                sequence,
                last_present,
            } => write!(
                f,
                "the journal ends at record {last_present}, but record {sequence} was \
                 committed (the expected head): records were removed"
            ),
        }
    }
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked and found intact (all of them, or those before the problem).
    pub checked: u64,
    /// The last sequence the chain head records.
    pub head_sequence: u64,
    /// The chain head's hash, hex: with `head_sequence`, what to keep elsewhere.
    pub head_hash: String,
    /// The first problem, or None for an intact journal.
    pub problem: Option<VerifyProblem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "journal intact: {} records checked, chain head at {}:{}",
                self.checked, self.head_sequence, self.head_hash
            ),
            Some(problem) => write!(
                f,
                "{problem} ({} records before it are intact)",
                self.checked
            ),
        }
    }
}

/// Compares a row's columns with the record text; the name of the first column that differs.
fn disagreeing_column(
    columns: &IndexedColumns<'_>,
    json: &IndexedJson<'_>,
) -> Option<&'static str> {
    let path = [&json.file, &json.registry, &json.service]
        .into_iter()
        .find_map(|group| group.as_ref().map(|group| &group.subject));
    [
        (
            "time_ns",
            time_ns(&json.time_generated) == Some(columns.time_ns),
        ),
        ("computer", json.computer == columns.computer),
        ("computer_id", json.computer_id == columns.computer_id),
        (
            "change_type",
            json.config_change_type == columns.change_type,
        ),
        ("category", json.change_category == columns.category),
        ("entity", json.entity == columns.entity),
        ("path", path == columns.path.as_ref()),
    ]
    .into_iter()
    .find_map(|(name, same)| (!same).then_some(name))
}

impl Store {
    /// Walks the whole journal in sequence order (in one read transaction, so a writer in
    /// another process cannot make it see half a batch) and reports the first break.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_anchored(None)
    }

    /// [`Store::verify`], after SQLite's own page check, and also against a chain head kept
    /// elsewhere.
    pub fn verify_anchored(&self, anchor: Option<Anchor>) -> Result<VerifyReport> {
        let fail = self.fail("verifying the journal");
        if let Some(detail) = self.damage()? {
            let head = self.head().unwrap_or((0, GENESIS_HASH));
            return Ok(VerifyReport {
                checked: 0,
                head_sequence: head.0,
                head_hash: crate::change::hex(&head.1),
                problem: Some(VerifyProblem::Damaged { detail }),
            });
        }
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(&fail)?;
        let head = tx
            .query_row(
                "SELECT sequence, hash FROM chain_head WHERE id = 1",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(&fail)?;
        let Some((head_sequence, head_hash)) = head else {
            return Err(self.corrupt("chain head", "the chain_head row is missing"));
        };
        let head_sequence = u64::try_from(head_sequence).unwrap_or(0);
        let mut statement = tx
            .prepare(
                "SELECT sequence, time_ns, computer, computer_id, change_type, category, entity, \
                 path, record, prev_hash, hash FROM journal ORDER BY sequence",
            )
            .map_err(&fail)?;
        let mut rows = statement.query([]).map_err(&fail)?;
        // After pruning, the chain continues from the last pruned record's hash.
        let (base, base_hash) = self.chain_base()?;
        let mut previous: Digest = base_hash;
        let mut expected: u64 = base + 1;
        let head_hex = crate::change::hex(&head_hash);
        let report = |checked: u64, problem: Option<VerifyProblem>| VerifyReport {
            checked,
            head_sequence,
            head_hash: head_hex.clone(),
            problem,
        };
        while let Some(row) = rows.next().map_err(&fail)? {
            let checked = expected - 1 - base;
            let sequence: i64 = row.get(0).map_err(&fail)?;
            let Some(sequence) = u64::try_from(sequence).ok().filter(|&s| s >= 1) else {
                return Ok(report(checked, Some(VerifyProblem::Foreign { sequence })));
            };
            if sequence != expected {
                let problem = VerifyProblem::Missing {
                    expected,
                    next_present: sequence,
                };
                return Ok(report(checked, Some(problem)));
            }
            let text = |index: usize| -> rusqlite::Result<Cow<'_, str>> {
                Ok(Cow::Borrowed(row.get_ref(index)?.as_str()?))
            };
            let read = || -> rusqlite::Result<(IndexedColumns<'_>, &str, &[u8], &[u8])> {
                let columns = IndexedColumns {
                    time_ns: row.get(1)?,
                    computer: text(2)?,
                    computer_id: text(3)?,
                    change_type: text(4)?,
                    category: text(5)?,
                    entity: text(6)?,
                    path: row.get_ref(7)?.as_str_or_null()?.map(Cow::Borrowed),
                };
                let record = row.get_ref(8)?.as_str()?;
                Ok((
                    columns,
                    record,
                    row.get_ref(9)?.as_blob()?,
                    row.get_ref(10)?.as_blob()?,
                ))
            };
            let (columns, record, prev_hash, hash) = read().map_err(&fail)?;
            let edited = |detail| {
                let problem = VerifyProblem::Edited { sequence, detail };
                Ok(report(checked, Some(problem)))
            };
            if prev_hash != previous {
                return Ok(report(checked, Some(VerifyProblem::Reordered { sequence })));
            }
            let computed = chain_hash(&previous, record.as_bytes());
            if hash != computed {
                return edited(EditDetail::HashMismatch);
            }
            let json: IndexedJson<'_> = match serde_json::from_str(record) {
                Ok(json) => json,
                Err(error) => return edited(EditDetail::NotARecord(error.to_string())),
            };
            if json.sequence != sequence {
                return edited(EditDetail::SequenceField {
                    found: json.sequence,
                });
            }
            if let Some(column) = disagreeing_column(&columns, &json) {
                return edited(EditDetail::Column(column));
            }
            if anchor.is_some_and(|anchor| anchor.sequence == sequence && anchor.hash != computed) {
                return Ok(report(
                    checked,
                    Some(VerifyProblem::AnchorMismatch { sequence }),
                ));
            }
            previous = computed;
            expected += 1;
        }
        let last_present = expected - 1;
        let problem = if let Some(anchor) = anchor.filter(|anchor| anchor.sequence > last_present) {
            Some(VerifyProblem::AnchorMissing {
                sequence: anchor.sequence,
                last_present,
            })
        } else if head_sequence > last_present {
            Some(VerifyProblem::TruncatedTail {
                head_sequence,
                last_present,
            })
        } else if head_sequence < last_present {
            Some(VerifyProblem::BeyondHead {
                head_sequence,
                last_present,
            })
        } else if head_hash.as_slice() != previous.as_slice() {
            Some(VerifyProblem::HeadMismatch {
                sequence: last_present,
            })
        } else {
            None
        };
        let checked = match problem {
            // Every record present chains correctly; what is wrong is around them.
            Some(VerifyProblem::TruncatedTail { .. })
            | Some(VerifyProblem::AnchorMissing { .. })
            | None => last_present,
            Some(VerifyProblem::BeyondHead { .. }) => head_sequence,
            Some(_) => last_present.saturating_sub(1),
        };
        let problem = match anchor {
            Some(anchor) if anchor.sequence == base && base > 0 && anchor.hash != base_hash => {
                Some(VerifyProblem::AnchorMismatch { sequence: base })
            }
            _ => problem,
        };
        Ok(report(checked.saturating_sub(base), problem))
    }

    /// SQLite's quick check of every page and index: None when the file is sound, else what
    /// it reports (first lines).
    pub fn damage(&self) -> Result<Option<String>> {
        let fail = self.fail("checking the database file");
        let mut statement = self.conn.prepare("PRAGMA quick_check(5)").map_err(&fail)?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(&fail)?
            .collect::<rusqlite::Result<Vec<String>>>();
        let lines = match lines {
            Ok(lines) => lines,
            // A file too damaged to even run the check.
            Err(error) => return Ok(Some(error.to_string())),
        };
        Ok(match lines.as_slice() {
            [ok] if ok == "ok" => None,
            _ => Some(lines.join("; ")),
        })
    }

    /// The committed chain head (sequence, hash).
    pub fn head(&self) -> Result<(u64, Digest)> {
        let fail = self.fail("reading the chain head");
        let (sequence, hash) = self
            .conn
            .query_row(
                "SELECT sequence, hash FROM chain_head WHERE id = 1",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .map_err(&fail)?;
        let hash = Digest::try_from(hash.as_slice())
            .map_err(|_| self.corrupt("chain head", "the head hash is not 32 bytes"))?;
        Ok((u64::try_from(sequence).unwrap_or(0), hash))
    }
}
