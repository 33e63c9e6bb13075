//! Scalar expressions, functions and aggregates: type-checked, then written as SQL with
//! every literal bound as a parameter.
use fim_model::Timestamp;

use super::{Col, Compiler};
use crate::ast::{Assignment, BinOp, Expr, ExprKind};
use crate::error::{ErrorKind, KqlError, Pos, Result};
use crate::value::{Param, Type};

/// An expression's SQL and type.
pub(super) struct Typed {
    pub sql: String,
    pub ty: Type,
}

fn typed(sql: String, ty: Type) -> Result<Typed> {
    Ok(Typed { sql, ty })
}

const AGGREGATES: &[&str] = &["count", "countif", "dcount", "min", "max", "sum", "avg"];

/// `%`, `_` and `\` made literal for LIKE ... ESCAPE '\'.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Compiler<'_> {
    pub(super) fn expr(&mut self, expr: &Expr) -> Result<Typed> {
        match &expr.kind {
            ExprKind::Column(name) => match self.stage.cols.iter().find(|c| &c.name == name) {
                Some(col) => typed(col.sql.clone(), col.ty),
                None => Err(self.unknown_column(name, expr.pos)),
            },
            ExprKind::Str(text) => typed(self.param(Param::Text(text.clone())), Type::String),
            ExprKind::Int(n) => typed(self.param(Param::Int(*n)), Type::Long),
            ExprKind::Real(x) => typed(self.param(Param::Real(*x)), Type::Real),
            ExprKind::Bool(b) => typed(self.param(Param::Bool(*b)), Type::Bool),
            ExprKind::Timespan(n) => typed(self.param(Param::Span(*n)), Type::Timespan),
            ExprKind::DateTime(n) => typed(
                self.param(Param::Time(Timestamp::from_unix_nanos(*n))),
                Type::DateTime,
            ),
            ExprKind::Null => typed("NULL".to_string(), Type::Null),
            ExprKind::Negate(inner) => {
                let inner_typed = self.expr(inner)?;
                if !inner_typed.ty.is_numeric() {
                    return Err(KqlError::mismatch(
                        expr.pos,
                        format!("cannot negate a {}", inner_typed.ty),
                    ));
                }
                typed(format!("(-{})", inner_typed.sql), inner_typed.ty)
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, expr.pos),
            ExprKind::In {
                expr: lhs,
                list,
                negated,
            } => self.in_list(lhs, list, *negated, expr.pos),
            ExprKind::Between {
                expr: lhs,
                low,
                high,
                negated,
            } => self.between(lhs, low, high, *negated, expr.pos),
            ExprKind::Call { name, args } => self.call(name, args, expr.pos),
        }
    }

    fn binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr, pos: Pos) -> Result<Typed> {
        let left = self.expr(lhs)?;
        match op {
            BinOp::Contains
            | BinOp::NotContains
            | BinOp::ContainsCs
            | BinOp::NotContainsCs
            | BinOp::Has
            | BinOp::NotHas
            | BinOp::StartsWith
            | BinOp::NotStartsWith
            | BinOp::EndsWith
            | BinOp::NotEndsWith => return self.string_match(op, left, rhs, pos),
            _ => {}
        }
        let right = self.expr(rhs)?;
        let (l, r) = (&left.sql, &right.sql);
        let mismatch = |what: &str| {
            Err(KqlError::mismatch(
                pos,
                format!(
                    "'{}' {what}: the left side is a {}, the right side a {}",
                    op.text(),
                    left.ty,
                    right.ty
                ),
            ))
        };
        match op {
            BinOp::And | BinOp::Or => {
                if left.ty != Type::Bool || right.ty != Type::Bool {
                    return mismatch("needs two bools");
                }
                let word = if op == BinOp::And { "AND" } else { "OR" };
                typed(format!("({l} {word} {r})"), Type::Bool)
            }
            BinOp::Eq | BinOp::NotEq => {
                if !left.ty.comparable(right.ty) || matches!(left.ty, Type::Dynamic) {
                    return mismatch("cannot compare these");
                }
                let negated = op == BinOp::NotEq;
                let sql = match (left.ty, right.ty) {
                    (Type::Null, _) | (_, Type::Null) => {
                        let value = if left.ty == Type::Null { r } else { l };
                        let is = if negated { "IS NOT" } else { "IS" };
                        format!("({value} {is} NULL)")
                    }
                    _ => format!("({l} {} {r})", if negated { "<>" } else { "=" }),
                };
                typed(sql, Type::Bool)
            }
            BinOp::EqCi | BinOp::NotEqCi => {
                if left.ty != Type::String || right.ty != Type::String {
                    return mismatch("compares strings");
                }
                let eq = if op == BinOp::EqCi { "=" } else { "<>" };
                typed(format!("(lower({l}) {eq} lower({r}))"), Type::Bool)
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let orderable = matches!(
                    left.ty,
                    Type::Long | Type::Real | Type::DateTime | Type::String
                );
                if !orderable || !left.ty.comparable(right.ty) || right.ty == Type::Null {
                    return mismatch("cannot compare these");
                }
                typed(format!("({l} {} {r})", op.text()), Type::Bool)
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                self.arithmetic(op, left, right, pos)
            }
            _ => mismatch("is not a binary operator here"),
        }
    }

    fn arithmetic(&mut self, op: BinOp, left: Typed, right: Typed, pos: Pos) -> Result<Typed> {
        let sql = format!("({} {} {})", left.sql, op.text(), right.sql);
        let ty = match (left.ty, right.ty, op) {
            (Type::Long, Type::Long, _) => Type::Long,
            (a, b, _) if a.is_numeric() && b.is_numeric() => Type::Real,
            (Type::DateTime, Type::Timespan, BinOp::Add | BinOp::Sub) => Type::DateTime,
            (Type::Timespan, Type::DateTime, BinOp::Add) => Type::DateTime,
            _ => {
                return Err(KqlError::mismatch(
                    pos,
                    format!(
                        "cannot apply '{}' to a {} and a {}",
                        op.text(),
                        left.ty,
                        right.ty
                    ),
                ));
            }
        };
        typed(sql, ty)
    }

    /// contains, has, startswith, endswith and their negations: the right side must be a
    /// string literal, so its pattern is built here and bound whole.
    fn string_match(&mut self, op: BinOp, left: Typed, rhs: &Expr, pos: Pos) -> Result<Typed> {
        let ExprKind::Str(needle) = &rhs.kind else {
            return Err(KqlError::mismatch(
                rhs.pos,
                format!("the right side of '{}' must be a string literal", op.text()),
            ));
        };
        let dynamic = left.ty == Type::Dynamic;
        let allowed = left.ty == Type::String
            || (dynamic
                && matches!(
                    op,
                    BinOp::Has | BinOp::NotHas | BinOp::Contains | BinOp::NotContains
                ));
        if !allowed {
            return Err(KqlError::mismatch(
                pos,
                format!(
                    "'{}' needs a string on its left, not a {}",
                    op.text(),
                    left.ty
                ),
            ));
        }
        let l = &left.sql;
        let dialect = self.dialect;
        let (positive, negated) = match op {
            BinOp::Has | BinOp::NotHas if dynamic => {
                let p = self.param(Param::Text(needle.clone()));
                (dialect.array_has(l, &p), op == BinOp::NotHas)
            }
            BinOp::Has | BinOp::NotHas => {
                let p = self.param(Param::Text(dialect.has_pattern(needle)));
                (dialect.has(l, &p), op == BinOp::NotHas)
            }
            BinOp::Contains | BinOp::NotContains => {
                let p = self.param(Param::Text(format!("%{}%", like_escape(needle))));
                let text = if dynamic {
                    dialect.json_text(l)
                } else {
                    l.clone()
                };
                (dialect.ilike(&text, &p), op == BinOp::NotContains)
            }
            BinOp::ContainsCs | BinOp::NotContainsCs => {
                let p = self.param(Param::Text(needle.clone()));
                (dialect.contains_cs(l, &p), op == BinOp::NotContainsCs)
            }
            BinOp::StartsWith | BinOp::NotStartsWith => {
                let p = self.param(Param::Text(format!("{}%", like_escape(needle))));
                (dialect.ilike(l, &p), op == BinOp::NotStartsWith)
            }
            _ => {
                let p = self.param(Param::Text(format!("%{}", like_escape(needle))));
                (dialect.ilike(l, &p), op == BinOp::NotEndsWith)
            }
        };
        let sql = if negated {
            format!("(NOT {positive})")
        } else {
            positive
        };
        typed(sql, Type::Bool)
    }

    fn in_list(&mut self, lhs: &Expr, list: &[Expr], negated: bool, pos: Pos) -> Result<Typed> {
        let left = self.expr(lhs)?;
        if matches!(left.ty, Type::Dynamic | Type::Timespan | Type::Null) {
            return Err(KqlError::mismatch(
                pos,
                format!("'in' cannot test a {}", left.ty),
            ));
        }
        let mut items = Vec::new();
        for item in list {
            let value = self.expr(item)?;
            if !left.ty.comparable(value.ty) || value.ty == Type::Null {
                return Err(KqlError::mismatch(
                    item.pos,
                    format!(
                        "'in' list holds a {} but the value is a {}",
                        value.ty, left.ty
                    ),
                ));
            }
            items.push(value.sql);
        }
        let not = if negated { "NOT " } else { "" };
        typed(
            format!("({} {not}IN ({}))", left.sql, items.join(", ")),
            Type::Bool,
        )
    }

    fn between(
        &mut self,
        lhs: &Expr,
        low: &Expr,
        high: &Expr,
        negated: bool,
        pos: Pos,
    ) -> Result<Typed> {
        let left = self.expr(lhs)?;
        let from = self.expr(low)?;
        let mut to = self.expr(high)?;
        if left.ty == Type::DateTime && from.ty == Type::DateTime && to.ty == Type::Timespan {
            // `between (datetime(...) .. 1d)`: the end is the start plus the span.
            to = Typed {
                sql: format!("({} + {})", from.sql, to.sql),
                ty: Type::DateTime,
            };
        }
        let orderable = matches!(left.ty, Type::Long | Type::Real | Type::DateTime);
        if !orderable || !left.ty.comparable(from.ty) || !left.ty.comparable(to.ty) {
            return Err(KqlError::mismatch(
                pos,
                format!(
                    "'between' needs numbers or datetimes: the value is a {}, the range {} .. {}",
                    left.ty, from.ty, to.ty
                ),
            ));
        }
        let not = if negated { "NOT " } else { "" };
        typed(
            format!("({} {not}BETWEEN {} AND {})", left.sql, from.sql, to.sql),
            Type::Bool,
        )
    }

    fn args(&mut self, name: &str, args: &[Expr], arity: usize, pos: Pos) -> Result<Vec<Typed>> {
        if args.len() != arity {
            return Err(KqlError::syntax(
                pos,
                format!("{name}() takes {arity} argument(s), got {}", args.len()),
            ));
        }
        args.iter().map(|arg| self.expr(arg)).collect()
    }

    fn call(&mut self, name: &str, args: &[Expr], pos: Pos) -> Result<Typed> {
        let want = |arg: &Typed, ty: Type, at: Pos| -> Result<()> {
            if arg.ty == ty {
                Ok(())
            } else {
                Err(KqlError::mismatch(
                    at,
                    format!("{name}() needs a {ty} here, not a {}", arg.ty),
                ))
            }
        };
        let arg_pos = |i: usize| args.get(i).map_or(pos, |arg| arg.pos);
        match name {
            "ago" | "now" => self.clock(name, args, pos),
            "bin" => match args {
                // Only the value is compiled: the size is bound below in the form bin()
                // needs (an unused placeholder would leave PostgreSQL unable to type it).
                [value, size] => {
                    let value = self.expr(value)?;
                    self.bin(&value, size, pos)
                }
                _ => Err(KqlError::syntax(pos, "bin() takes 2 arguments")),
            },
            "tolower" | "toupper" => {
                let a = self.args(name, args, 1, pos)?;
                want(&a[0], Type::String, arg_pos(0))?;
                let f = if name == "tolower" { "lower" } else { "upper" };
                typed(format!("{f}({})", a[0].sql), Type::String)
            }
            "strlen" => {
                let a = self.args(name, args, 1, pos)?;
                want(&a[0], Type::String, arg_pos(0))?;
                let sql = match self.dialect {
                    crate::Dialect::Sqlite => format!("length({})", a[0].sql),
                    crate::Dialect::Postgres => format!("(length({}))::bigint", a[0].sql),
                };
                typed(sql, Type::Long)
            }
            "isempty" | "isnotempty" => {
                let a = self.args(name, args, 1, pos)?;
                let sql = if a[0].ty == Type::String {
                    format!("({0} IS NULL OR {0} = '')", a[0].sql)
                } else {
                    format!("({} IS NULL)", a[0].sql)
                };
                let sql = if name == "isempty" {
                    sql
                } else {
                    format!("(NOT {sql})")
                };
                typed(sql, Type::Bool)
            }
            "not" => {
                let a = self.args(name, args, 1, pos)?;
                want(&a[0], Type::Bool, arg_pos(0))?;
                typed(format!("(NOT {})", a[0].sql), Type::Bool)
            }
            "strcat" => self.strcat(args, pos),
            _ if AGGREGATES.contains(&name) => Err(KqlError::not_allowed(
                pos,
                format!("aggregate {name}() can only be used in summarize"),
            )),
            _ => Err(KqlError::new(
                pos,
                ErrorKind::UnknownFunction(name.to_string()),
            )),
        }
    }

    /// `now()`, `now(offset)`, `ago(span)`: the compile-time clock, bound as a parameter.
    fn clock(&mut self, name: &str, args: &[Expr], pos: Pos) -> Result<Typed> {
        let span = match args {
            [] if name == "now" => 0,
            [arg] => match arg.kind {
                ExprKind::Timespan(nanos) => nanos,
                _ => {
                    return Err(KqlError::mismatch(
                        arg.pos,
                        format!("{name}() needs a timespan literal such as 14d"),
                    ));
                }
            },
            _ => {
                return Err(KqlError::syntax(
                    pos,
                    format!("{name}() takes one timespan argument"),
                ));
            }
        };
        let now = self.options.now.unix_nanos();
        let at = if name == "ago" {
            now.saturating_sub(span)
        } else {
            now.saturating_add(span)
        };
        let placeholder = self.param(Param::Time(Timestamp::from_unix_nanos(at)));
        typed(placeholder, Type::DateTime)
    }

    fn bin(&mut self, value: &Typed, size: &Expr, pos: Pos) -> Result<Typed> {
        match (value.ty, &size.kind) {
            (Type::DateTime, ExprKind::Timespan(span)) if *span > 0 => {
                // Nanoseconds in SQLite, an interval in PostgreSQL.
                let placeholder = self.param(Param::Span(*span));
                typed(
                    self.dialect.bin_time(&value.sql, &placeholder),
                    Type::DateTime,
                )
            }
            (Type::Long, ExprKind::Int(n)) if *n > 0 => {
                let p = self.param(Param::Int(*n));
                typed(format!("(({} / {p}) * {p})", value.sql), Type::Long)
            }
            (Type::Real | Type::Long, ExprKind::Real(_) | ExprKind::Int(_)) => {
                let step = match size.kind {
                    ExprKind::Real(x) => x,
                    ExprKind::Int(n) => n as f64,
                    _ => 0.0,
                };
                if step <= 0.0 {
                    return Err(KqlError::mismatch(size.pos, "bin() needs a positive size"));
                }
                let p = self.param(Param::Real(step));
                typed(format!("(floor({} / {p}) * {p})", value.sql), Type::Real)
            }
            _ => Err(KqlError::mismatch(
                pos,
                format!(
                    "bin() rounds a datetime by a positive timespan literal or a number by a \
                     positive number literal, not a {}",
                    value.ty
                ),
            )),
        }
    }

    fn strcat(&mut self, args: &[Expr], pos: Pos) -> Result<Typed> {
        if args.is_empty() {
            return Err(KqlError::syntax(
                pos,
                "strcat() needs at least one argument",
            ));
        }
        let mut parts = Vec::new();
        for arg in args {
            let value = self.expr(arg)?;
            let part = match value.ty {
                Type::String => format!("COALESCE({}, '')", value.sql),
                Type::Long | Type::Real | Type::Bool => {
                    format!("COALESCE({}, '')", self.dialect.to_text(&value.sql))
                }
                other => {
                    return Err(KqlError::mismatch(
                        arg.pos,
                        format!("strcat() cannot join a {other}"),
                    ));
                }
            };
            parts.push(part);
        }
        typed(format!("({})", parts.join(" || ")), Type::String)
    }

    /// One aggregate of `summarize`, named as KQL names it (`count_`, `dcount_Computer`).
    pub(super) fn aggregate(&mut self, assignment: &Assignment) -> Result<Col> {
        let expr = &assignment.expr;
        let ExprKind::Call { name, args } = &expr.kind else {
            return Err(KqlError::syntax(
                expr.pos,
                "summarize needs an aggregate such as count() or dcount(Computer)",
            ));
        };
        let (sql, ty) = self.aggregate_sql(name, args, expr.pos)?;
        let default_name = match args.first().map(|arg| &arg.kind) {
            Some(ExprKind::Column(column)) => format!("{name}_{column}"),
            _ => format!("{name}_"),
        };
        let name = assignment
            .name
            .as_ref()
            .map_or(default_name, |given| given.text.clone());
        Ok(Col { name, sql, ty })
    }

    fn aggregate_sql(&mut self, name: &str, args: &[Expr], pos: Pos) -> Result<(String, Type)> {
        let pg = self.dialect == crate::Dialect::Postgres;
        match name {
            "count" => {
                self.args(name, args, 0, pos)?;
                Ok(("COUNT(*)".to_string(), Type::Long))
            }
            "countif" => {
                let a = self.args(name, args, 1, pos)?;
                if a[0].ty != Type::Bool {
                    return Err(KqlError::mismatch(
                        args[0].pos,
                        "countif() needs a predicate",
                    ));
                }
                let sum = format!("SUM(CASE WHEN {} THEN 1 ELSE 0 END)", a[0].sql);
                Ok((
                    if pg { format!("({sum})::bigint") } else { sum },
                    Type::Long,
                ))
            }
            "dcount" => {
                let a = self.args(name, args, 1, pos)?;
                Ok((format!("COUNT(DISTINCT {})", a[0].sql), Type::Long))
            }
            "min" | "max" => {
                let a = self.args(name, args, 1, pos)?;
                if matches!(
                    a[0].ty,
                    Type::Dynamic | Type::Timespan | Type::Null | Type::Bool
                ) {
                    return Err(KqlError::mismatch(
                        args[0].pos,
                        format!("{name}() cannot take a {}", a[0].ty),
                    ));
                }
                Ok((format!("{}({})", name.to_uppercase(), a[0].sql), a[0].ty))
            }
            "sum" | "avg" => {
                let a = self.args(name, args, 1, pos)?;
                if !a[0].ty.is_numeric() {
                    return Err(KqlError::mismatch(
                        args[0].pos,
                        format!("{name}() needs a number, not a {}", a[0].ty),
                    ));
                }
                let ty = if name == "sum" { a[0].ty } else { Type::Real };
                let sql = format!("{}({})", name.to_uppercase(), a[0].sql);
                let sql = match (pg, ty) {
                    (true, Type::Long) => format!("({sql})::bigint"),
                    (true, _) => format!("({sql})::double precision"),
                    (false, Type::Real) if name == "avg" => sql,
                    (false, Type::Real) => format!("CAST({sql} AS REAL)"),
                    (false, _) => sql,
                };
                Ok((sql, ty))
            }
            _ => Err(KqlError::new(
                pos,
                ErrorKind::UnknownFunction(name.to_string()),
            )),
        }
    }
}
