//! Tasks: creation with all their rows in one transaction, and reads.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use wacheck_core::{ResultFormat, TaskId, TaskKind, TaskStatus};

use crate::copy::{push_int, push_null, push_text};
use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: TaskId,
    pub user_id: String,
    pub kind: TaskKind,
    pub result_format: ResultFormat,
    pub default_region: Option<String>,
    pub chunk_size: u32,
}

/// What the reader found, known once the whole file is read.
#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    pub total: u64,
    pub invalid: u64,
    /// Distinct valid numbers in order of first appearance (index = `num_idx`), as E.164 digits.
    pub numbers: Vec<u64>,
    /// How many input rows carry each distinct number.
    pub rows_per_number: Vec<u32>,
}

impl IngestSummary {
    pub fn chunk_count(&self, chunk_size: u32) -> u32 {
        (self.numbers.len() as u64).div_ceil(u64::from(chunk_size.max(1))) as u32
    }
}

/// Encodes input rows for the COPY into `task_rows`; used by the (blocking) file reader.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    task_id: String,
}

impl RowEncoder {
    pub fn new(id: TaskId) -> Self {
        Self {
            task_id: id.to_string(),
        }
    }

    /// A valid row stores only its number index; an invalid row keeps its raw text.
    pub fn row(&self, buf: &mut Vec<u8>, row_no: u64, raw: Option<&str>, num_idx: Option<u32>) {
        buf.extend_from_slice(self.task_id.as_bytes());
        buf.push(b'\t');
        push_int(buf, row_no as i64);
        buf.push(b'\t');
        match raw {
            Some(raw) => push_text(buf, raw),
            None => push_null(buf),
        }
        buf.push(b'\t');
        match num_idx {
            Some(i) => push_int(buf, i64::from(i)),
            None => push_null(buf),
        }
        buf.push(b'\n');
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: TaskId,
    pub user_id: String,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub result_format: ResultFormat,
    pub total: i64,
    pub invalid: i64,
    pub distinct_numbers: i64,
    pub success: i64,
    pub failure: i64,
    pub chunk_size: i32,
    pub chunk_count: i32,
    pub chunks_done: i32,
    pub result_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Rows whose number ended `unknown` (part of `failure`).
    pub unknown: i64,
    /// The last thing that went wrong for this task, and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When an export was last asked for (set while one is pending or done).
    pub export_enqueued_at: Option<DateTime<Utc>>,
}

macro_rules! task_columns {
    () => {
        "id, user_id, kind, status, result_format, total, invalid, distinct_numbers, success, \
         failure, chunk_size, chunk_count, chunks_done, result_key, created_at, updated_at, \
         unknown, last_error, last_error_at, cancelled_at, export_enqueued_at"
    };
}

fn task_from_row(row: &sqlx::postgres::PgRow) -> Result<TaskRecord> {
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("task {what} `{v}`"));
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let format: String = row.try_get("result_format")?;
    Ok(TaskRecord {
        id: id.parse().map_err(|_| corrupt("id", &id))?,
        user_id: row.try_get("user_id")?,
        kind: kind.parse().map_err(|_| corrupt("kind", &kind))?,
        status: status.parse().map_err(|_| corrupt("status", &status))?,
        result_format: format.parse().map_err(|_| corrupt("format", &format))?,
        total: row.try_get("total")?,
        invalid: row.try_get("invalid")?,
        distinct_numbers: row.try_get("distinct_numbers")?,
        success: row.try_get("success")?,
        failure: row.try_get("failure")?,
        chunk_size: row.try_get("chunk_size")?,
        chunk_count: row.try_get("chunk_count")?,
        chunks_done: row.try_get("chunks_done")?,
        result_key: row.try_get("result_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        unknown: row.try_get("unknown")?,
        last_error: row.try_get("last_error")?,
        last_error_at: row.try_get("last_error_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        export_enqueued_at: row.try_get("export_enqueued_at")?,
    })
}

pub async fn get(pool: &PgPool, id: TaskId) -> Result<Option<TaskRecord>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// Why an ingest did not store a task.
#[derive(Debug, thiserror::Error)]
pub enum IngestError<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reader refused the file; nothing was written.
    #[error("{0}")]
    Input(E),
}

impl<E> From<sqlx::Error> for IngestError<E> {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Store(StoreError::Db(e))
    }
}

/// Creates a task with all its rows in one transaction: either everything is stored or nothing.
///
/// `rows` carries `task_rows` data encoded by [`RowEncoder`], streamed into one COPY while the
/// file is still being read; `summary` resolves when the reader is done.
pub async fn insert<E>(
    pool: &PgPool,
    new: &NewTask,
    mut rows: mpsc::Receiver<Vec<u8>>,
    summary: impl Future<Output = Result<IngestSummary, E>>,
) -> Result<TaskRecord, IngestError<E>> {
    let id = new.id.to_string();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO tasks (id, user_id, kind, status, result_format, default_region, total, \
         invalid, distinct_numbers, chunk_size, chunk_count) \
         VALUES ($1, $2, $3, 'pending', $4, $5, 0, 0, 0, $6, 0)",
    )
    .bind(&id)
    .bind(&new.user_id)
    .bind(new.kind.as_str())
    .bind(new.result_format.as_str())
    .bind(&new.default_region)
    .bind(new.chunk_size as i32)
    .execute(&mut *tx)
    .await?;

    let mut copy = tx
        .copy_in_raw("COPY task_rows (task_id, row_no, raw, num_idx) FROM STDIN")
        .await?;
    while let Some(buf) = rows.recv().await {
        if let Err(e) = copy.send(buf).await {
            let _ = copy.abort("send failed").await;
            return Err(e.into());
        }
    }
    let summary = match summary.await {
        Ok(s) => s,
        Err(e) => {
            let _ = copy.abort("input refused").await;
            return Err(IngestError::Input(e));
        }
    };
    copy.finish().await?;

    let mut copy = tx
        .copy_in_raw("COPY task_numbers (task_id, num_idx, e164, rows) FROM STDIN")
        .await?;
    let mut buf = Vec::with_capacity(1 << 20);
    for (idx, (digits, rows)) in summary
        .numbers
        .iter()
        .zip(&summary.rows_per_number)
        .enumerate()
    {
        buf.extend_from_slice(id.as_bytes());
        buf.push(b'\t');
        push_int(&mut buf, idx as i64);
        buf.extend_from_slice(b"\t+");
        push_int(&mut buf, *digits as i64);
        buf.push(b'\t');
        push_int(&mut buf, i64::from(*rows));
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buf)).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await?;
    }
    copy.finish().await?;

    let chunks = summary.chunk_count(new.chunk_size);
    sqlx::query(
        "INSERT INTO task_chunks (task_id, chunk_no) SELECT $1, generate_series(0, $2 - 1)",
    )
    .bind(&id)
    .bind(chunks as i32)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(concat!(
        "UPDATE tasks SET total = $2, invalid = $3, distinct_numbers = $4, chunk_count = $5 \
         WHERE id = $1 RETURNING ",
        task_columns!()
    ))
    .bind(&id)
    .bind(summary.total as i64)
    .bind(summary.invalid as i64)
    .bind(summary.numbers.len() as i64)
    .bind(chunks as i32)
    .fetch_one(&mut *tx)
    .await?;
    let record = task_from_row(&row)?;
    tx.commit().await?;
    Ok(record)
}
