//! The HTTP API: ekycpro-compatible task routes, the health check, and downloads of result
//! files kept in a local directory. The only crate that knows HTTP and JSON shapes.

mod accounts;
mod admin;
pub mod auth;
mod commbox;
mod error;
mod ingest;
mod json;
mod numbers;
pub mod openapi;
pub mod qr;
mod query;
mod router;
mod routes;
mod walytic;

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};

use serde::Deserialize;
use wacheck_app::Services;

pub use auth::{AuthSettings, JwtVerifier, RateLimiter};
pub use error::{ApiError, Code};
use router::{Router, route};
pub use wacheck_app::LimitSettings;

/// Limits and behaviour of the API.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest upload (whole multipart body), in bytes; enforced while streaming.
    pub max_upload_bytes: u64,
    /// Most input rows per task.
    pub max_rows: u64,
    /// Lifetime of a `result_url`, in seconds.
    pub result_url_ttl_secs: u64,
    /// Uploads of one API process parsed and stored at once; more wait their turn (their bytes
    /// are already on disk). Each holds a database connection for its whole transaction, so
    /// this keeps connections free for status reads.
    pub max_concurrent_ingests: usize,
    /// Numbers an upload deduplicates in memory (8 bytes each); beyond that, sorted runs go to
    /// temporary files and are merged.
    pub dedupe_run: usize,
    /// Longest a single-number request waits for account budget before it answers 429, in ms.
    pub check_max_wait_ms: u64,
    /// Most numbers of one `POST /v1/numbers:check`.
    pub check_max_numbers: usize,
    /// Most rows of one synchronous bulk check (`/api/verify/{session}/bulk-verify`); larger
    /// files belong to the task API.
    pub bulk_max_rows: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            max_rows: 5_000_000,
            result_url_ttl_secs: 3600,
            max_concurrent_ingests: 4,
            dedupe_run: wacheck_core::dedupe::DEFAULT_RUN,
            check_max_wait_ms: 10_000,
            check_max_numbers: 1_000,
            bulk_max_rows: 1_000,
        }
    }
}

/// What every handler can reach: the use cases' services, and what only HTTP needs.
pub struct AppState {
    pub app: Services,
    pub api: ApiSettings,
    /// Token checks and request rates.
    pub jwt: Arc<auth::JwtVerifier>,
    pub rate: Arc<auth::RateLimiter>,
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.app
    }
}

/// Every route family, each in a scope of its own: its path prefix, how it authenticates, and
/// the shape it shows errors in. Unknown paths answer 404 in their family's shape.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(walytic::PREFIX)
            .configure(|cfg| {
                walytic::routes(&mut Router::Serve {
                    cfg,
                    prefix: walytic::PREFIX,
                })
            })
            .default_service(web::to(no_such_route))
            .wrap(from_fn(auth::guard_required))
            .wrap(from_fn(error::render_errors::<walytic::Shape>)),
    )
    .service(
        web::scope(commbox::PREFIX)
            .configure(|cfg| {
                commbox::routes(&mut Router::Serve {
                    cfg,
                    prefix: commbox::PREFIX,
                })
            })
            .default_service(web::to(no_such_route))
            .wrap(from_fn(auth::guard_required))
            .wrap(from_fn(error::render_errors::<commbox::Shape>)),
    )
    .service(
        web::scope("")
            .configure(|cfg| native_routes(&mut Router::Serve { cfg, prefix: "" }))
            .default_service(web::to(no_such_route))
            .wrap(from_fn(auth::guard)),
    );
}

/// The native routes: tasks, accounts, users, single checks and the service itself.
fn native_routes(r: &mut Router) {
    routes::routes(r);
    route!(r, openapi::openapi_json);
    accounts::routes(r);
    admin::routes(r);
    numbers::routes(r);
}

/// Every route, for the OpenAPI document.
pub(crate) fn all_routes(r: &mut Router) {
    native_routes(r);
    walytic::routes(r);
    commbox::routes(r);
}

async fn no_such_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        "no such route: see docs/api.md",
    ))
}
