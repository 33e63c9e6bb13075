//! Runs a compiled query on a rusqlite connection, row by row, under a deadline enforced by
//! SQLite's progress handler (the query is interrupted once the time limit passes). A
//! statement SQLite does not judge read-only is refused before it runs.
use std::time::Instant;

use fim_model::Timestamp;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode};

use crate::compile::CompiledQuery;
use crate::exec::{self, json_cell, ExecError};
use crate::value::{Param, Rows, Type, Value};
use crate::Dialect;

fn bind(param: &Param) -> SqlValue {
    match param {
        Param::Text(text) => SqlValue::Text(text.clone()),
        Param::Int(n) => SqlValue::Integer(*n),
        Param::Real(x) => SqlValue::Real(*x),
        Param::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Param::Time(at) => SqlValue::Integer(at.unix_nanos()),
        Param::Span(nanos) => SqlValue::Integer(*nanos),
    }
}

fn decode(name: &str, ty: Type, cell: ValueRef<'_>) -> Result<Value, ExecError> {
    Ok(match cell {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => match ty {
            Type::DateTime => Value::Time(Timestamp::from_unix_nanos(n)),
            Type::Bool => Value::Bool(n != 0),
            Type::Real => Value::Real(n as f64),
            Type::String => Value::Text(n.to_string()),
            _ => Value::Int(n),
        },
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            match ty {
                Type::Dynamic => json_cell(name, &text)?,
                _ => Value::Text(text.into_owned()),
            }
        }
    })
}

/// Runs `query`, calling `each` with every row as it is read; returns the row count.
pub fn for_each_row<F>(
    conn: &Connection,
    query: &CompiledQuery,
    mut each: F,
) -> Result<usize, ExecError>
where
    F: FnMut(Vec<Value>) -> Result<(), ExecError>,
{
    if query.dialect != Dialect::Sqlite {
        return Err(ExecError::WrongDialect {
            compiled: query.dialect,
        });
    }
    let (every, limit) = query.sqlite_progress_hint();
    let deadline = Instant::now() + limit;
    conn.progress_handler(every, Some(move || Instant::now() > deadline));
    let result = run(conn, query, &mut each);
    conn.progress_handler(0, None::<fn() -> bool>);
    result.map_err(|err| match err {
        ExecError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == ErrorCode::OperationInterrupted =>
        {
            ExecError::Timeout(query.timeout)
        }
        other => other,
    })
}

fn run<F>(conn: &Connection, query: &CompiledQuery, each: &mut F) -> Result<usize, ExecError>
where
    F: FnMut(Vec<Value>) -> Result<(), ExecError>,
{
    let mut statement = conn.prepare(&query.sql)?;
    // Defence in depth: the compiler writes only SELECT, and SQLite confirms it.
    if !statement.readonly() {
        return Err(ExecError::NotReadOnly);
    }
    let mut rows = statement.query(params_from_iter(query.params.iter().map(bind)))?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        each(exec::decode_row(&query.columns, |index, column| {
            decode(&column.name, column.ty, row.get_ref(index)?)
        })?)?;
        count += 1;
    }
    Ok(count)
}

/// Runs `query` and collects its rows.
pub fn query_rows(conn: &Connection, query: &CompiledQuery) -> Result<Rows, ExecError> {
    exec::collect_rows(query, |each| for_each_row(conn, query, each))
}

/// Streams `query`'s result as CSV into `out`; returns the row count.
pub fn export_csv<W: std::io::Write>(
    conn: &Connection,
    query: &CompiledQuery,
    out: W,
) -> Result<(usize, W), ExecError> {
    exec::export_csv(query, out, |each| for_each_row(conn, query, each))
}
