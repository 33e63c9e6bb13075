//! Reading the journal: `fim changes`, `fim summary`, and resumable streaming.
//!
//! SQL narrows by the indexed columns (time, type, category, computer, entity, sequence);
//! the path/key glob is applied in Rust afterwards, by the model's one matching function,
//! because SQL's GLOB/LIKE do not speak globset's syntax and paths are escaped text. Results
//! are always in sequence order, so a client pages (or resumes a stream) with
//! `after_sequence` and never sees a record twice or misses one.
use std::collections::BTreeMap;

pub use fim_model::filter::{ChangeFilter, SubjectGlob};
use rusqlite::types::Value;

use super::{Result, Store};
use crate::change::{ChangeRecord, ConfigChangeType};

/// The SQL side of a [`ChangeFilter`]: conditions on the indexed columns. The subject glob is
/// left to [`ChangeFilter::subject_matches`] on each row, so SQL and the live stream share it.
trait FilterSql {
    fn sql(&self) -> (String, Vec<Value>);
}

/// A column to group a summary by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupKey {
    Computer,
    Type,
    Category,
    Entity,
}

impl GroupKey {
    fn column(self) -> &'static str {
        match self {
            GroupKey::Computer => "computer",
            GroupKey::Type => "change_type",
            GroupKey::Category => "category",
            GroupKey::Entity => "entity",
        }
    }
}

/// One group of a summary: the key values in the order asked for, and how many records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    pub keys: Vec<String>,
    pub count: u64,
}

impl FilterSql for ChangeFilter {
    /// The SQL conditions (joined with AND, "1" when none) and their parameters.
    fn sql(&self) -> (String, Vec<Value>) {
        let mut conditions = vec!["1".to_string()];
        let mut values = Vec::new();
        if let Some(after) = self.after_sequence {
            conditions.push("sequence > ?".into());
            values.push(Value::Integer(i64::try_from(after).unwrap_or(i64::MAX)));
        }
        if let Some(since) = self.since {
            conditions.push("time_ns >= ?".into());
            values.push(Value::Integer(since.unix_nanos()));
        }
        if let Some(until) = self.until {
            conditions.push("time_ns < ?".into());
            values.push(Value::Integer(until.unix_nanos()));
        }
        let mut any_of = |column: &str, texts: Vec<&str>| {
            if !texts.is_empty() {
                let marks = vec!["?"; texts.len()].join(", ");
                conditions.push(format!("{column} IN ({marks})"));
                values.extend(texts.into_iter().map(|text| Value::Text(text.to_string())));
            }
        };
        any_of(
            "change_type",
            self.types.iter().map(|t| t.as_str()).collect(),
        );
        any_of(
            "category",
            self.categories.iter().map(|c| c.as_str()).collect(),
        );
        if let Some(computer) = &self.computer {
            conditions.push("(computer = ? OR computer_id = ?)".into());
            values.push(Value::Text(computer.clone()));
            values.push(Value::Text(computer.clone()));
        }
        if let Some(entity) = &self.entity {
            conditions.push("entity = ?".into());
            values.push(Value::Text(entity.clone()));
        }
        (conditions.join(" AND "), values)
    }
}

impl Store {
    /// Up to `limit` records matching `filter`, in sequence order.
    pub fn query(&self, filter: &ChangeFilter, limit: usize) -> Result<Vec<ChangeRecord>> {
        let fail = self.fail("querying the journal");
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let (conditions, values) = filter.sql();
        // With a glob, SQL cannot tell how many rows it takes to fill `limit`: read in chunks.
        let chunk = if filter.path_glob.is_some() {
            limit.clamp(512, 8192)
        } else {
            limit
        };
        let sql = format!(
            "SELECT sequence, path, record, change_type FROM journal WHERE {conditions} AND sequence > ? \
             ORDER BY sequence LIMIT ?"
        );
        let mut statement = self.conn.prepare(&sql).map_err(&fail)?;
        let mut cursor: i64 = 0;
        loop {
            let mut params = values.clone();
            params.push(Value::Integer(cursor));
            params.push(Value::Integer(i64::try_from(chunk).unwrap_or(i64::MAX)));
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(&fail)?;
            let mut seen = 0;
            while let Some(row) = rows.next().map_err(&fail)? {
                seen += 1;
                cursor = row.get(0).map_err(&fail)?;
                let path: Option<&str> = row
                    .get_ref(1)
                    .and_then(|value| Ok(value.as_str_or_null()?))
                    .map_err(&fail)?;
                if !filter.subject_matches(row_type(row.get_ref(3), &fail)?, path) {
                    continue;
                }
                let text = row
                    .get_ref(2)
                    .and_then(|value| Ok(value.as_str()?))
                    .map_err(&fail)?;
                let record = serde_json::from_str(text).map_err(|error| {
                    self.corrupt(format!("journal record {cursor}"), error.to_string())
                })?;
                found.push(record);
                if found.len() == limit {
                    return Ok(found);
                }
            }
            if seen < chunk {
                return Ok(found);
            }
        }
    }

