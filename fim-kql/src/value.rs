//! The types the compiler checks, the parameters a compiled query binds and the cells a
//! result row holds. Kept apart from any database client, so the compiler stays
//! platform-neutral and each adapter converts at its own edge.
use std::fmt;

use fim_model::Timestamp;

/// A KQL scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    String,
    Long,
    Real,
    Bool,
    DateTime,
    Timespan,
    /// A JSON value (FieldsChanged, Operations): SQLite JSON text, PostgreSQL jsonb.
    Dynamic,
    /// The literal `null`: compatible with every type.
    Null,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Long => "long",
            Type::Real => "real",
            Type::Bool => "bool",
            Type::DateTime => "datetime",
            Type::Timespan => "timespan",
            Type::Dynamic => "dynamic",
            Type::Null => "null",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Long | Type::Real)
    }

    /// Whether values of the two types can be compared with == or <.
    pub fn comparable(self, other: Type) -> bool {
        self == other
            || self == Type::Null
            || other == Type::Null
            || (self.is_numeric() && other.is_numeric())
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value bound to a placeholder: never spliced into the SQL text.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// SQLite binds Unix nanoseconds; PostgreSQL a timestamptz.
    Time(Timestamp),
    /// Nanoseconds. SQLite binds them as they are; PostgreSQL binds microseconds and
    /// multiplies an interval.
    Span(i64),
}

/// One cell of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Time(Timestamp),
    Json(serde_json::Value),
}

impl Value {
    /// The text a CSV cell or a table shows (before any spreadsheet neutralising).
    pub fn display(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Text(text) => text.clone(),
            Value::Int(n) => n.to_string(),
            Value::Real(x) => x.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Time(at) => at.to_rfc3339(),
            Value::Json(json) => json.to_string(),
        }
    }
}

/// A column of the result: its KQL (Azure) name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    pub ty: Type,
}

/// A whole result, as the adapters collect it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rows {
    pub columns: Vec<OutputColumn>,
    pub rows: Vec<Vec<Value>>,
    /// The row cap (not the query's own `take`) ended the result: more rows may match.
    pub capped: bool,
}
