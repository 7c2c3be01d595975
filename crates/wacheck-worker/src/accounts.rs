//! Accounts: a backend plus the budget it may spend. Checks wait for the account's rate
//! limiter before every call.

use std::num::NonZeroU32;
use std::sync::Arc;

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

pub struct Account {
    pub name: String,
    pub backend: Arc<dyn CheckBackend>,
    limiter: Option<DefaultDirectRateLimiter>,
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
            burst,
        }
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
