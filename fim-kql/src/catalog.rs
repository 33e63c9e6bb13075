//! The column catalog: which KQL columns the `ConfigurationChange` table has, their types,
//! and the SQL expression each one is read with in each dialect.
//!
//! The caller supplies it because the store decides what is a real column and what stays
//! inside the record's JSON. [`Catalog::configuration_change`] describes the layout below;
//! a store with another layout builds its own with [`Catalog::new`] and [`Catalog::column`].
//!
//! # The table the default catalog expects
//!
//! ```sql
//! -- SQLite
//! CREATE TABLE configuration_change (
//!     sequence       INTEGER NOT NULL,  -- the agent journal's sequence
//!     computer_id    TEXT    NOT NULL,  -- ComputerId (/etc/machine-id)
//!     computer       TEXT    NOT NULL,  -- Computer
//!     time_generated INTEGER NOT NULL,  -- TimeGenerated as Unix nanoseconds (UTC)
//!     change_type    TEXT    NOT NULL,  -- ConfigChangeType: Files, Registry, WindowsServices, ...
//!     category       TEXT    NOT NULL,  -- ChangeCategory: Added, Modified, Removed
//!     entity         TEXT    NOT NULL,  -- Entity
//!     path           TEXT,              -- FileSystemPath, RegistryKey or SvcName (NULL: Monitor)
//!     record         TEXT    NOT NULL   -- the record's JSON, as journaled
//! );
//! -- PostgreSQL: the same names, with
//! --     sequence bigint, time_generated timestamptz, record jsonb
//! ```
//!
//! Integer nanoseconds in SQLite rather than RFC 3339 text: the journal's text has as many
//! fractional digits as the time needs, so it does not sort as text, and `bin()` is
//! integer arithmetic on nanoseconds. String columns read from the JSON are `COALESCE`d to
//! `''` (KQL strings are never null, so `RegistryKey != 'x'` holds on a Files record).
use crate::dialect::Dialect;
use crate::value::Type;

/// One KQL column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// The KQL (Azure) name, case-sensitive as in KQL.
    pub name: String,
    pub ty: Type,
    /// The SQL expression in SQLite (trusted text from the store, never from a query).
    pub sqlite: String,
    /// The SQL expression in PostgreSQL.
    pub postgres: String,
}

impl ColumnDef {
    pub fn sql(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Sqlite => &self.sqlite,
            Dialect::Postgres => &self.postgres,
        }
    }
}

/// The table a query reads and its columns, in the order `ConfigurationChange` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// The KQL table name a query must start with.
    pub kql_table: String,
    /// The SQL table (or view) name: trusted text from the store.
    pub sql_table: String,
    pub columns: Vec<ColumnDef>,
}

impl Catalog {
    pub fn new(kql_table: &str, sql_table: &str) -> Self {
        Catalog {
            kql_table: kql_table.to_string(),
            sql_table: sql_table.to_string(),
            columns: Vec::new(),
        }
    }

