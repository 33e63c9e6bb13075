//! The tabular operators: how each one changes the stage, and when it must wrap it first.
use super::{Col, Compiler, OrderItem};
use crate::ast::{Assignment, ExprKind, Name, Op, OpKind, OrderKey};
use crate::error::{ErrorKind, KqlError, Result};
use crate::value::Type;

impl Compiler<'_> {
    pub(super) fn op(&mut self, op: &Op) -> Result<()> {
        match &op.kind {
            OpKind::Where(predicate) => {
                if self.stage.closed() {
                    self.wrap();
                }
                let typed = self.expr(predicate)?;
                if typed.ty != Type::Bool {
                    return Err(KqlError::mismatch(
                        predicate.pos,
                        format!("'where' needs a bool predicate, not a {}", typed.ty),
                    ));
                }
                self.stage.wheres.push(typed.sql);
            }
            OpKind::Extend(list) => self.extend(list)?,
            OpKind::Project(list) => {
                self.wrap_if_aggregated();
                let cols = self.assignments(list)?;
                // A sort key now names another column, or none: it no longer survives a wrap.
                for item in &mut self.stage.order {
                    let same = item.column.as_ref().is_some_and(|name| {
                        cols.iter().any(|c| &c.name == name && c.sql == item.sql)
                    });
                    if !same {
                        item.column = None;
                    }
                }
                self.stage.cols = cols;
            }
            OpKind::ProjectAway(names) => self.project_away(names)?,
            OpKind::Summarize { aggregates, by } => self.summarize(aggregates, by)?,
            OpKind::Order(keys) => {
                if self.stage.limit.is_some() || self.stage.distinct {
                    self.wrap();
                }
                self.stage.order = self.order_items(keys)?;
            }
            OpKind::Top { count, key } => {
                if self.stage.limit.is_some() || self.stage.distinct {
                    self.wrap();
                }
                self.stage.order = self.order_items(std::slice::from_ref(key))?;
                self.stage.limit = Some(non_negative(*count, op)?);
            }
            OpKind::Take(count) => {
                let count = non_negative(*count, op)?;
                self.stage.limit = Some(self.stage.limit.map_or(count, |limit| limit.min(count)));
            }
            OpKind::Distinct(list) => {
                if self.stage.closed() {
                    self.wrap();
                }
                let cols = self.assignments(list)?;
                self.stage.cols = cols;
                self.stage.distinct = true;
                self.stage.order.clear();
            }
            OpKind::Count => {
                if self.stage.closed() {
                    self.wrap();
                }
                self.stage.cols = vec![Col {
                    name: "Count".to_string(),
                    sql: "COUNT(*)".to_string(),
                    ty: Type::Long,
                }];
                self.stage.group_keys = Some(0);
                self.stage.order.clear();
            }
        }
        Ok(())
    }

    fn forget_order_column(&mut self, name: &str) {
        for item in &mut self.stage.order {
            if item.column.as_deref() == Some(name) {
                item.column = None;
            }
        }
    }

    fn wrap_if_aggregated(&mut self) {
        if self.stage.group_keys.is_some() || self.stage.distinct {
            self.wrap();
        }
    }

    fn extend(&mut self, list: &[Assignment]) -> Result<()> {
        self.wrap_if_aggregated();
        for assignment in list {
            let col = self.assignment(assignment)?;
            self.forget_order_column(&col.name);
            match self.stage.cols.iter_mut().find(|c| c.name == col.name) {
                Some(existing) => *existing = col,
                None => self.stage.cols.push(col),
            }
        }
        Ok(())
    }

    fn project_away(&mut self, names: &[Name]) -> Result<()> {
        self.wrap_if_aggregated();
        for name in names {
            let before = self.stage.cols.len();
            self.stage.cols.retain(|col| col.name != name.text);
            if self.stage.cols.len() == before {
                return Err(self.unknown_column(&name.text, name.pos));
            }
        }
        if self.stage.cols.is_empty() {
            return Err(KqlError::syntax(
                names.first().map(|n| n.pos).unwrap_or_default(),
                "project-away would leave no columns",
            ));
        }
        Ok(())
    }

    /// The columns of a project/distinct list, against the current scope, names unique.
    fn assignments(&mut self, list: &[Assignment]) -> Result<Vec<Col>> {
        let mut cols: Vec<Col> = Vec::new();
        for assignment in list {
            let col = self.assignment(assignment)?;
            if cols.iter().any(|c| c.name == col.name) {
                return Err(KqlError::syntax(
                    assignment.expr.pos,
                    format!("column '{}' is named twice", col.name),
                ));
            }
            cols.push(col);
        }
        Ok(cols)
    }

    fn assignment(&mut self, assignment: &Assignment) -> Result<Col> {
        let typed = self.expr(&assignment.expr)?;
        if typed.ty == Type::Timespan {
            return Err(KqlError::mismatch(
                assignment.expr.pos,
                "a timespan can only be used with a datetime (ago, bin, +, -)",
            ));
        }
        let name = self.column_name(assignment);
        Ok(Col {
            name,
            sql: typed.sql,
            ty: typed.ty,
        })
    }

    /// The given name, the column's own, the column a `bin()` rounds, or `ColumnN`.
    pub(super) fn column_name(&mut self, assignment: &Assignment) -> String {
        if let Some(name) = &assignment.name {
            return name.text.clone();
        }
        match &assignment.expr.kind {
            ExprKind::Column(name) => name.clone(),
            ExprKind::Call { name, args } if name == "bin" => match args.first() {
                Some(first) => match &first.kind {
                    ExprKind::Column(column) => column.clone(),
                    _ => self.auto_name(),
                },
                None => self.auto_name(),
            },
            _ => self.auto_name(),
        }
    }

    fn summarize(&mut self, aggregates: &[Assignment], by: &[Assignment]) -> Result<()> {
        if self.stage.closed() {
            self.wrap();
        }
        let mut cols = self.assignments(by)?;
        for assignment in aggregates {
            let col = self.aggregate(assignment)?;
            if cols.iter().any(|c| c.name == col.name) {
                return Err(KqlError::syntax(
                    assignment.expr.pos,
                    format!("column '{}' is named twice", col.name),
                ));
            }
            cols.push(col);
        }
        self.stage.group_keys = Some(by.len());
        self.stage.cols = cols;
        self.stage.order.clear();
        Ok(())
    }

    fn order_items(&mut self, keys: &[OrderKey]) -> Result<Vec<OrderItem>> {
        let mut items = Vec::new();
        for key in keys {
            let typed = self.expr(&key.expr)?;
            if matches!(typed.ty, Type::Dynamic | Type::Timespan) {
                return Err(KqlError::mismatch(
                    key.expr.pos,
                    format!("cannot sort by a {}", typed.ty),
                ));
            }
            let column = match &key.expr.kind {
                ExprKind::Column(name) => Some(name.clone()),
                _ => None,
            };
            items.push(OrderItem {
                sql: typed.sql,
                ty: typed.ty,
                descending: key.descending,
                // KQL: nulls first ascending, last descending.
                nulls_first: key.nulls_first.unwrap_or(!key.descending),
                column,
            });
        }
        Ok(items)
    }

    pub(super) fn unknown_column(&self, name: &str, pos: crate::error::Pos) -> KqlError {
        let hint = self
            .stage
            .cols
            .iter()
            .find(|col| col.name.eq_ignore_ascii_case(name))
            .map(|col| format!(" (did you mean '{}'?)", col.name))
            .unwrap_or_default();
        KqlError::new(
            pos,
            ErrorKind::UnknownColumn {
                name: name.to_string(),
                hint,
            },
        )
    }
}

fn non_negative(count: i64, op: &Op) -> Result<i64> {
    if count < 0 {
        Err(KqlError::syntax(op.pos, "a row count cannot be negative"))
    } else {
        Ok(count)
    }
}
