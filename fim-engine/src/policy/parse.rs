//! Reading the policy file: TOML text to [`Policy`], with every problem placed at its
//! `FILE:LINE:COLUMN`.
//!
//! The document is walked by hand over `toml_edit`'s spanned tree rather than deserialised with
//! serde: that way an unknown key, a wrong type, a missing field and a semantic problem found
//! later by validation can each point at the exact key, value or `[[entity]]` header, and the
//! messages name the entity instead of a serde path like `entity[3].kind`.
use std::{collections::HashMap, ops::Range, path::Path};

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

use super::{
    diagnostic::{entity_label, Diagnostic, EntitySpans, Field, Issue, Location, Severity},
    paths::{self, EnvLookup},
    read, validate, Entity, EntityKind, Policy, PolicyError, Settings,
};

/// A policy that parsed and validated, with the warnings worth showing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates policy text; `origin` names the file in diagnostics.
pub fn parse(text: &str, origin: &Path) -> Result<Parsed, PolicyError> {
    parse_with(text, origin, &paths::process_env)
}

/// Reads, parses and validates a policy file (a FIFO, device or socket is refused without
/// blocking).
pub fn load(path: &Path) -> Result<Parsed, PolicyError> {
    let (file, _) = read::open(path)?;
    parse(&read::text(path, file)?, path)
}

/// [`load`] for a daemon running as root: the file and the directories above it must be
/// root's alone (see [`crate::trust`]).
pub fn load_trusted(path: &Path) -> Result<Parsed, PolicyError> {
    let (file, metadata) = read::open(path)?;
    crate::trust::check_file("policy", path, &metadata)?;
    parse(&read::text(path, file)?, path)
}

pub(crate) const ENTITY_KEYS: &[&str] = &["name", "kind", "path", "recursive", "enabled", "ignore"];
const SETTING_KEYS: &[&str] = &[
    "scan_workers",
    "scan_bytes_per_second",
    "scan_idle_io",
    "cross_filesystems",
    "content_limit",
    "sweep_interval_secs",
    "rehash_interval_secs",
    "coalesce_ms",
    "journal_keep_days",
    "journal_keep_records",
    "journal_hard_cap_records",
];

pub(crate) fn parse_with(
    text: &str,
    origin: &Path,
    env: EnvLookup<'_>,
) -> Result<Parsed, PolicyError> {
    let document = ImDocument::parse(text).map_err(|err| {
        let message: Vec<&str> = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        let message = if message.is_empty() {
            "invalid TOML".to_string()
        } else {
            message.join(": ")
        };
        let offset = err.span().map_or(0, |span| span.start);
        PolicyError::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            location: Some(Location::at(origin.to_path_buf(), text, offset)),
            message,
        }])
    })?;
    let mut reader = Reader {
        errors: Vec::new(),
        setting_spans: HashMap::new(),
        entity_spans: Vec::new(),
    };
    let policy = reader.read(document.as_table());
    let place = |offset: Option<usize>| {
        offset.map(|offset| Location::at(origin.to_path_buf(), text, offset))
    };
    let mut errors: Vec<Diagnostic> = reader
        .errors
        .iter()
        .map(|(offset, message)| Diagnostic {
            severity: Severity::Error,
            location: place(*offset),
            message: message.clone(),
        })
        .collect();
    let mut warnings = Vec::new();
    if errors.is_empty() {
        for issue in validate::check(&policy, env).issues {
            let offset = reader.span_of(&issue).map(|span| span.start);
            let diagnostic = Diagnostic {
                severity: issue.severity,
                location: place(offset),
                message: issue.message,
            };
            match issue.severity {
                Severity::Error => errors.push(diagnostic),
                Severity::Warning => warnings.push(diagnostic),
            }
        }
    }
    if !errors.is_empty() {
        sort_by_location(&mut errors);
        return Err(PolicyError::Invalid(errors));
    }
    sort_by_location(&mut warnings);
    Ok(Parsed { policy, warnings })
}

