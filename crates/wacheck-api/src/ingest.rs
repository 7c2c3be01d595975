//! Uploads: the multipart body is streamed to a temporary file (the size limit holds while
//! streaming), then read, normalised and deduplicated on a blocking thread while the rows
//! stream into Postgres with COPY, all in one transaction.

use std::io::{Read, Seek};
use std::sync::Arc;

use actix_multipart::Multipart;
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wacheck_core::dedupe::Dedupe;
use wacheck_core::input::{self, InputError, InputFormat};
use wacheck_core::{Invalid, Normalizer, ResultFormat, TaskId, TaskKind};
use wacheck_store::tasks::{
    Batch, BlockEncoder, ChunkEncoder, IngestError, IngestSummary, NewTask, Quota, QuotaExceeded,
    ResultColumns, TaskRecord,
};

use crate::auth::AuthUser;
use crate::{ApiError, AppState};

/// The parts of an upload form.
#[derive(Debug)]
pub struct Upload {
    pub user_id: Option<String>,
    pub default_region: Option<String>,
    pub result_format: Option<String>,
    /// `false`: check every number afresh instead of using cached answers.
    pub cache: Option<String>,
    pub file: Option<tempfile::NamedTempFile>,
    pub file_name: Option<String>,
    /// `full` (default) or `ekycpro`: which columns the result file has.
    pub result_columns: Option<String>,
}

const MAX_TEXT_FIELD: usize = 1024;

fn multipart_error(e: actix_multipart::MultipartError) -> ApiError {
    ApiError::bad(
        "invalid_multipart",
        format!("the body is not a valid multipart form: {e}"),
    )
}

/// Reads the whole form; the file goes to a temporary file, never into memory.
pub async fn read_form(mut form: Multipart, max_bytes: u64) -> Result<Upload, ApiError> {
    let mut up = Upload {
        user_id: None,
        default_region: None,
        result_format: None,
        cache: None,
        file: None,
        file_name: None,
        result_columns: None,
    };
    let mut seen: u64 = 0;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the upload is larger than the limit of {}: split the file, or ask the operator \
             to raise api.max_upload_bytes",
            human_bytes(max_bytes)
        ))
    };
    while let Some(mut field) = form.try_next().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if up.file.is_some() {
                return Err(ApiError::bad(
                    "duplicate_file",
                    "send exactly one `file` part",
                ));
            }
            let file_name = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(str::to_owned);
            let tmp = tempfile::NamedTempFile::new().map_err(|e| ApiError::Internal(e.into()))?;
            let mut out =
                tokio::fs::File::from_std(tmp.reopen().map_err(|e| ApiError::Internal(e.into()))?);
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, &mut out);
            while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
                seen += chunk.len() as u64;
                if seen > max_bytes {
                    return Err(too_large());
                }
                out.write_all(&chunk)
                    .await
                    .map_err(|e| ApiError::Internal(e.into()))?;
            }
            out.flush()
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
            up.file = Some(tmp);
            up.file_name = file_name;
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
            seen += chunk.len() as u64;
            if seen > max_bytes {
                return Err(too_large());
            }
            if value.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(ApiError::bad(
                    "invalid_parameter",
                    format!("the `{name}` field is too long"),
                ));
            }
            value.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(value)
            .map_err(|_| {
                ApiError::bad(
                    "invalid_parameter",
                    format!("the `{name}` field is not UTF-8 text"),
                )
            })?
            .trim()
            .to_owned();
        match name.as_str() {
            "user_id" => up.user_id = Some(text),
            "default_region" => up.default_region = Some(text).filter(|t| !t.is_empty()),
            "result_format" => up.result_format = Some(text).filter(|t| !t.is_empty()),
            "cache" => up.cache = Some(text).filter(|t| !t.is_empty()),
            "result_columns" => up.result_columns = Some(text).filter(|t| !t.is_empty()),
            _ => {} // unknown fields are ignored, as form posts often carry extras
        }
    }
    Ok(up)
}

/// A size in the units people use: `100 MiB`, `512 KiB`, `300 bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    let unit = |size: u64, name: &str| {
        if n.is_multiple_of(size) {
            format!("{} {name}", n / size)
        } else {
            format!("{:.1} {name}", n as f64 / size as f64)
        }
    };
    match n {
        n if n >= 1 << 30 => unit(1 << 30, "GiB"),
        n if n >= 1 << 20 => unit(1 << 20, "MiB"),
        n if n >= 1 << 10 => unit(1 << 10, "KiB"),
        n => format!("{n} bytes"),
    }
}

/// Why reading the file stopped.
#[derive(Debug)]
enum ReadFail {
    Input(InputError),
    NoNumbers {
        rows: u64,
    },
    /// The upload could not be kept in the result store.
    Storage(String),
}

