//! Result files: one row per input row, in input order, streamed from Postgres into a
//! constant-memory xlsx or a csv, then stored.
//!
//! A row is ekycpro's answer columns first (clients read them by position), then, in a full
//! file, a `reason` for invalid and unknown rows and the input's own columns, read again from
//! the kept upload in step with the answers.

use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::mpsc;
use wacheck_core::input::{self, InputFormat};
use wacheck_core::sanitize::{neutralize_formula, result_file_name};
use wacheck_core::table::{TableWriter, XLSX_ROWS_PER_SHEET};
use wacheck_core::{Normalizer, ResultFormat, TaskId, TaskKind, TaskStatus};
use wacheck_store::chunks::{self, ResultRow};
use wacheck_store::tasks::{self, ResultColumns, TaskRecord};

use sqlx::PgPool;
use wacheck_blob::BlobStore;

/// Columns of the upload a result file gives back (the workbook reader reads no further).
pub const MAX_INPUT_COLUMNS: usize = 1024;
/// UTF-16 code units of a cell the upload gives back: what an xlsx cell holds.
pub const MAX_CELL_UNITS: usize = 32_767;

/// Columns of a result file. `cached` says whether the answer came from the result cache;
/// `picture` whether a profile picture is visible, `privacy` what privacy settings hid, `jid`
/// the id WhatsApp answered with (it can differ from the number, e.g. Brazil's ninth digit).
pub fn header(kind: TaskKind) -> &'static [&'static str] {
    match kind {
        TaskKind::Simple => &["Number", "whatsapp", "cached"],
        TaskKind::Detail => &[
            "Number",
            "whatsapp",
            "signature",
            "status_update",
            "business",
            "picture",
            "privacy",
            "jid",
            "cached",
        ],
    }
}

fn yes_no(b: Option<bool>) -> String {
    match b {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => String::new(),
    }
}

/// What a result file holds besides the answers, and how its text is written.
#[derive(Debug, Clone)]
pub struct Shape {
    pub kind: TaskKind,
    /// csv only: text that came from outside gets a leading apostrophe so that it never
    /// becomes a formula (an xlsx string cell is never one, so it keeps its text as it was).
    pub defuse: bool,
    /// A full file: the `reason` column, then the input's own columns (named here; empty when
    /// the upload was not kept).
    pub full: Option<Vec<String>>,
    /// The task's normaliser: says why an invalid row is invalid.
    pub normalizer: Normalizer,
}

impl Shape {
    /// The answer columns alone, as ekycpro's files have them.
    pub fn bare(kind: TaskKind, format: ResultFormat) -> Self {
        Shape {
            kind,
            defuse: format == ResultFormat::Csv,
            full: None,
            normalizer: Normalizer::default(),
        }
    }

    pub fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = header(self.kind).iter().map(|s| (*s).to_owned()).collect();
        if let Some(input) = &self.full {
            h.push("reason".into());
            h.extend(input.iter().map(|name| self.outside(name)));
        }
        h
    }

    /// A cell of the upload as the file writes it: cut to what a spreadsheet cell holds (the
    /// apostrophe of a defused csv cell included), and defused in csv.
    fn outside(&self, cell: &str) -> String {
        self.text(cut_utf16(cell, MAX_CELL_UNITS - 1)).into_owned()
    }

    fn text<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if self.defuse {
            neutralize_formula(s)
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    }

    /// The cells of one result row; `input` is the row's own record in a full file.
    pub fn cells(&self, row: &ResultRow, input: Option<&[String]>) -> Vec<String> {
        let (number, whatsapp) = match (&row.e164, &row.outcome) {
            (Some(e164), Some(outcome)) => (e164.clone(), outcome.clone()),
            // Only a cancelled task has numbers nobody checked.
            (Some(e164), None) => (e164.clone(), "unchecked".to_owned()),
            (None, _) => (
                self.text(row.raw.as_deref().unwrap_or_default())
                    .into_owned(),
                "invalid".to_owned(),
            ),
        };
        let answered = row.outcome.is_some();
        let mut out = vec![number, whatsapp];
        if self.kind == TaskKind::Detail {
            let yes = out[1] == "yes";
            let sig = row.signature.as_deref().filter(|_| yes);
            out.push(sig.map(|s| self.text(s).into_owned()).unwrap_or_default());
            out.push(
                row.status_update
                    .filter(|_| yes)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
            );
            out.push(yes_no(row.business.filter(|_| yes)));
            out.push(yes_no(row.has_picture.filter(|_| yes)));
            out.push(row.privacy.clone().filter(|_| yes).unwrap_or_default());
            let jid = row.jid.as_deref().filter(|_| yes);
            out.push(jid.map(|j| self.text(j).into_owned()).unwrap_or_default());
        }
        out.push(yes_no(answered.then_some(row.cached)));
        if self.full.is_some() {
            let reason = match (&row.e164, row.outcome.as_deref()) {
                (None, _) => self
                    .normalizer
                    .why_invalid(row.raw.as_deref().unwrap_or_default())
                    .reason()
                    .to_owned(),
                (Some(_), Some("unknown")) => row
                    .reason
                    .as_deref()
                    .map(|r| self.text(r).into_owned())
                    .unwrap_or_else(|| "the backend gave no answer".into()),
                (Some(_), None) => "not checked: the task was cancelled".into(),
                _ => String::new(),
            };
            out.push(reason);
            // Every row as wide as the header: cells past it are left out, missing ones empty.
            let width = self.full.as_ref().map_or(0, Vec::len);
            let cells = input.unwrap_or_default();
            out.extend(
                (0..width).map(|i| cells.get(i).map(|c| self.outside(c)).unwrap_or_default()),
            );
        }
        out
    }
}

