//! Errors and warnings about a policy, in the `FILE:LINE:COLUMN: message` form compilers use.
//!
//! Editors and terminals turn that form into a jump to the spot, and people recognise it, so
//! every problem that can be tied to a place in the file carries one. A policy built in code (by
//! the CLI, or the defaults) has no file; its diagnostics are just the message.
use std::{fmt, io, ops::Range, path::PathBuf};

use crate::path_text::display_path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// A place in a policy file; line and column are 1-based, the column counts characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text` (clamped to the end of the text).
    pub fn at(file: PathBuf, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        Location {
            file,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            display_path(&self.file),
            self.line,
            self.column
        )
    }
}

/// One problem found in a policy. Errors display as `FILE:LINE:COLUMN: message`, warnings as
/// `FILE:LINE:COLUMN: warning: message`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy is malformed; one diagnostic per problem, in file order, one per line.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
    #[error("cannot read policy {}: {source}", display_path(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("policy {} is {kind}, not a regular file; refusing to read it", display_path(.path))]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(transparent)]
    Untrusted(#[from] crate::trust::Untrusted),
    #[error("cannot write policy {}: {source}", display_path(.path))]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no entity named \"{0}\"")]
    NotFound(String),
    #[error("an entity named \"{0}\" already exists")]
    DuplicateName(String),
}

impl PolicyError {
    /// The diagnostics of an invalid policy (empty for other errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid(diagnostics) => diagnostics,
            _ => &[],
        }
    }
}

fn display_all(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which part of an entity a problem concerns, so the parser can point at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Table,
    Name,
    Path,
    Ignore(usize),
    /// A key of the `[settings]` table.
    Setting(&'static str),
}

/// A validation finding before it is placed in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub severity: Severity,
    /// Index into `Policy::entities`, when the problem is about one entity.
    pub entity: Option<usize>,
    pub field: Field,
    pub message: String,
}

/// Where each entity's parts are in the file, for placing [`Issue`]s.
#[derive(Clone, Debug, Default)]
pub(crate) struct EntitySpans {
    pub table: Option<Range<usize>>,
    pub name: Option<Range<usize>>,
    pub path: Option<Range<usize>>,
    pub ignore: Vec<Range<usize>>,
}

impl EntitySpans {
    pub fn of(&self, field: Field) -> Option<Range<usize>> {
        let specific = match field {
            Field::Table | Field::Setting(_) => None,
            Field::Name => self.name.clone(),
            Field::Path => self.path.clone(),
            Field::Ignore(index) => self.ignore.get(index).cloned(),
        };
        specific.or_else(|| self.table.clone())
    }
}

/// `entity "NAME"`, or `entity #N` (1-based) when the name is missing, empty or unprintable.
pub(crate) fn entity_label(index: usize, name: Option<&str>) -> String {
    match name {
        Some(name) if name_is_printable(name) => format!("entity \"{name}\""),
        _ => format!("entity #{}", index + 1),
    }
}

/// A usable entity name: not blank, no control characters (names are printed in records and
/// on terminals).
pub(crate) fn name_is_printable(name: &str) -> bool {
    !name.trim().is_empty() && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let text = "ab\nçé = x\n";
        let at = |offset| {
            let location = Location::at(PathBuf::from("p.toml"), text, offset);
            (location.line, location.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(3), (2, 1));
        // "çé" is four bytes, two characters.
        assert_eq!(at(8), (2, 4));
        assert_eq!(at(4), (2, 1), "inside a character: its start");
        assert_eq!(at(100), (3, 1));
    }

    #[test]
    fn diagnostics_render_like_compiler_messages() {
        let located = Diagnostic {
            severity: Severity::Warning,
            location: Some(Location::at(PathBuf::from("/e/p.toml"), "x", 0)),
            message: "careful".into(),
        };
        assert_eq!(located.to_string(), "/e/p.toml:1:1: warning: careful");
        let error = PolicyError::Invalid(vec![
            Diagnostic {
                severity: Severity::Error,
                location: None,
                message: "one".into(),
            },
            Diagnostic {
                severity: Severity::Error,
                location: None,
                message: "two".into(),
            },
        ]);
        assert_eq!(error.to_string(), "one\ntwo");
    }
}
