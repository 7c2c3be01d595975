//! Result files: one row per input row, in input order, streamed from Postgres into a
//! constant-memory xlsx or a csv, then stored.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use futures::StreamExt;
use rust_xlsxwriter::{Workbook, Worksheet};
use tokio::sync::mpsc;
use wacheck_core::sanitize::neutralize_formula;
use wacheck_core::{ResultFormat, TaskId, TaskKind, TaskStatus};
use wacheck_store::chunks::{self, ResultRow};
use wacheck_store::tasks;

use crate::pipeline::Pipeline;

/// Data rows per xlsx sheet (the format's 1,048,576 rows, less the header).
pub const XLSX_ROWS_PER_SHEET: u32 = 1_048_575;

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

/// The cells of one result row. Text that came from outside (raw input, about text) is
/// defused so that it never becomes a formula.
pub fn cells(kind: TaskKind, row: &ResultRow) -> Vec<String> {
    let (number, whatsapp) = match (&row.e164, &row.outcome) {
        (Some(e164), Some(outcome)) => (e164.clone(), outcome.clone()),
        // Only a cancelled task has numbers nobody checked.
        (Some(e164), None) => (e164.clone(), "unchecked".to_owned()),
        (None, _) => (
            neutralize_formula(row.raw.as_deref().unwrap_or_default()).into_owned(),
            "invalid".to_owned(),
        ),
    };
    let answered = row.outcome.is_some();
    let mut out = vec![number, whatsapp];
    if kind == TaskKind::Detail {
        let yes = out[1] == "yes";
        let sig = row
            .signature
            .as_deref()
            .filter(|_| yes)
            .map(neutralize_formula);
        out.push(sig.map(|s| s.into_owned()).unwrap_or_default());
        out.push(
            row.status_update
                .filter(|_| yes)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        );
        out.push(yes_no(row.business.filter(|_| yes)));
        out.push(yes_no(row.has_picture.filter(|_| yes)));
        out.push(row.privacy.clone().filter(|_| yes).unwrap_or_default());
        out.push(
            row.jid
                .as_deref()
                .filter(|_| yes)
                .map(neutralize_formula)
                .map(|j| j.into_owned())
                .unwrap_or_default(),
        );
    }
    out.push(yes_no(answered.then_some(row.cached)));
    out
}

/// Writes rows arriving on `rx` to `path`; runs on a blocking thread.
pub fn write_file(
    path: &Path,
    format: ResultFormat,
    kind: TaskKind,
    mut rx: mpsc::Receiver<Vec<ResultRow>>,
) -> anyhow::Result<u64> {
    match format {
        ResultFormat::Csv => {
            let file = std::fs::File::create(path)?;
            let mut w = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 16, file));
            w.write_record(header(kind))?;
            let mut n = 0;
            while let Some(batch) = rx.blocking_recv() {
                for row in &batch {
                    w.write_record(cells(kind, row))?;
                    n += 1;
                }
            }
            w.into_inner()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .flush()?;
            Ok(n)
        }
        ResultFormat::Xlsx => write_xlsx(path, kind, &mut rx, XLSX_ROWS_PER_SHEET),
    }
}

fn new_sheet(book: &mut Workbook, kind: TaskKind) -> anyhow::Result<&mut Worksheet> {
    let sheet = book.add_worksheet_with_constant_memory()?;
    for (c, h) in header(kind).iter().enumerate() {
        sheet.write_string(0, c as u16, *h)?;
    }
    Ok(sheet)
}