    /// Adds (or replaces) a column.
    pub fn column(mut self, name: &str, ty: Type, sqlite: &str, postgres: &str) -> Self {
        let def = ColumnDef {
            name: name.to_string(),
            ty,
            sqlite: sqlite.to_string(),
            postgres: postgres.to_string(),
        };
        match self.columns.iter_mut().find(|column| column.name == name) {
            Some(existing) => *existing = def,
            None => self.columns.push(def),
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// The Azure `ConfigurationChange` columns over the table in the module docs.
    pub fn configuration_change() -> Self {
        Self::configuration_change_on("configuration_change", "record")
    }

    /// The same columns over another table, with the record JSON read from `record`
    /// (in PostgreSQL an expression of type jsonb, e.g. `record::jsonb` for a text column).
    pub fn configuration_change_on(sql_table: &str, record: &str) -> Self {
        let mut catalog = Catalog::new("ConfigurationChange", sql_table);
        catalog = real_columns(catalog);
        for (name, ty, path) in JSON_COLUMNS {
            catalog = catalog.column(
                name,
                *ty,
                &sqlite_json(record, path, *ty),
                &postgres_json(record, path, *ty),
            );
        }
        catalog
            .column(
                "Acls",
                Type::String,
                &format!(
                    "COALESCE(json_extract({record}, '$.File.Acls'), \
                     json_extract({record}, '$.Registry.Acls'), '')"
                ),
                &format!(
                    "COALESCE({record}->'File'->>'Acls', {record}->'Registry'->>'Acls', '')"
                ),
            )
            .column(
                "UserName",
                Type::String,
                &format!(
                    "COALESCE(json_extract({record}, '$.Actor.UserName'), \
                     json_extract({record}, '$.Actor.AccountName'), '')"
                ),
                &format!(
                    "COALESCE({record}->'Actor'->>'UserName', {record}->'Actor'->>'AccountName', '')"
                ),
            )
    }
}

fn subject(change_type: &str) -> String {
    format!("(CASE WHEN change_type = '{change_type}' THEN COALESCE(path, '') ELSE '' END)")
}

fn real_columns(catalog: Catalog) -> Catalog {
    let file = subject("Files");
    let key = subject("Registry");
    let service = subject("WindowsServices");
    catalog
        .column(
            "TimeGenerated",
            Type::DateTime,
            "time_generated",
            "time_generated",
        )
        .column("Computer", Type::String, "computer", "computer")
        .column("ComputerId", Type::String, "computer_id", "computer_id")
        .column(
            "ConfigChangeType",
            Type::String,
            "change_type",
            "change_type",
        )
        .column("ChangeCategory", Type::String, "category", "category")
        .column("Entity", Type::String, "entity", "entity")
        .column("Sequence", Type::Long, "sequence", "sequence")
        .column("FileSystemPath", Type::String, &file, &file)
        .column("RegistryKey", Type::String, &key, &key)
        .column("SvcName", Type::String, &service, &service)
}

/// (KQL name, type, JSON path from the record's root).
const JSON_COLUMNS: &[(&str, Type, &[&str])] = &[
    ("FieldsChanged", Type::Dynamic, &["FieldsChanged"]),
    ("DetectedBy", Type::String, &["DetectedBy"]),
    ("Operations", Type::Dynamic, &["Operations"]),
    // Who made the change (null when a scan found it: the record's Actor is "unknown").
    ("ProcessName", Type::String, &["Actor", "ProcessName"]),
    ("ProcessId", Type::Long, &["Actor", "ProcessId"]),
    ("ProcessPath", Type::String, &["Actor", "Executable"]),
    ("RenamedFrom", Type::String, &["File", "RenamedFrom"]),
    ("RenamedTo", Type::String, &["File", "RenamedTo"]),
    ("FileType", Type::String, &["File", "FileType"]),
    ("Size", Type::Long, &["File", "Size"]),
    ("PreviousSize", Type::Long, &["File", "PreviousSize"]),
    ("DateModified", Type::DateTime, &["File", "DateModified"]),
    (
        "PreviousDateModified",
        Type::DateTime,
        &["File", "PreviousDateModified"],
    ),
    ("Owner", Type::String, &["File", "Owner"]),
    ("PreviousOwner", Type::String, &["File", "PreviousOwner"]),
    ("Group", Type::String, &["File", "Group"]),
    ("PreviousGroup", Type::String, &["File", "PreviousGroup"]),
    ("Mode", Type::String, &["File", "Mode"]),
    ("PreviousMode", Type::String, &["File", "PreviousMode"]),
    ("PreviousAcls", Type::String, &["File", "PreviousAcls"]),
    ("Attributes", Type::String, &["File", "Attributes"]),
    (
        "PreviousAttributes",
        Type::String,
        &["File", "PreviousAttributes"],
    ),
    (
        "FileContentChecksum",
        Type::String,
        &["File", "FileContentChecksum"],
    ),
    (
        "PreviousFileContentChecksum",
        Type::String,
        &["File", "PreviousFileContentChecksum"],
    ),
    ("ContentDiff", Type::String, &["File", "ContentDiff"]),
    ("Hive", Type::String, &["Registry", "Hive"]),
    ("ValueName", Type::String, &["Registry", "ValueName"]),
    ("ValueType", Type::String, &["Registry", "ValueType"]),
    (
        "PreviousValueType",
        Type::String,
        &["Registry", "PreviousValueType"],
    ),
    ("ValueData", Type::String, &["Registry", "ValueData"]),
    (
        "PreviousValueData",
        Type::String,
        &["Registry", "PreviousValueData"],
    ),
    (
        "SvcDisplayName",
        Type::String,
        &["Service", "SvcDisplayName"],
    ),
    (
        "PreviousSvcDisplayName",
        Type::String,
        &["Service", "PreviousSvcDisplayName"],
    ),
    ("SvcState", Type::String, &["Service", "SvcState"]),
    (
        "PreviousSvcState",
        Type::String,
        &["Service", "PreviousSvcState"],
    ),
    (
        "SvcStartupType",
        Type::String,
        &["Service", "SvcStartupType"],
    ),
    (
        "PreviousSvcStartupType",
        Type::String,
        &["Service", "PreviousSvcStartupType"],
    ),
    ("SvcPath", Type::String, &["Service", "SvcPath"]),
    (
        "PreviousSvcPath",
        Type::String,
        &["Service", "PreviousSvcPath"],
    ),
    ("SvcAccount", Type::String, &["Service", "SvcAccount"]),
    (
        "PreviousSvcAccount",
        Type::String,
        &["Service", "PreviousSvcAccount"],
    ),
    ("ProcessId", Type::Long, &["Actor", "ProcessId"]),
    ("ProcessName", Type::String, &["Actor", "ProcessName"]),
    ("Executable", Type::String, &["Actor", "Executable"]),
    ("ParentProcessId", Type::Long, &["Actor", "ParentProcessId"]),
    ("UserId", Type::Long, &["Actor", "UserId"]),
    ("LoginUserId", Type::Long, &["Actor", "LoginUserId"]),
    ("UserSid", Type::String, &["Actor", "UserSid"]),
    ("Cgroup", Type::String, &["Actor", "Cgroup"]),
];

fn sqlite_json(record: &str, path: &[&str], ty: Type) -> String {
    let extract = format!("json_extract({record}, '$.{}')", path.join("."));
    match ty {
        Type::String => format!("COALESCE({extract}, '')"),
        Type::DateTime => sqlite_rfc3339_nanos(&extract),
        // json_extract hands arrays and objects back as JSON text.
        _ => extract,
    }
}

/// RFC 3339 UTC text (`...T14:09:32.05429763Z`) to Unix nanoseconds; NULL stays NULL.
fn sqlite_rfc3339_nanos(text: &str) -> String {
    format!(
        "(unixepoch(substr({text}, 1, 19)) * 1000000000 + CASE WHEN substr({text}, 20, 1) = '.' \
         THEN CAST(substr(substr({text}, 21, instr({text}, 'Z') - 21) || '000000000', 1, 9) \
         AS INTEGER) ELSE 0 END)"
    )
}

fn postgres_json(record: &str, path: &[&str], ty: Type) -> String {
    let (last, parents) = match path.split_last() {
        Some(split) => split,
        None => return "NULL".to_string(),
    };
    let mut object = record.to_string();
    for parent in parents {
        object = format!("{object}->'{parent}'");
    }
    let text = format!("{object}->>'{last}'");
    match ty {
        Type::String => format!("COALESCE({text}, '')"),
        Type::Long => format!("({text})::bigint"),
        Type::Real => format!("({text})::double precision"),
        Type::Bool => format!("({text})::boolean"),
        Type::DateTime => format!("({text})::timestamptz"),
        _ => format!("{object}->'{last}'"),
    }
}
