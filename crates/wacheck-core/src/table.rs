//! Tables written to a file row by row, as csv or as a constant-memory xlsx: task results
//! and history exports alike. Memory stays flat whatever the row count; an xlsx goes on to
//! a new sheet when one is full, and every sheet has a bold, frozen header with filters.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rust_xlsxwriter::{Color, Format, FormatBorder, Workbook, Worksheet, XlsxError};

use crate::ResultFormat;

/// Data rows per xlsx sheet (the format's 1,048,576 rows, less the header).
pub const XLSX_ROWS_PER_SHEET: u32 = 1_048_575;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Xlsx(#[from] XlsxError),
}

/// A table being written to a file. Rows go in with [`TableWriter::row`]; nothing is complete
/// until [`TableWriter::finish`].
pub struct TableWriter {
    out: Out,
    header: Vec<String>,
    rows: u64,
}

enum Out {
    // Boxed, both: writers of a few hundred bytes and a workbook of a kilobyte.
    Csv(Box<csv::Writer<BufWriter<std::fs::File>>>),
    Xlsx(Box<Sheets>),
}

struct Sheets {
    book: Workbook,
    path: PathBuf,
    rows_per_sheet: u32,
    index: usize,
    /// Data rows in the current sheet.
    filled: u32,
}

impl TableWriter {
    /// A table at `path` whose first row is `header`.
    pub fn create(
        path: &Path,
        format: ResultFormat,
        header: Vec<String>,
    ) -> Result<Self, TableError> {
        Self::with_rows_per_sheet(path, format, header, XLSX_ROWS_PER_SHEET)
    }

    /// As [`TableWriter::create`], starting a new xlsx sheet after `rows_per_sheet` data rows.
    pub fn with_rows_per_sheet(
        path: &Path,
        format: ResultFormat,
        header: Vec<String>,
        rows_per_sheet: u32,
    ) -> Result<Self, TableError> {
        let out = match format {
            ResultFormat::Csv => {
                let file = std::fs::File::create(path)?;
                let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, file));
                w.write_record(&header)?;
                Out::Csv(Box::new(w))
            }
            ResultFormat::Xlsx => {
                let mut book = Workbook::new();
                new_sheet(&mut book, &header)?;
                Out::Xlsx(Box::new(Sheets {
                    book,
                    path: path.to_owned(),
                    rows_per_sheet: rows_per_sheet.max(1),
                    index: 0,
                    filled: 0,
                }))
            }
        };
        Ok(TableWriter {
            out,
            header,
            rows: 0,
        })
    }

    /// Appends one row; an empty cell is left blank.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> Result<(), TableError> {
        match &mut self.out {
            Out::Csv(w) => w.write_record(cells.iter().map(AsRef::as_ref))?,
            Out::Xlsx(s) => {
                if s.filled == s.rows_per_sheet {
                    filter(
                        s.book.worksheet_from_index(s.index)?,
                        s.filled,
                        &self.header,
                    )?;
                    new_sheet(&mut s.book, &self.header)?;
                    s.index += 1;
                    s.filled = 0;
                }
                s.filled += 1;
                let sheet = s.book.worksheet_from_index(s.index)?;
                for (c, v) in cells.iter().enumerate() {
                    if !v.as_ref().is_empty() {
                        sheet.write_string(s.filled, c as u16, v.as_ref())?;
                    }
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Completes the file; returns the number of data rows.
    pub fn finish(self) -> Result<u64, TableError> {
        match self.out {
            Out::Csv(w) => {
                w.into_inner().map_err(|e| e.into_error())?.flush()?;
            }
            Out::Xlsx(mut s) => {
                filter(
                    s.book.worksheet_from_index(s.index)?,
                    s.filled,
                    &self.header,
                )?;
                s.book.save(&s.path)?;
            }
        }
        Ok(self.rows)
    }
}

/// Width of a column, in characters: enough for its usual content, never wider than 48.
fn column_width(name: &str) -> f64 {
    let usual = match name {
        "Number" | "number" => 16,
        "signature" | "reason" => 40,
        "jid" | "_id" | "timestamp" => 28,
        "status_update" => 13,
        _ => 12,
    };
    usual.max(name.chars().count() + 3).min(48) as f64
}

fn new_sheet<'a>(
    book: &'a mut Workbook,
    header: &[String],
) -> Result<&'a mut Worksheet, XlsxError> {
    let bold = Format::new()
        .set_bold()
        .set_background_color(Color::RGB(0xDDE4EE))
        .set_border_bottom(FormatBorder::Thin);
    let sheet = book.add_worksheet_with_constant_memory()?;
    for (c, h) in header.iter().enumerate() {
        sheet.set_column_width(c as u16, column_width(h))?;
        sheet.write_string_with_format(0, c as u16, h, &bold)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(sheet)
}

/// A filter button on every header cell of a finished sheet of `rows` data rows.
fn filter(sheet: &mut Worksheet, rows: u32, header: &[String]) -> Result<(), XlsxError> {
    sheet.autofilter(0, 0, rows, header.len().saturating_sub(1) as u16)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::Reader;

    fn header() -> Vec<String> {
        vec!["number".into(), "status".into()]
    }

    #[test]
    fn csv_is_the_header_then_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let mut t = TableWriter::create(&path, ResultFormat::Csv, header()).unwrap();
        t.row(&["+41798284651", "Valid"]).unwrap();
        t.row(&["a,b", ""]).unwrap();
        assert_eq!(t.finish().unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "number,status\n+41798284651,Valid\n\"a,b\",\n"
        );
    }

    #[test]
    fn xlsx_goes_on_to_a_new_sheet_when_one_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.xlsx");
        let mut t =
            TableWriter::with_rows_per_sheet(&path, ResultFormat::Xlsx, header(), 3).unwrap();
        for i in 0..7 {
            t.row(&[format!("n{i}"), String::new()]).unwrap();
        }
        assert_eq!(t.finish().unwrap(), 7);
        let mut book: calamine::Xlsx<_> = calamine::open_workbook(&path).unwrap();
        let sheets: Vec<Vec<Vec<String>>> = book
            .worksheets()
            .into_iter()
            .map(|(_, range)| {
                range
                    .rows()
                    .map(|r| r.iter().map(|c| c.to_string()).collect())
                    .collect()
            })
            .collect();
        let column = |s: &Vec<Vec<String>>| s.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(sheets.len(), 3);
        assert_eq!(column(&sheets[0]), ["number", "n0", "n1", "n2"]);
        assert_eq!(column(&sheets[1]), ["number", "n3", "n4", "n5"]);
        assert_eq!(column(&sheets[2]), ["number", "n6"]);
        // An empty cell stays blank.
        assert_eq!(sheets[2][1][1], "");
    }
}
