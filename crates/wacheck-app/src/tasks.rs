//! Tasks: create one from an upload, find the caller's, tell its state, cancel it, and ask for
//! the result file of a cancelled one.

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use wacheck_core::input::InputError;
use wacheck_core::{Normalizer, ResultFormat, TaskId, TaskKind, TaskStatus};
use wacheck_store::chunks::Pushes;
use wacheck_store::lifecycle::{self, Cancel, ExportRequest};
use wacheck_store::tasks::{IngestError, NewTask, Quota, ResultColumns, TaskRecord};

use crate::ingest::{
    COPY_TIMEOUT, KeptUpload, ReadFail, input_error, read_error, read_file, sniff,
};
use crate::progress::{Pace, STALL_SECS, message, pace};
use crate::{Caller, Code, Error, Limits, Scope, Services, quota};

/// An upload: the file, already on disk, and the form's fields as given.
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

/// Validates the upload, stores the task with all its rows, and queues its first chunks.
pub async fn create(
    s: &Services,
    caller: &Caller,
    kind: TaskKind,
    up: Upload,
) -> Result<TaskRecord, Error> {
    caller.require(Scope::Tasks)?;
    let user_id = up
        .user_id
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Error::new(
                Code::MissingParameter,
                "the `user_id` form field is required",
            )
        })?;
    let user = caller
        .acting_for(user_id)
        .map_err(|_| Error::new(Code::NotFound, "no such user for this API key"))?;
    if user != caller.id && wacheck_store::users::active(&s.pool, user).await?.is_none() {
        return Err(Error::new(Code::NotFound, "no such user"));
    }
    // An admin acting for a user spends that user's quotas.
    let (quota, max_rows) = if user == caller.id {
        (quota::of(&caller.limits), caller.limits.max_rows)
    } else {
        let own = wacheck_store::users::get(&s.pool, user)
            .await?
            .map(|u| u.limits)
            .unwrap_or_default();
        let l = Limits::of(&own, &s.limits, s.tasks.max_rows);
        (quota::of(&l), l.max_rows)
    };
    // Refuse at once what cannot fit whatever the file holds.
    if quota != Quota::default() {
        let used = quota::report(s, caller, user, quota).await?;
        quota.check(used, 1).map_err(quota::exceeded)?;
    }
    let file = up
        .file
        .ok_or_else(|| Error::new(Code::MissingFile, "the `file` form field is required"))?;
    let normalizer = Normalizer::new(up.default_region.as_deref())
        .map_err(|e| Error::new(Code::InvalidDefaultRegion, e.to_string()))?;
    let result_format = match up.result_format.as_deref() {
        None => ResultFormat::Xlsx,
        Some(f) => f
            .to_ascii_lowercase()
            .parse::<ResultFormat>()
            .map_err(|_| {
                Error::new(
                    Code::InvalidResultFormat,
                    format!("result_format must be xlsx or csv, not `{f}`"),
                )
            })?,
    };
    let result_columns = match up.result_columns.as_deref() {
        None => ResultColumns::Full,
        Some(c) => c.to_ascii_lowercase().parse().map_err(|_| {
            Error::new(
                Code::InvalidParameter,
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
            return Err(Error::new(
                Code::InvalidParameter,
                format!("cache must be true or false, not `{other}`"),
            ));
        }
    };

    // Parsing and storing take a turn; the upload's bytes are on disk already.
    let _turn = s.ingest_slots.acquire().await.map_err(Error::internal)?;
    let format = sniff(&file, up.file_name.as_deref())
        .map_err(input_error)?
        .ok_or_else(|| Error::new(Code::NoNumbers, "the file is empty"))?;

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
        chunk_size: s.tasks.chunk_size,
        use_cache,
        input_name: up.file_name.clone(),
        input_key: input_key.clone(),
        result_columns,
    };
    let handle = file.reopen().map_err(Error::internal)?;
    let (tx, rx) = mpsc::channel(8);
    let chunk_size = new.chunk_size;
    let dedupe_run = s.tasks.dedupe_run;
    let reader = tokio::task::spawn_blocking(move || {
        read_file(
            handle, format, normalizer, max_rows, chunk_size, dedupe_run, tx,
        )
    });
    // The upload is copied while its rows are stored; the task commits only once both are
    // done. Unless it commits, the copy is removed (also when this request is dropped).
    let (kept, copied) = match input_key {
        Some(key) => {
            let (kept, copied) = KeptUpload::start(s.blob.clone(), key, file.path());
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
    let stored = wacheck_store::tasks::insert(&s.pool, &new, quota, rx, summary).await;
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
            quota::report(s, caller, user, quota).await?;
            return Err(quota::exceeded(q));
        }
    };
    if quota != Quota::default() {
        quota::report(s, caller, user, quota).await?;
    }
    drop(file);
    tracing::info!(task = %record.id, user, kind = %kind, rows = record.total, format = format.name(), "task created");

    // Queue its first chunks. If Redis is down the task still exists; the reconciler queues it.
    match wacheck_store::chunks::advance(&s.pool, record.id, s.tasks.window).await {
        Ok(pushes) => {
            if let Err(e) = s.queue.push_all(&pushes).await {
                tracing::warn!(task = %record.id, "queueing failed, the reconciler will retry: {e:#}");
            }
        }
        Err(e) => {
            tracing::warn!(task = %record.id, "advancing failed, the reconciler will retry: {e}")
        }
    }
    Ok(record)
}

