//! The compiler: a parsed pipeline to one SELECT statement and its parameters.
//!
//! Operators are folded into a *stage* (one SELECT: its columns, WHERE, GROUP BY, ORDER BY,
//! LIMIT) as long as SQL evaluates them in KQL's order; an operator that must see the
//! stage's finished rows (a `where` after `summarize` or `take`, a `summarize` after
//! `distinct`, ...) wraps the stage as a subquery first. Columns are carried as SQL
//! expressions, so `extend x = tolower(Computer) | where x == 'a'` filters on the
//! expression itself (and on the real column's index where there is one). Parameters are
//! numbered, so an expression can be reused without re-binding its values.
//!
//! Only SELECT text is ever produced, from the catalog's trusted expressions, quoted column
//! names (identifiers the lexer limited to `[A-Za-z_][A-Za-z0-9_]*`) and placeholders.
mod expr;
mod ops;
mod params;
mod rollup;

pub use rollup::Rollup;

use std::time::Duration;

use fim_model::Timestamp;

use crate::catalog::Catalog;
use crate::dialect::Dialect;
use crate::error::{ErrorKind, KqlError, Result};
use crate::parser::parse;
use crate::value::{OutputColumn, Param, Type};

/// Limits and the clock a query is compiled against.
#[derive(Clone, Debug)]
pub struct Options {
    /// What `now()` and `ago()` count from (a parameter: the database's clock is not used).
    pub now: Timestamp,
    /// The most rows any query returns: `LIMIT min(take, row_cap)`.
    pub row_cap: i64,
    /// How long the database may run the query.
    pub timeout: Duration,
    /// The most bytes of cells a collected result holds: rows past it are dropped and the
    /// result marked capped, so ten thousand rows of file content cannot exhaust memory.
    pub max_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            now: Timestamp::now(),
            row_cap: 10_000,
            timeout: Duration::from_secs(30),
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A compiled query: SELECT text, its parameters in placeholder order, the result columns.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledQuery {
    pub dialect: Dialect,
    pub sql: String,
    /// Parameter `i` binds placeholder `i + 1` (`?N` in SQLite, `$N` in PostgreSQL).
    pub params: Vec<Param>,
    pub columns: Vec<OutputColumn>,
    /// The LIMIT of the outermost SELECT: min(the query's own take, the cap).
    pub limit: i64,
    /// True when `limit` is the row cap, so a full result may have been cut.
    pub cap_applies: bool,
    pub timeout: Duration,
    /// [`Options::max_bytes`].
    pub max_bytes: usize,
    /// The counts came from the hourly rollup ([`compile_with_rollup`]).
    pub used_rollup: bool,
}

impl CompiledQuery {
    /// For PostgreSQL: run this inside the query's transaction first, so the server itself
    /// cancels the query past the timeout (`SET` takes no parameters; the number is ours).
    pub fn postgres_timeout_statement(&self) -> String {
        format!("SET LOCAL statement_timeout = {}", self.timeout.as_millis())
    }

