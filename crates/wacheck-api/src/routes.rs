//! Routes and their JSON shapes.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use wacheck_core::{TaskId, TaskKind, TaskStatus};
use wacheck_store::tasks::TaskRecord;

use crate::auth::AuthUser;
use crate::{ApiError, AppState, ingest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Malformed query strings and unknown routes get the same JSON error shape as everything else.
    let bad_query = |e: actix_web::error::QueryPayloadError, _: &HttpRequest| {
        ApiError::bad("invalid_parameter", format!("invalid query string: {e}")).into()
    };
    cfg.app_data(web::QueryConfig::default().error_handler(bad_query))
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::NotFound("no such route: see docs/api.md".into()))
        }))
        .route("/health", web::get().to(health))
        .route("/wa/api/{kind}/tasks", web::post().to(create_task))
        .route("/wa/api/{kind}/tasks/{task_id}", web::get().to(get_task))
        .route("/files/{key:.*}", web::get().to(download));
}

/// The task as ekycpro shows it, plus `kind` and a loud `simulated` flag.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaskView {
    pub created_at: String,
    pub updated_at: String,
    pub task_id: String,
    pub user_id: String,
    pub status: TaskStatus,
    pub total: i64,
    pub success: i64,
    pub failure: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_url: Option<String>,
    pub kind: TaskKind,
    pub simulated: bool,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

async fn view(state: &AppState, t: TaskRecord) -> Result<TaskView, ApiError> {
    let result_url = match (&t.status, &t.result_key) {
        (TaskStatus::Exported, Some(key)) => {
            let name = format!("{}.{}", t.id, t.result_format.extension());
            let url = state
                .blob
                .url(key, &name, state.result_url_ttl())
                .await
                .map_err(|e| ApiError::Unavailable(format!("result storage: {e}")))?;
            Some(url)
        }
        _ => None,
    };
    Ok(TaskView {
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
        simulated: state.simulated,
    })
}

fn kind_of(path: &str) -> Result<TaskKind, ApiError> {
    path.parse()
        .map_err(|_| ApiError::NotFound(format!("no task API `{path}`: use simple or detail")))
}

async fn create_task(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&path)?;
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
    let record = ingest::create_task(&state, &user.0, kind, upload).await?;
    Ok(HttpResponse::Ok().json(view(&state, record).await?))
}

#[derive(Deserialize)]
struct UserQuery {
    user_id: Option<String>,
}

async fn get_task(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, ApiError> {
    let (kind, task_id) = path.into_inner();
    let kind = kind_of(&kind)?;
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
    user.require(user_id)?;
    let id: TaskId = task_id.parse().map_err(|_| ApiError::task_not_found())?;
    let task = wacheck_store::tasks::get(&state.pool, id).await?;
    let task = task
        .filter(|t| t.user_id == user.0 && t.kind == kind)
        .ok_or_else(ApiError::task_not_found)?;
    Ok(HttpResponse::Ok().json(view(&state, task).await?))
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    database: bool,
    backends: &'a [String],
    simulated: bool,
    storage: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'a str>,
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let body = Health {
        status: if database { "ok" } else { "degraded" },
        database,
        backends: &state.backends,
        simulated: state.simulated,
        storage: state.blob.kind(),
        warning: state.simulated.then_some(
            "results are SIMULATED: no WhatsApp account is configured, answers follow a fixed rule",
        ),
    };
    if database {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    filename: String,
    expires: i64,
    sig: String,
}

async fn download(
    state: web::Data<AppState>,
    key: web::Path<String>,
    query: web::Query<LinkQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let local = state
        .blob
        .as_local()
        .ok_or_else(|| ApiError::NotFound("no such file".into()))?;
    let path = local
        .verify(&key, query.expires, &query.filename, &query.sig)
        .map_err(|e| match e {
            wacheck_blob::LinkError::Expired => ApiError::Forbidden {
                code: "link_expired",
                message: "this download link has expired".into(),
            },
            wacheck_blob::LinkError::BadSignature => ApiError::Forbidden {
                code: "link_invalid",
                message: "this download link is not valid".into(),
            },
        })?;
    let file = actix_files::NamedFile::open_async(&path)
        .await
        .map_err(|_| ApiError::NotFound("no such file".into()))?;
    let disposition = actix_web::http::header::ContentDisposition {
        disposition: actix_web::http::header::DispositionType::Attachment,
        parameters: vec![actix_web::http::header::DispositionParam::Filename(
            query.filename.clone(),
        )],
    };
    Ok(file
        .set_content_disposition(disposition)
        .into_response(&req))
}
