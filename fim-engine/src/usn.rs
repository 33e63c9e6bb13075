//! The NTFS change journal (USN journal): what changed on a volume while fimsvc was stopped.
//!
//! Every change to a file on an NTFS volume appends a record (file id, parent id, name, the
//! reasons: data overwritten, renamed, security changed, ...) with a growing sequence number,
//! the USN. fimsvc keeps, per volume, the journal's id and the next USN it has not read (a
//! [`Cursor`]); at start it reads the records since then. Those say which files changed while
//! it was stopped, including changes that left no trace in the files themselves (a file
//! written and its times put back, a rename there and back), and with which operations.
//!
//! The journal can also betray that it cannot say: it was deleted and recreated (a new id), it
//! wrapped past our cursor (records were discarded), or it is behind our cursor (rolled back
//! with the volume). Each of those is a gap: the start-up scan still compares every baseline,
//! but what happened in between is not known, and the record of the gap says so.
//!
//! This module is platform-neutral: decoding the records `FSCTL_READ_USN_JOURNAL` returns
//! and deciding where to resume are tested on recorded buffers on every host (Wine has no
//! USN journal); `usn_windows.rs` does the device I/O.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The journal as `FSCTL_QUERY_USN_JOURNAL` describes it now (USN_JOURNAL_DATA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalState {
    pub journal_id: u64,
    pub first_usn: i64,
    pub next_usn: i64,
    pub lowest_valid_usn: i64,
}

/// Where fimsvc stopped reading a volume's journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub journal_id: u64,
    pub next_usn: i64,
}

/// Why the journal cannot say what happened since the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalGap {
    #[error("the change journal was deleted and recreated (id {old:#x} is now {new:#x})")]
    Recreated { old: u64, new: u64 },
    #[error("the change journal wrapped: records from USN {wanted} on were discarded (the oldest kept is {lowest})")]
    Wrapped { wanted: i64, lowest: i64 },
    #[error("the change journal is behind where it was read to (USN {wanted}, now ends at {next}): the volume was rolled back or restored")]
    RolledBack { wanted: i64, next: i64 },
    #[error("a change journal record could not be read: {0}")]
    Corrupt(#[from] UsnError),
}

/// Where to resume reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// No cursor yet: this start's scan is the baseline; read from the journal's end on.
    Fresh,
    /// Read the records from this USN to the journal's end.
    From(i64),
    /// The records since the cursor are gone or not ours.
    Gap(JournalGap),
}

/// Decides where to resume from the stored cursor and the journal as it is now.
pub fn resume(stored: Option<Cursor>, now: &JournalState) -> Resume {
    let Some(cursor) = stored else {
        return Resume::Fresh;
    };
    if cursor.journal_id != now.journal_id {
        return Resume::Gap(JournalGap::Recreated {
            old: cursor.journal_id,
            new: now.journal_id,
        });
    }
    let lowest = now.lowest_valid_usn.max(now.first_usn);
    if cursor.next_usn < lowest {
        return Resume::Gap(JournalGap::Wrapped {
            wanted: cursor.next_usn,
            lowest,
        });
    }
    if cursor.next_usn > now.next_usn {
        return Resume::Gap(JournalGap::RolledBack {
            wanted: cursor.next_usn,
            next: now.next_usn,
        });
    }
    Resume::From(cursor.next_usn)
}

/// One change journal record (USN_RECORD_V2 or V3; file ids widened to 128 bits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsnRecord {
    pub usn: i64,
    pub file_id: u128,
    pub parent_id: u128,
    /// FILETIME (100 ns since 1601).
    pub timestamp: i64,
    pub reason: u32,
    pub attributes: u32,
    /// The file's name (not its path), decoded lossily: NTFS names need not be valid UTF-16.
    pub name: String,
}

/// A buffer from `FSCTL_READ_USN_JOURNAL` that is not what the documented layout says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsnError {
    #[error("the buffer is {0} bytes, shorter than the next-USN field")]
    Short(usize),
    #[error("record at byte {offset}: length {length} does not fit the buffer or its header")]
    Length { offset: usize, length: usize },
    #[error("record at byte {offset}: its name (offset {name_offset}, {name_length} bytes) lies outside it")]
    Name {
        offset: usize,
        name_offset: usize,
        name_length: usize,
    },
}

/// USN_RECORD_V2's fixed part, up to the name.
const V2_HEADER: usize = 60;
/// USN_RECORD_V3's fixed part (128-bit file ids).
const V3_HEADER: usize = 76;
/// Every record starts with its length (u32) and version (u16 major, u16 minor).
const COMMON_HEADER: usize = 8;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u128_at(bytes: &[u8], at: usize) -> u128 {
    let mut word = [0; 16];
    word.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(word)
}