    /// Counts the records matching `filter`, grouped by `by` (in that order), sorted by the
    /// keys. With no keys: one row, the total.
    pub fn summary(&self, filter: &ChangeFilter, by: &[GroupKey]) -> Result<Vec<SummaryRow>> {
        let fail = self.fail("summarising the journal");
        let (conditions, values) = filter.sql();
        let columns: Vec<&str> = by.iter().map(|key| key.column()).collect();
        let params = rusqlite::params_from_iter(values);
        if filter.path_glob.is_none() {
            let (select, group) = if columns.is_empty() {
                (String::new(), String::new())
            } else {
                let list = columns.join(", ");
                (
                    format!("{list}, "),
                    format!(" GROUP BY {list} ORDER BY {list}"),
                )
            };
            let sql = format!("SELECT {select}count(*) FROM journal WHERE {conditions}{group}");
            let mut statement = self.conn.prepare(&sql).map_err(&fail)?;
            let rows = statement
                .query_map(params, |row| {
                    let keys = (0..columns.len())
                        .map(|index| row.get::<_, String>(index))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let count: i64 = row.get(columns.len())?;
                    Ok(SummaryRow {
                        keys,
                        count: u64::try_from(count).unwrap_or(0),
                    })
                })
                .map_err(&fail)?;
            return rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&fail);
        }
        let mut select = columns.clone();
        select.push("path");
        select.push("change_type");
        let sql = format!(
            "SELECT {} FROM journal WHERE {conditions}",
            select.join(", ")
        );
        let mut statement = self.conn.prepare(&sql).map_err(&fail)?;
        let mut rows = statement.query(params).map_err(&fail)?;
        let mut groups: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        if columns.is_empty() {
            groups.insert(Vec::new(), 0);
        }
        while let Some(row) = rows.next().map_err(&fail)? {
            let path: Option<String> = row.get(columns.len()).map_err(&fail)?;
            let change_type = row_type(row.get_ref(columns.len() + 1), &fail)?;
            if !filter.subject_matches(change_type, path.as_deref()) {
                continue;
            }
            let keys = (0..columns.len())
                .map(|index| row.get::<_, String>(index))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&fail)?;
            *groups.entry(keys).or_default() += 1;
        }
        Ok(groups
            .into_iter()
            .map(|(keys, count)| SummaryRow { keys, count })
            .collect())
    }

    /// The sequence of the last committed record (0 for an empty journal).
    pub fn last_sequence(&self) -> Result<u64> {
        let sequence: i64 = self
            .conn
            .prepare_cached("SELECT sequence FROM chain_head WHERE id = 1")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(self.fail("reading the chain head"))?;
        Ok(u64::try_from(sequence).unwrap_or(0))
    }

    /// Up to `limit` records after `sequence`, in order (for streaming that resumes).
    pub fn records_after(&self, sequence: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        let filter = ChangeFilter {
            after_sequence: Some(sequence),
            ..ChangeFilter::default()
        };
        self.query(&filter, limit)
    }
}

/// A journal row's change type, for the glob (a type this build does not know is matched as a
/// file path, the rule for anything that is not a key or a service).
fn row_type<E>(
    value: rusqlite::Result<rusqlite::types::ValueRef<'_>>,
    fail: &impl Fn(rusqlite::Error) -> E,
) -> std::result::Result<ConfigChangeType, E> {
    let text = value.and_then(|value| Ok(value.as_str()?)).map_err(fail)?;
    Ok(ConfigChangeType::parse(text).unwrap_or(ConfigChangeType::Files))
}
