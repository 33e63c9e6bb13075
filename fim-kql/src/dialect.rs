//! What differs between SQLite and PostgreSQL in the SQL the compiler writes: placeholders,
//! case-insensitive matching, time arithmetic, sort collation and how a result column is
//! handed to the client. Everything else the compiler writes is common SQL.
use crate::value::{Param, Type};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// PostgreSQL's spelling of the Unix epoch, the origin of `bin()` on datetimes.
const PG_EPOCH: &str = "TIMESTAMPTZ '1970-01-01 00:00:00+00'";

impl Dialect {
    /// The placeholder of parameter `index` (1-based). Numbered placeholders let one
    /// parameter appear more than once (a column expression reused by later operators).
    /// PostgreSQL's carry a cast, so every parameter's type is fixed by the query text.
    pub fn placeholder(self, index: usize, param: &Param) -> String {
        match self {
            Dialect::Sqlite => format!("?{index}"),
            Dialect::Postgres => match param {
                Param::Text(_) => format!("${index}::text"),
                Param::Int(_) => format!("${index}::bigint"),
                Param::Real(_) => format!("${index}::double precision"),
                Param::Bool(_) => format!("${index}::boolean"),
                Param::Time(_) => format!("${index}::timestamptz"),
                Param::Span(_) => format!("(${index}::bigint * INTERVAL '1 microsecond')"),
            },
        }
    }

    /// Case-insensitive LIKE with `\` as the escape character.
    pub fn ilike(self, lhs: &str, pattern: &str) -> String {
        match self {
            Dialect::Sqlite => format!("({lhs} LIKE {pattern} ESCAPE '\\')"),
            Dialect::Postgres => format!("({lhs} ILIKE {pattern} ESCAPE '\\')"),
        }
    }

    /// Case-sensitive substring test.
    pub fn contains_cs(self, lhs: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("(instr({lhs}, {needle}) > 0)"),
            Dialect::Postgres => format!("(strpos({lhs}, {needle}) > 0)"),
        }
    }

    /// `has`: `term` appears as a whole term. The pattern parameter comes from
    /// [`Dialect::has_pattern`].
    pub fn has(self, lhs: &str, pattern: &str) -> String {
        match self {
            Dialect::Sqlite => format!("((' ' || lower({lhs}) || ' ') GLOB {pattern})"),
            Dialect::Postgres => format!("({lhs} ~* {pattern})"),
        }
    }

    /// The bound pattern for [`Dialect::has`]: a term bounded by non-alphanumerics.
    pub fn has_pattern(self, term: &str) -> String {
        match self {
            Dialect::Sqlite => {
                let mut pattern = String::from("*[^a-z0-9]");
                for c in term.to_ascii_lowercase().chars() {
                    match c {
                        '*' | '?' | '[' => {
                            pattern.push('[');
                            pattern.push(c);
                            pattern.push(']');
                        }
                        _ => pattern.push(c),
                    }
                }
                pattern.push_str("[^a-z0-9]*");
                pattern
            }
            Dialect::Postgres => {
                let mut pattern = String::from("(^|[^a-zA-Z0-9])");
                for c in term.chars() {
                    if !c.is_alphanumeric() {
                        pattern.push('\\');
                    }
                    pattern.push(c);
                }
                pattern.push_str("($|[^a-zA-Z0-9])");
                pattern
            }
        }
    }

    /// Does a dynamic (JSON array) value hold an element equal to `needle`, ignoring case?
    pub fn array_has(self, array: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each({array}) AS e WHERE lower(e.value) = lower({needle}))"
            ),
            Dialect::Postgres => format!(
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text({array}) AS e(v) \
                 WHERE lower(e.v) = lower({needle}))"
            ),
        }
    }

    /// Round a datetime down to a multiple of `span` since the Unix epoch.
    pub fn bin_time(self, time: &str, span: &str) -> String {
        match self {
            Dialect::Sqlite => format!("(({time} / {span}) * {span})"),
            Dialect::Postgres => format!("date_bin({span}, {time}, {PG_EPOCH})"),
        }
    }

    /// Any scalar as text (for strcat).
    pub fn to_text(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({sql} AS TEXT)"),
            Dialect::Postgres => format!("({sql})::text"),
        }
    }

    /// The text of a dynamic value (for contains on FieldsChanged and the like).
    pub fn json_text(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.to_string(),
            Dialect::Postgres => format!("({sql})::text"),
        }
    }

    /// How a column of type `ty` is sorted: PostgreSQL compares text in the "C" collation,
    /// as SQLite's BINARY does, so both backends return rows in the same order.
    pub fn order_collation(self, ty: Type) -> &'static str {
        match (self, ty) {
            (Dialect::Postgres, Type::String) => " COLLATE \"C\"",
            _ => "",
        }
    }

    /// The expression a final result column is selected as: PostgreSQL hands jsonb over as
    /// its text, and sums and averages as bigint and float8.
    pub fn output(self, sql: &str, ty: Type) -> String {
        match (self, ty) {
            (Dialect::Postgres, Type::Dynamic) => format!("({sql})::text"),
            _ => sql.to_string(),
        }
    }
}
