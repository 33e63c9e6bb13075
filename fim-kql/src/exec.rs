//! What running a compiled query can fail with, and what every database adapter does the
//! same way around its own client: decoding a row's cells in column order, collecting rows
//! into [`Rows`](crate::Rows) (with the cap flag), streaming them as CSV. An adapter provides only its
//! `for_each_row` and its cell decoding, so the backends cannot drift apart on the rest.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::{compile::CompiledQuery, OutputColumn, Rows, Value};

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
    /// Internal: [`collect_rows`] stops reading at the result's byte budget with this (the
    /// caller sees a capped result, not this error).
    #[error("the result passed its size limit of {0} bytes")]
    TooLarge(usize),
}

/// Receives one decoded row: the callback an adapter's `for_each_row` is given.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) type EachRow<'a> = &'a mut dyn FnMut(Vec<Value>) -> Result<(), ExecError>;

/// One row's cells in column order, `cell(index, column)` decoding each.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_row(
    columns: &[OutputColumn],
    mut cell: impl FnMut(usize, &OutputColumn) -> Result<Value, ExecError>,
) -> Result<Vec<Value>, ExecError> {
    columns
        .iter()
        .enumerate()
        .map(|(index, column)| cell(index, column))
        .collect()
}

/// The rows `for_each_row` yields for `query`, collected; `capped` when the row cap (not the
/// query's own `take`) may have cut the result short.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn collect_rows(
    query: &CompiledQuery,
    for_each_row: impl FnOnce(EachRow<'_>) -> Result<usize, ExecError>,
) -> Result<Rows, ExecError> {
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let outcome = for_each_row(&mut |row| {
        bytes = bytes.saturating_add(row.iter().map(cell_bytes).sum::<usize>());
        if bytes > query.max_bytes {
            return Err(ExecError::TooLarge(query.max_bytes));
        }
        rows.push(row);
        Ok(())
    });
    let capped = match outcome {
        Ok(count) => query.cap_applies && i64::try_from(count).is_ok_and(|n| n >= query.limit),
        Err(ExecError::TooLarge(_)) => true,
        Err(error) => return Err(error),
    };
    Ok(Rows {
        columns: query.columns.clone(),
        rows,
        capped,
    })
}

/// About what a cell costs in memory and on the wire.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn cell_bytes(value: &Value) -> usize {
    16 + match value {
        Value::Text(text) => text.len(),
        Value::Json(json) => json.to_string().len(),
        _ => 8,
    }
}

/// Streams the rows `for_each_row` yields for `query` as CSV into `out`, as they arrive;
/// returns the row count and `out`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn export_csv<W: std::io::Write>(
    query: &CompiledQuery,
    out: W,
    for_each_row: impl FnOnce(EachRow<'_>) -> Result<usize, ExecError>,
) -> Result<(usize, W), ExecError> {
    let mut export = crate::csv::CsvExport::new(out, &query.columns)?;
    let count = for_each_row(&mut |row| Ok(export.row(&row)?))?;
    Ok((count, export.finish()?))
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
