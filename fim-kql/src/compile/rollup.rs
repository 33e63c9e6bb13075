//! Counting from the hourly rollup: `where` on time and dimensions, then `summarize count()
//! by` dimensions (and hour multiples of `bin(TimeGenerated, ...)`), is answered from the
//! counts table instead of the records, exactly.
//!
//! The documented "changes in the last 14 days by computer and type" at 100M records would
//! scan millions of rows; the counts table holds one row per hour, computer, type and
//! category. A lower time bound rarely falls on an hour, so the answer is the full hours
//! from the counts (`hour >= B`, B the first whole hour inside the range) plus the records
//! of the partial hour before B from the table itself, summed per group: the same rows the
//! plain query returns, as the tests check on both backends. Any other query shape falls
//! back to the plain compilation.
use super::{Col, Compiler, Source, Stage};
use crate::ast::{Assignment, BinOp, Expr, ExprKind, Op, OpKind};
use crate::error::Result;
use crate::value::{Param, Type};
use fim_model::Timestamp;

const HOUR_NS: i64 = 3_600_000_000_000;

/// The counts table: one row per UTC hour and dimension values, with a count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollup {
    pub sql_table: String,
    /// The hour column (Unix nanoseconds in SQLite, timestamptz in PostgreSQL).
    pub hour: String,
    /// The count column.
    pub count: String,
    /// KQL dimension column -> the counts table's column.
    pub dimensions: Vec<(String, String)>,
}

impl Rollup {
    /// `configuration_change_hourly` of [`crate::schema`].
    pub fn configuration_change_hourly() -> Self {
        let dim = |kql: &str, sql: &str| (kql.to_string(), sql.to_string());
        Rollup {
            sql_table: "configuration_change_hourly".to_string(),
            hour: "hour".to_string(),
            count: "changes".to_string(),
            dimensions: vec![
                dim("Computer", "computer"),
                dim("ComputerId", "computer_id"),
                dim("ConfigChangeType", "change_type"),
                dim("ChangeCategory", "category"),
            ],
        }
    }

    fn is_dimension(&self, name: &str) -> bool {
        self.dimensions.iter().any(|(kql, _)| kql == name)
    }
}

/// The predicates of the leading `where`s, split into the time bound and the rest.
struct Filter<'q> {
    /// (bound, inclusive): `TimeGenerated >= bound` or `> bound`.
    lower: Option<(i64, bool)>,
    dimensions: Vec<&'q Expr>,
}

fn conjuncts<'q>(expr: &'q Expr, out: &mut Vec<&'q Expr>) {
    match &expr.kind {
        ExprKind::Binary {
            op: BinOp::And,
            lhs,
            rhs,
        } => {
            conjuncts(lhs, out);
            conjuncts(rhs, out);
        }
        _ => out.push(expr),
    }
}

/// Whether every column `expr` reads is a dimension (and it holds no aggregate).
fn only_dimensions(expr: &Expr, rollup: &Rollup) -> bool {
    match &expr.kind {
        ExprKind::Column(name) => rollup.is_dimension(name),
        ExprKind::Call { args, .. } => args.iter().all(|a| only_dimensions(a, rollup)),
        ExprKind::Binary { lhs, rhs, .. } => {
            only_dimensions(lhs, rollup) && only_dimensions(rhs, rollup)
        }
        ExprKind::Negate(inner) => only_dimensions(inner, rollup),
        ExprKind::In { expr, list, .. } => {
            only_dimensions(expr, rollup) && list.iter().all(|a| only_dimensions(a, rollup))
        }
        ExprKind::Between {
            expr, low, high, ..
        } => [expr, low, high].iter().all(|e| only_dimensions(e, rollup)),
        _ => true,
    }
}