impl From<InputError> for ReadFail {
    fn from(e: InputError) -> Self {
        ReadFail::Input(e)
    }
}

/// The format of an uploaded file, from its first 8 KiB and its name; `None` when it is empty.
pub(crate) fn sniff(
    file: &tempfile::NamedTempFile,
    name: Option<&str>,
) -> Result<Option<InputFormat>, InputError> {
    let mut head = Vec::with_capacity(8192);
    file.reopen()?.take(8192).read_to_end(&mut head)?;
    if head.is_empty() {
        return Ok(None);
    }
    input::detect(&head, name).map(Some)
}

/// What an unreadable file answers (the same codes for every route that takes a file).
pub(crate) fn input_error(e: InputError) -> ApiError {
    read_error(ReadFail::Input(e))
}

fn read_error(e: ReadFail) -> ApiError {
    match e {
        ReadFail::NoNumbers { rows: 0 } => {
            ApiError::bad("no_numbers", "the file contains no phone numbers")
        }
        ReadFail::NoNumbers { rows } => ApiError::bad(
            "no_numbers",
            format!(
                "none of the {rows} rows is a valid phone number (numbers without + need default_region)"
            ),
        ),
        ReadFail::Input(InputError::TooManyRows(n)) => {
            ApiError::bad("too_many_rows", format!("the file has more than {n} rows"))
        }
        ReadFail::Input(InputError::LineTooLong(n)) => ApiError::bad(
            "line_too_long",
            format!("a line of the file is longer than {n} bytes: this is not a list of numbers"),
        ),
        ReadFail::Input(InputError::InvalidXlsx(m)) => ApiError::bad("invalid_xlsx", m),
        ReadFail::Input(InputError::Unsupported(m)) => ApiError::bad("unsupported_file", m),
        ReadFail::Input(InputError::Io(e)) => ApiError::Internal(e.into()),
        ReadFail::Storage(e) => ApiError::Unavailable(format!("result storage: {e}")),
    }
}

/// Blocks (or chunks) per message to the database writer: 64k rows, or 128 chunks.
const PER_BATCH: usize = 64;

/// Reads the file, sending blocks of rows and then the chunks of distinct numbers to `tx`;
/// returns what it saw. Memory stays bounded: rows leave in blocks, and deduplication sorts
/// in runs that spill to temporary files.
fn read_file(
    mut file: std::fs::File,
    format: InputFormat,
    normalizer: Normalizer,
    max_rows: u64,
    chunk_size: u32,
    dedupe_run: usize,
    tx: mpsc::Sender<Batch>,
) -> Result<IngestSummary, ReadFail> {
    file.rewind().map_err(InputError::from)?;
    let mut summary = IngestSummary::default();
    let mut dedupe = Dedupe::new(dedupe_run);
    let mut encoder = BlockEncoder::new();
    let mut blocks = Vec::with_capacity(PER_BATCH);
    let send = |batch: Batch| {
        tx.blocking_send(batch)
            .map_err(|_| InputError::Io(std::io::Error::other("the database stopped taking rows")))
    };
    input::read_rows(std::io::BufReader::new(file), format, max_rows, |raw| {
        summary.total += 1;
        let block = match normalizer.normalize(&raw) {
            Some(e164) => {
                let key = e164.key();
                dedupe.push(key)?;
                encoder.row(Some(key), None)
            }
            None => {
                summary.invalid += 1;
                if normalizer.why_invalid(&raw) == Invalid::NoCountryCode {
                    summary.invalid_national += 1;
                }
                encoder.row(None, Some(&raw))
            }
        };
        if let Some(block) = block {
            blocks.push(block);
            if blocks.len() == PER_BATCH {
                send(Batch::Blocks(std::mem::take(&mut blocks)))?;
            }
        }
        Ok(())
    })?;
    blocks.extend(encoder.finish());
    if !blocks.is_empty() {
        send(Batch::Blocks(blocks))?;
    }
    if summary.total == summary.invalid {
        return Err(ReadFail::NoNumbers {
            rows: summary.total,
        });
    }
    let mut chunker = ChunkEncoder::new(chunk_size);
    let mut chunks = Vec::with_capacity(PER_BATCH * 2);
    dedupe.finish(|number, rows| {
        if let Some(chunk) = chunker.push(number, rows) {
            chunks.push(chunk);
            if chunks.len() == PER_BATCH * 2 {
                send(Batch::Chunks(std::mem::take(&mut chunks)))?;
            }
        }
        Ok::<_, InputError>(())
    })?;
    chunks.extend(chunker.finish());
    if !chunks.is_empty() {
        send(Batch::Chunks(chunks))?;
    }
    summary.distinct = chunker.distinct;
    summary.chunks = chunker.chunks();
    Ok(summary)
}