/// Decodes one `FSCTL_READ_USN_JOURNAL` output buffer: the next USN to ask for, then the
/// records. Records of other versions (V4 range records) are skipped by their length; any
/// record whose length or name does not fit is an error, never a guess.
pub fn parse_records(buffer: &[u8]) -> Result<(i64, Vec<UsnRecord>), UsnError> {
    if buffer.len() < 8 {
        return Err(UsnError::Short(buffer.len()));
    }
    let next = u64_at(buffer, 0) as i64;
    let mut records = Vec::new();
    let mut offset = 8;
    while offset + COMMON_HEADER <= buffer.len() {
        let length = u32_at(buffer, offset) as usize;
        if length < COMMON_HEADER || offset + length > buffer.len() {
            return Err(UsnError::Length { offset, length });
        }
        let record = &buffer[offset..offset + length];
        match u16_at(record, 4) {
            2 => records.push(decode(record, offset, false)?),
            3 => records.push(decode(record, offset, true)?),
            _ => {}
        }
        // Records are 8-byte aligned; the length includes the padding.
        offset += length;
    }
    Ok((next, records))
}

fn decode(record: &[u8], offset: usize, wide_ids: bool) -> Result<UsnRecord, UsnError> {
    let header = if wide_ids { V3_HEADER } else { V2_HEADER };
    if record.len() < header {
        return Err(UsnError::Length {
            offset,
            length: record.len(),
        });
    }
    let (file_id, parent_id, rest) = if wide_ids {
        (u128_at(record, 8), u128_at(record, 24), 40)
    } else {
        (u64_at(record, 8) as u128, u64_at(record, 16) as u128, 24)
    };
    let name_length = u16_at(record, rest + 32) as usize;
    let name_offset = u16_at(record, rest + 34) as usize;
    if name_offset < header
        || name_offset + name_length > record.len()
        || !name_length.is_multiple_of(2)
    {
        return Err(UsnError::Name {
            offset,
            name_offset,
            name_length,
        });
    }
    let units: Vec<u16> = record[name_offset..name_offset + name_length]
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Ok(UsnRecord {
        usn: u64_at(record, rest) as i64,
        file_id,
        parent_id,
        timestamp: u64_at(record, rest + 8) as i64,
        reason: u32_at(record, rest + 16),
        attributes: u32_at(record, rest + 28),
        name: fim_model::columns::utf16_lossy(&units).0,
    })
}

/// The USN_REASON bits, by the names records give them as operations.
const REASONS: &[(u32, &str)] = &[
    (0x0000_0001, "data-overwrite"),
    (0x0000_0002, "data-extend"),
    (0x0000_0004, "data-truncation"),
    (0x0000_0010, "named-data-overwrite"),
    (0x0000_0020, "named-data-extend"),
    (0x0000_0040, "named-data-truncation"),
    (0x0000_0100, "file-create"),
    (0x0000_0200, "file-delete"),
    (0x0000_0400, "ea-change"),
    (0x0000_0800, "security-change"),
    (0x0000_1000, "rename-old-name"),
    (0x0000_2000, "rename-new-name"),
    (0x0000_4000, "indexable-change"),
    (0x0000_8000, "basic-info-change"),
    (0x0001_0000, "hard-link-change"),
    (0x0002_0000, "compression-change"),
    (0x0004_0000, "encryption-change"),
    (0x0008_0000, "object-id-change"),
    (0x0010_0000, "reparse-point-change"),
    (0x0020_0000, "stream-change"),
    (0x0040_0000, "transacted-change"),
    (0x0080_0000, "integrity-change"),
];

/// The names of the reasons set in `reason` (USN_REASON_CLOSE, which only marks the last
/// record of a handle's changes, is left out).
pub fn reason_names(reason: u32) -> Vec<&'static str> {
    REASONS
        .iter()
        .filter(|(bit, _)| reason & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// What the journal says happened to one file while fimsvc was stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileChanges {
    /// Every reason seen, OR-ed.
    pub reason: u32,
    /// The names it had, with the directory each was in, in journal order, deduplicated.
    pub names: Vec<(u128, String)>,
    pub last_usn: i64,
}

/// The records grouped by file, in file-id order.
pub fn by_file(records: &[UsnRecord]) -> BTreeMap<u128, FileChanges> {
    let mut files: BTreeMap<u128, FileChanges> = BTreeMap::new();
    for record in records {
        let entry = files.entry(record.file_id).or_default();
        entry.reason |= record.reason;
        let name = (record.parent_id, record.name.clone());
        if !entry.names.contains(&name) {
            entry.names.push(name);
        }
        entry.last_usn = entry.last_usn.max(record.usn);
    }
    files
}

#[cfg(test)]
#[path = "usn_tests.rs"]
mod tests;