impl Compiler<'_> {
    /// A time the query states as a constant: `ago(14d)`, `now()`, `datetime(...)`, ± a span.
    fn constant_time(&self, expr: &Expr) -> Option<i64> {
        let now = self.options.now.unix_nanos();
        match &expr.kind {
            ExprKind::DateTime(nanos) => Some(*nanos),
            ExprKind::Call { name, args } => match (name.as_str(), args.as_slice()) {
                ("now", []) => Some(now),
                ("now", [span]) => span_literal(span).map(|s| now.saturating_add(s)),
                ("ago", [span]) => span_literal(span).map(|s| now.saturating_sub(s)),
                _ => None,
            },
            ExprKind::Binary { op, lhs, rhs } if matches!(op, BinOp::Add | BinOp::Sub) => {
                let base = self.constant_time(lhs)?;
                let span = span_literal(rhs)?;
                Some(if *op == BinOp::Add {
                    base.saturating_add(span)
                } else {
                    base.saturating_sub(span)
                })
            }
            _ => None,
        }
    }

    fn filter<'q>(&self, wheres: &[&'q Expr], rollup: &Rollup) -> Option<Filter<'q>> {
        let mut atoms = Vec::new();
        for predicate in wheres {
            conjuncts(predicate, &mut atoms);
        }
        let mut filter = Filter {
            lower: None,
            dimensions: Vec::new(),
        };
        for atom in atoms {
            if let ExprKind::Binary {
                op: op @ (BinOp::Gt | BinOp::Ge),
                lhs,
                rhs,
            } = &atom.kind
            {
                if matches!(&lhs.kind, ExprKind::Column(name) if name == "TimeGenerated") {
                    let bound = self.constant_time(rhs)?;
                    let inclusive = *op == BinOp::Ge;
                    // Two lower bounds: the later one (the exclusive one on a tie) wins.
                    let tighter = filter.lower.is_none_or(|(old, old_incl)| {
                        bound > old || (bound == old && old_incl && !inclusive)
                    });
                    if tighter {
                        filter.lower = Some((bound, inclusive));
                    }
                    continue;
                }
            }
            if !only_dimensions(atom, rollup) {
                return None;
            }
            filter.dimensions.push(atom);
        }
        Some(filter)
    }

    /// Compiles `expr` with `scope` as the columns in view.
    fn expr_in(&mut self, expr: &Expr, scope: Vec<Col>) -> Result<super::expr::Typed> {
        let saved = std::mem::replace(&mut self.stage.cols, scope);
        let typed = self.expr(expr);
        self.stage.cols = saved;
        typed
    }

    /// Tries the rollup: Ok(true) when `ops` (all of the query's) were compiled through it.
    pub(super) fn rollup(&mut self, ops: &[Op], rollup: &Rollup) -> Result<bool> {
        let Some(at) = ops
            .iter()
            .position(|op| matches!(op.kind, OpKind::Summarize { .. }))
        else {
            return Ok(false);
        };
        let mut wheres = Vec::new();
        for op in &ops[..at] {
            match &op.kind {
                OpKind::Where(predicate) => wheres.push(predicate),
                _ => return Ok(false),
            }
        }
        let OpKind::Summarize { aggregates, by } = &ops[at].kind else {
            return Ok(false);
        };
        let (Some(filter), Some(count_name)) =
            (self.filter(&wheres, rollup), count_only(aggregates))
        else {
            return Ok(false);
        };
        if !by.iter().all(|key| rollup_key(key, rollup)) {
            return Ok(false);
        }
        // A count named like a key is an error the plain compilation reports.
        let key_named = |key: &Assignment| match (&key.name, &key.expr.kind) {
            (Some(name), _) => name.text == count_name,
            (None, ExprKind::Column(column)) => *column == count_name,
            (None, _) => count_name == "TimeGenerated",
        };
        if by.iter().any(key_named) {
            return Ok(false);
        }
        self.summarize_rollup(&filter, by, count_name, rollup)?;
        for op in &ops[at + 1..] {
            self.op(op)?;
        }
        Ok(true)
    }

    fn summarize_rollup(
        &mut self,
        filter: &Filter<'_>,
        by: &[Assignment],
        count_name: String,
        rollup: &Rollup,
    ) -> Result<()> {
        let raw_scope = self.stage.cols.clone();
        let hourly_scope: Vec<Col> = rollup
            .dimensions
            .iter()
            .map(|(name, sql)| Col {
                name: name.clone(),
                sql: sql.clone(),
                ty: Type::String,
            })
            .chain(std::iter::once(Col {
                name: "TimeGenerated".to_string(),
                sql: rollup.hour.clone(),
                ty: Type::DateTime,
            }))
            .collect();
        let time_sql = match raw_scope.iter().find(|c| c.name == "TimeGenerated") {
            Some(col) => col.sql.clone(),
            None => return Err(self.unknown_column("TimeGenerated", Default::default())),
        };
        let names: Vec<String> = by.iter().map(|key| self.column_name(key)).collect();
        let count_sql = format!("{} AS n", rollup.count);
        let (mut hourly, types) = self.branch(
            by,
            &names,
            filter,
            hourly_scope,
            count_sql,
            &rollup.sql_table,
        )?;
        let mut source = hourly.clone();
        if let Some((bound, inclusive)) = filter.lower {
            // Compiled only here: a placeholder the SQL never uses would leave PostgreSQL
            // unable to type it.
            let table = self.table().to_string();
            let (mut raw, _) =
                self.branch(by, &names, filter, raw_scope, "1 AS n".to_string(), &table)?;
            // B: the first whole hour of which every record is inside the range.
            let mut first_hour = bound.div_euclid(HOUR_NS) * HOUR_NS;
            if first_hour < bound || !inclusive {
                first_hour += HOUR_NS;
            }
            let b = self.param(Param::Time(Timestamp::from_unix_nanos(first_hour)));
            hourly.wheres.push(format!("({} >= {b})", rollup.hour));
            let t = self.param(Param::Time(Timestamp::from_unix_nanos(bound)));
            let op = if inclusive { ">=" } else { ">" };
            raw.wheres.push(format!("({time_sql} {op} {t})"));
            raw.wheres.push(format!("({time_sql} < {b})"));
            source = hourly.union(&raw);
        }
        let keys = names.into_iter().zip(types).collect();
        self.stage_from_rollup(source, keys, count_name);
        Ok(())
    }

    /// One SELECT of the union: the keys and dimension predicates over `scope`.
    fn branch(
        &mut self,
        by: &[Assignment],
        names: &[String],
        filter: &Filter<'_>,
        scope: Vec<Col>,
        count_sql: String,
        from: &str,
    ) -> Result<(Branch, Vec<Type>)> {
        let mut branch = Branch::new(count_sql, from);
        let mut types = Vec::new();
        for (key, name) in by.iter().zip(names) {
            let typed = self.expr_in(&key.expr, scope.clone())?;
            branch.key(&typed.sql, name);
            types.push(typed.ty);
        }
        for predicate in &filter.dimensions {
            let typed = self.expr_in(predicate, scope.clone())?;
            branch.wheres.push(typed.sql);
        }
        Ok((branch, types))
    }

    fn table(&self) -> &str {
        match &self.stage.from {
            Source::Table(table) => table,
            Source::Sub(..) => "",
        }
    }

    fn stage_from_rollup(&mut self, source: Branch, keys: Vec<(String, Type)>, count: String) {
        let sum = match self.dialect {
            crate::Dialect::Sqlite => "COALESCE(SUM(r.n), 0)".to_string(),
            crate::Dialect::Postgres => "(COALESCE(SUM(r.n), 0))::bigint".to_string(),
        };
        let group_keys = keys.len();
        let mut cols: Vec<Col> = keys
            .into_iter()
            .map(|(name, ty)| Col {
                sql: format!("r.{}", super::quote(&name)),
                name,
                ty,
            })
            .collect();
        cols.push(Col {
            name: count,
            sql: sum,
            ty: Type::Long,
        });
        self.stage = Stage {
            from: Source::Table(format!("({}) AS r", source.sql())),
            cols,
            wheres: Vec::new(),
            group_keys: Some(group_keys),
            distinct: false,
            order: Vec::new(),
            limit: None,
        };
    }
}

