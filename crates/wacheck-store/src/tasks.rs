//! Tasks: creation with all their rows in one transaction, and reads.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use wacheck_core::{ResultFormat, TaskId, TaskKind, TaskStatus};

use crate::literal::{push_array_text, push_int_array};
use crate::{Result, StoreError};

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: TaskId,
    pub user_id: String,
    pub kind: TaskKind,
    pub result_format: ResultFormat,
    pub default_region: Option<String>,
    pub chunk_size: u32,
    /// Whether cached answers may be used (otherwise every number is checked afresh).
    pub use_cache: bool,
    /// The uploaded file's name as the client sent it.
    pub input_name: Option<String>,
    /// Where the upload is kept in the result store.
    pub input_key: Option<String>,
    pub result_columns: ResultColumns,
}

/// Which columns a result file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultColumns {
    /// The answer columns, a `reason`, then the input's own columns.
    #[default]
    Full,
    /// The answer columns alone, as ekycpro's files have them.
    Ekycpro,
}

impl ResultColumns {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultColumns::Full => "full",
            ResultColumns::Ekycpro => "ekycpro",
        }
    }
}

impl std::str::FromStr for ResultColumns {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "full" => Ok(ResultColumns::Full),
            "ekycpro" => Ok(ResultColumns::Ekycpro),
            _ => Err(()),
        }
    }
}

/// What the reader found, known once the whole file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub total: u64,
    pub invalid: u64,
    /// Distinct valid numbers.
    pub distinct: u64,
    pub chunks: u32,
    /// Invalid rows written without a country code while no default region was given.
    pub invalid_national: u64,
}

/// What the reader hands to [`insert`], in this order: every block of input rows, then every
/// chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    Blocks(Vec<Block>),
    Chunks(Vec<ChunkRow>),
}

/// Input rows per stored block (`task_row_blocks`).
pub const ROWS_PER_BLOCK: usize = 1024;

/// One block of input rows as array literals: the E.164 digits of each row (NULL for an
/// invalid row), and the raw text of the invalid rows (None when the block has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub block_no: i32,
    pub numbers: String,
    pub raw: Option<String>,
}

/// One chunk as array literals: its distinct numbers (E.164 digits) and how many input rows
/// carry each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub chunk_no: i32,
    pub numbers: String,
    pub rows: String,
}

/// Groups distinct numbers into chunks of `chunk_size`.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    size: usize,
    chunk_no: i32,
    numbers: Vec<u64>,
    rows: Vec<u32>,
    /// Distinct numbers seen so far.
    pub distinct: u64,
}

impl ChunkEncoder {
    pub fn new(chunk_size: u32) -> Self {
        ChunkEncoder {
            size: chunk_size.max(1) as usize,
            chunk_no: 0,
            numbers: Vec::new(),
            rows: Vec::new(),
            distinct: 0,
        }
    }

    /// Adds a distinct number with its row count; returns the chunk it completes.
    pub fn push(&mut self, number: u64, rows: u32) -> Option<ChunkRow> {
        self.distinct += 1;
        self.numbers.push(number);
        self.rows.push(rows);
        (self.numbers.len() == self.size).then(|| self.take())
    }

    /// The last, partly filled chunk, if any.
    pub fn finish(&mut self) -> Option<ChunkRow> {
        (!self.numbers.is_empty()).then(|| self.take())
    }

    /// Chunks made so far.
    pub fn chunks(&self) -> u32 {
        self.chunk_no as u32
    }

    fn take(&mut self) -> ChunkRow {
        let mut numbers = String::with_capacity(self.numbers.len() * 13);
        push_int_array(&mut numbers, self.numbers.iter().map(|n| Some(*n as i64)));
        let mut rows = String::with_capacity(self.rows.len() * 2);
        push_int_array(&mut rows, self.rows.iter().map(|r| Some(i64::from(*r))));
        let chunk = ChunkRow {
            chunk_no: self.chunk_no,
            numbers,
            rows,
        };
        self.chunk_no += 1;
        self.numbers.clear();
        self.rows.clear();
        chunk
    }
}

/// Groups input rows into blocks of [`ROWS_PER_BLOCK`]; used by the (blocking) file reader.
#[derive(Debug, Clone, Default)]
pub struct BlockEncoder {
    block_no: i32,
    numbers: Vec<Option<u64>>,
    /// Invalid rows of the block: (position in the block, raw text).
    raw: Vec<(usize, String)>,
}