    /// For SQLite: how often (in virtual machine instructions) a progress handler should
    /// check the deadline, and the deadline itself; the `sqlite` adapter installs it.
    pub fn sqlite_progress_hint(&self) -> (i32, Duration) {
        (10_000, self.timeout)
    }
}

/// Compiles `query` against `catalog` for `dialect`.
pub fn compile(
    query: &str,
    catalog: &Catalog,
    dialect: Dialect,
    options: &Options,
) -> Result<CompiledQuery> {
    let ast = parse(query)?;
    if ast.table != catalog.kql_table {
        return Err(KqlError::new(
            ast.table_pos,
            ErrorKind::UnknownTable(ast.table.clone()),
        ));
    }
    let mut compiler = Compiler::new(catalog, dialect, options);
    for op in &ast.ops {
        compiler.op(op)?;
    }
    compiler.finish(false)
}

/// Like [`compile`], but a count by dimensions and hours over a time range is answered from
/// `rollup`'s counts table (plus the records of a partial first hour): the same rows, read
/// from hours instead of records. Other queries compile exactly as [`compile`] does.
pub fn compile_with_rollup(
    query: &str,
    catalog: &Catalog,
    rollup: &Rollup,
    dialect: Dialect,
    options: &Options,
) -> Result<CompiledQuery> {
    let ast = parse(query)?;
    if ast.table != catalog.kql_table {
        return Err(KqlError::new(
            ast.table_pos,
            ErrorKind::UnknownTable(ast.table.clone()),
        ));
    }
    let mut compiler = Compiler::new(catalog, dialect, options);
    let used = compiler.rollup(&ast.ops, rollup)?;
    if !used {
        for op in &ast.ops {
            compiler.op(op)?;
        }
    }
    compiler.finish(used)
}

/// A column in scope: its name, the SQL it is computed by, its type.
#[derive(Clone, Debug)]
struct Col {
    name: String,
    sql: String,
    ty: Type,
}

#[derive(Clone, Debug)]
struct OrderItem {
    sql: String,
    ty: Type,
    descending: bool,
    nulls_first: bool,
    /// The column it sorts by, when it is one (so the order survives a wrap).
    column: Option<String>,
}

/// What a stage reads: the table, or an earlier stage as a subquery with its alias.
#[derive(Clone, Debug)]
enum Source {
    Table(String),
    Sub(Box<Stage>, String),
}

/// One SELECT being built.
#[derive(Clone, Debug)]
struct Stage {
    from: Source,
    cols: Vec<Col>,
    wheres: Vec<String>,
    /// Some(n): aggregated, grouped by the first n columns.
    group_keys: Option<usize>,
    distinct: bool,
    order: Vec<OrderItem>,
    limit: Option<i64>,
}

impl Stage {
    fn closed(&self) -> bool {
        self.group_keys.is_some() || self.distinct || self.limit.is_some()
    }
}

struct Compiler<'a> {
    dialect: Dialect,
    options: &'a Options,
    params: Vec<Param>,
    stage: Stage,
    wraps: usize,
    auto_names: usize,
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

impl<'a> Compiler<'a> {
    fn new(catalog: &Catalog, dialect: Dialect, options: &'a Options) -> Self {
        let cols = catalog
            .columns
            .iter()
            .map(|column| Col {
                name: column.name.clone(),
                sql: column.sql(dialect).to_string(),
                ty: column.ty,
            })
            .collect();
        Compiler {
            dialect,
            options,
            params: Vec::new(),
            stage: Stage {
                from: Source::Table(catalog.sql_table.clone()),
                cols,
                wheres: Vec::new(),
                group_keys: None,
                distinct: false,
                order: Vec::new(),
                limit: None,
            },
            wraps: 0,
            auto_names: 0,
        }
    }

    /// Binds `param` and returns its placeholder.
    fn param(&mut self, param: Param) -> String {
        self.params.push(param);
        let index = self.params.len();
        self.dialect.placeholder(index, &self.params[index - 1])
    }

    fn auto_name(&mut self) -> String {
        self.auto_names += 1;
        format!("Column{}", self.auto_names)
    }

