//! Uploaded files -> input rows.
//!
//! A file is recognised by its content (a zip container is xlsx; text is csv when a delimiter
//! repeats on every sampled line, else one number per line); the file name is only a hint.
//! Every reader streams: rows are handed to a callback as they are read.

use std::io::{BufRead, BufReader, Read, Seek};

use calamine::{DataRef, Reader, Xlsx};

use crate::number::looks_like_phone;

/// Header names that mark the number column (compared case-insensitively).
const HEADER_NAMES: &[&str] = &["number", "phone", "mobile", "msisdn", "whatsapp"];
/// How many records are looked at before the number column is chosen.
const SNIFF_RECORDS: usize = 50;
/// Longest raw cell kept; longer cells are cut (they are never valid numbers anyway).
pub const MAX_RAW_CHARS: usize = 256;
/// Longest line of a text or csv file, in bytes: a file of numbers has short lines, and a
/// reader must not hold a 100 MB "line" in memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What an uploaded workbook may expand to. Workbooks are zip files: their parts are checked
/// in the zip's directory, before anything is inflated, so that a small file that would
/// inflate to gigabytes (a zip bomb) is refused instead of filling memory.
pub mod xlsx_limits {
    /// Parts in the zip.
    pub const MAX_ENTRIES: usize = 10_000;
    /// All parts together, inflated (a 5M-row sheet takes about 500 MiB).
    pub const MAX_TOTAL_BYTES: u64 = 2 << 30;
    /// The shared strings part, which is read into memory whole.
    pub const MAX_SHARED_STRINGS_BYTES: u64 = 256 << 20;
    /// Inflated / compressed size of a part larger than 1 MiB (sheet XML compresses 5-30
    /// times; bombs a thousand times).
    pub const MAX_RATIO: u64 = 200;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Txt,
    Csv { delimiter: u8 },
    Xlsx,
}

impl InputFormat {
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Txt => "txt",
            InputFormat::Csv { .. } => "csv",
            InputFormat::Xlsx => "xlsx",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Unsupported(String),
    #[error("the xlsx file cannot be read: {0}")]
    InvalidXlsx(String),
    #[error("the file has more than {0} rows")]
    TooManyRows(u64),
    #[error("a line of the file is longer than {0} bytes")]
    LineTooLong(usize),
    #[error("reading the upload failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Decides the format from the first bytes of the file (at least 8 KiB when the file has them).
pub fn detect(head: &[u8], file_name: Option<&str>) -> Result<InputFormat, InputError> {
    let ext = file_name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if head.starts_with(b"PK\x03\x04") {
        // OpenDocument files are zips too; their first part names the document type.
        if contains(head, b"application/vnd.oasis.opendocument") {
            return Err(InputError::Unsupported(
                "OpenDocument files (.ods) are not read: save the sheet as .xlsx or .csv".into(),
            ));
        }
        return Ok(InputFormat::Xlsx);
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Err(InputError::Unsupported(
            "legacy .xls (Excel 97-2003) files are not supported: save the sheet as .xlsx or .csv"
                .into(),
        ));
    }
    if ext == "xlsx" {
        return Err(InputError::InvalidXlsx(
            "the file is named .xlsx but is not an xlsx (zip) document".into(),
        ));
    }
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return Err(InputError::Unsupported(
            "UTF-16 text is not supported: save the file as UTF-8".into(),
        ));
    }
    if is_binary(head) {
        return Err(InputError::Unsupported(
            "the file is neither text (.txt/.csv) nor an xlsx workbook".into(),
        ));
    }
    let text = String::from_utf8_lossy(strip_bom(head));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    // The last sampled line may be cut in the middle; ignore it when there are others.
    let sample = if lines.len() > 2 {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    for delimiter in [b',', b';', b'\t', b'|'] {
        let counts: Vec<usize> = sample
            .iter()
            .map(|l| count_unquoted(l, delimiter))
            .collect();
        if let Some(&first) = counts.first()
            && first > 0
            && counts.iter().all(|&c| c == first)
        {
            return Ok(InputFormat::Csv { delimiter });
        }
    }
    Ok(if ext == "csv" {
        InputFormat::Csv { delimiter: b',' }
    } else {
        InputFormat::Txt
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Occurrences of `delimiter` outside double quotes.
fn count_unquoted(line: &str, delimiter: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delimiter && !quoted {
            n += 1;
        }
    }
    n
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn is_binary(head: &[u8]) -> bool {
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C))
        .count();
    let invalid_utf8 = match std::str::from_utf8(strip_bom(head)) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => 0, // cut in the middle of a character
        Err(_) => String::from_utf8_lossy(head).matches('\u{FFFD}').count(),
    };
    control * 20 > head.len() || invalid_utf8 * 10 > head.len().max(1)
}

/// Counts of what a read saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub rows: u64,
    pub header_skipped: bool,
    pub column: usize,
}

