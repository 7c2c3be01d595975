//! The conventions of JSON bodies: a typed body extractor whose refusals are catalogued
//! errors, and one way to write timestamps (RFC 3339, UTC, nanoseconds).

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::{ApiError, Code};

/// A timestamp as every route writes it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A JSON body of type `T`; a malformed body or unknown fields answer 400 `invalid_body`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| {
                let too_large = e.as_response_error().status_code().as_u16() == 413;
                let code = if too_large {
                    Code::PayloadTooLarge
                } else {
                    Code::InvalidBody
                };
                ApiError::new(code, format!("the body cannot be read: {e}"))
            })?;
            parse(&bytes).map(Json)
        })
    }
}

/// `bytes` as a `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(Code::InvalidBody, format!("the body is not valid: {e}")))
}
