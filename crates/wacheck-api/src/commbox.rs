//! CommBox-compatible contact validation: `GET /whatsapp/validatecontact/{stream_id}/{phone}`
//! with `Authorization: Bearer <key>`. The stream id is an opaque channel id that the operator
//! maps to an account of the pool (an alias, or the account's id). Answers and errors have
//! that API's envelopes: `status`, `description`, `response_time` and, on success, `data`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wacheck_core::WhatsApp;

use crate::auth::{Check, Need};
use crate::router::{Router, route};
use crate::{ApiError, AppState, Code};
use wacheck_app::checks::{Checked, Route, check_now, named_account, unavailable};

/// Where this family's routes live.
pub const PREFIX: &str = "/whatsapp";

/// This family's shape of errors, for [`crate::error::render_errors`] on its scope.
pub struct Shape;

impl crate::error::Shape for Shape {
    fn render(e: &ApiError) -> HttpResponse {
        error_body(e)
    }
}

pub fn routes(r: &mut Router) {
    route!(r, validate_contact);
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A successful answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Validated {
    /// `"200"`.
    pub status: String,
    pub description: String,
    pub response_time: String,
    pub data: Valid,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Valid {
    /// Whether the number is on WhatsApp.
    pub valid: bool,
}

/// The envelope of 401, 404, 429 and 500 answers.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    pub status: u16,
    pub description: String,
    pub response_time: String,
}

/// The envelope of a 400 answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BadRequestEnvelope {
    /// `"400"`.
    pub status: String,
    pub description: String,
    pub response_time: String,
    pub data: Vec<Failed>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failed {
    pub recipient: String,
    pub status: u16,
    pub failed: String,
}

/// An error in that API's envelope.
#[derive(Debug)]
pub enum CommBoxError {
    /// 400, with the recipient and why it failed.
    BadRequest { recipient: String, failed: String },
    /// 401, 404, 429 (with `Retry-After`), 500.
    Other(ApiError),
}

impl std::fmt::Display for CommBoxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommBoxError::BadRequest { failed, .. } => f.write_str(failed),
            CommBoxError::Other(e) => e.fmt(f),
        }
    }
}

impl From<ApiError> for CommBoxError {
    fn from(e: ApiError) -> Self {
        CommBoxError::Other(e)
    }
}

impl From<wacheck_app::Error> for CommBoxError {
    fn from(e: wacheck_app::Error) -> Self {
        CommBoxError::Other(e.into())
    }
}

impl From<wacheck_store::StoreError> for CommBoxError {
    fn from(e: wacheck_store::StoreError) -> Self {
        CommBoxError::Other(e.into())
    }
}

/// An error as this API shows it: its statuses are 400, 401, 404, 429 and 500, so others are
/// shown as the nearest of them.
pub fn error_body(e: &ApiError) -> HttpResponse {
    let (status, description) = match e.status_code().as_u16() {
        401 => (401, "Unauthorized"),
        403 => (401, "Unauthorized"),
        404 => (404, "Not Found"),
        429 => (429, "Too Many Requests"),
        400 | 409 | 413 => {
            return CommBoxError::BadRequest {
                recipient: String::new(),
                failed: e.to_string(),
            }
            .error_response();
        }
        _ => (500, "Internal Server Error"),
    };
    let mut resp = e.response_head();
    resp.status(StatusCode::from_u16(status).expect("a status"));
    resp.json(json!({"status": status, "description": description, "response_time": now()}))
}

impl ResponseError for CommBoxError {
    fn status_code(&self) -> StatusCode {
        match self {
            CommBoxError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            CommBoxError::Other(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            CommBoxError::BadRequest { recipient, failed } => {
                let body: Value = json!({
                    "status": "400",
                    "description": failed,
                    "response_time": now(),
                    "data": [{"recipient": recipient, "status": 400, "failed": failed}],
                });
                HttpResponse::BadRequest().json(body)
            }
            CommBoxError::Other(e) => error_body(e),
        }
    }
}

/// Whether the number is on WhatsApp, as this API answers: an invalid number is the caller's
/// mistake (400), no definite answer is the service's (500).
fn valid(checked: Option<&Checked>, phone: String) -> Result<bool, CommBoxError> {
    match checked.map_or(WhatsApp::Unknown, Checked::whatsapp) {
        WhatsApp::Yes => Ok(true),
        WhatsApp::No => Ok(false),
        WhatsApp::Invalid => Err(CommBoxError::BadRequest {
            recipient: phone,
            failed: "Invalid parameter PHONE_NUMBER: not a valid phone number".into(),
        }),
        WhatsApp::Unknown => {
            let why = checked
                .and_then(|c| c.outcome.reason.clone())
                .unwrap_or_else(|| "no answer".into());
            Err(ApiError::internal(anyhow::anyhow!("no definite answer: {why}")).into())
        }
    }
}

#[utoipa::path(
    get,
    path = "/whatsapp/validatecontact/{stream_id}/{phone}",
    tag = "commbox",
    summary = "Whether a number is on WhatsApp (CommBox-compatible)",
    params(
        ("stream_id" = String, Path, description = "The channel: an account of the pool, by alias or id"),
        ("phone" = String, Path, description = "The number, with country code")
    ),
    responses(
        (status = 200, description = "Operation successful", body = Validated),
        (status = 400, description = "Bad request, could not process the input data", body = BadRequestEnvelope),
        (status = 401, description = "Unauthorized", body = Envelope),
        (status = 404, description = "Not Found", body = Envelope),
        (status = 429, description = "Too Many Requests", body = Envelope, headers(("Retry-After" = u64))),
        (status = 500, description = "Internal Server Error", body = Envelope)
    )
)]
/// `GET /whatsapp/validatecontact/{stream_id}/{phone}`: whether the number is on WhatsApp.
pub(crate) async fn validate_contact(
    state: web::Data<AppState>,
    user: Need<Check>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, CommBoxError> {
    let (stream, phone) = path.into_inner();
    let Some(account) = named_account(&state, &user, &stream).await? else {
        return Err(ApiError::new(Code::NotFound, format!("no stream `{stream}`")).into());
    };
    if let Some(why) = unavailable(&account) {
        return Err(ApiError::internal(anyhow::anyhow!("stream `{stream}`: {why}")).into());
    }
    let route = Route {
        source: "commbox",
        session: Some(&stream),
        account: Some(&account.id),
        details: false,
    };
    let checked = check_now(&state, &user, std::slice::from_ref(&phone), None, route).await?;
    let valid = valid(checked.first(), phone)?;
    Ok(HttpResponse::Ok().json(Validated {
        status: "200".into(),
        description: "Operation successful".into(),
        response_time: now(),
        data: Valid { valid },
    }))
}
