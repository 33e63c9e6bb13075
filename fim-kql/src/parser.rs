//! A recursive-descent parser from tokens to [`ast::Query`](crate::ast::Query).
//!
//! Hand-written rather than built on a parser-combinator or PEG crate: the grammar is a dozen
//! productions, and hand-written descent gives the exact position and wording of each error
//! ("expected 'by' after 'order'") at no cost in dependencies.
use fim_model::Timestamp;

use crate::ast::{Assignment, BinOp, Expr, ExprKind, Name, Op, OpKind, OrderKey, Query};
use crate::error::{ErrorKind, KqlError, Pos, Result};
use crate::lexer::{lex, Tok, Token};

/// Parses one query.
pub fn parse(text: &str) -> Result<Query> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, at: 0 };
    parser.query()
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(word) => format!("'{word}'"),
        Tok::Str(_) => "a string".to_string(),
        Tok::Int(_) | Tok::Real(_) => "a number".to_string(),
        Tok::Timespan(_) => "a timespan".to_string(),
        Tok::DateTime(_) => "a datetime".to_string(),
        Tok::Eof => "the end of the query".to_string(),
        other => format!("'{}'", punct_text(other)),
    }
}

fn punct_text(tok: &Tok) -> &'static str {
    match tok {
        Tok::Pipe => "|",
        Tok::Comma => ",",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::Assign => "=",
        Tok::EqEq => "==",
        Tok::NotEq => "!=",
        Tok::EqTilde => "=~",
        Tok::NotTilde => "!~",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::DotDot => "..",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        _ => "?",
    }
}

/// Words that start a tabular operator.
const OPERATORS: &[&str] = &[
    "where",
    "filter",
    "project",
    "project-away",
    "extend",
    "summarize",
    "order",
    "sort",
    "top",
    "take",
    "limit",
    "distinct",
    "count",
];