/// The cells of one row of a bare (ekycpro) file.
pub fn cells(kind: TaskKind, format: ResultFormat, row: &ResultRow) -> Vec<String> {
    Shape::bare(kind, format).cells(row, None)
}

/// What the reader of a kept upload sends to the writer.
#[derive(Debug)]
pub enum Fed {
    /// First: the names of the input's columns.
    Columns(Vec<String>),
    /// Then each input row: the text of its number cell and its whole record.
    Row(String, Vec<String>),
    /// The upload could not be read again.
    Failed(String),
}

/// Input records read again from the kept upload, handed out in step with the answers.
pub struct InputFeed {
    rx: std::sync::mpsc::Receiver<Fed>,
    /// Valid rows handed out so far.
    valid: u64,
    /// False once the records and the answers disagreed (never expected: the same reader reads
    /// the same file): later rows get no input cells rather than someone else's.
    in_step: bool,
}

impl InputFeed {
    /// Reads `path` (a file of `format`) on a thread of its own, a bounded number of records
    /// ahead of the writer.
    pub fn spawn(path: std::path::PathBuf, format: InputFormat) -> Self {
        // Rows are cut before they are sent, so the channel holds at most 256 × 64 KiB.
        let (tx, rx) = std::sync::mpsc::sync_channel(256);
        std::thread::spawn(move || {
            let mut named = false;
            let mut echo = Echo::default();
            let read = std::fs::File::open(&path)
                .map_err(input::InputError::from)
                .and_then(|file| {
                    let reader = std::io::BufReader::with_capacity(1 << 16, file);
                    input::read_records(reader, format, u64::MAX, |r| {
                        if !named {
                            named = true;
                            let names = r.layout.column_names(format);
                            tx.send(Fed::Columns(names)).map_err(stopped)?;
                        }
                        let cells = echo.cut(r.cells);
                        tx.send(Fed::Row(r.number, cells)).map_err(stopped)
                    })
                });
            if let Err(e) = read {
                let _ = tx.send(Fed::Failed(e.to_string()));
            }
        });
        InputFeed {
            rx,
            valid: 0,
            in_step: true,
        }
    }

    /// The names of the input's columns (empty when the upload cannot be read).
    pub fn columns(&mut self) -> Vec<String> {
        match self.rx.recv() {
            Ok(Fed::Columns(mut names)) => {
                names.truncate(MAX_INPUT_COLUMNS);
                names
            }
            other => {
                self.lose_step(&format!("{other:?}"));
                Vec::new()
            }
        }
    }

