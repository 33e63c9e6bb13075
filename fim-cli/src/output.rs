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

fn row(record: &ChangeRecord) -> [String; 9] {
    let file = record.file.as_ref();
    let mut path = file
        .map(|file| file.file_system_path.clone())
        .unwrap_or_default();
    if let Some(from) = file.and_then(|file| file.renamed_from.as_ref()) {
        path = format!("{from} -> {path}");
    } else if let Some(to) = file.and_then(|file| file.renamed_to.as_ref()) {
        path = format!("{path} -> {to}");
    }
    let (process, user) = match &record.actor {
        Some(actor) => (
            format!("{} ({})", actor.process_name, actor.process_id),
            actor.user_name.clone(),
        ),
        None => ("unknown".to_string(), "unknown".to_string()),
    };
    [
        record.sequence.to_string(),
        record.time_generated.clone(),
        record.computer.clone(),
        record.config_change_type.as_str().to_string(),
        record.change_category.as_str().to_string(),
        path,
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
            writer.write_record(COLUMNS)?;
            for record in records {
                writer.write_record(row(record))?;
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