/// xlsx in constant-memory mode; past `rows_per_sheet` data rows a new sheet begins.
pub fn write_xlsx(
    path: &Path,
    kind: TaskKind,
    rx: &mut mpsc::Receiver<Vec<ResultRow>>,
    rows_per_sheet: u32,
) -> anyhow::Result<u64> {
    let mut book = Workbook::new();
    new_sheet(&mut book, kind)?;
    let mut sheet_index = 0;
    let mut row_in_sheet: u32 = 0;
    let mut n = 0u64;
    while let Some(batch) = rx.blocking_recv() {
        for row in &batch {
            if row_in_sheet == rows_per_sheet {
                new_sheet(&mut book, kind)?;
                sheet_index += 1;
                row_in_sheet = 0;
            }
            row_in_sheet += 1;
            let sheet = book.worksheet_from_index(sheet_index)?;
            for (c, v) in cells(kind, row).iter().enumerate() {
                if !v.is_empty() {
                    sheet.write_string(row_in_sheet, c as u16, v)?;
                }
            }
            n += 1;
        }
    }
    book.save(path)?;
    Ok(n)
}

pub fn result_key(task: TaskId, format: ResultFormat) -> String {
    format!("results/{task}.{}", format.extension())
}

/// Builds the result file of a completed task, stores it, and marks the task exported.
/// Running it twice writes the same object again and changes nothing else.
pub async fn export_task(p: &Pipeline, task: TaskId) -> anyhow::Result<()> {
    let Some(record) = tasks::get(&p.pool, task).await? else {
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
        && wacheck_store::lifecycle::has_live_lease(&p.pool, task).await?
    {
        anyhow::bail!("a worker is still storing answers of this cancelled task");
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir
        .path()
        .join(format!("result.{}", record.result_format.extension()));
    let (tx, rx) = mpsc::channel::<Vec<ResultRow>>(4);
    let writer_path = path.clone();
    let (format, kind) = (record.result_format, record.kind);
    let writer = tokio::task::spawn_blocking(move || write_file(&writer_path, format, kind, rx));

    let mut rows = chunks::result_rows(&p.pool, task);
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
    p.blob
        .put_file(&key, &path, record.result_format.content_type())
        .await
        .context("storing the result file")?;
    if !chunks::mark_exported(&p.pool, task, &key).await?
        && tasks::get(&p.pool, task).await?.is_none()
    {
        // The task was deleted meanwhile (retention): leave no file behind. (When another
        // export of it won the race, the file is that export's and stays.)
        p.blob.delete(&key).await?;
        return Ok(());
    }
    tracing::info!(rows = written, key, "exported");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Data, Reader, Xlsx};

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
        }
    }

    #[test]
    fn rows_continue_on_new_sheets_with_their_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xlsx");
        let (tx, mut rx) = mpsc::channel(8);
        let rows: Vec<ResultRow> = (0..7)
            .map(|i| row(None, Some(&format!("+4179828465{i}")), Some("no")))
            .collect();
        tx.blocking_send(rows).unwrap();
        drop(tx);
        assert_eq!(write_xlsx(&path, TaskKind::Simple, &mut rx, 3).unwrap(), 7);
        let mut book: Xlsx<_> = calamine::open_workbook(&path).unwrap();
        let names = book.sheet_names();
        assert_eq!(names.len(), 3);
        let mut numbers = Vec::new();
        for name in names {
            let range = book.worksheet_range(&name).unwrap();
            let mut it = range.rows();
            assert_eq!(it.next().unwrap()[0], Data::String("Number".into()));
            numbers.extend(it.map(|r| r[0].to_string()));
        }
        assert_eq!(numbers.len(), 7);
        assert_eq!(numbers[6], "+41798284656");
    }

    #[test]
    fn cells_defuse_formulas_and_fill_details_only_for_yes() {
        let invalid = cells(TaskKind::Detail, &row(Some("=1+2"), None, None));
        assert_eq!(invalid, ["'=1+2", "invalid", "", "", "", "", "", "", ""]);
        let yes = cells(
            TaskKind::Detail,
            &row(None, Some("+41798284651"), Some("yes")),
        );
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
        let no = cells(
            TaskKind::Detail,
            &row(None, Some("+41798284651"), Some("no")),
        );
        assert_eq!(no, ["+41798284651", "no", "", "", "", "", "", "", "yes"]);
        let simple = cells(
            TaskKind::Simple,
            &row(None, Some("+41798284651"), Some("unknown")),
        );
        assert_eq!(simple, ["+41798284651", "unknown", "yes"]);
    }
}
