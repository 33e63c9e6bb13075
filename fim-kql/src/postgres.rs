//! Runs a compiled query with the synchronous `postgres` client inside a read-only
//! transaction whose `statement_timeout` the server enforces. [`bind`] gives the parameters
//! as postgres-types values, which tokio-postgres accepts as well.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fim_model::Timestamp;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::Client;

use crate::compile::CompiledQuery;
use crate::exec::{json_cell, ExecError};
use crate::value::{Param, Rows, Type, Value};
use crate::Dialect;

/// A timestamp as the `postgres` client binds timestamptz.
pub fn system_time(at: Timestamp) -> SystemTime {
    let nanos = at.unix_nanos();
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A timestamptz the client read, as a timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    };
    Timestamp::from_unix_nanos(nanos)
}

/// The query's parameters, in placeholder order, typed as its placeholders' casts say.
pub fn bind(query: &CompiledQuery) -> Vec<Box<dyn ToSql + Sync + Send>> {
    query
        .params
        .iter()
        .map(|param| -> Box<dyn ToSql + Sync + Send> {
            match param {
                Param::Text(text) => Box::new(text.clone()),
                Param::Int(n) => Box::new(*n),
                Param::Real(x) => Box::new(*x),
                Param::Bool(b) => Box::new(*b),
                Param::Time(at) => Box::new(system_time(*at)),
                // Microseconds: the placeholder multiplies an interval of one microsecond.
                Param::Span(nanos) => Box::new(nanos / 1_000),
            }
        })
        .collect()
}

fn decode(row: &postgres::Row, index: usize, name: &str, ty: Type) -> Result<Value, ExecError> {
    let value = match ty {
        Type::Long => row.try_get::<_, Option<i64>>(index)?.map(Value::Int),
        Type::Real => row.try_get::<_, Option<f64>>(index)?.map(Value::Real),
        Type::Bool => row.try_get::<_, Option<bool>>(index)?.map(Value::Bool),
        Type::DateTime => row
            .try_get::<_, Option<SystemTime>>(index)?
            .map(|at| Value::Time(timestamp(at))),
        Type::Dynamic => match row.try_get::<_, Option<String>>(index)? {
            Some(text) => Some(json_cell(name, &text)?),
            None => None,
        },
        Type::String | Type::Timespan | Type::Null => {
            row.try_get::<_, Option<String>>(index)?.map(Value::Text)
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

fn is_timeout(err: &postgres::Error) -> bool {
    err.code() == Some(&postgres::error::SqlState::QUERY_CANCELED)
}

/// Runs `query` in a read-only transaction, calling `each` per row as rows stream in.
pub fn for_each_row<F>(
    client: &mut Client,
    query: &CompiledQuery,
    mut each: F,
) -> Result<usize, ExecError>
where
    F: FnMut(Vec<Value>) -> Result<(), ExecError>,
{
    if query.dialect != Dialect::Postgres {
        return Err(ExecError::WrongDialect {
            compiled: query.dialect,
        });
    }
    let timeout = query.timeout;
    let map = |err: postgres::Error| {
        if is_timeout(&err) {
            ExecError::Timeout(timeout)
        } else {
            ExecError::Postgres(err)
        }
    };
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(map)?;
    tx.batch_execute(&query.postgres_timeout_statement())
        .map_err(map)?;
    let params = bind(query);
    let mut rows = tx
        .query_raw(
            &query.sql,
            params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)),
        )
        .map_err(map)?;
    let mut count = 0;
    while let Some(row) = rows.next().map_err(map)? {
        each(crate::exec::decode_row(&query.columns, |index, column| {
            decode(&row, index, &column.name, column.ty)
        })?)?;
        count += 1;
    }
    drop(rows);
    tx.commit().map_err(map)?;
    Ok(count)
}

/// Runs `query` and collects its rows.
pub fn query_rows(client: &mut Client, query: &CompiledQuery) -> Result<Rows, ExecError> {
    crate::exec::collect_rows(query, |each| for_each_row(client, query, each))
}

/// Streams `query`'s result as CSV into `out`; returns the row count.
pub fn export_csv<W: std::io::Write>(
    client: &mut Client,
    query: &CompiledQuery,
    out: W,
) -> Result<(usize, W), ExecError> {
    crate::exec::export_csv(query, out, |each| for_each_row(client, query, each))
}