/// How the records of a file are laid out, known before the first row is handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The header record, when the file starts with one (it is not an input row).
    pub header: Option<Vec<String>>,
    /// The column that holds the numbers.
    pub column: usize,
    /// The widest of the records looked at to choose the column.
    pub width: usize,
}

impl Layout {
    /// Names of the file's own columns: its header, else `column 1`, `column 2`, … (one
    /// `input` column for a text file of numbers).
    pub fn column_names(&self, format: InputFormat) -> Vec<String> {
        match (&self.header, format) {
            (Some(h), _) => h.clone(),
            (None, InputFormat::Txt) => vec!["input".to_owned()],
            (None, _) => (1..=self.width.max(1))
                .map(|i| format!("column {i}"))
                .collect(),
        }
    }
}

/// One input row: the text of its number cell (cut to [`MAX_RAW_CHARS`]) and the whole record.
#[derive(Debug)]
pub struct Record<'a> {
    pub number: String,
    pub cells: &'a [String],
    pub layout: &'a Layout,
}

/// Reads every input row of the file and hands its raw text to `emit`, in file order.
pub fn read_rows<R, F>(
    reader: R,
    format: InputFormat,
    max_rows: u64,
    mut emit: F,
) -> Result<ReadSummary, InputError>
where
    R: Read + Seek,
    F: FnMut(String) -> Result<(), InputError>,
{
    read_records(reader, format, max_rows, |r| emit(r.number))
}

/// Reads every input row of the file and hands it, with its whole record, to `emit`, in file
/// order: the same rows, in the same order, as [`read_rows`].
pub fn read_records<R, F>(
    reader: R,
    format: InputFormat,
    max_rows: u64,
    emit: F,
) -> Result<ReadSummary, InputError>
where
    R: Read + Seek,
    F: FnMut(Record<'_>) -> Result<(), InputError>,
{
    let mut picker = ColumnPicker::new(format == InputFormat::Txt, max_rows, emit);
    let long = |e: InputError| match e {
        InputError::Io(io) if io.get_ref().is_some_and(|i| i.is::<LineTooLong>()) => {
            InputError::LineTooLong(MAX_LINE_BYTES)
        }
        other => other,
    };
    match format {
        InputFormat::Txt => read_txt(LineLimit::new(reader), &mut picker).map_err(long)?,
        InputFormat::Csv { delimiter } => {
            read_csv(LineLimit::new(reader), delimiter, &mut picker).map_err(long)?
        }
        // The workbook parser can panic on crafted input (found by fuzzing: an arithmetic
        // overflow on a huge cell reference); such a file is refused like any broken one.
        InputFormat::Xlsx => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_xlsx(reader, &mut picker)
        }))
        .unwrap_or_else(|_| {
            Err(InputError::InvalidXlsx(
                "the workbook is malformed (its reader gave up on it)".into(),
            ))
        })?,
    }
    picker.finish()
}

/// The error a [`LineLimit`] reader fails with.
#[derive(Debug)]
struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a line is longer than {MAX_LINE_BYTES} bytes")
    }
}

impl std::error::Error for LineTooLong {}

/// Fails a read once a line grows past [`MAX_LINE_BYTES`].
struct LineLimit<R> {
    inner: R,
    run: usize,
}

