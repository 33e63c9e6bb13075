//! The collector's errors: each names the database or address and what was being done.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("the workspace database {}: {action}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "the workspace database {target}: {action}: {}",
        postgres_message(source)
    )]
    Postgres {
        target: String,
        action: &'static str,
        source: postgres::Error,
    },
    #[error("refusing the workspace database {}: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    #[error("no workspace database at {}: {reason}", path.display())]
    Missing { path: PathBuf, reason: String },
    #[error("cannot create the state directory {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {journal_id} of computer {computer_id} is not registered (no Hello)")]
    UnknownJournal {
        computer_id: String,
        journal_id: String,
    },
    #[error(
        "computer {computer_id} already has {max} journals in the workspace, the most one \
         computer may open; refusing journal {journal_id}"
    )]
    TooManyJournals {
        computer_id: String,
        journal_id: String,
        max: usize,
    },
    #[error("an API token named {0:?} exists already")]
    TokenExists(String),
    #[error("the query failed: {0}")]
    Query(#[from] fim_kql::ExecError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("the collector's server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
}

/// The server's own message when there is one ("db error" alone says nothing).
fn postgres_message(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}
