//! Errors over HTTP. A use case's error (a code of the catalogue, a message) answers with the
//! catalogue's status; the native routes show it as `{"code": "...", "message": "..."}`, and a
//! compatible route family shows it in its own shape through [`render_errors`] on its scope.

use std::fmt;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;
pub use wacheck_app::{Code, Error as AppError};

/// An error as a handler returns it.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError(AppError::new(code, message))
    }

    /// A fault inside wacheck: logged, never shown.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        ApiError(AppError::internal(cause))
    }

    /// Try again after `secs` seconds (`Retry-After`).
    pub fn retry_after(self, secs: u64) -> Self {
        ApiError(self.0.retry_after(secs))
    }

    pub fn code(&self) -> Code {
        self.0.code()
    }

    pub fn task_not_found() -> Self {
        ApiError(AppError::task_not_found())
    }

    /// The answer's status and headers (`WWW-Authenticate`, `Retry-After`), for a body in any
    /// family's shape; an internal error's cause goes to the log here.
    pub fn response_head(&self) -> HttpResponseBuilder {
        if let Some(cause) = self.0.cause() {
            tracing::error!("internal error: {cause:#}");
        }
        let mut resp = HttpResponse::build(self.status_code());
        if self.code() == Code::Unauthorized {
            resp.insert_header(("WWW-Authenticate", "Bearer, ApiKey header=\"X-API-Key\""));
        }
        if let Some(secs) = self.0.retry_after_secs() {
            resp.insert_header(("Retry-After", secs.to_string()));
        }
        resp
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl From<wacheck_store::StoreError> for ApiError {
    fn from(e: wacheck_store::StoreError) -> Self {
        ApiError(e.into())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).expect("catalogued statuses are valid")
    }

    fn error_response(&self) -> HttpResponse {
        self.response_head().json(Body {
            code: self.code().name(),
            message: self.0.message(),
        })
    }
}

/// How a route family shows an error.
pub trait Shape {
    fn render(e: &ApiError) -> HttpResponse;
}

/// Middleware for a family's scope: every [`ApiError`] raised under the scope (by the
/// authentication guard, an extractor or a handler) is shown in the family's shape `S`,
/// keeping the headers the first answer had (rate limits, `Retry-After`).
pub async fn render_errors<S: Shape>(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let render = S::render;
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(err) => {
            return Err(match err.as_error::<ApiError>() {
                Some(e) => {
                    actix_web::error::InternalError::from_response(e.to_string(), render(e)).into()
                }
                None => err,
            });
        }
    };
    let Some(e) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
    else {
        return Ok(res);
    };
    let mut shown = render(e);
    for (name, value) in res.headers() {
        if !shown.headers().contains_key(name) {
            shown.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(res.into_response(shown))
}
