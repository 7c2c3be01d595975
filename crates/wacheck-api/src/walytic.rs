//! Walytic-compatible number verification (`/api/verify`): a client written for that API works
//! by changing only its base URL and key. Single and bulk checks through a named session (an
//! account of the pool, by alias or id), the caller's history, its export, and clearing it.
//! Errors have that API's shape: `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wacheck_app::history::{self, Paging, Which};
use wacheck_app::ingest;
use wacheck_core::ResultFormat;
use wacheck_core::WhatsApp;
use wacheck_store::history::Entry;

use crate::auth::{AuthUser, Check, Need};
use crate::router::{Router, route};
use crate::{ApiError, AppState, Code};
use wacheck_app::checks::{Route, check_now, named_account, unavailable};

/// Where this family's routes live.
pub const PREFIX: &str = "/api/verify";

/// This family's shape of errors, for [`crate::error::render_errors`] on its scope.
pub struct Shape;

impl crate::error::Shape for Shape {
    fn render(e: &ApiError) -> HttpResponse {
        error_body(e)
    }
}

pub fn routes(r: &mut Router) {
    route!(r, history_page);
    route!(r, export);
    route!(r, clear);
    route!(r, verify_single);
    route!(r, bulk_verify);
}

/// The body of this API's errors.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalyticErrorBody {
    pub error: String,
}

/// What any route of this API may answer besides its own answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub(crate) enum WalyticRefusals {
    /// No credentials, or wrong ones.
    #[response(status = 401)]
    Unauthorized(WalyticErrorBody),
    /// The key lacks the `check` scope.
    #[response(status = 403)]
    Forbidden(WalyticErrorBody),
    /// No budget within the wait, or too many requests.
    #[response(
        status = 429,
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    TooManyRequests(WalyticErrorBody),
    /// The database cannot be reached.
    #[response(status = 503)]
    Unavailable(WalyticErrorBody),
}

/// What a route naming a session may answer about it.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub(crate) enum SessionRefusals {
    /// No such session.
    #[response(status = 404)]
    NotFound(WalyticErrorBody),
    /// The session is not connected.
    #[response(status = 409)]
    NotConnected(WalyticErrorBody),
}

/// The body of a single verification.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: read as JSON
pub(crate) struct SingleIn {
    /// With country code, e.g. `919812345678`.
    number: String,
}

/// The form of a bulk verification.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
pub(crate) struct BulkForm {
    /// A .csv or .xlsx file with a column of numbers.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// An error in this API's shape: `{"error": "..."}`, with the status (and `Retry-After`,
/// `WWW-Authenticate`) of the error it carries.
#[derive(Debug)]
pub struct WalyticError(pub ApiError);

impl std::fmt::Display for WalyticError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ApiError> for WalyticError {
    fn from(e: ApiError) -> Self {
        WalyticError(e)
    }
}

impl From<wacheck_app::Error> for WalyticError {
    fn from(e: wacheck_app::Error) -> Self {
        WalyticError(e.into())
    }
}

impl From<wacheck_store::StoreError> for WalyticError {
    fn from(e: wacheck_store::StoreError) -> Self {
        WalyticError(e.into())
    }
}

/// An error as this API shows it: `{"error": ...}`.
pub fn error_body(e: &ApiError) -> HttpResponse {
    let message = match e.code() {
        Code::InternalError => "Internal server error".to_owned(),
        _ => e.to_string(),
    };
    e.response_head()
        .json(serde_json::json!({ "error": message }))
}

impl ResponseError for WalyticError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        error_body(&self.0)
    }
}

type Out = Result<HttpResponse, WalyticError>;

fn bad(message: &str) -> WalyticError {
    WalyticError(ApiError::new(Code::InvalidParameter, message))
}

/// `Valid`, `Invalid` or `Error`, as that API says.
fn status_word(w: WhatsApp) -> &'static str {
    match w {
        WhatsApp::Yes => "Valid",
        WhatsApp::No => "Invalid",
        WhatsApp::Invalid | WhatsApp::Unknown => "Error",
    }
}

fn status_of(outcome: &str) -> &'static str {
    status_word(outcome.parse().unwrap_or(WhatsApp::Unknown))
}

