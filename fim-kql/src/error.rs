//! One error type for every stage (lexing, parsing, compiling), always carrying the
//! 1-based LINE:COLUMN of the offending token, so a user sees where their query went wrong
//! and nothing is ever sent to a database.
use std::fmt;

/// A 1-based position in the query text (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What went wrong, without the position.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unknown table '{0}': the only table is ConfigurationChange")]
    UnknownTable(String),
    #[error("unknown column '{name}'{hint}")]
    UnknownColumn { name: String, hint: String },
    #[error("unknown function '{0}'")]
    UnknownFunction(String),
    #[error("unknown operator '{name}'{hint}")]
    UnknownOperator { name: String, hint: String },
    #[error("type mismatch: {0}")]
    TypeMismatch(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
}

/// An error at a position of the query: displayed as `LINE:COLUMN: message`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{pos}: {kind}")]
pub struct KqlError {
    pub pos: Pos,
    pub kind: ErrorKind,
}

impl KqlError {
    pub fn new(pos: Pos, kind: ErrorKind) -> Self {
        KqlError { pos, kind }
    }

    pub fn syntax(pos: Pos, message: impl Into<String>) -> Self {
        KqlError::new(pos, ErrorKind::Syntax(message.into()))
    }

    pub fn mismatch(pos: Pos, message: impl Into<String>) -> Self {
        KqlError::new(pos, ErrorKind::TypeMismatch(message.into()))
    }

    pub fn not_allowed(pos: Pos, message: impl Into<String>) -> Self {
        KqlError::new(pos, ErrorKind::NotAllowed(message.into()))
    }
}

pub type Result<T> = std::result::Result<T, KqlError>;