impl<R> LineLimit<R> {
    fn new(inner: R) -> Self {
        LineLimit { inner, run: 0 }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > MAX_LINE_BYTES {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        LineTooLong,
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Checks a workbook's zip directory against [`xlsx_limits`] without inflating anything.
pub fn check_zip<R: Read + Seek>(reader: R) -> Result<(), InputError> {
    use xlsx_limits::*;
    let bad = |m: String| InputError::InvalidXlsx(m);
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| bad(format!("not a readable zip container: {e}")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "the workbook has {} parts, more than {MAX_ENTRIES}",
            zip.len()
        )));
    }
    let mut total: u64 = 0;
    let mut workbook = false;
    for i in 0..zip.len() {
        let part = zip
            .by_index_raw(i)
            .map_err(|e| bad(format!("a part of the zip cannot be read: {e}")))?;
        workbook |= part.name().is_ok_and(|n| n.starts_with("xl/"));
        if part.encrypted() {
            return Err(bad("the workbook is encrypted".into()));
        }
        let (size, packed) = (part.size(), part.compressed_size());
        if size > (1 << 20) && size / packed.max(1) > MAX_RATIO {
            return Err(bad(format!(
                "a part of the workbook would inflate {}-fold (to {size} bytes): refused as a \
                 zip bomb",
                size / packed.max(1)
            )));
        }
        let shared = part.name().is_ok_and(|n| n.ends_with("sharedStrings.xml"));
        if shared && size > MAX_SHARED_STRINGS_BYTES {
            return Err(bad(format!(
                "the workbook's shared strings take {size} bytes, more than \
                 {MAX_SHARED_STRINGS_BYTES}"
            )));
        }
        total = total.saturating_add(size);
        if total > MAX_TOTAL_BYTES {
            return Err(bad(format!(
                "the workbook would inflate to more than {MAX_TOTAL_BYTES} bytes"
            )));
        }
    }
    if !workbook {
        return Err(InputError::Unsupported(
            "the file is a zip archive but not an Excel workbook (.xlsx): upload the sheet as \
             .xlsx, .csv or .txt"
                .into(),
        ));
    }
    Ok(())
}

fn read_txt<R: Read, F>(reader: R, picker: &mut ColumnPicker<F>) -> Result<(), InputError>
where
    F: FnMut(Record<'_>) -> Result<(), InputError>,
{
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::with_capacity(256);
    let mut first = true;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let bytes = if first { strip_bom(&line) } else { &line[..] };
        first = false;
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if !text.is_empty() {
            picker.push(vec![text.to_owned()])?;
        }
    }
}

fn read_csv<R: Read, F>(
    mut reader: R,
    delimiter: u8,
    picker: &mut ColumnPicker<F>,
) -> Result<(), InputError>
where
    F: FnMut(Record<'_>) -> Result<(), InputError>,
{
    let mut bom = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        let n = reader.read(&mut bom[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let prefix: &[u8] = if bom[..got] == *b"\xEF\xBB\xBF" {
        &[]
    } else {
        &bom[..got]
    };
    let chained = std::io::Cursor::new(prefix.to_vec()).chain(reader);
    let mut csv = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(64 * 1024)
        .from_reader(chained);
    let mut record = csv::ByteRecord::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                return Err(match e.into_kind() {
                    csv::ErrorKind::Io(io) => InputError::Io(io),
                    other => InputError::Unsupported(format!("malformed csv: {other:?}")),
                });
            }
        }
        let cells: Vec<String> = record
            .iter()
            .map(|c| String::from_utf8_lossy(c).trim().to_owned())
            .collect();
        if cells.iter().any(|c| !c.is_empty()) {
            picker.push(cells)?;
        }
    }
}

fn read_xlsx<R: Read + Seek, F>(reader: R, picker: &mut ColumnPicker<F>) -> Result<(), InputError>
where
    F: FnMut(Record<'_>) -> Result<(), InputError>,
{
    let bad = |e: calamine::XlsxError| InputError::InvalidXlsx(e.to_string());
    let mut reader = reader;
    check_zip(&mut reader)?;
    reader.rewind()?;
    let mut book: Xlsx<R> = Xlsx::new(reader).map_err(bad)?;
    let sheet = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| InputError::InvalidXlsx("the workbook has no worksheet".into()))?;
    let mut cells = book.worksheet_cells_reader(&sheet).map_err(bad)?;
    let mut row: Vec<String> = Vec::new();
    let mut row_no: Option<u32> = None;
    while let Some(cell) = cells.next_cell().map_err(bad)? {
        let (r, c) = cell.get_position();
        if row_no != Some(r) {
            if row.iter().any(|c| !c.is_empty()) {
                picker.push(std::mem::take(&mut row))?;
            }
            row.clear();
            row_no = Some(r);
        }
        let c = c as usize;
        if c > 1024 {
            continue; // a number column is never that far right
        }
        if row.len() <= c {
            row.resize(c + 1, String::new());
        }
        row[c] = cell_text(cell.get_value());
    }
    if row.iter().any(|c| !c.is_empty()) {
        picker.push(row)?;
    }
    Ok(())
}