/// The session a client named: an account of the pool the caller may use, working now.
async fn session_account(
    state: &AppState,
    user: &AuthUser,
    session: &str,
) -> Result<String, WalyticError> {
    let Some(account) = named_account(state, user, session).await? else {
        return Err(WalyticError(ApiError::new(
            Code::NotFound,
            format!("Session {session} not found"),
        )));
    };
    if let Some(why) = unavailable(&account) {
        return Err(WalyticError(ApiError::new(
            Code::SessionNotConnected,
            format!("Session {session} is not connected: {why}"),
        )));
    }
    Ok(account.id)
}

/// One checked number in this API's words.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verified {
    pub number: String,
    /// `Valid`, `Invalid` or `Error`.
    pub status: String,
}

#[utoipa::path(
    post,
    path = "/api/verify/{session_id}/verify-single",
    tag = "walytic",
    summary = "Verify one number through a session (Walytic-compatible)",
    params(("session_id" = String, Path, description = "The session: an account of the pool, by alias or id")),
    request_body(content = SingleIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer", body = Verified),
        (status = 400, description = "`Number is required`", body = WalyticErrorBody),
        SessionRefusals,
        WalyticRefusals
    )
)]
/// `POST /api/verify/{sessionId}/verify-single` with `{"number": "919812345678"}`.
pub(crate) async fn verify_single(
    state: web::Data<AppState>,
    user: Need<Check>,
    session: web::Path<String>,
    body: web::Bytes,
) -> Out {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let number = match &json["number"] {
        Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(WalyticError(ApiError::new(
                Code::MissingParameter,
                "Number is required",
            )));
        }
    };
    let account = session_account(&state, &user, &session).await?;
    let route = Route {
        source: "walytic",
        session: Some(&session),
        account: Some(&account),
        details: false,
    };
    let checked = check_now(&state, &user, std::slice::from_ref(&number), None, route).await?;
    let status = checked
        .first()
        .map_or("Error", |c| status_word(c.whatsapp()));
    Ok(HttpResponse::Ok().json(Verified {
        number,
        status: status.to_owned(),
    }))
}

/// Every result of a bulk check, in file order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkOut {
    pub results: Vec<Verified>,
}

#[utoipa::path(
    post,
    path = "/api/verify/{session_id}/bulk-verify",
    tag = "walytic",
    summary = "Verify the numbers of a .csv or .xlsx file (Walytic-compatible)",
    params(("session_id" = String, Path, description = "The session: an account of the pool, by alias or id")),
    request_body(content = BulkForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "One result per row, in file order", body = BulkOut),
        (status = 400, description = "No file, or not a readable one", body = WalyticErrorBody),
        (status = 413, description = "Too many rows for a synchronous check: use the task API", body = WalyticErrorBody),
        SessionRefusals,
        WalyticRefusals
    )
)]
/// `POST /api/verify/{sessionId}/bulk-verify` with a multipart `file` (.csv or .xlsx).
pub(crate) async fn bulk_verify(
    state: web::Data<AppState>,
    user: Need<Check>,
    session: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Out {
    crate::ingest::require_multipart(
        &req,
        "Upload the numbers as a multipart `file` (.csv or .xlsx)",
    )?;
    let account = session_account(&state, &user, &session).await?;
    let upload = crate::ingest::read_form(&req, payload, state.api.max_upload_bytes).await?;
    let (max, task_max) = (state.api.bulk_max_rows, state.api.max_rows);
    let rows = ingest::number_cells(upload.file, upload.file_name, max, task_max).await?;
    let route = Route {
        source: "walytic",
        session: Some(&session),
        account: Some(&account),
        details: false,
    };
    let region = upload.default_region.as_deref();
    let checked = check_now(&state, &user, &rows, region, route).await?;
    Ok(HttpResponse::Ok().json(BulkOut {
        results: checked
            .iter()
            .map(|c| Verified {
                number: c.input.clone(),
                status: status_word(c.whatsapp()).to_owned(),
            })
            .collect(),
    }))
}

/// Which part of the caller's history.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only this session's records.
    session: Option<String>,
    /// Records per page (default 100, at most 1,000).
    limit: Option<i64>,
    /// Page, from 1.
    page: Option<i64>,
    /// `csv` (default) or `xlsx` (export only).
    format: Option<String>,
}

