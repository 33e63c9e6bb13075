//! Which records a query, a summary or a live stream covers: one filter, one matching rule.
//!
//! The SQLite query builder narrows by the indexed columns and then calls
//! [`ChangeFilter::subject_matches`] on what is left; the live gRPC stream calls
//! [`ChangeFilter::matches`] on each record; both end in the same function, so a stream and a
//! query with one filter never disagree about a record.
use globset::{GlobBuilder, GlobMatcher};

use crate::{
    change::{ChangeCategory, ChangeRecord, ConfigChangeType},
    object::long_hive_key,
    path_text::parse_display,
    Timestamp,
};

/// Empty lists and `None` mean "any".
#[derive(Clone, Debug, Default)]
pub struct ChangeFilter {
    /// TimeGenerated at or after this.
    pub since: Option<Timestamp>,
    /// TimeGenerated before this (exclusive).
    pub until: Option<Timestamp>,
    pub types: Vec<ConfigChangeType>,
    pub categories: Vec<ChangeCategory>,
    /// Matched against the record's subject: FileSystemPath, RegistryKey or SvcName (records
    /// without one, the monitor's own, never match).
    pub path_glob: Option<SubjectGlob>,
    /// A computer's name or its id.
    pub computer: Option<String>,
    pub entity: Option<String>,
    /// Only records with a greater sequence (paging, stream resumption).
    pub after_sequence: Option<u64>,
}

/// A `--path` glob, compiled for each kind of subject.
///
/// Files: `*` stays within one path segment, `**` crosses them, a backslash escapes (globset's
/// Unix syntax, matched against the path's raw bytes on Unix; on Windows globset matches the
/// path's lossy UTF-8, so a name that is not valid UTF-16 matches as U+FFFD). Registry keys and service names are
/// compared as Windows compares them, ignoring case, and a key's backslashes are its
/// separators: `HKLM\SOFTWARE\*` matches the keys directly below SOFTWARE.
#[derive(Clone, Debug)]
pub struct SubjectGlob {
    text: String,
    file: GlobMatcher,
    key: GlobMatcher,
}

impl SubjectGlob {
    pub fn new(text: &str) -> Result<Self, globset::Error> {
        let file = GlobBuilder::new(text)
            .literal_separator(true)
            .build()?
            .compile_matcher();
        // Either hive spelling in the glob matches either in the record.
        let key = GlobBuilder::new(&long_hive_key(text).replace('\\', "/"))
            .literal_separator(true)
            .case_insensitive(true)
            .backslash_escape(false)
            .build()?
            .compile_matcher();
        Ok(SubjectGlob {
            text: text.to_string(),
            file,
            key,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a record of type `change_type` about `subject` (its display text) matches.
    pub fn is_match(&self, change_type: ConfigChangeType, subject: &str) -> bool {
        match change_type {
            ConfigChangeType::Registry => {
                self.key.is_match(long_hive_key(subject).replace('\\', "/"))
            }
            ConfigChangeType::WindowsServices => self.key.is_match(subject.replace('\\', "/")),
            ConfigChangeType::Files | ConfigChangeType::Daemons | ConfigChangeType::Monitor => {
                match parse_display(subject) {
                    Some(raw) => self.file.is_match(raw),
                    None => self.file.is_match(subject),
                }
            }
        }
    }
}

impl ChangeFilter {
    /// Does `record` pass? What a query with this filter returns, record by record.
    pub fn matches(&self, record: &ChangeRecord) -> bool {
        let at = record.time_generated;
        self.after_sequence
            .is_none_or(|after| record.sequence > after)
            && self.since.is_none_or(|since| at >= since)
            && self.until.is_none_or(|until| at < until)
            && (self.types.is_empty() || self.types.contains(&record.config_change_type))
            && (self.categories.is_empty() || self.categories.contains(&record.change_category))
            && self.computer.as_ref().is_none_or(|computer| {
                *computer == record.computer || *computer == record.computer_id
            })
            && self
                .entity
                .as_ref()
                .is_none_or(|entity| *entity == record.entity)
            && self.subject_matches(record.config_change_type, record.subject())
    }

    /// The glob part of [`matches`](Self::matches), for a store that filtered the rest in SQL.
    pub fn subject_matches(&self, change_type: ConfigChangeType, subject: Option<&str>) -> bool {
        match (&self.path_glob, subject) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(glob), Some(subject)) => glob.is_match(change_type, subject),
        }
    }
}

#[cfg(test)]
mod tests;
