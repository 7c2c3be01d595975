//! WhatsApp check backends behind one trait. Today: the simulated backend.

pub mod simulated;

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use wacheck_core::E164;

/// What a backend says about one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// On WhatsApp. `jid` is the id the server answered with (it can differ from the number).
    Yes {
        jid: String,
        lid: Option<String>,
        business: Option<bool>,
    },
    No,
    /// The server gave no definite answer for this number.
    Unknown {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub number: E164,
    pub presence: Presence,
}

/// Profile details of a number that is on WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub number: Option<E164>,
    /// About text; `None` when hidden by privacy settings or never set.
    pub about: Option<String>,
    pub about_set_at: Option<NaiveDate>,
    pub business: Option<bool>,
    pub has_picture: Option<bool>,
}

/// Errors, classified by what the caller should do about them. None of them means "no".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Slow down; retry after the server's backoff when it gave one.
    #[error("rate limited by the server")]
    RateLimited { backoff: Option<Duration> },
    /// Retry later (timeouts, 5xx, dropped connections).
    #[error("transient backend error: {0}")]
    Transient(String),
    /// The account cannot work (logged out, banned, not paired).
    #[error("account unusable: {0}")]
    Account(String),
    /// The request itself is wrong; retrying will not help.
    #[error("request refused: {0}")]
    Permanent(String),
}

impl BackendError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendError::RateLimited { .. } | BackendError::Transient(_)
        )
    }
}

/// A WhatsApp account (or a gateway for one) that can check numbers.
#[async_trait]
pub trait CheckBackend: Send + Sync + 'static {
    /// Kind of backend, for logs and the health endpoint.
    fn kind(&self) -> &'static str;
    /// Whether results are made up (the simulation). Said loudly wherever results are shown.
    fn is_simulated(&self) -> bool {
        false
    }
    /// Most numbers one `check` call may carry.
    fn max_batch(&self) -> usize;
    /// Checks many numbers in one call; one result per number, in order.
    async fn check(&self, numbers: &[E164]) -> Result<Vec<CheckResult>, BackendError>;
    /// Profile details of numbers on WhatsApp; one result per number, in order.
    async fn details(&self, numbers: &[E164]) -> Result<Vec<Details>, BackendError>;
}
