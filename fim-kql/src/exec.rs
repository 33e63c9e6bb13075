//! What running a compiled query can fail with, for the database adapters.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the query was compiled for {compiled:?}, not for this database")]
    WrongDialect { compiled: crate::Dialect },
    #[error("refused: the statement would change the database (queries are read-only)")]
    NotReadOnly,
    #[error("the query ran past its time limit of {0:?} and was cancelled")]
    Timeout(std::time::Duration),
    #[cfg(feature = "sqlite")]
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    #[error("column {column}: {message}")]
    Decode { column: String, message: String },
    #[error(transparent)]
    Csv(#[from] crate::csv::CsvError),
}

/// A dynamic cell's JSON text as a value.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn json_cell(column: &str, text: &str) -> Result<crate::Value, ExecError> {
    serde_json::from_str(text)
        .map(crate::Value::Json)
        .map_err(|err| ExecError::Decode {
            column: column.to_string(),
            message: format!("not JSON: {err}"),
        })
}

/// The server's own message when there is one ("db error" alone says nothing).
#[cfg(feature = "postgres")]
fn postgres_message(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => err.to_string(),
    }
}
