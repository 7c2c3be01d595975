//! The HTTP API: ekycpro-compatible task routes, the health check, and downloads of result
//! files kept in a local directory. The only crate that knows HTTP and JSON shapes.

mod accounts;
mod admin;
pub mod auth;
mod commbox;
mod error;
mod ingest;
mod numbers;
pub mod openapi;
pub mod qr;
mod query;
mod routes;
mod sync;
mod walytic;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sqlx::PgPool;
use wacheck_blob::BlobStore;
use wacheck_worker::Queue;

pub use auth::{AuthSettings, JwtVerifier, LimitSettings, RateLimiter};
pub use error::ApiError;
pub use routes::configure;

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

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub queue: Queue,
    pub blob: Arc<dyn BlobStore>,
    pub api: ApiSettings,
    /// Distinct numbers per chunk and chunks queued per task (from the pipeline settings).
    pub chunk_size: u32,
    pub window: u32,
    /// The account pool (health, the simulation flag, and the accounts routes).
    pub accounts: Arc<wacheck_worker::Pool>,
    /// Token checks, request rates, and the default limits of users.
    pub jwt: Arc<auth::JwtVerifier>,
    pub rate: Arc<auth::RateLimiter>,
    pub limits: auth::LimitSettings,
    /// How hard single-number checks try (the pipeline's retry settings and the cache).
    pub effort: wacheck_worker::check::Effort,
    /// Turns of `max_concurrent_ingests`.
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    fn result_url_ttl(&self) -> Duration {
        Duration::from_secs(self.api.result_url_ttl_secs.max(1))
    }
}
