//! Accounts: a backend plus the budget it may spend. Checks wait for the account's rate
//! limiter before every call: a GCRA on Redis that holds across every process sharing the
//! account, and governor in the process.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use wacheck_backends::CheckBackend;

/// Checks per second and burst of one account; `per_second = 0` means unlimited.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            per_second: 0,
            burst: 100,
        }
    }
}

/// GCRA (generic cell rate algorithm) on the Redis server's clock. KEYS[1] holds the
/// account's theoretical arrival time in microseconds; ARGV: emission interval (µs), burst
/// tolerance (µs), cost. Returns 0 when the checks may go now (and books them), else the
/// microseconds to wait before asking again.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local wait = new_tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
";

/// An account's rate shared by every process of the deployment.
struct ClusterLimit {
    conn: ConnectionManager,
    script: redis::Script,
    key: String,
    interval_us: u64,
    tolerance_us: u64,
}

impl ClusterLimit {
    /// Waits until `n` checks fit. While Redis cannot be asked, nothing is spent: the
    /// account's budget matters more than the task's speed.
    async fn acquire(&self, n: u32) {
        let mut conn = self.conn.clone();
        loop {
            let r: redis::RedisResult<i64> = self
                .script
                .key(&self.key)
                .arg(self.interval_us)
                .arg(self.tolerance_us)
                .arg(n)
                .invoke_async(&mut conn)
                .await;
            match r {
                Ok(0) => return,
                Ok(wait) => tokio::time::sleep(Duration::from_micros(wait.max(1) as u64)).await,
                Err(e) => {
                    tracing::warn!(key = %self.key, "rate limiter unreachable, waiting: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

pub struct Account {
    pub name: String,
    pub backend: Arc<dyn CheckBackend>,
    limiter: Option<DefaultDirectRateLimiter>,
    cluster: Option<ClusterLimit>,
    rate: RateConfig,
    burst: u32,
}

impl Account {
    pub fn new(name: impl Into<String>, backend: Arc<dyn CheckBackend>, rate: RateConfig) -> Self {
        let burst = rate.burst.max(1);
        let limiter = NonZeroU32::new(rate.per_second).map(|per_second| {
            RateLimiter::direct(
                Quota::per_second(per_second)
                    .allow_burst(NonZeroU32::new(burst).expect("burst >= 1")),
            )
        });
        Self {
            name: name.into(),
            backend,
            limiter,
            cluster: None,
            rate,
            burst,
        }
    }

    /// Makes the account's rate hold across every process that uses the same Redis and
    /// `prefix` (key `{prefix}:rate:{name}`). No effect on an unlimited account.
    pub fn shared(mut self, conn: ConnectionManager, prefix: &str) -> Self {
        if self.rate.per_second > 0 {
            let interval_us = 1_000_000 / u64::from(self.rate.per_second);
            self.cluster = Some(ClusterLimit {
                conn,
                script: redis::Script::new(GCRA_LUA),
                key: format!("{prefix}:rate:{}", self.name),
                interval_us,
                tolerance_us: interval_us * u64::from(self.burst),
            });
        }
        self
    }

    /// Numbers per backend call: the backend's batch, never more than the burst.
    pub fn batch_size(&self) -> usize {
        let batch = self.backend.max_batch().max(1);
        if self.limiter.is_some() {
            batch.min(self.burst as usize)
        } else {
            batch
        }
    }

    /// Waits until `n` checks fit into this account's budget.
    pub async fn acquire(&self, n: usize) {
        let Some(limiter) = &self.limiter else { return };
        let n = NonZeroU32::new(n.clamp(1, self.burst as usize) as u32).expect("n >= 1");
        if let Some(cluster) = &self.cluster {
            cluster.acquire(n.get()).await;
        }
        // n <= burst, so this cannot fail with InsufficientCapacity.
        let _ = limiter.until_n_ready(n).await;
    }
}

/// The accounts a worker may use. Work is spread over them in turn.
pub struct Accounts {
    accounts: Vec<Account>,
    next: std::sync::atomic::AtomicUsize,
}

impl Accounts {
    pub fn new(accounts: Vec<Account>) -> Self {
        assert!(!accounts.is_empty(), "at least one account");
        Self {
            accounts,
            next: Default::default(),
        }
    }

    pub fn pick(&self) -> &Account {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.accounts[i % self.accounts.len()]
    }

    pub fn all(&self) -> &[Account] {
        &self.accounts
    }

    pub fn any_simulated(&self) -> bool {
        self.accounts.iter().any(|a| a.backend.is_simulated())
    }
}
