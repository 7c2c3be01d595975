//! The worker side of the pipeline: the job queue (apalis on Redis), chunk processing under
//! per-account rate limits, result export, and the reconciler that makes Redis disposable.

pub mod accounts;
pub mod export;
pub mod pipeline;
pub mod queue;

pub use accounts::{Account, Accounts, RateConfig};
pub use pipeline::{Pipeline, PipelineSettings, WorkerHandle, spawn_worker};
pub use queue::{Job, Queue};