    /// The record of the next input row, which must be `row`. An invalid row is stored with
    /// its text, which must be the text read again; a valid row's number is normalised again
    /// once every [`CHECK_EVERY`] rows (normalising all would double the export's time).
    pub fn next(&mut self, row: &ResultRow, normalizer: &Normalizer) -> Option<Vec<String>> {
        if !self.in_step {
            return None;
        }
        let sampled = row.e164.is_some() && {
            self.valid += 1;
            self.valid % CHECK_EVERY == 1
        };
        match self.rx.recv() {
            Ok(Fed::Row(number, cells))
                if match &row.e164 {
                    // Stored text loses NUL characters (Postgres keeps none).
                    None => row.raw.as_deref() == Some(number.replace('\0', "").as_str()),
                    Some(e164) if sampled => normalizer
                        .normalize(&number)
                        .is_some_and(|n| n.as_str() == e164),
                    Some(_) => true,
                } =>
            {
                Some(cells)
            }
            other => {
                self.lose_step(&format!("{other:?}"));
                None
            }
        }
    }

    fn lose_step(&mut self, got: &str) {
        if self.in_step {
            tracing::warn!(
                got,
                "the kept upload no longer matches the task's rows: the rest of the result file has no input columns"
            );
        }
        self.in_step = false;
    }
}

/// One valid row in this many has its number normalised again to prove the feed in step.
const CHECK_EVERY: u64 = 1024;
/// The upload's own text a result row gives back at most, in UTF-16 units (about a csv line's
/// limit): a workbook whose cells all point at one long shared string must not grow into a
/// file of terabytes.
const MAX_ROW_ECHO: usize = 64 * 1024;
/// The upload's own text a result file gives back at most; the rows past it have no input
/// columns (and the worker says so in its log).
const MAX_FILE_ECHO: u64 = 1 << 30;

/// Cuts the records of the upload to what a result file gives back of them.
#[derive(Default)]
struct Echo {
    total: u64,
    warned: bool,
}

impl Echo {
    fn cut(&mut self, cells: &[String]) -> Vec<String> {
        if self.total > MAX_FILE_ECHO {
            if !self.warned {
                self.warned = true;
                tracing::warn!("the upload's own columns passed 1 GiB: later rows go without them");
            }
            return Vec::new();
        }
        let mut left = MAX_ROW_ECHO;
        let out: Vec<String> = cells
            .iter()
            .take(MAX_INPUT_COLUMNS)
            .map(|c| {
                let cell = cut_utf16(c, MAX_CELL_UNITS.min(left));
                left -= cell.encode_utf16().count();
                cell.to_owned()
            })
            .collect();
        self.total += (MAX_ROW_ECHO - left) as u64;
        out
    }
}

/// The longest start of `s` of at most `units` UTF-16 code units (how a workbook counts a
/// cell's length).
fn cut_utf16(s: &str, units: usize) -> &str {
    let mut used = 0;
    for (at, c) in s.char_indices() {
        used += c.len_utf16();
        if used > units {
            return &s[..at];
        }
    }
    s
}

fn stopped<T>(_: std::sync::mpsc::SendError<T>) -> input::InputError {
    input::InputError::Io(std::io::Error::other("the result writer stopped"))
}

/// Writes rows arriving on `rx` to `path`; runs on a blocking thread. A full file takes the
/// input's own columns from `input`.
pub fn write_file(
    path: &Path,
    format: ResultFormat,
    shape: Shape,
    rx: mpsc::Receiver<Vec<ResultRow>>,
    input: Option<InputFeed>,
) -> anyhow::Result<u64> {
    write_sheets(path, format, shape, rx, input, XLSX_ROWS_PER_SHEET)
}

/// [`write_file`] with `rows_per_sheet` data rows per xlsx sheet.
pub fn write_sheets(
    path: &Path,
    format: ResultFormat,
    mut shape: Shape,
    mut rx: mpsc::Receiver<Vec<ResultRow>>,
    mut input: Option<InputFeed>,
    rows_per_sheet: u32,
) -> anyhow::Result<u64> {
    if let (Some(feed), Some(names)) = (input.as_mut(), shape.full.as_mut()) {
        *names = feed.columns();
    }
    let mut table = TableWriter::with_rows_per_sheet(path, format, shape.header(), rows_per_sheet)?;
    while let Some(batch) = rx.blocking_recv() {
        for row in &batch {
            let record = input.as_mut().and_then(|f| f.next(row, &shape.normalizer));
            table.row(&shape.cells(row, record.as_deref()))?;
        }
    }
    Ok(table.finish()?)
}

pub fn result_key(task: TaskId, format: ResultFormat) -> String {
    format!("results/{task}.{}", format.extension())
}

/// Where a task's upload is kept while the task lives (its result file gives the upload's own
/// columns back).
pub fn input_key(task: TaskId, extension: &str) -> String {
    format!("inputs/{task}.{extension}")
}