/// One SELECT of the union.
#[derive(Clone)]
struct Branch {
    keys: Vec<String>,
    count: String,
    from: String,
    wheres: Vec<String>,
    other: Option<Box<Branch>>,
}

impl Branch {
    fn new(count: String, from: &str) -> Self {
        Branch {
            keys: Vec::new(),
            count,
            from: from.to_string(),
            wheres: Vec::new(),
            other: None,
        }
    }

    fn key(&mut self, sql: &str, name: &str) {
        self.keys.push(format!("{sql} AS {}", super::quote(name)));
    }

    fn union(mut self, other: &Branch) -> Self {
        self.other = Some(Box::new(other.clone()));
        self
    }

    fn sql(&self) -> String {
        let mut columns = self.keys.clone();
        columns.push(self.count.clone());
        let mut sql = format!("SELECT {} FROM {}", columns.join(", "), self.from);
        if !self.wheres.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.wheres.join(" AND "));
        }
        if let Some(other) = &self.other {
            sql.push_str(" UNION ALL ");
            sql.push_str(&other.sql());
        }
        sql
    }
}

fn span_literal(expr: &Expr) -> Option<i64> {
    match expr.kind {
        ExprKind::Timespan(nanos) => Some(nanos),
        _ => None,
    }
}

/// The output name when the aggregates are exactly one `count()`.
fn count_only(aggregates: &[Assignment]) -> Option<String> {
    match aggregates {
        [one] => match &one.expr.kind {
            ExprKind::Call { name, args } if name == "count" && args.is_empty() => Some(
                one.name
                    .as_ref()
                    .map_or("count_".to_string(), |n| n.text.clone()),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// A group key the counts can give: a dimension, or whole hours of TimeGenerated.
fn rollup_key(key: &Assignment, rollup: &Rollup) -> bool {
    match &key.expr.kind {
        ExprKind::Column(name) => rollup.is_dimension(name),
        ExprKind::Call { name, args } if name == "bin" => match args.as_slice() {
            [value, size] => {
                matches!(&value.kind, ExprKind::Column(c) if c == "TimeGenerated")
                    && span_literal(size).is_some_and(|s| s > 0 && s % HOUR_NS == 0)
            }
            _ => false,
        },
        _ => false,
    }
}
