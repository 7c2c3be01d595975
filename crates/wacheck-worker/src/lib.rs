//! The job runtime: the queue (apalis on Redis), the job handlers that check a task's chunks
//! through the engine and export its result file, and the background loops that keep Redis in
//! step with Postgres.

pub mod export;
pub mod pipeline;
pub mod queue;
pub mod runtime;

pub use pipeline::{Pipeline, PipelineSettings};
pub use queue::{Job, Queue};
pub use runtime::{WorkerHandle, spawn_worker};
