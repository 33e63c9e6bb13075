//! Editing the policy file in place, keeping the user's comments and layout.
//!
//! `fim entities add/edit/enable/disable/remove` change one entity; rewriting the whole file
//! from a [`Policy`] would throw away every comment and the order the user chose. So edits go
//! through `toml_edit`'s format-preserving document: only the touched keys change, a replaced
//! value keeps its trailing comment, and keys that were left to their defaults stay implicit.
//!
//! [`PolicyDocument::save`] re-parses and validates the new text first (an invalid policy is
//! never written), then replaces the file atomically: temp file in the same directory, fsync,
//! rename, fsync of the directory. A crash leaves either the old file or the new one.
use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

use super::{
    default_policy, defaults::DEFAULT_FILE_HEADER, parse, Entity, EntityKind, Parsed, PolicyError,
};

/// Changes to one entity; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityPatch {
    pub name: Option<String>,
    pub kind: Option<EntityKind>,
    pub path: Option<String>,
    pub recursive: Option<bool>,
    pub enabled: Option<bool>,
    /// Replaces the whole list; an empty list removes the key.
    pub ignore: Option<Vec<String>>,
}

/// A policy file being edited.
#[derive(Clone, Debug)]
pub struct PolicyDocument {
    path: PathBuf,
    document: DocumentMut,
}

fn invalid_toml(path: &Path, err: toml_edit::TomlError) -> PolicyError {
    // Only reachable for text that `parse` accepted, so this is a toml_edit disagreement.
    PolicyError::Invalid(vec![super::Diagnostic {
        severity: super::Severity::Error,
        location: None,
        message: format!(
            "{}: {}",
            crate::path_text::display_path(path),
            err.message()
        ),
    }])
}

impl PolicyDocument {
    /// Opens an existing policy file; it must be valid.
    pub fn load(path: &Path) -> Result<PolicyDocument, PolicyError> {
        let text = fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PolicyDocument::from_text(&text, path)
    }

