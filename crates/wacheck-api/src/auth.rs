//! `X-API-Key` authentication.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::{ApiError, AppState};

/// The user a request's key belongs to.
#[derive(Debug, Clone)]
pub struct AuthUser(pub String);

impl AuthUser {
    /// The `user_id` a request names must be the caller; anything else looks like a
    /// missing resource (no existence leak).
    pub fn require(&self, user_id: &str) -> Result<(), ApiError> {
        if self.0 == user_id {
            Ok(())
        } else {
            Err(ApiError::task_not_found())
        }
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let key = req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_owned());
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no app state")))?;
            let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
                ApiError::Unauthorized("missing API key: send it in the X-API-Key header".into())
            })?;
            match wacheck_store::keys::authenticate(&state.pool, &key).await? {
                Some(user) => Ok(AuthUser(user)),
                None => Err(ApiError::Unauthorized("unknown or revoked API key".into())),
            }
        })
    }
}
