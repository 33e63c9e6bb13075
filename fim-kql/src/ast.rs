//! The syntax tree of a query: a table and a pipeline of tabular operators. Every node keeps
//! the position of its first token so the compiler can point at it too.
use crate::error::Pos;

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub table: String,
    pub table_pos: Pos,
    pub ops: Vec<Op>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub pos: Pos,
}

/// `name = expr` or a bare `expr` (named after its column, or `ColumnN`).
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub name: Option<Name>,
    pub expr: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderKey {
    pub expr: Expr,
    /// KQL sorts descending unless told `asc`.
    pub descending: bool,
    /// Explicit `nulls first` / `nulls last`; None takes KQL's default for the direction.
    pub nulls_first: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    Where(Expr),
    Project(Vec<Assignment>),
    ProjectAway(Vec<Name>),
    Extend(Vec<Assignment>),
    Summarize {
        aggregates: Vec<Assignment>,
        by: Vec<Assignment>,
    },
    Order(Vec<OrderKey>),
    Top {
        count: i64,
        key: OrderKey,
    },
    Take(i64),
    Distinct(Vec<Assignment>),
    Count,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Eq,
    NotEq,
    EqCi,
    NotEqCi,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    NotContains,
    ContainsCs,
    NotContainsCs,
    Has,
    NotHas,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn text(self) -> &'static str {
        match self {
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Eq => "==",
            BinOp::NotEq => "!=",
            BinOp::EqCi => "=~",
            BinOp::NotEqCi => "!~",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Contains => "contains",
            BinOp::NotContains => "!contains",
            BinOp::ContainsCs => "contains_cs",
            BinOp::NotContainsCs => "!contains_cs",
            BinOp::Has => "has",
            BinOp::NotHas => "!has",
            BinOp::StartsWith => "startswith",
            BinOp::NotStartsWith => "!startswith",
            BinOp::EndsWith => "endswith",
            BinOp::NotEndsWith => "!endswith",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    /// The word operators, as the lexer spells them.
    pub fn from_word(word: &str) -> Option<BinOp> {
        Some(match word {
            "and" => BinOp::And,
            "or" => BinOp::Or,
            "contains" => BinOp::Contains,
            "!contains" => BinOp::NotContains,
            "contains_cs" => BinOp::ContainsCs,
            "!contains_cs" => BinOp::NotContainsCs,
            "has" => BinOp::Has,
            "!has" => BinOp::NotHas,
            "startswith" => BinOp::StartsWith,
            "!startswith" => BinOp::NotStartsWith,
            "endswith" => BinOp::EndsWith,
            "!endswith" => BinOp::NotEndsWith,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Column(String),
    Str(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// Nanoseconds.
    Timespan(i64),
    /// Unix nanoseconds.
    DateTime(i64),
    Null,
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Negate(Box<Expr>),
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: Pos,
}
