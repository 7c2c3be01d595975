//! Routes and their JSON shapes.

use actix_files::NamedFile;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use wacheck_core::{TaskKind, TaskStatus};
use wacheck_store::tasks::TaskRecord;

use crate::auth::AuthUser;
use crate::json::rfc3339;
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorBody, FileBody, Refusals, UploadForm};
use crate::router::{Router, route};
use crate::{ApiError, AppState, Code, ingest};
use wacheck_app::Scope;
use wacheck_app::tasks;

/// The routes of the task API and the service itself.
pub fn routes(r: &mut Router) {
    route!(r, health);
    route!(r, create_task);
    route!(r, get_task);
    route!(r, cancel_task);
    route!(r, cancel_task_post);
    route!(r, export_task);
    // A result file's key spans slashes.
    route!(r, download, "/files/{key:.*}");
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

/// The task as the API shows it.
async fn view(state: &AppState, task: TaskRecord) -> Result<TaskView, ApiError> {
    let r = tasks::report(state, task).await?;
    let t = r.task;
    Ok(TaskView {
        message: r.message,
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
        result_url: r.result_url,
        kind: t.kind,
        simulated: r.simulated,
        cached: t.cached,
        waiting: t.waiting.clone().filter(|_| t.status.is_checking()),
        rate_per_minute: r.pace.per_minute.map(|r| (r * 10.0).round() / 10.0),
        estimated_finish_at: r.estimated_finish.map(rfc3339),
    })
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
    let kind = tasks::kind_of(&path)?;
    user.require(Scope::Tasks)?;
    ingest::require_multipart(
        &req,
        "send the upload as multipart/form-data with `user_id` and `file` fields",
    )?;
    let upload = ingest::read_form(&req, payload, state.api.max_upload_bytes).await?;
    let record = tasks::create(&state, &user, kind, upload).await?;
    Ok(HttpResponse::Ok().json(view(&state, record).await?))
}

#[derive(Deserialize)]
pub(crate) struct UserQuery {
    user_id: Option<String>,
}

/// The caller's task named by the path and the query's `user_id`.
async fn own_task(
    state: &AppState,
    user: &AuthUser,
    path: (String, String),
    query: &UserQuery,
) -> Result<TaskRecord, ApiError> {
    let (kind, task_id) = path;
    Ok(tasks::find(state, user, &kind, &task_id, query.user_id.as_deref()).await?)
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
    let task = own_task(&state, &user, path.into_inner(), &query).await?;
    let task = tasks::cancel(&state, &task).await?;
    Ok(HttpResponse::Ok().json(view(&state, task).await?))
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
    let task = own_task(&state, &user, path.into_inner(), &query).await?;
    let task = tasks::export(&state, &task).await?;
    Ok(HttpResponse::Ok().json(view(&state, task).await?))
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
    let database = wacheck_store::answers(&state.pool).await;
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
    let (path, filename) = linked_file(&state, &key, &query)?;
    let file = NamedFile::open_async(&path)
        .await
        .map_err(|_| ApiError::new(Code::NotFound, "no such file"))?;
    Ok(attachment(file, filename, &req))
}

/// The local file a signed link names, and the name to download it as.
fn linked_file<'q>(
    state: &AppState,
    key: &str,
    query: &'q LinkQuery,
) -> Result<(std::path::PathBuf, &'q str), ApiError> {
    let local = state
        .blob
        .as_local()
        .ok_or_else(|| ApiError::new(Code::NotFound, "no such file"))?;
    let fresh = "read the task again for a fresh result_url";
    let (Some(filename), Some(expires), Some(sig)) = (&query.filename, query.expires, &query.sig)
    else {
        return Err(ApiError::new(
            Code::LinkInvalid,
            format!(
                "this download link is incomplete (it needs filename, expires and sig): \
                 copy it whole, or {fresh}"
            ),
        ));
    };
    let path = local
        .verify(key, expires, filename, sig)
        .map_err(|e| match e {
            wacheck_blob::LinkError::Expired => ApiError::new(
                Code::LinkExpired,
                format!("this download link has expired: {fresh}"),
            ),
            wacheck_blob::LinkError::BadSignature => ApiError::new(
                Code::LinkInvalid,
                format!("this download link was altered: {fresh}"),
            ),
        })?;
    Ok((path, filename))
}

/// `file` as a download named `name`, streamed from disk.
pub(crate) fn attachment(file: NamedFile, name: &str, req: &HttpRequest) -> HttpResponse {
    use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
    file.set_content_disposition(ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name.to_owned())],
    })
    .into_response(req)
}
