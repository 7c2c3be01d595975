//! One error shape for every route: `{"code": "...", "message": "..."}` with the right status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a parameter is missing or wrong, or the file cannot be used.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no key, or a key we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such resource for this caller (also for another user's resources).
    #[error("{0}")]
    NotFound(String),
    /// 403: a download link that expired or was tampered with.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// 409: the request does not fit the resource's state (cancelling a finished task).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 413: the upload is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: a rate or quota is used up; try again after `retry_after` seconds.
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// 500: our fault; details are logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// 503: a dependency (database, queue, storage) is unreachable.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Internal(_) => "internal_error",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn task_not_found() -> Self {
        ApiError::NotFound("no such task for this user".into())
    }
}

impl From<wacheck_store::StoreError> for ApiError {
    fn from(e: wacheck_store::StoreError) -> Self {
        match e {
            wacheck_store::StoreError::Db(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => ApiError::Unavailable("the database is unreachable; retry later".into()),
            // Text Postgres cannot hold (a NUL character, in a parameter or a JSON string).
            wacheck_store::StoreError::Db(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("22021" | "22P05")) =>
            {
                ApiError::bad(
                    "invalid_parameter",
                    "text with NUL characters (\\u0000) is not accepted",
                )
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!("internal error: {e:#}");
        }
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                resp.insert_header(("WWW-Authenticate", "Bearer, ApiKey header=\"X-API-Key\""));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                resp.insert_header(("Retry-After", retry_after.to_string()));
            }
            _ => {}
        }
        resp.json(Body {
            code: self.code(),
            message: self.to_string(),
        })
    }
}