/// An upload being copied into the result store beside its task. Unless [`KeptUpload::keep`]
/// says the task committed, the copy is removed once it is done, also when the request is
/// dropped half-way: nothing is left behind for a task that does not exist.
struct KeptUpload {
    keep: tokio::sync::oneshot::Sender<()>,
}

/// How long an upload's copy may take once its rows are stored.
const COPY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How the copy ended (`Err`: why it failed).
type Copied = tokio::sync::oneshot::Receiver<Result<(), String>>;

impl KeptUpload {
    fn start(
        blob: Arc<dyn wacheck_blob::BlobStore>,
        key: String,
        path: &std::path::Path,
    ) -> (Self, Copied) {
        let (keep, kept) = tokio::sync::oneshot::channel::<()>();
        let (done, copied) = tokio::sync::oneshot::channel();
        let path = path.to_owned();
        tokio::spawn(async move {
            let put = blob.put_file(&key, &path, "application/octet-stream").await;
            let _ = done.send(put.map_err(|e| e.to_string()));
            if kept.await.is_err()
                && let Err(e) = blob.delete(&key).await
            {
                tracing::warn!(key, "removing the upload of a refused task failed: {e}");
            }
        });
        (KeptUpload { keep }, copied)
    }

    /// The task committed: the copy stays.
    fn keep(self) {
        let _ = self.keep.send(());
    }
}

/// What a refused quota answers: 429 with when to try again.
pub(crate) fn quota_error(q: QuotaExceeded) -> ApiError {
    let now = chrono::Utc::now();
    let midnight = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    match q {
        QuotaExceeded::NumbersPerDay { limit, used, asked } => ApiError::TooManyRequests {
            code: "quota_exceeded",
            message: format!(
                "{asked} more numbers would take today's count to {} of at most {limit} \
                 (rows of tasks and numbers checked one by one; it starts again at 00:00 UTC)",
                used + asked
            ),
            retry_after: (midnight - now).num_seconds().max(1) as u64,
        },
        QuotaExceeded::ConcurrentTasks { limit } => ApiError::TooManyRequests {
            code: "too_many_tasks",
            message: format!(
                "{limit} of your tasks are being checked already, the most at once; \
                 wait for one to finish (or cancel one)"
            ),
            retry_after: 30,
        },
    }
}

/// Reads what `user` has used of `quota` and reports it in the response headers.
async fn report_quota(
    state: &AppState,
    caller: &AuthUser,
    user: &str,
    quota: Quota,
) -> Result<wacheck_store::users::QuotaUse, ApiError> {
    let used = wacheck_store::users::quota_use(&state.pool, user).await?;
    caller
        .quota
        .numbers(quota.numbers_per_day, used.numbers_today);
    caller
        .quota
        .tasks(quota.max_concurrent_tasks, used.running_tasks);
    Ok(used)
}

/// The quotas of `user` (0: unlimited).
pub(crate) fn quota_of(user: &AuthUser) -> Quota {
    Quota {
        numbers_per_day: user.limits.numbers_per_day,
        max_concurrent_tasks: u64::from(user.limits.max_concurrent_tasks),
    }
}

