//! The worker side of the pipeline: the job queue (apalis on Redis), the account pool with
//! its cluster-wide budgets, checking through it (cache, batches, retries), result export, and
//! the reconciler that makes Redis disposable.

pub mod check;
pub mod export;
pub mod native;
pub mod pipeline;
pub mod pool;
pub mod queue;

pub use check::CacheSettings;
pub use pipeline::{Pipeline, PipelineSettings, WorkerHandle, spawn_worker};
pub use pool::{Pool, PoolSettings, RateConfig};
pub use queue::{Job, Queue};
