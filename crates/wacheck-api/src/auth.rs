//! `X-API-Key` authentication.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::{ApiError, AppState};

/// The user a request's key belongs to, and what the key may do.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub scopes: Vec<String>,
}

impl AuthUser {
    /// The `user_id` a request names must be the caller; anything else looks like a
    /// missing resource (no existence leak).
    pub fn require(&self, user_id: &str) -> Result<(), ApiError> {
        if self.id == user_id {
            Ok(())
        } else {
            Err(ApiError::task_not_found())
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has_scope("admin")
    }

    /// The key must carry `scope` (admins may do everything).
    pub fn need(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                code: "missing_scope",
                message: format!("this API key lacks the `{scope}` scope"),
            })
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
                Some((id, scopes)) => Ok(AuthUser { id, scopes }),
                None => Err(ApiError::Unauthorized("unknown or revoked API key".into())),
            }
        })
    }
}