impl Parser {
    fn peek(&self) -> &Token {
        // The token list always ends with Eof and `at` never passes it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].tok
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.at += 1;
        }
        token
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if &self.peek().tok == tok {
            self.next();
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(&self.peek().tok, Tok::Ident(w) if w == word) {
            self.next();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, wanted: &str) -> KqlError {
        let token = self.peek();
        KqlError::syntax(
            token.pos,
            format!("expected {wanted}, found {}", describe(&token.tok)),
        )
    }

    fn expect(&mut self, tok: &Tok) -> Result<Pos> {
        if &self.peek().tok == tok {
            Ok(self.next().pos)
        } else {
            Err(self.unexpected(&format!("'{}'", punct_text(tok))))
        }
    }

    fn expect_word(&mut self, word: &str, after: &str) -> Result<()> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{word}' after '{after}'")))
        }
    }

    fn name(&mut self, wanted: &str) -> Result<Name> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Ident(text) if !text.starts_with('!') && !text.contains('-') => {
                self.next();
                Ok(Name {
                    text,
                    pos: token.pos,
                })
            }
            _ => Err(self.unexpected(wanted)),
        }
    }

    fn query(&mut self) -> Result<Query> {
        let table = self.name("a table name")?;
        let mut ops = Vec::new();
        loop {
            if self.eat(&Tok::Pipe) {
                ops.push(self.op()?);
            } else if self.peek().tok == Tok::Eof {
                break;
            } else {
                return Err(self.unexpected("'|' or the end of the query"));
            }
        }
        Ok(Query {
            table: table.text,
            table_pos: table.pos,
            ops,
        })
    }

    fn op(&mut self) -> Result<Op> {
        let token = self.next();
        let pos = token.pos;
        let Tok::Ident(word) = token.tok else {
            return Err(KqlError::syntax(
                pos,
                format!("expected an operator, found {}", describe(&token.tok)),
            ));
        };
        let kind = match word.as_str() {
            "where" | "filter" => OpKind::Where(self.expr()?),
            "project" => OpKind::Project(self.assignments()?),
            "project-away" => OpKind::ProjectAway(self.names()?),
            "extend" => OpKind::Extend(self.assignments()?),
            "summarize" => self.summarize()?,
            "order" | "sort" => {
                self.expect_word("by", &word)?;
                OpKind::Order(self.order_keys()?)
            }
            "top" => self.top()?,
            "take" | "limit" => OpKind::Take(self.count_literal(&word)?),
            "distinct" => OpKind::Distinct(self.assignments()?),
            "count" => OpKind::Count,
            _ => {
                return Err(KqlError::new(
                    pos,
                    ErrorKind::UnknownOperator {
                        name: word,
                        hint: format!(" (known: {})", OPERATORS.join(", ")),
                    },
                ));
            }
        };
        Ok(Op { kind, pos })
    }

    fn count_literal(&mut self, after: &str) -> Result<i64> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Int(n) => {
                self.next();
                Ok(n)
            }
            _ => Err(self.unexpected(&format!("a row count after '{after}'"))),
        }
    }

    fn summarize(&mut self) -> Result<OpKind> {
        let aggregates = if matches!(&self.peek().tok, Tok::Ident(w) if w == "by") {
            Vec::new()
        } else {
            self.assignments()?
        };
        let by = if self.eat_word("by") {
            self.assignments()?
        } else {
            Vec::new()
        };
        if aggregates.is_empty() && by.is_empty() {
            return Err(self.unexpected("an aggregate or 'by' after 'summarize'"));
        }
        Ok(OpKind::Summarize { aggregates, by })
    }

    fn top(&mut self) -> Result<OpKind> {
        let count = self.count_literal("top")?;
        self.expect_word("by", "top N")?;
        let key = self.order_key()?;
        Ok(OpKind::Top { count, key })
    }

    fn order_keys(&mut self) -> Result<Vec<OrderKey>> {
        let mut keys = vec![self.order_key()?];
        while self.eat(&Tok::Comma) {
            keys.push(self.order_key()?);
        }
        Ok(keys)
    }

    fn order_key(&mut self) -> Result<OrderKey> {
        let expr = self.expr()?;
        let descending = if self.eat_word("asc") {
            false
        } else {
            self.eat_word("desc");
            true
        };
        let nulls_first = if self.eat_word("nulls") {
            if self.eat_word("first") {
                Some(true)
            } else if self.eat_word("last") {
                Some(false)
            } else {
                return Err(self.unexpected("'first' or 'last' after 'nulls'"));
            }
        } else {
            None
        };
        Ok(OrderKey {
            expr,
            descending,
            nulls_first,
        })
    }

    fn names(&mut self) -> Result<Vec<Name>> {
        let mut names = vec![self.name("a column name")?];
        while self.eat(&Tok::Comma) {
            names.push(self.name("a column name")?);
        }
        Ok(names)
    }

    fn assignments(&mut self) -> Result<Vec<Assignment>> {
        let mut list = vec![self.assignment()?];
        while self.eat(&Tok::Comma) {
            list.push(self.assignment()?);
        }
        Ok(list)
    }

    fn assignment(&mut self) -> Result<Assignment> {
        if matches!(self.peek().tok, Tok::Ident(_)) && *self.peek_at(1) == Tok::Assign {
            let name = self.name("a column name")?;
            self.next();
            let expr = self.expr()?;
            return Ok(Assignment {
                name: Some(name),
                expr,
            });
        }
        Ok(Assignment {
            name: None,
            expr: self.expr()?,
        })
    }

    /// An expression, lowest precedence first: or, and, comparisons, + -, * /, unary -.
    fn expr(&mut self) -> Result<Expr> {
        let mut lhs = self.and()?;
        while let Some(pos) = self.eat_binary_word("or") {
            let rhs = self.and()?;
            lhs = binary(BinOp::Or, lhs, rhs, pos);
        }
        Ok(lhs)
    }

    fn eat_binary_word(&mut self, word: &str) -> Option<Pos> {
        let pos = self.peek().pos;
        self.eat_word(word).then_some(pos)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut lhs = self.comparison()?;
        while let Some(pos) = self.eat_binary_word("and") {
            let rhs = self.comparison()?;
            lhs = binary(BinOp::And, lhs, rhs, pos);
        }
        Ok(lhs)
    }

    fn comparison(&mut self) -> Result<Expr> {
        let lhs = self.additive()?;
        let token = self.peek().clone();
        let op = match &token.tok {
            Tok::EqEq => BinOp::Eq,
            Tok::NotEq => BinOp::NotEq,
            Tok::EqTilde => BinOp::EqCi,
            Tok::NotTilde => BinOp::NotEqCi,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Ident(word) if word == "in" || word == "!in" => {
                self.next();
                return self.in_list(lhs, word == "!in", token.pos);
            }
            Tok::Ident(word) if word == "between" || word == "!between" => {
                self.next();
                return self.between(lhs, word == "!between", token.pos);
            }
            Tok::Ident(word) if word != "and" && word != "or" => match BinOp::from_word(word) {
                Some(op) => op,
                None if word.starts_with('!') => {
                    return Err(KqlError::new(
                        token.pos,
                        ErrorKind::UnknownOperator {
                            name: word.clone(),
                            hint: String::new(),
                        },
                    ));
                }
                None => return Ok(lhs),
            },
            _ => return Ok(lhs),
        };
        self.next();
        let rhs = self.additive()?;
        Ok(binary(op, lhs, rhs, token.pos))
    }

    fn in_list(&mut self, lhs: Expr, negated: bool, pos: Pos) -> Result<Expr> {
        self.expect(&Tok::LParen)?;
        let mut list = vec![self.expr()?];
        while self.eat(&Tok::Comma) {
            list.push(self.expr()?);
        }
        self.expect(&Tok::RParen)?;
        Ok(Expr {
            kind: ExprKind::In {
                expr: Box::new(lhs),
                list,
                negated,
            },
            pos,
        })
    }

    fn between(&mut self, lhs: Expr, negated: bool, pos: Pos) -> Result<Expr> {
        self.expect(&Tok::LParen)?;
        let low = self.additive()?;
        self.expect(&Tok::DotDot)?;
        let high = self.additive()?;
        self.expect(&Tok::RParen)?;
        Ok(Expr {
            kind: ExprKind::Between {
                expr: Box::new(lhs),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            },
            pos,
        })
    }

    fn additive(&mut self) -> Result<Expr> {
        let mut lhs = self.multiplicative()?;
        loop {
            let token = self.peek().clone();
            let op = match token.tok {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.next();
            let rhs = self.multiplicative()?;
            lhs = binary(op, lhs, rhs, token.pos);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let token = self.peek().clone();
            let op = match token.tok {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(lhs),
            };
            self.next();
            let rhs = self.unary()?;
            lhs = binary(op, lhs, rhs, token.pos);
        }
    }

    fn unary(&mut self) -> Result<Expr> {
        let pos = self.peek().pos;
        if self.eat(&Tok::Minus) {
            let inner = self.unary()?;
            return Ok(match inner.kind {
                ExprKind::Int(n) => literal(ExprKind::Int(-n), pos),
                ExprKind::Real(x) => literal(ExprKind::Real(-x), pos),
                ExprKind::Timespan(n) => literal(ExprKind::Timespan(-n), pos),
                kind => Expr {
                    kind: ExprKind::Negate(Box::new(Expr {
                        kind,
                        pos: inner.pos,
                    })),
                    pos,
                },
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let token = self.next();
        let pos = token.pos;
        let kind = match token.tok {
            Tok::Str(text) => ExprKind::Str(text),
            Tok::Int(n) => ExprKind::Int(n),
            Tok::Real(x) => ExprKind::Real(x),
            Tok::Timespan(n) => ExprKind::Timespan(n),
            Tok::DateTime(raw) => ExprKind::DateTime(parse_datetime(&raw, pos)?),
            Tok::LParen => {
                let inner = self.expr()?;
                self.expect(&Tok::RParen)?;
                return Ok(inner);
            }
            Tok::Ident(word) => return self.word_expr(word, pos),
            other => {
                return Err(KqlError::syntax(
                    pos,
                    format!("expected an expression, found {}", describe(&other)),
                ));
            }
        };
        Ok(literal(kind, pos))
    }

    fn word_expr(&mut self, word: String, pos: Pos) -> Result<Expr> {
        if word.starts_with('!') || word.contains('-') {
            return Err(KqlError::syntax(
                pos,
                format!("expected an expression, found '{word}'"),
            ));
        }
        match word.as_str() {
            "true" => return Ok(literal(ExprKind::Bool(true), pos)),
            "false" => return Ok(literal(ExprKind::Bool(false), pos)),
            "null" => return Ok(literal(ExprKind::Null, pos)),
            _ => {}
        }
        if !self.eat(&Tok::LParen) {
            return Ok(literal(ExprKind::Column(word), pos));
        }
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            args.push(self.expr()?);
            while self.eat(&Tok::Comma) {
                args.push(self.expr()?);
            }
            self.expect(&Tok::RParen)?;
        }
        Ok(literal(ExprKind::Call { name: word, args }, pos))
    }
}

fn literal(kind: ExprKind, pos: Pos) -> Expr {
    Expr { kind, pos }
}

fn binary(op: BinOp, lhs: Expr, rhs: Expr, pos: Pos) -> Expr {
    Expr {
        kind: ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        pos,
    }
}

/// `2026-12-03`, `2026-12-03 10:00`, `2026-12-03T10:00:05.5Z`, ...: always UTC.
fn parse_datetime(raw: &str, pos: Pos) -> Result<i64> {
    let mut text = raw.trim().replacen(' ', "T", 1);
    if !text.contains('T') {
        text.push_str("T00:00:00");
    }
    let time_part = text.split_once('T').map(|(_, time)| time).unwrap_or("");
    if time_part.matches(':').count() == 1 {
        text.push_str(":00");
    }
    let zoned = text.ends_with('Z') || text.ends_with('z') || {
        let time = text.split_once('T').map(|(_, time)| time).unwrap_or("");
        time.contains('+') || time.contains('-')
    };
    if !zoned {
        text.push('Z');
    }
    Timestamp::parse_rfc3339(&text)
        .map(Timestamp::unix_nanos)
        .map_err(|_| {
            KqlError::syntax(
                pos,
                format!("bad datetime '{raw}' (use e.g. datetime(2026-12-03 10:00:00))"),
            )
        })
}