    /// A stage's SELECT text; `outer` converts result columns for the client.
    fn render(&mut self, stage: &Stage, outer: bool, limit: Option<i64>) -> String {
        let from = match &stage.from {
            Source::Table(table) => table.clone(),
            Source::Sub(inner, alias) => {
                let inner = prune(inner, alias, stage);
                let sql = self.render(&inner, false, inner.limit);
                format!("({sql}) AS {alias}")
            }
        };
        let columns: Vec<String> = stage
            .cols
            .iter()
            .map(|col| {
                let sql = if outer {
                    self.dialect.output(&col.sql, col.ty)
                } else {
                    col.sql.clone()
                };
                format!("{sql} AS {}", quote(&col.name))
            })
            .collect();
        let mut sql = format!(
            "SELECT {}{} FROM {from}",
            if stage.distinct { "DISTINCT " } else { "" },
            columns.join(", "),
        );
        if !stage.wheres.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&stage.wheres.join(" AND "));
        }
        if let Some(keys) = stage.group_keys.filter(|keys| *keys > 0) {
            let ordinals: Vec<String> = (1..=keys).map(|n| n.to_string()).collect();
            sql.push_str(" GROUP BY ");
            sql.push_str(&ordinals.join(", "));
        }
        if !stage.order.is_empty() {
            let keys: Vec<String> = stage
                .order
                .iter()
                .map(|item| {
                    format!(
                        "{}{} {} NULLS {}",
                        item.sql,
                        self.dialect.order_collation(item.ty),
                        if item.descending { "DESC" } else { "ASC" },
                        if item.nulls_first { "FIRST" } else { "LAST" }
                    )
                })
                .collect();
            sql.push_str(" ORDER BY ");
            sql.push_str(&keys.join(", "));
        }
        if let Some(limit) = limit {
            let placeholder = self.param(Param::Int(limit));
            sql.push_str(" LIMIT ");
            sql.push_str(&placeholder);
        }
        sql
    }

    /// Turns the current stage into a subquery that a new, empty stage reads from.
    fn wrap(&mut self) {
        self.wraps += 1;
        let alias = format!("q{}", self.wraps);
        let cols: Vec<Col> = self
            .stage
            .cols
            .iter()
            .map(|col| Col {
                name: col.name.clone(),
                sql: format!("{alias}.{}", quote(&col.name)),
                ty: col.ty,
            })
            .collect();
        // A subquery's ORDER BY does not bind the outer SELECT: sort again on its columns,
        // when every key is one of them (else the subquery's order is all there is).
        let carried: Option<Vec<OrderItem>> = self
            .stage
            .order
            .iter()
            .map(|item| {
                let name = item.column.as_ref()?;
                let col = cols.iter().find(|col| &col.name == name)?;
                Some(OrderItem {
                    sql: col.sql.clone(),
                    column: Some(col.name.clone()),
                    ..item.clone()
                })
            })
            .collect();
        let mut inner = self.stage.clone();
        let order = match carried {
            Some(order) => {
                // Sorting inside matters only to pick the rows a LIMIT keeps.
                if inner.limit.is_none() {
                    inner.order.clear();
                }
                order
            }
            None => Vec::new(),
        };
        self.stage = Stage {
            from: Source::Sub(Box::new(inner), alias),
            cols,
            wheres: Vec::new(),
            group_keys: None,
            distinct: false,
            order,
            limit: None,
        };
    }

    fn finish(mut self, used_rollup: bool) -> Result<CompiledQuery> {
        let cap = self.options.row_cap.max(0);
        let limit = self.stage.limit.map_or(cap, |take| take.min(cap));
        let cap_applies = self.stage.limit.is_none_or(|take| take > cap);
        let stage = self.stage.clone();
        let sql = self.render(&stage, true, Some(limit));
        let (sql, params) = params::compact(&sql, std::mem::take(&mut self.params), self.dialect);
        let columns = self
            .stage
            .cols
            .iter()
            .map(|col| OutputColumn {
                name: col.name.clone(),
                ty: col.ty,
            })
            .collect();
        Ok(CompiledQuery {
            dialect: self.dialect,
            sql,
            params,
            columns,
            limit,
            cap_applies,
            timeout: self.options.timeout,
            max_bytes: self.options.max_bytes,
            used_rollup,
        })
    }
}

/// The columns of `inner` that `outer` reads, when dropping the rest cannot change the rows
/// (not under DISTINCT or GROUP BY): a `take 100 | count` must not compute every catalog
/// column for each of the hundred rows.
fn prune(inner: &Stage, alias: &str, outer: &Stage) -> Stage {
    if inner.distinct || inner.group_keys.is_some() {
        return inner.clone();
    }
    let mut text = String::new();
    for col in &outer.cols {
        text.push_str(&col.sql);
    }
    for item in &outer.order {
        text.push_str(&item.sql);
    }
    for predicate in &outer.wheres {
        text.push_str(predicate);
    }
    let mut pruned = inner.clone();
    pruned
        .cols
        .retain(|col| text.contains(&format!("{alias}.{}", quote(&col.name))));
    if pruned.cols.is_empty() {
        pruned.cols.extend(inner.cols.first().cloned());
    }
    pruned
}
