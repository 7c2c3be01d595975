//! Reading an upload: its format from its first bytes, its rows normalised and deduplicated on
//! a blocking thread while they stream into Postgres, and the copy of the file kept beside
//! the task for its result file.

use std::io::{Read, Seek};
use std::sync::Arc;

use tokio::sync::mpsc;
use wacheck_core::dedupe::Dedupe;
use wacheck_core::input::{self, InputError, InputFormat};
use wacheck_core::{Invalid, Normalizer};
use wacheck_store::tasks::{Batch, BlockEncoder, ChunkEncoder, IngestSummary};

use crate::{Code, Error};

/// Why reading the file stopped.
#[derive(Debug)]
pub(crate) enum ReadFail {
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
pub fn sniff(
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
pub fn input_error(e: InputError) -> Error {
    read_error(ReadFail::Input(e))
}

pub(crate) fn read_error(e: ReadFail) -> Error {
    match e {
        ReadFail::NoNumbers { rows: 0 } => {
            Error::new(Code::NoNumbers, "the file contains no phone numbers")
        }
        ReadFail::NoNumbers { rows } => Error::new(
            Code::NoNumbers,
            format!(
                "none of the {rows} rows is a valid phone number (numbers without + need default_region)"
            ),
        ),
        ReadFail::Input(InputError::TooManyRows(n)) => Error::new(
            Code::TooManyRows,
            format!("the file has more than {n} rows"),
        ),
        ReadFail::Input(InputError::LineTooLong(n)) => Error::new(
            Code::LineTooLong,
            format!("a line of the file is longer than {n} bytes: this is not a list of numbers"),
        ),
        ReadFail::Input(InputError::InvalidXlsx(m)) => Error::new(Code::InvalidXlsx, m),
        ReadFail::Input(InputError::Unsupported(m)) => Error::new(Code::UnsupportedFile, m),
        ReadFail::Input(InputError::Io(e)) => Error::internal(e),
        ReadFail::Storage(e) => Error::new(Code::Unavailable, format!("result storage: {e}")),
    }
}

/// The number cells of a small file checked at once, in file order: at most `max` rows. A
/// longer file is refused with the way to check it: a task, which takes up to `task_max`.
pub async fn number_cells(
    file: Option<tempfile::NamedTempFile>,
    name: Option<String>,
    max: u64,
    task_max: u64,
) -> Result<Vec<String>, Error> {
    let Some(file) = file else {
        return Err(Error::new(Code::MissingFile, "A file is required"));
    };
    let rows = tokio::task::spawn_blocking(move || -> Result<Vec<String>, InputError> {
        let Some(format) = sniff(&file, name.as_deref())? else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        input::read_rows(file.reopen()?, format, max, |r| {
            rows.push(r);
            Ok(())
        })?;
        Ok(rows)
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| match e {
        InputError::TooManyRows(n) => Error::new(
            Code::PayloadTooLarge,
            format!(
                "The file has more than {n} numbers: check it with the task API \
                 (POST /wa/api/simple/tasks), which takes up to {task_max} rows and answers with \
                 a result file"
            ),
        ),
        other => input_error(other),
    })?;
    if rows.is_empty() {
        return Err(Error::new(Code::NoNumbers, "The file holds no numbers"));
    }
    Ok(rows)
}

/// Blocks (or chunks) per message to the database writer: 64k rows, or 128 chunks.
const PER_BATCH: usize = 64;

/// Reads the file, sending blocks of rows and then the chunks of distinct numbers to `tx`;
/// returns what it saw. Memory stays bounded: rows leave in blocks, and deduplication sorts
/// in runs that spill to temporary files.
pub(crate) fn read_file(
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
pub(crate) struct KeptUpload {
    keep: tokio::sync::oneshot::Sender<()>,
}

/// How long an upload's copy may take once its rows are stored.
pub(crate) const COPY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// How the copy ended (`Err`: why it failed).
pub(crate) type Copied = tokio::sync::oneshot::Receiver<Result<(), String>>;

impl KeptUpload {
    pub(crate) fn start(
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
    pub(crate) fn keep(self) {
        let _ = self.keep.send(());
    }
}