impl BlockEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a row: a valid one stores its E.164 digits, an invalid one keeps its raw text.
    /// Returns the block it completes.
    pub fn row(&mut self, number: Option<u64>, raw: Option<&str>) -> Option<Block> {
        if number.is_none() {
            self.raw
                .push((self.numbers.len(), raw.unwrap_or_default().to_owned()));
        }
        self.numbers.push(number);
        (self.numbers.len() == ROWS_PER_BLOCK).then(|| self.take())
    }

    /// The last, partly filled block, if any.
    pub fn finish(&mut self) -> Option<Block> {
        (!self.numbers.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Block {
        let mut numbers = String::with_capacity(self.numbers.len() * 13);
        push_int_array(
            &mut numbers,
            self.numbers.iter().map(|n| n.map(|n| n as i64)),
        );
        let raw = (!self.raw.is_empty()).then(|| {
            let mut s = String::from("{");
            let mut invalid = self.raw.iter().peekable();
            for i in 0..self.numbers.len() {
                if i > 0 {
                    s.push(',');
                }
                match invalid.next_if(|(at, _)| *at == i) {
                    Some((_, text)) => push_array_text(&mut s, text),
                    None => s.push_str("NULL"),
                }
            }
            s.push('}');
            s
        });
        let block = Block {
            block_no: self.block_no,
            numbers,
            raw,
        };
        self.block_no += 1;
        self.numbers.clear();
        self.raw.clear();
        block
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
    pub use_cache: bool,
    /// Rows answered from the result cache (part of `success`).
    pub cached: i64,
    /// Some answer came from a simulated account.
    pub simulated: bool,
    /// Why the task's work waits (no healthy account), and since when.
    pub waiting: Option<String>,
    pub waiting_since: Option<DateTime<Utc>>,
    pub input_name: Option<String>,
    pub input_key: Option<String>,
    pub result_columns: ResultColumns,
    /// Invalid rows written without a country code while no default region was given.
    pub invalid_national: i64,
    /// When a worker first took the task's work.
    pub started_at: Option<DateTime<Utc>>,
    pub default_region: Option<String>,
}

macro_rules! task_columns {
    () => {
        "id, user_id, kind, status, result_format, total, invalid, distinct_numbers, success, \
         failure, chunk_size, chunk_count, chunks_done, result_key, created_at, updated_at, \
         unknown, last_error, last_error_at, cancelled_at, export_enqueued_at, use_cache, cached, \
         simulated, waiting, waiting_since, input_name, input_key, result_columns, \
         invalid_national, started_at, default_region"
    };
}

fn task_from_row(row: &sqlx::postgres::PgRow) -> Result<TaskRecord> {
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("task {what} `{v}`"));
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    let format: String = row.try_get("result_format")?;
    let columns: String = row.try_get("result_columns")?;
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
        use_cache: row.try_get("use_cache")?,
        cached: row.try_get("cached")?,
        simulated: row.try_get("simulated")?,
        waiting: row.try_get("waiting")?,
        waiting_since: row.try_get("waiting_since")?,
        input_name: row.try_get("input_name")?,
        input_key: row.try_get("input_key")?,
        result_columns: columns
            .parse()
            .map_err(|_| corrupt("result_columns", &columns))?,
        invalid_national: row.try_get("invalid_national")?,
        started_at: row.try_get("started_at")?,
        default_region: row.try_get("default_region")?,
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
    /// The task would break one of its user's quotas; nothing was written.
    #[error("quota exceeded")]
    Quota(QuotaExceeded),
}

/// A user's quotas, checked as the task commits (0: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub numbers_per_day: u64,
    pub max_concurrent_tasks: u64,
}

/// Which quota a task would break, and what was used of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    NumbersPerDay { limit: u64, used: u64, asked: u64 },
    ConcurrentTasks { limit: u64 },
}

impl Quota {
    /// Whether a task of `rows` input rows fits, given what is used (the task itself not
    /// counted).
    pub fn check(&self, used: crate::users::QuotaUse, rows: u64) -> Result<(), QuotaExceeded> {
        if self.max_concurrent_tasks > 0 && used.running_tasks >= self.max_concurrent_tasks {
            return Err(QuotaExceeded::ConcurrentTasks {
                limit: self.max_concurrent_tasks,
            });
        }
        if self.numbers_per_day > 0 && used.numbers_today + rows > self.numbers_per_day {
            return Err(QuotaExceeded::NumbersPerDay {
                limit: self.numbers_per_day,
                used: used.numbers_today,
                asked: rows,
            });
        }
        Ok(())
    }
}

impl<E> From<sqlx::Error> for IngestError<E> {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Store(e.into())
    }
}

