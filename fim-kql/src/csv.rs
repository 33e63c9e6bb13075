//! CSV export of a result: a header of the Azure column names, then one line per row, written
//! as the rows arrive so an export of many rows never sits in memory.
//!
//! A text cell that a spreadsheet would run as a formula (one starting with `=`, `+`, `-`,
//! `@`, a tab or a carriage return) is prefixed with a single quote, as OWASP's CSV-injection
//! advice says: a file path or registry value written by an attacker must not execute when
//! an analyst opens the export. Numbers and times are written as they are.
use std::borrow::Cow;
use std::io::Write;

use crate::value::{OutputColumn, Rows, Value};

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("CSV export: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV export: {0}")]
    Io(#[from] std::io::Error),
    #[error("CSV export: a row has {got} cells, the header {want}")]
    Width { got: usize, want: usize },
}

/// Prefixes `'` to a cell a spreadsheet would read as a formula.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// The text of one cell as exported.
pub fn cell(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Text(text) => neutralise(text),
        Value::Json(_) => Cow::Owned(neutralise(&value.display()).into_owned()),
        other => Cow::Owned(other.display()),
    }
}

/// A streaming CSV writer: the header on creation, then [`CsvExport::row`] per row.
pub struct CsvExport<W: Write> {
    writer: csv::Writer<W>,
    width: usize,
}

impl<W: Write> CsvExport<W> {
    pub fn new(out: W, columns: &[OutputColumn]) -> Result<Self, CsvError> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(
            columns
                .iter()
                .map(|column| neutralise(&column.name).into_owned()),
        )?;
        Ok(CsvExport {
            writer,
            width: columns.len(),
        })
    }

    pub fn row(&mut self, row: &[Value]) -> Result<(), CsvError> {
        if row.len() != self.width {
            return Err(CsvError::Width {
                got: row.len(),
                want: self.width,
            });
        }
        self.writer
            .write_record(row.iter().map(|value| cell(value).into_owned()))?;
        Ok(())
    }

    /// Flushes and hands the writer back.
    pub fn finish(self) -> Result<W, CsvError> {
        self.writer
            .into_inner()
            .map_err(|err| CsvError::Io(std::io::Error::other(err.to_string())))
    }
}

/// Writes a collected result.
pub fn write_rows<W: Write>(out: W, rows: &Rows) -> Result<W, CsvError> {
    let mut export = CsvExport::new(out, &rows.columns)?;
    for row in &rows.rows {
        export.row(row)?;
    }
    export.finish()
}
