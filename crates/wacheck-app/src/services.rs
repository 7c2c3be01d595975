//! What use cases work with: the database, the job queue, result storage, the account pool,
//! and the settings of tasks. One per process, shared by every front door.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Semaphore;
use wacheck_blob::BlobStore;
use wacheck_engine::{Effort, Pool};
use wacheck_worker::Queue;

use crate::LimitSettings;

/// How tasks are made and shown.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// Distinct numbers per chunk, and chunks queued per task at a time.
    pub chunk_size: u32,
    pub window: u32,
    /// Most input rows of a task (a user's own limit may be lower).
    pub max_rows: u64,
    /// Numbers an upload deduplicates in memory before it sorts runs on disk.
    pub dedupe_run: usize,
    /// Lifetime of a result link.
    pub result_url_ttl: Duration,
}

/// How single-number checks try.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// The pipeline's retries and the cache.
    pub effort: Effort,
    /// Longest a request waits for account budget before it answers 429.
    pub max_wait: Duration,
}

pub struct Services {
    pub pool: PgPool,
    pub queue: Queue,
    pub blob: Arc<dyn BlobStore>,
    pub accounts: Arc<Pool>,
    pub tasks: TaskSettings,
    pub checks: CheckSettings,
    /// The default limits of users.
    pub limits: LimitSettings,
    /// Uploads of this process parsed and stored at once; more wait their turn.
    pub ingest_slots: Arc<Semaphore>,
}