/// Text of an xlsx cell. Numeric cells lose a leading `+` or `0`; they come out as plain
/// digits and the normaliser tries them both as national and as international numbers.
fn cell_text(v: &DataRef<'_>) -> String {
    match v {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e17 => format!("{f:.0}"),
        DataRef::Float(f) => f.to_string(),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
            s.trim().to_owned()
        }
        DataRef::SharedString(s) => s.trim().to_owned(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => d.as_f64().to_string(),
        DataRef::Error(e) => format!("#{e:?}"),
        DataRef::Empty => String::new(),
    }
}

/// Chooses the number column from the first records, skips a header row, then streams.
struct ColumnPicker<F> {
    txt: bool,
    max_rows: u64,
    emit: F,
    buffered: Vec<Vec<String>>,
    decided: Option<usize>,
    layout: Layout,
    summary: ReadSummary,
}

impl<F> ColumnPicker<F>
where
    F: FnMut(Record<'_>) -> Result<(), InputError>,
{
    fn new(txt: bool, max_rows: u64, emit: F) -> Self {
        Self {
            txt,
            max_rows,
            emit,
            buffered: Vec::new(),
            decided: None,
            layout: Layout::default(),
            summary: ReadSummary::default(),
        }
    }

    fn push(&mut self, record: Vec<String>) -> Result<(), InputError> {
        match self.decided {
            Some(col) => self.emit_cell(&record, col),
            None => {
                self.buffered.push(record);
                if self.buffered.len() >= SNIFF_RECORDS {
                    self.decide()?;
                }
                Ok(())
            }
        }
    }

    fn finish(mut self) -> Result<ReadSummary, InputError> {
        if self.decided.is_none() {
            self.decide()?;
        }
        Ok(self.summary)
    }

    fn decide(&mut self) -> Result<(), InputError> {
        let records = std::mem::take(&mut self.buffered);
        let (col, header) = choose_column(&records, self.txt);
        self.decided = Some(col);
        self.summary.column = col;
        self.summary.header_skipped = header;
        self.layout = Layout {
            header: header.then(|| records[0].clone()),
            column: col,
            width: records.iter().map(Vec::len).max().unwrap_or(0),
        };
        for record in records.iter().skip(usize::from(header)) {
            self.emit_cell(record, col)?;
        }
        Ok(())
    }

    fn emit_cell(&mut self, record: &[String], col: usize) -> Result<(), InputError> {
        let Some(cell) = record.get(col).filter(|c| !c.is_empty()) else {
            return Ok(()); // a row without a number in the number column is not an input row
        };
        if self.summary.rows >= self.max_rows {
            return Err(InputError::TooManyRows(self.max_rows));
        }
        self.summary.rows += 1;
        let number = if cell.chars().count() > MAX_RAW_CHARS {
            cell.chars().take(MAX_RAW_CHARS).collect()
        } else {
            cell.clone()
        };
        (self.emit)(Record {
            number,
            cells: record,
            layout: &self.layout,
        })
    }
}

fn is_header_name(cell: &str) -> bool {
    let lower = cell.trim().to_ascii_lowercase();
    let compact: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    HEADER_NAMES
        .iter()
        .any(|h| compact == *h || compact == format!("{h}number"))
}

/// Returns (column, whether the first record is a header).
fn choose_column(records: &[Vec<String>], txt: bool) -> (usize, bool) {
    let Some(first) = records.first() else {
        return (0, false);
    };
    if let Some(col) = first.iter().position(|c| is_header_name(c)) {
        return (col, true);
    }
    if txt {
        return (0, false);
    }
    let body = if records.len() > 1 {
        &records[1..]
    } else {
        records
    };
    let width = records.iter().map(Vec::len).max().unwrap_or(0);
    let col = (0..width)
        .find(|&c| {
            let values: Vec<&String> = body
                .iter()
                .filter_map(|r| r.get(c))
                .filter(|v| !v.is_empty())
                .collect();
            let phone = values.iter().filter(|v| looks_like_phone(v)).count();
            !values.is_empty() && phone * 2 > values.len()
        })
        .unwrap_or(0);
    let header = records.len() > 1
        && first
            .get(col)
            .is_some_and(|c| !c.is_empty() && !looks_like_phone(c));
    (col, header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn rows(data: &[u8], name: Option<&str>) -> (InputFormat, Vec<String>) {
        let format = detect(data, name).unwrap();
        let mut out = Vec::new();
        read_rows(Cursor::new(data.to_vec()), format, u64::MAX, |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        (format, out)
    }

    #[test]
    fn txt_lines_with_bom_crlf_and_blanks() {
        let (f, r) = rows(
            b"\xEF\xBB\xBF+41 79 828 46 51\r\n\r\n  0041798284652 \r\nhello\n",
            Some("a.txt"),
        );
        assert_eq!(f, InputFormat::Txt);
        assert_eq!(r, vec!["+41 79 828 46 51", "0041798284652", "hello"]);
    }

    #[test]
    fn txt_header_word_is_not_a_row() {
        let (_, r) = rows(b"Phone\n+41798284651\n", None);
        assert_eq!(r, vec!["+41798284651"]);
    }

    #[test]
    fn csv_picks_named_column_and_handles_quotes() {
        let data = b"name,Mobile,city\r\n\"Doe, Jane\",\"+41 79 828 46 51\",Bern\r\nBob,0798284652,\"Z\"\"urich\"\r\n";
        let (f, r) = rows(data, Some("x.csv"));
        assert_eq!(f, InputFormat::Csv { delimiter: b',' });
        assert_eq!(r, vec!["+41 79 828 46 51", "0798284652"]);
    }

    #[test]
    fn csv_without_named_header_picks_phone_like_column() {
        let data = b"id;contact;note\n1;+41798284651;a\n2;+41798284652;b\n3;+41798284653;c\n";
        let (f, r) = rows(data, None);
        assert_eq!(f, InputFormat::Csv { delimiter: b';' });
        assert_eq!(r, vec!["+41798284651", "+41798284652", "+41798284653"]);
    }

    #[test]
    fn delimiters_inside_quotes_do_not_count() {
        let data = b"name;phone\n\"Doe; Jane\";+41798284651\n\"A;B;C\";+41798284652\n";
        let (f, r) = rows(data, None);
        assert_eq!(f, InputFormat::Csv { delimiter: b';' });
        assert_eq!(r, vec!["+41798284651", "+41798284652"]);
    }

    #[test]
    fn csv_without_header_keeps_first_row() {
        let data = b"+41798284651,a\n+41798284652,b\n";
        let (_, r) = rows(data, None);
        assert_eq!(r, vec!["+41798284651", "+41798284652"]);
    }

    #[test]
    fn binary_and_fake_xlsx_are_refused() {
        assert!(matches!(
            detect(b"\x00\x01\x02garbage", None),
            Err(InputError::Unsupported(_))
        ));
        assert!(matches!(
            detect(b"+41798284651\n", Some("x.xlsx")),
            Err(InputError::InvalidXlsx(_))
        ));
        let junk: Vec<u8> = (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8 | 0x80)
            .collect();
        assert!(detect(&junk, None).is_err());
        let zip_junk = b"PK\x03\x04not really a zip";
        assert_eq!(detect(zip_junk, None).unwrap(), InputFormat::Xlsx);
        let err = read_rows(
            Cursor::new(zip_junk.to_vec()),
            InputFormat::Xlsx,
            10,
            |_| Ok(()),
        );
        assert!(matches!(err, Err(InputError::InvalidXlsx(_))));
    }

    #[test]
    fn row_limit_is_enforced() {
        let err = read_rows(
            Cursor::new(b"1\n2\n3\n".to_vec()),
            InputFormat::Txt,
            2,
            |_| Ok(()),
        );
        assert!(matches!(err, Err(InputError::TooManyRows(2))));
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "9".repeat(10_000);
        let (_, r) = rows(long.as_bytes(), None);
        assert_eq!(r[0].len(), MAX_RAW_CHARS);
    }

    fn read_err(data: &[u8], format: InputFormat) -> InputError {
        read_rows(Cursor::new(data.to_vec()), format, u64::MAX, |_| Ok(())).unwrap_err()
    }

    /// A zip with one part of `size` zero bytes, deflated.
    fn zip_of(name: &str, size: usize) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file(name, opts).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..size / block.len() {
            std::io::Write::write_all(&mut w, &block).unwrap();
        }
        w.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn zip_bombs_are_refused_before_anything_is_inflated() {
        // 64 MiB of zeros deflate to some 64 KiB: a thousandfold part.
        let bomb = zip_of("xl/worksheets/sheet1.xml", 64 << 20);
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let err = read_err(&bomb, InputFormat::Xlsx);
        assert!(
            matches!(&err, InputError::InvalidXlsx(m) if m.contains("zip bomb")),
            "{err}"
        );
        // A small part is fine whatever its ratio (real workbooks have tiny, repetitive parts).
        assert!(check_zip(Cursor::new(zip_of("xl/styles.xml", 1 << 20))).is_ok());
    }

    #[test]
    fn lines_longer_than_the_limit_are_refused() {
        let mut long = b"+41798284651\n".to_vec();
        long.extend(std::iter::repeat_n(b'7', MAX_LINE_BYTES + 1));
        long.push(b'\n');
        assert!(matches!(
            read_err(&long, InputFormat::Txt),
            InputError::LineTooLong(MAX_LINE_BYTES)
        ));
        assert!(matches!(
            read_err(&long, InputFormat::Csv { delimiter: b',' }),
            InputError::LineTooLong(_)
        ));
        // Exactly at the limit is fine.
        let mut ok = vec![b'1'; MAX_LINE_BYTES];
        ok.push(b'\n');
        let (_, r) = rows(&ok, Some("a.txt"));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn text_that_is_not_utf8_is_read_with_replacements() {
        let (_, r) = rows(b"\xc3\x28+41 79 828 46 51\n\xe2\x82\n", Some("a.txt"));
        assert_eq!(r.len(), 2);
        assert!(r[0].ends_with("+41 79 828 46 51"));
    }

    #[test]
    fn a_workbook_that_breaks_the_parser_is_refused_not_a_crash() {
        // Found by fuzzing: calamine overflows on this cell reference (a panic where overflow
        // is checked).
        let data = include_bytes!("../tests/data/overflowing_cell_reference.xlsx");
        let err = read_err(data, InputFormat::Xlsx);
        assert!(matches!(err, InputError::InvalidXlsx(_)), "{err}");
    }

    /// Every record of `data` as (number cell, whole record), and the layout.
    fn records(data: &[u8]) -> (Vec<(String, Vec<String>)>, Layout) {
        let format = detect(data, None).unwrap();
        let mut out = Vec::new();
        let mut layout = Layout::default();
        read_records(Cursor::new(data.to_vec()), format, u64::MAX, |r| {
            layout = r.layout.clone();
            out.push((r.number, r.cells.to_vec()));
            Ok(())
        })
        .unwrap();
        (out, layout)
    }

    #[test]
    fn records_come_with_the_files_own_columns() {
        let (rows, layout) =
            records(b"name,phone,city\nAnna,+41 79 828 46 51,Bern\nBo,n/a,Basel\n");
        assert_eq!(
            layout.header.as_deref(),
            Some(&["name".to_owned(), "phone".into(), "city".into()][..])
        );
        assert_eq!(layout.column, 1);
        assert_eq!(
            rows,
            vec![
                (
                    "+41 79 828 46 51".to_owned(),
                    vec!["Anna".into(), "+41 79 828 46 51".into(), "Bern".into()]
                ),
                (
                    "n/a".to_owned(),
                    vec!["Bo".into(), "n/a".into(), "Basel".into()]
                ),
            ]
        );
        let format = InputFormat::Csv { delimiter: b',' };
        assert_eq!(layout.column_names(format), ["name", "phone", "city"]);
        // Without a header the columns are numbered; a text file has one.
        let (_, layout) = records(b"+41798284651;x\n+41798284652;y\n");
        assert_eq!(
            layout.column_names(InputFormat::Csv { delimiter: b';' }),
            ["column 1", "column 2"]
        );
        let (rows, layout) = records(b"+41 79 828 46 51\n");
        assert_eq!(layout.column_names(InputFormat::Txt), ["input"]);
        assert_eq!(rows[0].1, ["+41 79 828 46 51"]);
    }

    #[test]
    fn spreadsheets_we_do_not_read_are_named() {
        let mut ods = b"PK\x03\x04".to_vec();
        ods.extend_from_slice(&[0; 26]);
        ods.extend_from_slice(b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet");
        let err = detect(&ods, Some("contacts.ods")).unwrap_err();
        assert!(
            matches!(&err, InputError::Unsupported(m) if m.contains(".ods")),
            "{err}"
        );
        // A zip that holds no workbook is not "a broken workbook".
        let err = read_err(&zip_of("word/document.xml", 0), InputFormat::Xlsx);
        assert!(
            matches!(&err, InputError::Unsupported(m) if m.contains("not an Excel workbook")),
            "{err}"
        );
    }
}