/// A record as that API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    pub _id: String,
    #[serde(rename = "sessionId")]
    pub session_id: Option<String>,
    pub number: String,
    /// `Valid`, `Invalid` or `Error`.
    pub status: String,
    pub timestamp: String,
}

fn record(e: Entry) -> Record {
    Record {
        status: status_of(&e.outcome).to_owned(),
        _id: e.id,
        session_id: e.session_id,
        number: e.input,
        timestamp: e.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// This API's records: those of its own checks, of one session when a query names one.
fn which(q: &HistoryQuery) -> Which<'_> {
    Which {
        session: q.session.as_deref().filter(|s| !s.is_empty()),
        source: Some("walytic"),
    }
}

#[utoipa::path(
    get,
    path = "/api/verify/history",
    tag = "walytic",
    summary = "The caller's verification history, newest first (Walytic-compatible)",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of records; `X-Total-Count` has them all", body = [Record], headers(("X-Total-Count" = i64))),
        (status = 400, description = "A parameter is wrong", body = WalyticErrorBody),
        WalyticRefusals
    )
)]
/// `GET /api/verify/history?session=…`: the caller's records, newest first.
pub(crate) async fn history_page(
    state: web::Data<AppState>,
    user: Need<Check>,
    query: crate::query::Query<HistoryQuery>,
) -> Out {
    let paging = Paging::new(query.limit, query.page)?;
    let (entries, total) = history::page(&state, &user, which(&query), paging).await?;
    let records: Vec<Record> = entries.into_iter().map(record).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Total-Count", total.to_string()))
        .json(records))
}

#[utoipa::path(
    get,
    path = "/api/verify/export",
    tag = "walytic",
    summary = "The caller's verification history as a csv or xlsx file (Walytic-compatible)",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = inline(crate::openapi::FileBody)),
        (status = 400, description = "A parameter is wrong", body = WalyticErrorBody),
        WalyticRefusals
    )
)]
/// `GET /api/verify/export?session=…&format=csv|xlsx`: the caller's records as a file.
pub(crate) async fn export(
    state: web::Data<AppState>,
    user: Need<Check>,
    query: crate::query::Query<HistoryQuery>,
    req: HttpRequest,
) -> Out {
    let format = match query
        .format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("csv") => ResultFormat::Csv,
        Some("xlsx") => ResultFormat::Xlsx,
        Some(other) => return Err(bad(&format!("format must be csv or xlsx, not `{other}`"))),
    };
    let header = ["_id", "sessionId", "number", "status", "timestamp"].map(String::from);
    let cells = |e: Entry| {
        let r = record(e);
        vec![
            r._id,
            r.session_id.unwrap_or_default(),
            wacheck_core::sanitize::neutralize_formula(&r.number).into_owned(),
            r.status,
            r.timestamp,
        ]
    };
    let file = history::export(&state, &user, which(&query), format, header.into(), cells).await?;
    let mime = format.content_type().parse().map_err(ApiError::internal)?;
    let opened = actix_files::NamedFile::open_async(file.path())
        .await
        .map_err(ApiError::internal)?
        .set_content_type(mime);
    let name = format!("verification-history.{}", format.extension());
    Ok(crate::routes::attachment(opened, &name, &req))
}

/// What clearing did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cleared {
    pub success: bool,
    pub message: String,
    #[serde(rename = "deletedCount")]
    pub deleted_count: u64,
}

#[utoipa::path(
    delete,
    path = "/api/verify/clear",
    tag = "walytic",
    summary = "Delete the caller's verification history (Walytic-compatible)",
    params(HistoryQuery),
    responses(
        (status = 200, description = "What was deleted", body = Cleared),
        WalyticRefusals
    )
)]
/// `DELETE /api/verify/clear?session=…`: deletes the caller's records (of one session).
pub(crate) async fn clear(
    state: web::Data<AppState>,
    user: Need<Check>,
    query: crate::query::Query<HistoryQuery>,
) -> Out {
    let deleted = history::clear(&state, &user, which(&query)).await?;
    let message = match query.session.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => format!("Cleared history for session {s}"),
        None => "Cleared history for all sessions".to_owned(),
    };
    Ok(HttpResponse::Ok().json(Cleared {
        success: true,
        message,
        deleted_count: deleted,
    }))
}