    /// Opens `path`, or starts from the recommended defaults when it does not exist yet (the
    /// first `fim entities add` creates the file).
    pub fn load_or_default(path: &Path) -> Result<PolicyDocument, PolicyError> {
        match fs::metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                Ok(PolicyDocument::from_default(path))
            }
            _ => PolicyDocument::load(path),
        }
    }

    /// The recommended defaults, to be saved at `path`.
    pub fn from_default(path: &Path) -> PolicyDocument {
        PolicyDocument {
            path: path.to_path_buf(),
            document: default_document(),
        }
    }

    /// Policy text that will be saved at `path`; it must be valid.
    pub fn from_text(text: &str, path: &Path) -> Result<PolicyDocument, PolicyError> {
        parse(text, path)?;
        let document = text
            .parse::<DocumentMut>()
            .map_err(|err| invalid_toml(path, err))?;
        Ok(PolicyDocument {
            path: path.to_path_buf(),
            document,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text as it would be saved.
    pub fn text(&self) -> String {
        self.document.to_string()
    }

    /// Parses and validates the current text.
    pub fn parsed(&self) -> Result<Parsed, PolicyError> {
        parse(&self.text(), &self.path)
    }

    fn entities(&self) -> Option<&ArrayOfTables> {
        self.document.get("entity")?.as_array_of_tables()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entities()?
            .iter()
            .position(|table| table.get("name").and_then(Item::as_str) == Some(name))
    }

    fn table_mut(&mut self, name: &str) -> Result<&mut Table, PolicyError> {
        let index = self
            .position(name)
            .ok_or_else(|| PolicyError::NotFound(name.to_string()))?;
        self.document
            .get_mut("entity")
            .and_then(Item::as_array_of_tables_mut)
            .and_then(|tables| tables.get_mut(index))
            .ok_or_else(|| PolicyError::NotFound(name.to_string()))
    }

    /// Appends an entity; its name must be new.
    pub fn add(&mut self, entity: Entity) -> Result<(), PolicyError> {
        if self.position(&entity.name).is_some() {
            return Err(PolicyError::DuplicateName(entity.name));
        }
        let table = entity_table(&entity);
        let root = self.document.as_table_mut();
        if let Some(tables) = root
            .get_mut("entity")
            .and_then(Item::as_array_of_tables_mut)
        {
            tables.push(table);
        } else {
            let mut tables = ArrayOfTables::new();
            tables.push(table);
            root.insert("entity", Item::ArrayOfTables(tables));
        }
        Ok(())
    }

    /// Changes the fields the patch sets. Keys the file leaves implicit stay implicit when the
    /// new value is the default (so `recursive` still follows a changed path).
    pub fn edit(&mut self, name: &str, patch: EntityPatch) -> Result<(), PolicyError> {
        if let Some(new_name) = &patch.name {
            if new_name != name && self.position(new_name).is_some() {
                return Err(PolicyError::DuplicateName(new_name.clone()));
            }
        }
        let table = self.table_mut(name)?;
        if let Some(new_name) = patch.name {
            set_value(table, "name", new_name);
        }
        if let Some(kind) = patch.kind {
            set_value(table, "kind", kind.as_str());
        }
        if let Some(path) = patch.path {
            set_value(table, "path", path);
        }
        if let Some(recursive) = patch.recursive {
            let kind = table
                .get("kind")
                .and_then(Item::as_str)
                .and_then(EntityKind::parse);
            let path = table.get("path").and_then(Item::as_str).unwrap_or_default();
            let default = kind.is_none_or(|kind| kind.recursive_by_default(path));
            set_or_default(table, "recursive", recursive, default);
        }
        if let Some(enabled) = patch.enabled {
            set_or_default(table, "enabled", enabled, true);
        }
        if let Some(ignore) = patch.ignore {
            if ignore.is_empty() {
                table.remove("ignore");
            } else {
                set_value(table, "ignore", ignore.iter().collect::<Array>());
            }
        }
        Ok(())
    }

    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> Result<(), PolicyError> {
        let patch = EntityPatch {
            enabled: Some(enabled),
            ..EntityPatch::default()
        };
        self.edit(name, patch)
    }

    /// Deletes an entity, with the comments written above it.
    pub fn remove(&mut self, name: &str) -> Result<(), PolicyError> {
        let index = self
            .position(name)
            .ok_or_else(|| PolicyError::NotFound(name.to_string()))?;
        if let Some(tables) = self
            .document
            .get_mut("entity")
            .and_then(Item::as_array_of_tables_mut)
        {
            tables.remove(index);
        }
        Ok(())
    }

    /// Validates the text and, only if it is valid, replaces the file atomically. Returns the
    /// saved policy and its warnings.
    pub fn save(&self) -> Result<Parsed, PolicyError> {
        let text = self.text();
        let parsed = parse(&text, &self.path)?;
        write_atomic(&self.path, &text).map_err(|source| PolicyError::Write {
            path: self.path.clone(),
            source,
        })?;
        tracing::info!(path = %self.path.display(), "policy saved");
        Ok(parsed)
    }
}

/// The recommended entities ([`default_policy`]) as a document, with a short header comment.
fn default_document() -> DocumentMut {
    let mut document = DocumentMut::new();
    let mut tables = ArrayOfTables::new();
    for (at, entity) in default_policy().entities.iter().enumerate() {
        let mut table = entity_table(entity);
        if at == 0 {
            table
                .decor_mut()
                .set_prefix(format!("{DEFAULT_FILE_HEADER}\n"));
        }
        tables.push(table);
    }
    document.insert("entity", Item::ArrayOfTables(tables));
    document
}

/// [`default_policy`] in the file format, with a short header comment.
pub fn default_policy_toml() -> String {
    default_document().to_string()
}

/// An entity as a `[[entity]]` table; keys at their defaults are left out.
fn entity_table(entity: &Entity) -> Table {
    let mut table = Table::new();
    table.insert("name", toml_edit::value(entity.name.as_str()));
    table.insert("kind", toml_edit::value(entity.kind.as_str()));
    table.insert("path", toml_edit::value(entity.path.as_str()));
    let default_recursive = entity.kind.recursive_by_default(&entity.path);
    if entity.recursive != default_recursive {
        table.insert("recursive", toml_edit::value(entity.recursive));
    }
    if !entity.enabled {
        table.insert("enabled", toml_edit::value(false));
    }
    if !entity.ignore.is_empty() {
        let ignore: Array = entity.ignore.iter().collect();
        table.insert("ignore", toml_edit::value(ignore));
    }
    table
}

/// Replaces a value in place, keeping its surrounding whitespace and trailing comment.
fn set_value(table: &mut Table, key: &str, value: impl Into<Value>) {
    let mut value: Value = value.into();
    match table.get_mut(key) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        None => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn set_or_default(table: &mut Table, key: &str, value: bool, default: bool) {
    if table.contains_key(key) || value != default {
        set_value(table, key, value);
    }
}

fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    // A symlinked policy stays a symlink: replace its target.
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".policy-")
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    temp.write_all(text.as_bytes())?;
    crate::platform::keep_permissions(&target, temp.as_file())?;
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|err| err.error)?;
    crate::platform::sync_dir(&dir)
}
