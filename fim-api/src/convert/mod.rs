//! Engine types to fim.v1 messages and back.
//!
//! The engine's record schema is the contract (it is what the journal hashes), so records go
//! out field for field, plus `journal_json`, the exact JSON the hash chain covers, for clients
//! that verify the chain themselves. Requests come in from anyone who can reach the socket,
//! so every pb → engine conversion validates and answers INVALID_ARGUMENT naming the field,
//! instead of guessing (an unknown enum value is an error, not "any").
//!
//! - [`record`](mod@record): change records (their file, registry and service columns,
//!   actors) and gap notices;
//! - [`report`]: status, scan runs, baseline states, journal verification, entities;
//! - [`request`]: requests, pb → engine, validated.
mod record;
mod report;
mod request;
#[cfg(test)]
mod tests;

pub use record::{category, change_type, gap, record, record_for};
pub use report::{
    baseline_state, baseline_state_for, entity, entity_kind, hash_progress, scan_run, timestamp,
    verify_report,
};
pub use request::{entity_of, filter_of, group_key, group_keys, path_of};

/// Who may see file content in what the API returns. There is no policy setting for it:
/// content (file-content entities keep it, for diffs) goes only to root, so the owner and
/// reader groups learn that a file changed, never what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    Shown,
    Stripped,
}