fn sort_by_location(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|diagnostic| {
        diagnostic
            .location
            .as_ref()
            .map(|location| (location.line, location.column))
    });
}

struct Reader {
    /// Structural problems: byte offset and full message.
    errors: Vec<(Option<usize>, String)>,
    setting_spans: HashMap<&'static str, Range<usize>>,
    entity_spans: Vec<EntitySpans>,
}

/// What kind of TOML value a key holds, for "must be X, not Y" messages.
fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) | Item::Value(Value::InlineTable(_)) => "a table",
        Item::ArrayOfTables(_) | Item::Value(Value::Array(_)) => "an array",
        Item::Value(Value::String(_)) => "a string",
        Item::Value(Value::Integer(_)) => "an integer",
        Item::Value(Value::Float(_)) => "a float",
        Item::Value(Value::Boolean(_)) => "a boolean",
        Item::Value(Value::Datetime(_)) => "a date-time",
    }
}

fn start(span: Option<Range<usize>>) -> Option<usize> {
    span.map(|span| span.start)
}

impl Reader {
    fn error(&mut self, span: Option<Range<usize>>, message: String) {
        self.errors.push((start(span), message));
    }

    fn span_of(&self, issue: &Issue) -> Option<Range<usize>> {
        match (issue.entity, issue.field) {
            (_, Field::Setting(key)) => self.setting_spans.get(key).cloned(),
            (Some(index), field) => self.entity_spans.get(index)?.of(field),
            (None, _) => None,
        }
    }

    fn read(&mut self, root: &Table) -> Policy {
        let mut policy = Policy::default();
        for (key, item) in root.iter() {
            let key_span = root.get_key_value(key).and_then(|(key, _)| key.span());
            match key {
                "settings" => match item.as_table_like() {
                    Some(table) => policy.settings = self.read_settings(table),
                    None => self.error(
                        item.span().or(key_span),
                        "\"settings\" must be a table ([settings])".into(),
                    ),
                },
                "entity" => match item.as_array_of_tables() {
                    Some(tables) => {
                        for (index, table) in tables.iter().enumerate() {
                            if let Some(entity) = self.read_entity(index, table) {
                                policy.entities.push(entity);
                            }
                        }
                    }
                    None => self.error(
                        item.span().or(key_span),
                        "\"entity\" must be an array of tables ([[entity]])".into(),
                    ),
                },
                other => self.error(
                    key_span,
                    format!("unknown key \"{other}\" (expected \"settings\" or \"entity\")"),
                ),
            }
        }
        policy
    }

    fn read_settings(&mut self, table: &dyn TableLike) -> Settings {
        let mut settings = Settings::default();
        for (key, item) in table.iter() {
            let key_span = table.get_key_value(key).and_then(|(key, _)| key.span());
            let Some(known) = SETTING_KEYS.iter().copied().find(|known| *known == key) else {
                let message = format!(
                    "settings: unknown key \"{key}\" (expected {})",
                    SETTING_KEYS.join(", ")
                );
                self.error(key_span, message);
                continue;
            };
            let span = item.span().or(key_span);
            if let Some(span) = span.clone() {
                self.setting_spans.insert(known, span);
            }
            let is_bool = matches!(known, "scan_idle_io" | "cross_filesystems");
            if is_bool {
                let Some(value) = item.as_bool() else {
                    let message = format!(
                        "settings: \"{known}\" must be true or false, not {}",
                        type_name(item)
                    );
                    self.error(span, message);
                    continue;
                };
                match known {
                    "scan_idle_io" => settings.scan_idle_io = value,
                    _ => settings.cross_filesystems = value,
                }
                continue;
            }
            let Some(value) = item
                .as_integer()
                .and_then(|value| u64::try_from(value).ok())
            else {
                let found = match item.as_integer() {
                    Some(_) => "a negative integer",
                    None => type_name(item),
                };
                let message =
                    format!("settings: \"{known}\" must be a non-negative integer, not {found}");
                self.error(span, message);
                continue;
            };
            match known {
                "scan_workers" => {
                    settings.scan_workers = usize::try_from(value).unwrap_or(usize::MAX);
                }
                "scan_bytes_per_second" => settings.scan_bytes_per_second = Some(value),
                "content_limit" => settings.content_limit = value,
                "sweep_interval_secs" => settings.sweep_interval_secs = value,
                "rehash_interval_secs" => settings.rehash_interval_secs = value,
                "journal_keep_days" => settings.journal_keep_days = Some(value),
                "journal_keep_records" => settings.journal_keep_records = Some(value),
                "journal_hard_cap_records" => settings.journal_hard_cap_records = Some(value),
                _ => settings.coalesce_ms = value,
            }
        }
        settings
    }

