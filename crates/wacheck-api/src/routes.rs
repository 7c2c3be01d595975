//! Routes and their JSON shapes.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use wacheck_core::{TaskId, TaskKind, TaskStatus};
use wacheck_store::tasks::TaskRecord;

use crate::auth::AuthUser;
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorBody, FileBody, Refusals, UploadForm};
use crate::{ApiError, AppState, ingest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Unknown routes get the same JSON error shape as everything else (query strings: see
    // `query::Query`).
    cfg.default_service(web::to(|req: HttpRequest| async move {
        let e = ApiError::NotFound("no such route: see docs/api.md".into());
        Err::<HttpResponse, _>(crate::auth::error_for_path(req.path(), e))
    }))
    .route("/health", web::get().to(health))
    .route("/openapi.json", web::get().to(crate::openapi::openapi_json))
    .route("/wa/api/{kind}/tasks", web::post().to(create_task))
    .route("/wa/api/{kind}/tasks/{task_id}", web::get().to(get_task))
    .route(
        "/wa/api/{kind}/tasks/{task_id}",
        web::delete().to(cancel_task),
    )
    .route(
        "/wa/api/{kind}/tasks/{task_id}/cancel",
        web::post().to(cancel_task_post),
    )
    .route(
        "/wa/api/{kind}/tasks/{task_id}/export",
        web::post().to(export_task),
    )
    .route("/files/{key:.*}", web::get().to(download))
    .configure(crate::accounts::configure)
    .configure(crate::admin::configure)
    .configure(crate::numbers::configure)
    .configure(crate::walytic::configure)
    .configure(crate::commbox::configure);
}

/// The task as ekycpro shows it, plus `kind` and a loud `simulated` flag.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    pub created_at: String,
    pub updated_at: String,
    pub task_id: String,
    pub user_id: String,
    /// `pending`, `processing`, `completed`, `exported` or `cancelled`.
    #[schema(value_type = String)]
    pub status: TaskStatus,
    pub total: i64,
    pub success: i64,
    pub failure: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_url: Option<String>,
    /// `simple` or `detail`.
    #[schema(value_type = String)]
    pub kind: TaskKind,
    pub simulated: bool,
    /// Rows whose number ended `unknown` (part of `failure`).
    pub unknown: i64,
    /// What the task is doing or why it ended as it did, in words.
    pub message: String,
    /// The last error that affected the task (backend or storage), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    /// Rows answered from the result cache, at no cost to any account (part of `success`).
    pub cached: i64,
    /// Why the task's work waits (no healthy WhatsApp account), while it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Rows answered per minute since a worker took the task (cached rows not counted), while
    /// it is being checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<f64>,
    /// When the task should be answered at that rate, or at the accounts' budgets when those
    /// are slower (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_finish_at: Option<String>,
}

/// How fast a task moves and when it should be done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    /// Rows answered per minute since work started (cached rows not counted).
    pub per_minute: Option<f64>,
    /// Seconds until every row is answered.
    pub left_secs: Option<f64>,
    /// When the accounts' budgets make the open rows take over a day: the checks a day they
    /// allow, and the days.
    pub slow_budget: Option<(u64, f64)>,
}

/// The task's pace: the rate it had since a worker took it, and the accounts' budgets
/// (`checks_per_day`: `None` when unlimited), whichever is slower.
pub(crate) fn pace(t: &TaskRecord, now: DateTime<Utc>, checks_per_day: Option<u64>) -> Pace {
    let open = t.total - t.success - t.failure;
    let checked = t.success + t.failure - t.invalid - t.cached;
    let elapsed = t
        .started_at
        .map(|s| (now - s).num_milliseconds() as f64 / 1000.0);
    // A check answers every row of its number: a file with repeated numbers needs fewer.
    let checks_per_row = t.distinct_numbers as f64 / (t.total - t.invalid).max(1) as f64;
    pace_of(open, checked, elapsed, checks_per_day, checks_per_row)
}

/// [`pace`] from the counts: rows still open, rows checked (not cached) in `elapsed` seconds
/// of work, and the account checks a row takes on average.
fn pace_of(
    open: i64,
    checked: i64,
    elapsed: Option<f64>,
    checks_per_day: Option<u64>,
    checks_per_row: f64,
) -> Pace {
    let (open, checked) = (open.max(0) as f64, checked.max(0) as f64);
    let elapsed = elapsed.unwrap_or(0.0);
    let per_minute = (elapsed >= 5.0 && checked > 0.0).then(|| checked * 60.0 / elapsed);
    let by_budget = checks_per_day
        .filter(|&c| c > 0)
        .map(|c| open * checks_per_row / c as f64 * 86_400.0);
    let by_rate = per_minute.map(|r| open / r * 60.0);
    let left_secs = match (by_rate, by_budget) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Pace {
        per_minute,
        left_secs: left_secs.filter(|_| open > 0.0),
        slow_budget: checks_per_day
            .zip(by_budget)
            .map(|(c, s)| (c, s / 86_400.0))
            .filter(|&(_, d)| d > 1.0),
    }
}