/// Creates a task with all its rows in one transaction: either everything is stored or nothing.
///
/// `batches` carries the input rows, stored batch by batch while the file is still being read,
/// then the chunks; `summary` resolves when the reader is done. Plain INSERTs, not COPY: a COPY ends with a small
/// write right after its data, which waits for the server's delayed ACK (sqlx does not set
/// TCP_NODELAY), while each INSERT is one write and one answer.
pub async fn insert<E>(
    pool: &PgPool,
    new: &NewTask,
    quota: Quota,
    mut batches: mpsc::Receiver<Batch>,
    summary: impl Future<Output = Result<IngestSummary, E>>,
) -> Result<TaskRecord, IngestError<E>> {
    let id = new.id.to_string();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO tasks (id, user_id, kind, status, result_format, default_region, total, \
         invalid, distinct_numbers, chunk_size, chunk_count, use_cache, input_name, input_key, \
         result_columns) \
         VALUES ($1, $2, $3, 'pending', $4, $5, 0, 0, 0, $6, 0, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(&new.user_id)
    .bind(new.kind.as_str())
    .bind(new.result_format.as_str())
    .bind(&new.default_region)
    .bind(new.chunk_size as i32)
    .bind(new.use_cache)
    .bind(&new.input_name)
    .bind(&new.input_key)
    .bind(new.result_columns.as_str())
    .execute(&mut *tx)
    .await?;

    while let Some(batch) = batches.recv().await {
        let (mut nos, mut first, mut second) = (Vec::new(), Vec::new(), Vec::new());
        let sql = match batch {
            Batch::Blocks(blocks) => {
                for b in blocks {
                    nos.push(b.block_no);
                    first.push(b.numbers);
                    second.push(b.raw);
                }
                "INSERT INTO task_row_blocks (task_id, block_no, numbers, raw) \
                 SELECT $1, b, n::bigint[], r::text[] \
                 FROM UNNEST($2::int[], $3::text[], $4::text[]) AS u(b, n, r)"
            }
            Batch::Chunks(chunks) => {
                for c in chunks {
                    nos.push(c.chunk_no);
                    first.push(c.numbers);
                    second.push(Some(c.rows));
                }
                "INSERT INTO task_chunks (task_id, chunk_no, numbers, rows) \
                 SELECT $1, c, n::bigint[], r::int[] \
                 FROM UNNEST($2::int[], $3::text[], $4::text[]) AS u(c, n, r)"
            }
        };
        sqlx::query(sql)
            .bind(&id)
            .bind(&nos)
            .bind(&first)
            .bind(&second)
            .execute(&mut *tx)
            .await?;
    }
    let summary = summary.await.map_err(IngestError::Input)?;
    if quota != Quota::default() {
        // One user's tasks commit one at a time past this point, so that two uploads at once
        // cannot both fit where only one does.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('quota:' || $1, 0))")
            .bind(&new.user_id)
            .execute(&mut *tx)
            .await?;
        let mut used = crate::users::quota_use(&mut *tx, &new.user_id).await?;
        // This task is in the count already, still pending with no rows.
        used.running_tasks = used.running_tasks.saturating_sub(1);
        quota
            .check(used, summary.total)
            .map_err(IngestError::Quota)?;
    }

    let chunks = summary.chunks;
    let row = sqlx::query(concat!(
        "UPDATE tasks SET total = $2, invalid = $3, distinct_numbers = $4, chunk_count = $5, \
         invalid_national = $6 WHERE id = $1 RETURNING ",
        task_columns!()
    ))
    .bind(&id)
    .bind(summary.total as i64)
    .bind(summary.invalid as i64)
    .bind(summary.distinct as i64)
    .bind(chunks as i32)
    .bind(summary.invalid_national as i64)
    .fetch_one(&mut *tx)
    .await?;
    let record = task_from_row(&row)?;
    tx.commit().await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_grouped_into_blocks() {
        let mut e = BlockEncoder::new();
        let mut full = Vec::new();
        for i in 0..ROWS_PER_BLOCK + 2 {
            let invalid = i == 1 || i == ROWS_PER_BLOCK + 1;
            let number = (!invalid).then_some(41_790_000_000 + i as u64);
            full.extend(e.row(number, invalid.then_some("n/\"a")));
        }
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].block_no, 0);
        assert!(
            full[0]
                .numbers
                .starts_with("{41790000000,NULL,41790000002,")
        );
        let raw = full[0].raw.as_deref().unwrap();
        assert!(raw.starts_with("{NULL,\"n/\\\"a\",NULL,NULL,"), "{raw}");
        let last = e.finish().unwrap();
        assert_eq!(last.block_no, 1);
        assert_eq!(
            last.numbers,
            format!("{{{},NULL}}", 41_790_000_000u64 + ROWS_PER_BLOCK as u64)
        );
        assert_eq!(last.raw.as_deref(), Some("{NULL,\"n/\\\"a\"}"));
        assert_eq!(e.finish(), None);
    }

    #[test]
    fn distinct_numbers_are_grouped_into_chunks() {
        let mut e = ChunkEncoder::new(2);
        let full: Vec<ChunkRow> = [
            (41_790_000_001, 1),
            (41_790_000_002, 3),
            (41_790_000_003, 1),
        ]
        .into_iter()
        .filter_map(|(n, r)| e.push(n, r))
        .collect();
        assert_eq!(
            full,
            vec![ChunkRow {
                chunk_no: 0,
                numbers: "{41790000001,41790000002}".into(),
                rows: "{1,3}".into()
            }]
        );
        let last = e.finish().unwrap();
        assert_eq!((last.chunk_no, last.numbers.as_str()), (1, "{41790000003}"));
        assert_eq!((e.distinct, e.chunks()), (3, 2));
        assert_eq!(e.finish(), None);
    }
}