    fn read_entity(&mut self, index: usize, table: &Table) -> Option<Entity> {
        let errors_before = self.errors.len();
        let mut spans = EntitySpans {
            table: table.span(),
            ..EntitySpans::default()
        };
        let name = table.get("name").and_then(Item::as_str);
        let label = entity_label(index, name);
        let mut kind = None;
        let mut path = None;
        let mut recursive = None;
        let mut enabled = None;
        let mut ignore = Vec::new();
        for (key, item) in table.iter() {
            let key_span = table.get_key_value(key).and_then(|(key, _)| key.span());
            let span = item.span().or(key_span.clone());
            let wrong_type = |reader: &mut Reader, expected: &str| {
                let message = format!(
                    "{label}: \"{key}\" must be {expected}, not {}",
                    type_name(item)
                );
                reader.error(span.clone(), message);
            };
            match key {
                "name" => match item.as_str() {
                    Some(_) => spans.name = span.clone(),
                    None => wrong_type(self, "a string"),
                },
                "kind" => match item.as_str() {
                    Some(text) => {
                        kind = EntityKind::parse(text);
                        if kind.is_none() {
                            let message = format!(
                                "{label}: unknown kind \"{text}\" (expected one of {})",
                                EntityKind::names()
                            );
                            self.error(span.clone(), message);
                        }
                    }
                    None => wrong_type(self, "a string"),
                },
                "path" => match item.as_str() {
                    Some(text) => {
                        spans.path = span.clone();
                        path = Some(text.to_string());
                    }
                    None => wrong_type(self, "a string"),
                },
                "recursive" | "enabled" => match item.as_bool() {
                    Some(value) if key == "recursive" => recursive = Some(value),
                    Some(value) => enabled = Some(value),
                    None => wrong_type(self, "true or false"),
                },
                "ignore" => match item.as_array() {
                    Some(array) => {
                        for element in array.iter() {
                            match element.as_str() {
                                Some(pattern) => {
                                    spans.ignore.extend(element.span());
                                    ignore.push(pattern.to_string());
                                }
                                None => self.error(
                                    element.span(),
                                    format!("{label}: ignore patterns must be strings"),
                                ),
                            }
                        }
                    }
                    None => wrong_type(self, "an array of strings"),
                },
                other => {
                    let message = format!(
                        "{label}: unknown key \"{other}\" (expected {})",
                        ENTITY_KEYS.join(", ")
                    );
                    self.error(key_span, message);
                }
            }
        }
        for (key, missing) in [
            ("name", table.get("name").is_none()),
            ("kind", table.get("kind").is_none()),
            ("path", path.is_none() && table.get("path").is_none()),
        ] {
            if missing {
                self.error(
                    spans.table.clone(),
                    format!("{label}: missing key \"{key}\""),
                );
            }
        }
        self.entity_spans.push(spans);
        if self.errors.len() > errors_before {
            return None;
        }
        let (name, kind, path) = (name?.to_string(), kind?, path?);
        Some(Entity {
            recursive: recursive.unwrap_or_else(|| !paths::last_segment_has_wildcard(&path, kind)),
            enabled: enabled.unwrap_or(true),
            name,
            kind,
            path,
            ignore,
        })
    }
}