/// A span of time as people say it: `40 s`, `12 min`, `3 h 20 min`, `2.5 days`.
pub(crate) fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{:.1} days", secs / 86_400.0),
    }
}

/// No progress for this long while numbers are still open counts as a stall worth saying.
const STALL_SECS: i64 = 60;
/// How the worker words a failed export (see `lifecycle::export_failed`).
const EXPORT_FAILED: &str = wacheck_store::lifecycle::EXPORT_FAILED;

/// The task's state in words: what it does now, what it waits for, or why it ended so.
fn message(t: &TaskRecord, now: DateTime<Utc>, working: bool, pace: Pace) -> String {
    let answered = t.success + t.failure;
    let recent_error = t.last_error.as_deref().filter(|_| {
        t.last_error_at
            .is_some_and(|at| (now - at).num_seconds() < STALL_SECS)
    });
    let idle = (now - t.updated_at).num_seconds();
    match t.status {
        TaskStatus::Pending | TaskStatus::Processing => {
            let mut m = if t.status == TaskStatus::Pending {
                "queued: waiting for a worker".to_owned()
            } else {
                format!("checking: {answered} of {} rows answered", t.total)
            };
            if let Some(r) = pace.per_minute {
                m.push_str(&format!(", {r:.0} a minute"));
            }
            if let Some(left) = pace.left_secs {
                m.push_str(&format!(", about {} left", human_duration(left)));
            }
            if let Some((per_day, days)) = pace.slow_budget {
                m.push_str(&format!(
                    "; the accounts' budgets allow at most {} checks a day, so the open rows \
                     take {days:.1} days: add accounts or raise their limits (docs/backends.md)",
                    wacheck_core::text::thousands(per_day)
                ));
            }
            if let Some(w) = &t.waiting {
                m.push_str(&format!("; waiting: {w}"));
            } else if let Some(e) = recent_error {
                m.push_str(&format!("; the backend is failing, retrying: {e}"));
            } else if idle >= STALL_SECS && working {
                m.push_str("; a worker holds its next numbers (waiting for account budget)");
            } else if idle >= STALL_SECS {
                m.push_str(&format!(
                    "; no progress for {idle} s: no worker is taking this task's work \
                     (are workers running, and can they reach Redis and Postgres?)"
                ));
            }
            m
        }
        TaskStatus::Completed => match recent_error.filter(|e| e.starts_with(EXPORT_FAILED)) {
            Some(e) => format!("all rows answered; writing the result file, retrying: {e}"),
            None => "all rows answered; writing the result file".to_owned(),
        },
        TaskStatus::Exported if t.unknown > 0 => format!(
            "done; {} of {} rows are unknown because the backend gave no answer{}",
            t.unknown,
            t.total,
            t.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ),
        TaskStatus::Exported if t.invalid_national > 0 && t.default_region.is_none() => {
            format!(
                "done; {} of {} rows are invalid because they have no country code: upload \
                 the file again with default_region (for example CH) to read them as national \
                 numbers",
                t.invalid_national, t.total
            )
        }
        TaskStatus::Exported => "done".to_owned(),
        TaskStatus::Cancelled => {
            let file = if t.result_key.is_some() {
                "the result file holds them, the rest `unchecked`"
            } else if t.export_enqueued_at.is_some() {
                "their result file is being written"
            } else {
                "POST .../export to get them as a result file"
            };
            format!(
                "cancelled; {answered} of {} rows were answered: {file}",
                t.total
            )
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

async fn view(state: &AppState, t: TaskRecord) -> Result<TaskView, ApiError> {
    let result_url = match (&t.status, &t.result_key) {
        (TaskStatus::Exported | TaskStatus::Cancelled, Some(key)) => {
            let name = wacheck_worker::export::download_name(&t);
            let url = state
                .blob
                .url(key, &name, state.result_url_ttl())
                .await
                .map_err(|e| ApiError::Unavailable(format!("result storage: {e}")))?;
            Some(url)
        }
        _ => None,
    };
    let now = Utc::now();
    // Only a task without progress for a while costs the extra look at its leases.
    let working = t.status.is_checking()
        && (now - t.updated_at).num_seconds() >= STALL_SECS
        && wacheck_store::lifecycle::has_live_lease(&state.pool, t.id).await?;
    let pace = if t.status == TaskStatus::Processing {
        pace(&t, now, state.accounts.checks_per_day(Some(&t.user_id)))
    } else {
        Pace {
            per_minute: None,
            left_secs: None,
            slow_budget: None,
        }
    };
    let message = message(&t, now, working, pace);
    let simulated = t.simulated || state.accounts.simulated_in_use(Some(&t.user_id));
    Ok(TaskView {
        message,
        unknown: t.unknown,
        last_error: t.last_error.clone(),
        cancelled_at: t.cancelled_at.map(rfc3339),
        created_at: rfc3339(t.created_at),
        updated_at: rfc3339(t.updated_at),
        task_id: t.id.to_string(),
        user_id: t.user_id,
        status: t.status,
        total: t.total,
        success: t.success,
        failure: t.failure,
        result_url,
        kind: t.kind,
        simulated,
        cached: t.cached,
        waiting: t.waiting.clone().filter(|_| t.status.is_checking()),
        rate_per_minute: pace.per_minute.map(|r| (r * 10.0).round() / 10.0),
        estimated_finish_at: pace
            .left_secs
            .and_then(|s| chrono::Duration::try_milliseconds((s * 1000.0) as i64))
            .and_then(|d| now.checked_add_signed(d))
            .map(rfc3339),
    })
}

fn kind_of(path: &str) -> Result<TaskKind, ApiError> {
    path.parse()
        .map_err(|_| ApiError::NotFound(format!("no task API `{path}`: use simple or detail")))
}

#[utoipa::path(
    post,
    path = "/wa/api/{kind}/tasks",
    tag = "tasks",
    summary = "Upload a file of numbers: creates a task",
    params(("kind" = String, Path, description = "`simple` or `detail`")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The new task", body = TaskView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 413, description = "The upload is larger than allowed", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn create_task(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&path)?;
    user.need("tasks")?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(ApiError::bad(
            "invalid_content_type",
            "send the upload as multipart/form-data with `user_id` and `file` fields",
        ));
    }
    let form = Multipart::new(req.headers(), payload);
    let upload = ingest::read_form(form, state.api.max_upload_bytes).await?;
    let record = ingest::create_task(&state, &user, kind, upload).await?;
    Ok(HttpResponse::Ok().json(view(&state, record).await?))
}

#[derive(Deserialize)]
pub(crate) struct UserQuery {
    user_id: Option<String>,
}

/// The caller's task named by the path (`user_id` in the query must be the caller).
async fn own_task(
    state: &AppState,
    user: &AuthUser,
    path: (String, String),
    query: &UserQuery,
) -> Result<TaskRecord, ApiError> {
    let (kind, task_id) = path;
    let kind = kind_of(&kind)?;
    user.need("tasks")?;
    let user_id = query
        .user_id
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::bad(
                "missing_parameter",
                "the `user_id` query parameter is required",
            )
        })?;
    let owner = user.acting_for(user_id)?;
    let id: TaskId = task_id.parse().map_err(|_| ApiError::task_not_found())?;
    let task = wacheck_store::tasks::get(&state.pool, id)
        .await?
        .filter(|t| t.user_id == owner)
        .ok_or_else(ApiError::task_not_found)?;
    if task.kind != kind {
        // Only its owner learns that it exists, under the other kind.
        return Err(ApiError::NotFound(format!(
            "task {id} is a {} task: use /wa/api/{}/tasks/{id}?user_id={}",
            task.kind, task.kind, task.user_id
        )));
    }
    Ok(task)
}

