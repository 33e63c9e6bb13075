//! Printing records and counts as a table (people), json/jsonl (programs) or csv (sheets).
use std::io::Write;

use anyhow::Context as _;
use fim_engine::{change::ChangeRecord, store::SummaryRow};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Csv,
}

const COLUMNS: [&str; 9] = [
    "Sequence",
    "TimeGenerated",
    "Computer",
    "ConfigChangeType",
    "ChangeCategory",
    "FileSystemPath",
    "FieldsChanged",
    "Process",
    "User",
];

/// The registry and service columns csv adds after [`COLUMNS`] (Azure's names), so a sheet of
/// Windows changes has the key, the value and the service state in columns of their own.
const WINDOWS_COLUMNS: [&str; 16] = [
    "RegistryKey",
    "ValueName",
    "ValueType",
    "PreviousValueType",
    "ValueData",
    "PreviousValueData",
    "SvcName",
    "SvcDisplayName",
    "SvcState",
    "PreviousSvcState",
    "SvcStartupType",
    "PreviousSvcStartupType",
    "SvcPath",
    "PreviousSvcPath",
    "SvcAccount",
    "PreviousSvcAccount",
];

fn windows_cells(record: &ChangeRecord) -> [String; 16] {
    let text = |value: Option<&String>| value.cloned().unwrap_or_default();
    let registry = record.registry.as_ref();
    let service = record.service.as_ref();
    let key = |get: fn(&fim_engine::change::RegistryColumns) -> Option<&String>| {
        text(registry.and_then(get))
    };
    let svc = |get: fn(&fim_engine::change::ServiceColumns) -> Option<&String>| {
        text(service.and_then(get))
    };
    [
        text(registry.map(|registry| &registry.registry_key)),
        key(|r| r.value_name.as_ref()),
        key(|r| r.value_type.as_ref()),
        key(|r| r.previous_value_type.as_ref()),
        key(|r| r.value_data.as_ref()),
        key(|r| r.previous_value_data.as_ref()),
        text(service.map(|service| &service.svc_name)),
        svc(|s| s.svc_display_name.as_ref()),
        svc(|s| s.svc_state.as_ref()),
        svc(|s| s.previous_svc_state.as_ref()),
        svc(|s| s.svc_startup_type.as_ref()),
        svc(|s| s.previous_svc_startup_type.as_ref()),
        svc(|s| s.svc_path.as_ref()),
        svc(|s| s.previous_svc_path.as_ref()),
        svc(|s| s.svc_account.as_ref()),
        svc(|s| s.previous_svc_account.as_ref()),
    ]
}

/// What the record is about, as the table's path column shows it: the file (with its rename
/// partner), the registry key (and value), or the service.
fn subject(record: &ChangeRecord) -> String {
    if let Some(registry) = &record.registry {
        return fim_model::object::key_text(&registry.registry_key, registry.value_name.as_deref());
    }
    if let Some(service) = &record.service {
        return service.svc_name.clone();
    }
    let file = record.file.as_ref();
    let mut path = file
        .map(|file| file.file_system_path.clone())
        .unwrap_or_default();
    if let Some(from) = file.and_then(|file| file.renamed_from.as_ref()) {
        path = format!("{from} -> {path}");
    } else if let Some(to) = file.and_then(|file| file.renamed_to.as_ref()) {
        path = format!("{path} -> {to}");
    }
    path
}

fn row(record: &ChangeRecord) -> [String; 9] {
    let (process, user) = match &record.actor {
        Some(actor) => (
            format!("{} ({})", actor.process_name, actor.process_id),
            actor.user_display().to_string(),
        ),
        None => ("unknown".to_string(), "unknown".to_string()),
    };
    [
        record.sequence.to_string(),
        record.time_generated.to_rfc3339(),
        record.computer.clone(),
        record.config_change_type.as_str().to_string(),
        record.change_category.as_str().to_string(),
        subject(record),
        record.fields_changed.join(","),
        process,
        user,
    ]
}

