//! The lexer: query text to tokens with their positions.
//!
//! Hand-written because the token set is small and KQL has a few shapes a generic lexer
//! handles badly: timespans (`14d`), negated word operators (`!contains`, `!in`),
//! `project-away`, and `datetime(2026-12-03 10:00)` whose argument is unquoted. Anything that
//! could start a control command (`.drop`, `.set`) or a second statement (`;`) is refused
//! here, at its position, so a query is one read-only pipeline by construction.
use crate::error::{KqlError, Pos, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name or keyword; also `!contains`-style negated operators and `project-away`.
    Ident(String),
    Str(String),
    Int(i64),
    Real(f64),
    /// Nanoseconds.
    Timespan(i64),
    /// The raw text inside `datetime(...)`.
    DateTime(String),
    Pipe,
    Comma,
    LParen,
    RParen,
    /// `=`
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `=~`
    EqTilde,
    /// `!~`
    NotTilde,
    Lt,
    Le,
    Gt,
    Ge,
    DotDot,
    Plus,
    Minus,
    Star,
    Slash,
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: u32,
    column: u32,
}

/// Splits `text` into tokens, ending with [`Tok::Eof`].
pub fn lex(text: &str) -> Result<Vec<Token>> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
    };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blank();
        let pos = lexer.pos();
        let Some(c) = lexer.peek(0) else {
            tokens.push(Token { tok: Tok::Eof, pos });
            return Ok(tokens);
        };
        let tok = lexer.token(c, pos)?;
        tokens.push(Token { tok, pos });
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Lexer {
    fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_blank(&mut self) {
        while let Some(c) = self.peek(0) {
            if c.is_whitespace() {
                self.bump();
            } else if c == '/' && self.peek(1) == Some('/') {
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    fn token(&mut self, c: char, pos: Pos) -> Result<Tok> {
        if is_ident_start(c) {
            return self.word(pos);
        }
        if c.is_ascii_digit() {
            return self.number(pos);
        }
        match c {
            '\'' | '"' => self.string(pos, false),
            '@' if matches!(self.peek(1), Some('\'' | '"')) => {
                self.bump();
                self.string(pos, true)
            }
            ';' => Err(KqlError::not_allowed(
                pos,
                "';' would start a second statement; a query is one read-only pipeline",
            )),
            '.' if self.peek(1) == Some('.') => {
                self.bump();
                self.bump();
                Ok(Tok::DotDot)
            }
            '.' if self.peek(1).is_some_and(is_ident_start) => {
                let word: String = self.chars[self.at + 1..]
                    .iter()
                    .take_while(|c| is_ident_char(**c))
                    .collect();
                Err(KqlError::not_allowed(
                    pos,
                    format!("control command '.{word}': queries are read-only"),
                ))
            }
            '!' if self.peek(1).is_some_and(is_ident_start) => {
                self.bump();
                match self.word(pos)? {
                    Tok::Ident(word) => Ok(Tok::Ident(format!("!{word}"))),
                    _ => Err(KqlError::syntax(pos, "expected an operator after '!'")),
                }
            }
            _ => self.punct(c, pos),
        }
    }

    fn punct(&mut self, c: char, pos: Pos) -> Result<Tok> {
        let next = self.peek(1);
        let (tok, len) = match (c, next) {
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('=', Some('~')) => (Tok::EqTilde, 2),
            ('=', _) => (Tok::Assign, 1),
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('!', Some('~')) => (Tok::NotTilde, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', Some('>')) => (Tok::NotEq, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            ('|', _) => (Tok::Pipe, 1),
            (',', _) => (Tok::Comma, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            _ => {
                return Err(KqlError::syntax(pos, format!("unexpected character '{c}'")));
            }
        };
        for _ in 0..len {
            self.bump();
        }
        Ok(tok)
    }

    fn word(&mut self, pos: Pos) -> Result<Tok> {
        let mut word = String::new();
        while let Some(c) = self.peek(0).filter(|c| is_ident_char(*c)) {
            word.push(c);
            self.bump();
        }
        if word == "project" && self.follows("-away") {
            for _ in 0.."-away".len() {
                self.bump();
            }
            return Ok(Tok::Ident("project-away".to_string()));
        }
        if word == "datetime" {
            return self
                .datetime(pos)
                .map(|raw| raw.unwrap_or(Tok::Ident(word)));
        }
        Ok(Tok::Ident(word))
    }

    fn follows(&self, text: &str) -> bool {
        let n = text.chars().count();
        let ahead: String = self.chars.iter().skip(self.at).take(n).collect();
        ahead == text && !self.peek(n).is_some_and(is_ident_char)
    }

    /// `datetime(...)`: the raw argument, quoted or not. None when no `(` follows.
    fn datetime(&mut self, pos: Pos) -> Result<Option<Tok>> {
        let mut ahead = self.at;
        while self.chars.get(ahead).is_some_and(|c| c.is_whitespace()) {
            ahead += 1;
        }
        if self.chars.get(ahead) != Some(&'(') {
            return Ok(None);
        }
        while self.at <= ahead {
            self.bump();
        }
        let mut raw = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(KqlError::syntax(pos, "datetime( is not closed with ')'"));
                }
                Some(')') => break,
                Some(c) => raw.push(c),
            }
        }
        let trimmed = raw.trim();
        let unquoted = trimmed
            .strip_prefix(['\'', '"'])
            .and_then(|rest| rest.strip_suffix(['\'', '"']))
            .unwrap_or(trimmed);
        Ok(Some(Tok::DateTime(unquoted.to_string())))
    }

    fn number(&mut self, pos: Pos) -> Result<Tok> {
        let mut digits = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_ascii_digit()) {
            digits.push(c);
            self.bump();
        }
        let mut real = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            real = true;
            digits.push('.');
            self.bump();
            while let Some(c) = self.peek(0).filter(|c| c.is_ascii_digit()) {
                digits.push(c);
                self.bump();
            }
        }
        let mut unit = String::new();
        while let Some(c) = self.peek(0).filter(|c| is_ident_char(*c)) {
            unit.push(c);
            self.bump();
        }
        if !unit.is_empty() {
            return timespan(&digits, &unit, pos);
        }
        if real {
            let value: f64 = digits
                .parse()
                .map_err(|_| KqlError::syntax(pos, format!("bad number '{digits}'")))?;
            return Ok(Tok::Real(value));
        }
        digits
            .parse()
            .map(Tok::Int)
            .map_err(|_| KqlError::syntax(pos, format!("number '{digits}' is too large")))
    }

    fn string(&mut self, pos: Pos, verbatim: bool) -> Result<Tok> {
        let Some(quote) = self.bump() else {
            return Err(KqlError::syntax(pos, "expected a string"));
        };
        let mut text = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(KqlError::syntax(pos, "string literal is not closed"));
                }
                Some(c) if c == quote => return Ok(Tok::Str(text)),
                Some('\\') if !verbatim => text.push(self.escape(pos)?),
                Some(c) => text.push(c),
            }
        }
    }

    fn escape(&mut self, pos: Pos) -> Result<char> {
        match self.bump() {
            Some('n') => Ok('\n'),
            Some('t') => Ok('\t'),
            Some('r') => Ok('\r'),
            Some(c @ ('\\' | '\'' | '"')) => Ok(c),
            Some(c) => Err(KqlError::syntax(pos, format!("unknown escape '\\{c}'"))),
            None => Err(KqlError::syntax(pos, "string literal is not closed")),
        }
    }
}

const NANOS_PER_SECOND: f64 = 1e9;

fn timespan(digits: &str, unit: &str, pos: Pos) -> Result<Tok> {
    let seconds_per_unit = match unit {
        "d" | "day" | "days" => 86_400.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "m" | "min" | "minute" | "minutes" => 60.0,
        "s" | "sec" | "second" | "seconds" => 1.0,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1e-3,
        "microsecond" | "microseconds" => 1e-6,
        _ => {
            return Err(KqlError::syntax(
                pos,
                format!("unknown timespan unit '{unit}' (use d, h, m, s or ms)"),
            ));
        }
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| KqlError::syntax(pos, format!("bad timespan '{digits}{unit}'")))?;
    let nanos = (value * seconds_per_unit * NANOS_PER_SECOND).round();
    if !nanos.is_finite() || nanos.abs() > i64::MAX as f64 {
        return Err(KqlError::syntax(pos, "timespan is too large"));
    }
    Ok(Tok::Timespan(nanos as i64))
}