/// Validates the form, stores the task with all its rows, and queues its first chunks.
pub async fn create_task(
    state: &AppState,
    caller: &AuthUser,
    kind: TaskKind,
    up: Upload,
) -> Result<TaskRecord, ApiError> {
    let user_id = up
        .user_id
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::bad("missing_parameter", "the `user_id` form field is required")
        })?;
    let user = caller
        .acting_for(user_id)
        .map_err(|_| ApiError::NotFound("no such user for this API key".into()))?;
    if user != caller.id
        && wacheck_store::users::active(&state.pool, user)
            .await?
            .is_none()
    {
        return Err(ApiError::NotFound("no such user".into()));
    }
    // An admin acting for a user spends that user's quotas.
    let (quota, max_rows) = if user == caller.id {
        (quota_of(caller), caller.limits.max_rows)
    } else {
        let own = wacheck_store::users::get(&state.pool, user)
            .await?
            .map(|u| u.limits)
            .unwrap_or_default();
        let l = crate::auth::Limits::of(&own, &state.limits, state.api.max_rows);
        (
            Quota {
                numbers_per_day: l.numbers_per_day,
                max_concurrent_tasks: u64::from(l.max_concurrent_tasks),
            },
            l.max_rows,
        )
    };
    // Refuse at once what cannot fit whatever the file holds.
    if quota != Quota::default() {
        let used = report_quota(state, caller, user, quota).await?;
        quota.check(used, 1).map_err(quota_error)?;
    }
    let file = up
        .file
        .ok_or_else(|| ApiError::bad("missing_file", "the `file` form field is required"))?;
    let normalizer = Normalizer::new(up.default_region.as_deref())
        .map_err(|e| ApiError::bad("invalid_default_region", e.to_string()))?;
    let result_format = match up.result_format.as_deref() {
        None => ResultFormat::Xlsx,
        Some(f) => f
            .to_ascii_lowercase()
            .parse::<ResultFormat>()
            .map_err(|_| {
                ApiError::bad(
                    "invalid_result_format",
                    format!("result_format must be xlsx or csv, not `{f}`"),
                )
            })?,
    };
    let result_columns = match up.result_columns.as_deref() {
        None => ResultColumns::Full,
        Some(c) => c.to_ascii_lowercase().parse().map_err(|_| {
            ApiError::bad(
                "invalid_parameter",
                format!(
                    "result_columns must be `full` (the answers, a reason, then your own \
                     columns) or `ekycpro` (the answer columns alone), not `{c}`"
                ),
            )
        })?,
    };
    let use_cache = match up.cache.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1" | "yes") => true,
        Some("false" | "0" | "no") => false,
        Some(other) => {
            return Err(ApiError::bad(
                "invalid_parameter",
                format!("cache must be true or false, not `{other}`"),
            ));
        }
    };

    // Parsing and storing take a turn; the upload's bytes are on disk already.
    let _turn = state
        .ingest_slots
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let format = sniff(&file, up.file_name.as_deref())
        .map_err(input_error)?
        .ok_or_else(|| ApiError::bad("no_numbers", "the file is empty"))?;

    let id = TaskId::new();
    // A full result file gives the upload's own columns back: the upload is kept beside the
    // task while the task lives (not for the answer columns alone).
    let input_key = (result_columns == ResultColumns::Full)
        .then(|| wacheck_worker::export::input_key(id, format.name()));
    let new = NewTask {
        id,
        user_id: user.to_owned(),
        kind,
        result_format,
        default_region: up.default_region.map(|r| r.to_ascii_uppercase()),
        chunk_size: state.chunk_size,
        use_cache,
        input_name: up.file_name.clone(),
        input_key: input_key.clone(),
        result_columns,
    };
    let handle = file.reopen().map_err(|e| ApiError::Internal(e.into()))?;
    let (tx, rx) = mpsc::channel(8);
    let chunk_size = new.chunk_size;
    let dedupe_run = state.api.dedupe_run;
    let reader = tokio::task::spawn_blocking(move || {
        read_file(
            handle, format, normalizer, max_rows, chunk_size, dedupe_run, tx,
        )
    });
    // The upload is copied while its rows are stored; the task commits only once both are
    // done. Unless it commits, the copy is removed (also when this request is dropped).
    let (kept, copied) = match input_key {
        Some(key) => {
            let (kept, copied) = KeptUpload::start(state.blob.clone(), key, file.path());
            (Some(kept), Some(copied))
        }
        None => (None, None),
    };
    let summary = async move {
        let summary = reader
            .await
            .map_err(|e| ReadFail::Input(InputError::Io(std::io::Error::other(e))))??;
        if let Some(copied) = copied {
            // A stalled store must not hold the transaction and the ingest slot for long.
            tokio::time::timeout(COPY_TIMEOUT, copied)
                .await
                .map_err(|_| ReadFail::Storage("it did not take the upload within 120 s".into()))?
                .map_err(|_| ReadFail::Storage("the copy of the upload stopped".into()))?
                .map_err(ReadFail::Storage)?;
        }
        Ok(summary)
    };
    let stored = wacheck_store::tasks::insert(&state.pool, &new, quota, rx, summary).await;
    if stored.is_ok()
        && let Some(kept) = kept
    {
        kept.keep();
    }
    let record = match stored {
        Ok(r) => r,
        Err(IngestError::Input(e)) => return Err(read_error(e)),
        Err(IngestError::Store(e)) => return Err(e.into()),
        Err(IngestError::Quota(q)) => {
            report_quota(state, caller, user, quota).await?;
            return Err(quota_error(q));
        }
    };
    if quota != Quota::default() {
        report_quota(state, caller, user, quota).await?;
    }
    drop(file);
    tracing::info!(task = %record.id, user, kind = %kind, rows = record.total, format = format.name(), "task created");

    // Queue its first chunks. If Redis is down the task still exists; the reconciler queues it.
    match wacheck_store::chunks::advance(&state.pool, record.id, state.window).await {
        Ok(pushes) => {
            if let Err(e) = state.queue.push_all(&pushes).await {
                tracing::warn!(task = %record.id, "queueing failed, the reconciler will retry: {e:#}");
            }
        }
        Err(e) => {
            tracing::warn!(task = %record.id, "advancing failed, the reconciler will retry: {e}")
        }
    }
    Ok(record)
}