/// The caller's task `task_id` of `kind`, for the user `user_id` names (the caller, or anyone
/// for an admin). Another user's task looks exactly like a missing one.
pub async fn find(
    s: &Services,
    caller: &Caller,
    kind: &str,
    task_id: &str,
    user_id: Option<&str>,
) -> Result<TaskRecord, Error> {
    let kind = kind_of(kind)?;
    caller.require(Scope::Tasks)?;
    let user_id = user_id.filter(|u| !u.is_empty()).ok_or_else(|| {
        Error::new(
            Code::MissingParameter,
            "the `user_id` query parameter is required",
        )
    })?;
    let owner = caller.acting_for(user_id)?;
    let id: TaskId = task_id.parse().map_err(|_| Error::task_not_found())?;
    let task = wacheck_store::tasks::get(&s.pool, id)
        .await?
        .filter(|t| t.user_id == owner)
        .ok_or_else(Error::task_not_found)?;
    if task.kind != kind {
        // Only its owner learns that it exists, under the other kind.
        return Err(Error::new(
            Code::NotFound,
            format!(
                "task {id} is a {} task: use /wa/api/{}/tasks/{id}?user_id={}",
                task.kind, task.kind, task.user_id
            ),
        ));
    }
    Ok(task)
}

/// The kind a path names.
pub fn kind_of(path: &str) -> Result<TaskKind, Error> {
    path.parse().map_err(|_| {
        Error::new(
            Code::NotFound,
            format!("no task API `{path}`: use simple or detail"),
        )
    })
}

/// Stops checking the task; what was checked stays and can be exported.
pub async fn cancel(s: &Services, task: &TaskRecord) -> Result<TaskRecord, Error> {
    match lifecycle::cancel(&s.pool, task.id).await? {
        Cancel::Cancelled | Cancel::AlreadyCancelled => reread(s, task.id).await,
        Cancel::Finished => Err(Error::new(
            Code::TaskFinished,
            "every number of this task was checked already; nothing to cancel",
        )),
        Cancel::NotFound => Err(Error::task_not_found()),
    }
}

/// Asks for the result file of a cancelled task (what was checked).
pub async fn export(s: &Services, task: &TaskRecord) -> Result<TaskRecord, Error> {
    match lifecycle::request_export(&s.pool, task.id).await? {
        ExportRequest::Queued => {
            let pushes = Pushes {
                chunks: Vec::new(),
                exports: vec![task.id],
            };
            // The reconciler re-pushes it if this push is lost.
            if let Err(e) = s.queue.push_all(&pushes).await {
                tracing::warn!("queueing the export of {}: {e:#}", task.id);
            }
            reread(s, task.id).await
        }
        ExportRequest::Nothing => reread(s, task.id).await,
        ExportRequest::StillChecking => Err(Error::new(
            Code::TaskNotFinished,
            "this task is still being checked; it exports by itself when done \
             (cancel it first to export what was checked so far)",
        )),
        ExportRequest::NotFound => Err(Error::task_not_found()),
    }
}

async fn reread(s: &Services, id: TaskId) -> Result<TaskRecord, Error> {
    wacheck_store::tasks::get(&s.pool, id)
        .await?
        .ok_or_else(Error::task_not_found)
}

/// A task as people are told about it.
#[derive(Debug)]
pub struct Report {
    pub task: TaskRecord,
    /// What it does now, what it waits for, or why it ended so.
    pub message: String,
    pub pace: Pace,
    /// When it should be answered, at its pace.
    pub estimated_finish: Option<DateTime<Utc>>,
    /// Its answers are (or will be) simulated.
    pub simulated: bool,
    /// The download link of its result file, when there is one.
    pub result_url: Option<String>,
}

/// Tells the state of `task`.
pub async fn report(s: &Services, task: TaskRecord) -> Result<Report, Error> {
    let result_url = match (&task.status, &task.result_key) {
        (TaskStatus::Exported | TaskStatus::Cancelled, Some(key)) => {
            let name = wacheck_worker::export::download_name(&task);
            let url = s
                .blob
                .url(key, &name, s.tasks.result_url_ttl)
                .await
                .map_err(|e| Error::new(Code::Unavailable, format!("result storage: {e}")))?;
            Some(url)
        }
        _ => None,
    };
    let now = Utc::now();
    // Only a task without progress for a while costs the extra look at its leases.
    let working = task.status.is_checking()
        && (now - task.updated_at).num_seconds() >= STALL_SECS
        && lifecycle::has_live_lease(&s.pool, task.id).await?;
    let pace = if task.status == TaskStatus::Processing {
        pace(&task, now, s.accounts.checks_per_day(Some(&task.user_id)))
    } else {
        Pace::NONE
    };
    Ok(Report {
        message: message(&task, now, working, pace),
        estimated_finish: pace
            .left_secs
            .and_then(|s| chrono::Duration::try_milliseconds((s * 1000.0) as i64))
            .and_then(|d| now.checked_add_signed(d)),
        simulated: task.simulated || s.accounts.simulated_in_use(Some(&task.user_id)),
        pace,
        result_url,
        task,
    })
}