pub fn records(
    records: &[ChangeRecord],
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(COLUMNS);
            for record in records {
                table.add_row(row(record));
            }
            writeln!(out, "{table}")?;
            writeln!(out, "{} change(s)", records.len())?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, records).context("writing json")?;
            writeln!(out)?;
        }
        Format::Jsonl => {
            for record in records {
                serde_json::to_writer(&mut *out, record).context("writing json")?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut *out);
            writer.write_record(COLUMNS.iter().chain(&WINDOWS_COLUMNS))?;
            for record in records {
                writer.write_record(row(record).iter().chain(&windows_cells(record)))?;
            }
            writer.flush()?;
        }
    }
    Ok(())
}

/// One record as one line, for a stream (`fim watch`).
pub fn records_line(
    record: &ChangeRecord,
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Jsonl | Format::Json => {
            serde_json::to_writer(&mut *out, record).context("writing json")?;
            writeln!(out)?;
        }
        Format::Table | Format::Csv => writeln!(out, "{}", row(record).join("  "))?,
    }
    Ok(())
}

pub fn summary(
    by: &[String],
    rows: &[SummaryRow],
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut header: Vec<String> = by.iter().map(|key| key.trim().to_string()).collect();
    header.push("count".to_string());
    match format {
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(&header);
            for row in rows {
                let mut cells = row.keys.clone();
                cells.push(row.count.to_string());
                table.add_row(cells);
            }
            writeln!(out, "{table}")?;
        }
        Format::Json | Format::Jsonl => {
            let objects: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    let mut object = serde_json::Map::new();
                    for (key, value) in header.iter().zip(&row.keys) {
                        object.insert(key.clone(), value.clone().into());
                    }
                    object.insert("count".into(), row.count.into());
                    serde_json::Value::Object(object)
                })
                .collect();
            if format == Format::Json {
                serde_json::to_writer_pretty(&mut *out, &objects)?;
                writeln!(out)?;
            } else {
                for object in objects {
                    serde_json::to_writer(&mut *out, &object)?;
                    writeln!(out)?;
                }
            }
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut *out);
            writer.write_record(&header)?;
            for row in rows {
                let mut cells = row.keys.clone();
                cells.push(row.count.to_string());
                writer.write_record(cells)?;
            }
            writer.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fim_model::samples::{registry_record, service_record};

    use super::*;

    fn print(format: Format) -> String {
        let mut out = Vec::new();
        records(&[registry_record(), service_record()], format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn registry_and_service_records_print_in_every_format() {
        let table = print(Format::Table);
        assert!(
            table.contains(
                r#"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run @ "Updater""#
            ),
            "{table}"
        );
        assert!(
            table.contains(r"reg.exe (4242)") && table.contains(r"CORP\alice"),
            "{table}"
        );
        assert!(
            table.contains("Spooler") && table.contains("WindowsServices"),
            "{table}"
        );

        let csv = print(Format::Csv);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let header = reader.headers().unwrap().clone();
        let column = |name: &str| header.iter().position(|cell| cell == name).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            &rows[0][column("RegistryKey")],
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
        );
        assert_eq!(&rows[0][column("ValueName")], "Updater");
        assert_eq!(&rows[0][column("ValueData")], r"C:\evil.exe");
        assert_eq!(&rows[0][column("PreviousValueData")], r"C:\good.exe");
        assert_eq!(&rows[0][column("User")], r"CORP\alice");
        assert_eq!(&rows[1][column("SvcName")], "Spooler");
        assert_eq!(&rows[1][column("SvcState")], "Stopped");
        assert_eq!(&rows[1][column("PreviousSvcStartupType")], "Auto");
        assert_eq!(&rows[1][column("User")], "unknown");

        for format in [Format::Json, Format::Jsonl] {
            let text = print(format);
            let back: Vec<ChangeRecord> = if format == Format::Json {
                serde_json::from_str(&text).unwrap()
            } else {
                text.lines()
                    .map(|line| serde_json::from_str(line).unwrap())
                    .collect()
            };
            assert_eq!(back, [registry_record(), service_record()], "{format:?}");
        }
    }
}