/// The name a task's result file downloads as.
pub fn download_name(record: &TaskRecord) -> String {
    result_file_name(
        record.input_name.as_deref(),
        &record.id.to_string(),
        record.result_format.extension(),
    )
}

/// The columns of `record`'s result file, and its kept upload, fetched into `dir`, to read
/// them from. A full file whose upload is gone (a task from before uploads were kept) has the
/// reason column and no input columns.
async fn shape_of(
    blob: &dyn BlobStore,
    record: &TaskRecord,
    dir: &Path,
) -> anyhow::Result<(Shape, Option<InputFeed>)> {
    let mut shape = Shape::bare(record.kind, record.result_format);
    if record.result_columns == ResultColumns::Ekycpro {
        return Ok((shape, None));
    }
    shape.full = Some(Vec::new());
    shape.normalizer = Normalizer::new(record.default_region.as_deref()).unwrap_or_default();
    let Some(key) = &record.input_key else {
        return Ok((shape, None));
    };
    let path = dir.join("input");
    match blob.get_file(key, &path).await {
        Ok(()) => {}
        Err(wacheck_blob::BlobError::NotFound(_)) => {
            tracing::warn!(
                key,
                "the task's upload is gone: its result file has no input columns"
            );
            return Ok((shape, None));
        }
        Err(e) => return Err(e).context("fetching the kept upload"),
    }
    let mut head = Vec::with_capacity(8192);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(&path)?, 8192),
        &mut head,
    )?;
    match input::detect(&head, record.input_name.as_deref()) {
        Ok(format) => Ok((shape, Some(InputFeed::spawn(path, format)))),
        // Read once, refused now (the rules changed since): the answers still go out.
        Err(e) => {
            tracing::warn!(
                key,
                "the kept upload is no longer read ({e}): no input columns"
            );
            Ok((shape, None))
        }
    }
}