#[utoipa::path(
    get,
    path = "/wa/api/{kind}/tasks/{task_id}",
    tag = "tasks",
    summary = "Read a task (and its result_url)",
    params(("kind" = String, Path, description = "`simple` or `detail`"), ("task_id" = String, Path, description = "The task id (a ULID)"), ("user_id" = String, Query, description = "Your user id (admins: the task owner's)")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn get_task(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    query: crate::query::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    let task = own_task(&state, &user, path.into_inner(), &query).await?;
    Ok(HttpResponse::Ok().json(view(&state, task).await?))
}

/// Re-reads a task after a change and shows it.
async fn fresh_view(state: &AppState, id: TaskId) -> Result<HttpResponse, ApiError> {
    let task = wacheck_store::tasks::get(&state.pool, id)
        .await?
        .ok_or_else(ApiError::task_not_found)?;
    Ok(HttpResponse::Ok().json(view(state, task).await?))
}

/// `DELETE .../tasks/{id}` or `POST .../tasks/{id}/cancel`: stop checking; what was checked
/// stays and can be exported.
#[utoipa::path(
    delete,
    path = "/wa/api/{kind}/tasks/{task_id}",
    tag = "tasks",
    summary = "Cancel a task",
    params(("kind" = String, Path, description = "`simple` or `detail`"), ("task_id" = String, Path, description = "The task id (a ULID)"), ("user_id" = String, Query, description = "Your user id (admins: the task owner's)")),
    responses(
        (status = 200, description = "The cancelled task", body = TaskView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "The resource is not in a state for this", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn cancel_task(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    query: crate::query::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    use wacheck_store::lifecycle::Cancel;
    let task = own_task(&state, &user, path.into_inner(), &query).await?;
    match wacheck_store::lifecycle::cancel(&state.pool, task.id).await? {
        Cancel::Cancelled | Cancel::AlreadyCancelled => fresh_view(&state, task.id).await,
        Cancel::Finished => Err(ApiError::Conflict {
            code: "task_finished",
            message: "every number of this task was checked already; nothing to cancel".into(),
        }),
        Cancel::NotFound => Err(ApiError::task_not_found()),
    }
}

/// `POST .../tasks/{id}/cancel`: the same as `DELETE .../tasks/{id}`.
#[utoipa::path(
    post,
    path = "/wa/api/{kind}/tasks/{task_id}/cancel",
    tag = "tasks",
    summary = "Cancel a task (the same as DELETE on the task)",
    params(("kind" = String, Path, description = "`simple` or `detail`"), ("task_id" = String, Path, description = "The task id (a ULID)"), ("user_id" = String, Query, description = "Your user id (admins: the task owner's)")),
    responses(
        (status = 200, description = "The cancelled task", body = TaskView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "The resource is not in a state for this", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn cancel_task_post(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    query: crate::query::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    cancel_task(state, user, path, query).await
}

/// `POST .../tasks/{id}/export`: the result file of a cancelled task (what was checked).
#[utoipa::path(
    post,
    path = "/wa/api/{kind}/tasks/{task_id}/export",
    tag = "tasks",
    summary = "Write the result file of a cancelled task",
    params(("kind" = String, Path, description = "`simple` or `detail`"), ("task_id" = String, Path, description = "The task id (a ULID)"), ("user_id" = String, Query, description = "Your user id (admins: the task owner's)")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "The resource is not in a state for this", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn export_task(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    query: crate::query::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    use wacheck_store::lifecycle::ExportRequest;
    let task = own_task(&state, &user, path.into_inner(), &query).await?;
    match wacheck_store::lifecycle::request_export(&state.pool, task.id).await? {
        ExportRequest::Queued => {
            let pushes = wacheck_store::chunks::Pushes {
                chunks: Vec::new(),
                exports: vec![task.id],
            };
            // The reconciler re-pushes it if this push is lost.
            if let Err(e) = state.queue.push_all(&pushes).await {
                tracing::warn!("queueing the export of {}: {e:#}", task.id);
            }
            fresh_view(&state, task.id).await
        }
        ExportRequest::Nothing => fresh_view(&state, task.id).await,
        ExportRequest::StillChecking => Err(ApiError::Conflict {
            code: "task_not_finished",
            message: "this task is still being checked; it exports by itself when done \
                      (cancel it first to export what was checked so far)"
                .into(),
        }),
        ExportRequest::NotFound => Err(ApiError::task_not_found()),
    }
}

/// The service's state.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthView {
    /// `ok` or `degraded`.
    pub status: String,
    pub database: bool,
    /// Kinds of the accounts in the pool.
    pub backends: Vec<String>,
    /// Accounts in the pool, and how many of them can take work now.
    pub accounts: usize,
    pub healthy_accounts: usize,
    pub simulated: bool,
    /// `s3` or `local`.
    pub storage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    summary = "Service status",
    responses(
        (status = 200, description = "The database answers", body = HealthView),
        (status = 503, description = "The database does not answer", body = HealthView)
    ),
    security(())
)]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let accounts = state.accounts.all();
    let now = chrono::Utc::now();
    let mut backends: Vec<&'static str> = accounts.iter().map(|a| a.kind().as_str()).collect();
    backends.sort_unstable();
    backends.dedup();
    let simulated = state.accounts.simulated_in_use(None);
    let body = HealthView {
        status: if database { "ok" } else { "degraded" }.into(),
        database,
        backends: backends.into_iter().map(str::to_owned).collect(),
        accounts: accounts.len(),
        healthy_accounts: accounts
            .iter()
            .filter(|a| a.record().healthy_at(now))
            .count(),
        simulated,
        storage: state.blob.kind().into(),
        warning: simulated.then(|| {
            "results are SIMULATED: a simulated account is in the pool, its answers follow a fixed rule"
                .into()
        }),
    };
    if database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The parts of a signed link; a link missing one is refused as incomplete, not as a bad
/// request (people copy links and lose their end).
#[derive(Deserialize)]
pub(crate) struct LinkQuery {
    filename: Option<String>,
    expires: Option<i64>,
    sig: Option<String>,
}

#[utoipa::path(
    get,
    path = "/files/{key}",
    tag = "tasks",
    summary = "Download a result file kept in a local directory (a signed link)",
    params(("key" = String, Path, description = "The file's key, e.g. results/{task_id}.xlsx"), ("filename" = String, Query), ("expires" = i64, Query), ("sig" = String, Query)),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = inline(FileBody)),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 403, description = "The link was altered, or has expired", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody)
    ),
    security(())
)]
pub(crate) async fn download(
    state: web::Data<AppState>,
    key: web::Path<String>,
    query: crate::query::Query<LinkQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let local = state
        .blob
        .as_local()
        .ok_or_else(|| ApiError::NotFound("no such file".into()))?;
    let fresh = "read the task again for a fresh result_url";
    let (Some(filename), Some(expires), Some(sig)) = (&query.filename, query.expires, &query.sig)
    else {
        return Err(ApiError::Forbidden {
            code: "link_invalid",
            message: format!(
                "this download link is incomplete (it needs filename, expires and sig): \
                 copy it whole, or {fresh}"
            ),
        });
    };
    let path = local
        .verify(&key, expires, filename, sig)
        .map_err(|e| match e {
            wacheck_blob::LinkError::Expired => ApiError::Forbidden {
                code: "link_expired",
                message: format!("this download link has expired: {fresh}"),
            },
            wacheck_blob::LinkError::BadSignature => ApiError::Forbidden {
                code: "link_invalid",
                message: format!("this download link was altered: {fresh}"),
            },
        })?;
    let file = actix_files::NamedFile::open_async(&path)
        .await
        .map_err(|_| ApiError::NotFound("no such file".into()))?;
    let disposition = actix_web::http::header::ContentDisposition {
        disposition: actix_web::http::header::DispositionType::Attachment,
        parameters: vec![actix_web::http::header::DispositionParam::Filename(
            filename.clone(),
        )],
    };
    Ok(file
        .set_content_disposition(disposition)
        .into_response(&req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_is_the_slower_of_the_rate_and_the_budgets() {
        // 120 rows checked in 60 s, 240 open: 120 a minute, 2 minutes left.
        let p = pace_of(240, 120, Some(60.0), None, 1.0);
        assert_eq!(
            (p.per_minute, p.left_secs, p.slow_budget),
            (Some(120.0), Some(120.0), None)
        );
        // Budgets of 5,000 a day for 200,000 open rows: 40 days, whatever the rate so far.
        let p = pace_of(200_000, 300, Some(60.0), Some(5_000), 1.0);
        assert_eq!(p.left_secs, Some(40.0 * 86_400.0));
        assert_eq!(p.slow_budget, Some((5_000, 40.0)));
        // Each number twice in the file: half the checks, half the days.
        let p = pace_of(200_000, 300, Some(60.0), Some(5_000), 0.5);
        assert_eq!(p.slow_budget, Some((5_000, 20.0)));
        // Too early to say a rate (under 5 s), nothing checked yet, or nothing open.
        assert_eq!(pace_of(10, 5, Some(4.0), None, 1.0).per_minute, None);
        assert_eq!(pace_of(10, 0, Some(30.0), None, 1.0).left_secs, None);
        assert_eq!(pace_of(0, 10, Some(30.0), Some(10), 1.0).left_secs, None);
        // Within a day: no word about the budgets.
        assert_eq!(pace_of(100, 0, None, Some(5_000), 1.0).slow_budget, None);
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(human_duration(40.2), "40 s");
        assert_eq!(human_duration(725.0), "12 min");
        assert_eq!(human_duration(12_000.0), "3 h 20 min");
        assert_eq!(human_duration(216_000.0), "2.5 days");
    }
}
