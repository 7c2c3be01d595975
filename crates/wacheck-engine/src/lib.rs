//! The checking engine: the account pool (registry, backends, state machine, probes), the
//! cluster-wide rate limits kept in Redis, the native session host, and the checker that asks
//! accounts about numbers with the answer cache. The API, the worker and the command line use
//! it; it knows nothing of HTTP or of the job queue.

pub mod check;
pub mod native;
pub mod pool;
pub mod rate;

pub use check::{CacheSettings, Effort};
pub use pool::{Pool, PoolSettings, RateConfig};