/// Builds the result file of a completed task, stores it, and marks the task exported.
/// Running it twice writes the same object again and changes nothing else.
pub async fn export_task(db: &PgPool, blob: &dyn BlobStore, task: TaskId) -> anyhow::Result<()> {
    let Some(record) = tasks::get(db, task).await? else {
        return Ok(());
    };
    // A completed task, or a cancelled one whose user asked for what was checked.
    let wanted = match record.status {
        TaskStatus::Completed => true,
        TaskStatus::Cancelled => record.export_enqueued_at.is_some(),
        _ => false,
    };
    if !wanted || record.result_key.is_some() {
        return Ok(());
    }
    // A worker may still be storing a batch of a just-cancelled task: wait for it (the export
    // is retried), so that the file agrees with the counters.
    if record.status == TaskStatus::Cancelled
        && wacheck_store::lifecycle::has_live_lease(db, task).await?
    {
        anyhow::bail!("a worker is still storing answers of this cancelled task");
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir
        .path()
        .join(format!("result.{}", record.result_format.extension()));
    let (tx, rx) = mpsc::channel::<Vec<ResultRow>>(4);
    let writer_path = path.clone();
    let format = record.result_format;
    let (shape, input) = shape_of(blob, &record, dir.path()).await?;
    let writer =
        tokio::task::spawn_blocking(move || write_file(&writer_path, format, shape, rx, input));

    let mut rows = chunks::result_rows(db, task);
    let mut streamed = Ok(());
    while let Some(batch) = rows.next().await {
        match batch {
            Ok(batch) => {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                streamed = Err(e);
                break;
            }
        }
    }
    drop(tx);
    drop(rows);
    let written = writer.await.context("export writer panicked")??;
    streamed.context("reading result rows")?;
    anyhow::ensure!(
        written == record.total as u64,
        "export wrote {written} rows for a task of {} rows",
        record.total
    );
    let key = result_key(task, record.result_format);
    blob.put_file(&key, &path, record.result_format.content_type())
        .await
        .context("storing the result file")?;
    if !chunks::mark_exported(db, task, &key).await? && tasks::get(db, task).await?.is_none() {
        // The task was deleted meanwhile (retention): leave no file behind. (When another
        // export of it won the race, the file is that export's and stays.)
        blob.delete(&key).await?;
        return Ok(());
    }
    tracing::info!(rows = written, key, "exported");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Reader, Xlsx};

    fn row(raw: Option<&str>, e164: Option<&str>, outcome: Option<&str>) -> ResultRow {
        ResultRow {
            raw: raw.map(str::to_owned),
            e164: e164.map(str::to_owned),
            outcome: outcome.map(str::to_owned),
            signature: Some("=cmd|' /C calc'!A0".into()),
            status_update: chrono::NaiveDate::from_ymd_opt(2021, 3, 4),
            business: Some(true),
            has_picture: Some(false),
            privacy: None,
            jid: e164.map(|e| format!("{}@s.whatsapp.net", &e[1..])),
            cached: true,
            reason: (outcome == Some("unknown")).then(|| "timed out".to_owned()),
        }
    }

    fn read_sheets(path: &Path) -> Vec<Vec<Vec<String>>> {
        let mut book: Xlsx<_> = calamine::open_workbook(path).unwrap();
        book.sheet_names()
            .iter()
            .map(|name| {
                let range = book.worksheet_range(name).unwrap();
                range
                    .rows()
                    .map(|r| r.iter().map(|c| c.to_string()).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn rows_continue_on_new_sheets_with_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xlsx");
        let (tx, rx) = mpsc::channel(8);
        let rows: Vec<ResultRow> = (0..7)
            .map(|i| row(None, Some(&format!("+4179828465{i}")), Some("no")))
            .collect();
        tx.blocking_send(rows).unwrap();
        drop(tx);
        let shape = Shape::bare(TaskKind::Simple, ResultFormat::Xlsx);
        let format = ResultFormat::Xlsx;
        assert_eq!(write_sheets(&path, format, shape, rx, None, 3).unwrap(), 7);
        let sheets = read_sheets(&path);
        assert_eq!(sheets.len(), 3);
        let mut numbers = Vec::new();
        for sheet in sheets {
            assert_eq!(sheet[0][0], "Number");
            numbers.extend(sheet[1..].iter().map(|r| r[0].clone()));
        }
        assert_eq!(numbers.len(), 7);
        assert_eq!(numbers[6], "+41798284656");
        // Each sheet has a filter over its header and a frozen header row.
        let mut book: Xlsx<_> = calamine::open_workbook(&path).unwrap();
        let _ = book.worksheet_range("Sheet1").unwrap();
        let zip = std::fs::File::open(&path).unwrap();
        let mut zip = zip::ZipArchive::new(zip).unwrap();
        let mut xml = String::new();
        std::io::Read::read_to_string(
            &mut zip.by_name("xl/worksheets/sheet1.xml").unwrap(),
            &mut xml,
        )
        .unwrap();
        assert!(xml.contains(r#"<autoFilter ref="A1:C4"/>"#), "{xml}");
        assert!(xml.contains(r#"state="frozen""#), "{xml}");
    }

    #[test]
    fn csv_cells_defuse_formulas_and_fill_details_only_for_yes() {
        let csv = |r: &ResultRow| cells(TaskKind::Detail, ResultFormat::Csv, r);
        let invalid = csv(&row(Some("=1+2"), None, None));
        assert_eq!(invalid, ["'=1+2", "invalid", "", "", "", "", "", "", ""]);
        let yes = csv(&row(None, Some("+41798284651"), Some("yes")));
        assert_eq!(
            yes,
            [
                "+41798284651",
                "yes",
                "'=cmd|' /C calc'!A0",
                "2021-03-04",
                "yes",
                "no",
                "",
                "41798284651@s.whatsapp.net",
                "yes"
            ]
        );
        let no = csv(&row(None, Some("+41798284651"), Some("no")));
        assert_eq!(no, ["+41798284651", "no", "", "", "", "", "", "", "yes"]);
        let simple = cells(
            TaskKind::Simple,
            ResultFormat::Csv,
            &row(None, Some("+41798284651"), Some("unknown")),
        );
        assert_eq!(simple, ["+41798284651", "unknown", "yes"]);
    }

    #[test]
    fn xlsx_cells_keep_text_as_it_was() {
        // A string cell of a workbook is never a formula: no apostrophe to see.
        let got = cells(
            TaskKind::Simple,
            ResultFormat::Xlsx,
            &row(Some("+++"), None, None),
        );
        assert_eq!(got, ["+++", "invalid", ""]);
    }

    #[test]
    fn full_files_add_a_reason_and_the_inputs_own_columns() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("contacts.csv");
        std::fs::write(
            &input,
            "name,phone,city\nAnna,+41 79 828 46 51,Bern\nBo,079 828 46 52,=Basel\nCy,+41 79 828 46 53,Chur\n",
        )
        .unwrap();
        let format = InputFormat::Csv { delimiter: b',' };
        for (result, path) in [
            (ResultFormat::Csv, dir.path().join("r.csv")),
            (ResultFormat::Xlsx, dir.path().join("r.xlsx")),
        ] {
            let shape = Shape {
                full: Some(Vec::new()),
                ..Shape::bare(TaskKind::Simple, result)
            };
            let (tx, rx) = mpsc::channel(8);
            tx.blocking_send(vec![
                row(None, Some("+41798284651"), Some("yes")),
                row(Some("079 828 46 52"), None, None),
                row(None, Some("+41798284653"), Some("unknown")),
            ])
            .unwrap();
            drop(tx);
            let feed = InputFeed::spawn(input.clone(), format);
            assert_eq!(write_file(&path, result, shape, rx, Some(feed)).unwrap(), 3);
            let rows: Vec<Vec<String>> = match result {
                ResultFormat::Csv => csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_path(&path)
                    .unwrap()
                    .records()
                    .map(|r| r.unwrap().iter().map(str::to_owned).collect())
                    .collect(),
                ResultFormat::Xlsx => read_sheets(&path).remove(0),
            };
            // csv defuses what a spreadsheet would compute; xlsx keeps the text as it was.
            let (formula, anna, cy) = if result == ResultFormat::Csv {
                ("'=Basel", "'+41 79 828 46 51", "'+41 79 828 46 53")
            } else {
                ("=Basel", "+41 79 828 46 51", "+41 79 828 46 53")
            };
            let no_code = "no country code: write the number with + and its country code, or set default_region";
            let want: Vec<Vec<&str>> = vec![
                vec![
                    "Number", "whatsapp", "cached", "reason", "name", "phone", "city",
                ],
                vec!["+41798284651", "yes", "yes", "", "Anna", anna, "Bern"],
                vec![
                    "079 828 46 52",
                    "invalid",
                    "",
                    no_code,
                    "Bo",
                    "079 828 46 52",
                    formula,
                ],
                vec![
                    "+41798284653",
                    "unknown",
                    "yes",
                    "timed out",
                    "Cy",
                    cy,
                    "Chur",
                ],
            ];
            assert_eq!(rows, want, "{result:?}");
        }
    }

    #[test]
    fn echoed_cells_fit_a_workbook_and_rows_stay_small() {
        // 20,000 emoji are 40,000 UTF-16 units: cut to what a workbook cell holds.
        let emoji = "\u{1F600}".repeat(20_000);
        assert_eq!(
            cut_utf16(&emoji, MAX_CELL_UNITS).encode_utf16().count(),
            32_766
        );
        assert_eq!(cut_utf16("abc", 2), "ab");
        // A row of 1,100 long cells: at most 1,024 columns and 64 Ki units in all.
        let long = "x".repeat(30_000);
        let cells = vec![long; 1_100];
        let cut = Echo::default().cut(&cells);
        assert_eq!(cut.len(), MAX_INPUT_COLUMNS);
        let units: usize = cut.iter().map(|c| c.encode_utf16().count()).sum();
        assert_eq!(units, MAX_ROW_ECHO);
        assert_eq!(
            (cut[0].len(), cut[1].len(), cut[2].len()),
            (30_000, 30_000, 5_536)
        );
        assert!(cut[3].is_empty());
    }

    #[test]
    fn a_feed_out_of_step_gives_no_one_elses_columns() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("n.txt");
        std::fs::write(&input, "+41 79 828 46 51\nhello\n").unwrap();
        let n = Normalizer::default();
        let mut feed = InputFeed::spawn(input.clone(), InputFormat::Txt);
        assert_eq!(feed.columns(), ["input"]);
        assert!(
            feed.next(&row(None, Some("+41798284651"), Some("no")), &n)
                .is_some()
        );
        // The stored invalid text differs from the file's: no cells from here on.
        assert_eq!(feed.next(&row(Some("bye"), None, None), &n), None);
        assert_eq!(
            feed.next(&row(None, Some("+41798284651"), Some("no")), &n),
            None
        );
        // The first valid row is normalised again: another number is out of step.
        let mut feed = InputFeed::spawn(input, InputFormat::Txt);
        feed.columns();
        assert_eq!(
            feed.next(&row(None, Some("+41798284652"), Some("no")), &n),
            None
        );
    }
}
