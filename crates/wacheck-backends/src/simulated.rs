//! The simulated backend: a fixed, documented rule instead of WhatsApp.
//!
//! h = FNV-1a 64 over the E.164 string (with `+`). On WhatsApp iff `h % 100 < registered_percent`.
//! About text = SIGNATURES[(h >> 32) % 5], its date = 2020-01-01 + (h >> 40) % 1800 days,
//! business = (h >> 20) % 10 == 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use rand::Rng;
use serde::Deserialize;
use wacheck_core::E164;

use crate::{BackendError, CheckBackend, CheckResult, Details, Presence};

pub const SIGNATURES: [&str; 5] = [
    "Hey there! I am using WhatsApp.",
    "Available",
    "Busy",
    "At work",
    "Urgent calls only",
];

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The rule's answer for one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    pub registered: bool,
    pub signature: &'static str,
    pub status_update: NaiveDate,
    pub business: bool,
}

pub fn rule(number: &str, registered_percent: u8) -> Simulated {
    let h = fnv1a64(number.as_bytes());
    let base = NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date");
    Simulated {
        registered: h % 100 < u64::from(registered_percent),
        signature: SIGNATURES[((h >> 32) % 5) as usize],
        status_update: base + chrono::Days::new((h >> 40) % 1800),
        business: (h >> 20).is_multiple_of(10),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Share of numbers on WhatsApp, in percent.
    pub registered_percent: u8,
    /// Delay of every call, in milliseconds.
    pub latency_ms: u64,
    /// Share of calls that fail with a transient error, in percent.
    pub fail_percent: u8,
    /// Numbers per check call.
    pub batch: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            registered_percent: 70,
            latency_ms: 0,
            fail_percent: 0,
            batch: 100,
        }
    }
}

/// The simulated backend. Counts every number it is asked about (tests compare budgets).
#[derive(Debug, Default)]
pub struct SimulatedBackend {
    config: SimConfig,
    checked: AtomicU64,
    check_calls: AtomicU64,
    detail_lookups: AtomicU64,
}

impl SimulatedBackend {
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            ..Default::default()
        }
    }

    /// Numbers asked about in `check` calls so far (including calls that failed).
    pub fn numbers_checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    pub fn check_calls(&self) -> u64 {
        self.check_calls.load(Ordering::Relaxed)
    }

    pub fn detail_lookups(&self) -> u64 {
        self.detail_lookups.load(Ordering::Relaxed)
    }

    async fn call(&self) -> Result<(), BackendError> {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        let fail = self.config.fail_percent > 0
            && rand::rng().random_range(0..100u8) < self.config.fail_percent;
        if fail {
            return Err(BackendError::Transient(
                "simulated transient failure".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl CheckBackend for SimulatedBackend {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    fn is_simulated(&self) -> bool {
        true
    }

    fn max_batch(&self) -> usize {
        self.config.batch.max(1)
    }

    async fn check(&self, numbers: &[E164]) -> Result<Vec<CheckResult>, BackendError> {
        self.check_calls.fetch_add(1, Ordering::Relaxed);
        self.checked
            .fetch_add(numbers.len() as u64, Ordering::Relaxed);
        self.call().await?;
        Ok(numbers
            .iter()
            .map(|n| {
                let r = rule(n.as_str(), self.config.registered_percent);
                let presence = if r.registered {
                    Presence::Yes {
                        jid: format!("{}@s.whatsapp.net", n.digits()),
                        lid: None,
                        business: Some(r.business),
                    }
                } else {
                    Presence::No
                };
                CheckResult {
                    number: n.clone(),
                    presence,
                }
            })
            .collect())
    }

    async fn details(&self, numbers: &[E164]) -> Result<Vec<Details>, BackendError> {
        self.detail_lookups
            .fetch_add(numbers.len() as u64, Ordering::Relaxed);
        self.call().await?;
        Ok(numbers
            .iter()
            .map(|n| {
                let r = rule(n.as_str(), self.config.registered_percent);
                Details {
                    number: Some(n.clone()),
                    about: Some(r.signature.to_owned()),
                    about_set_at: Some(r.status_update),
                    business: Some(r.business),
                    has_picture: Some(true),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn rule_is_spread_as_configured() {
        let yes = (0..10_000)
            .filter(|i| rule(&format!("+4179{:07}", i), 70).registered)
            .count();
        assert!((6_500..7_500).contains(&yes), "{yes}");
        assert!(!rule("+41798284651", 0).registered);
        assert!(rule("+41798284651", 100).registered);
    }

    #[test]
    fn rule_fields_follow_the_formula() {
        let n = "+41798284651";
        let h = fnv1a64(n.as_bytes());
        let r = rule(n, 70);
        assert_eq!(r.signature, SIGNATURES[((h >> 32) % 5) as usize]);
        let days = (r.status_update - NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()).num_days();
        assert_eq!(days as u64, (h >> 40) % 1800);
        assert_eq!(r.business, (h >> 20).is_multiple_of(10));
    }

    #[tokio::test]
    async fn failing_calls_are_transient_errors_not_answers() {
        let b = SimulatedBackend::new(SimConfig {
            fail_percent: 100,
            ..Default::default()
        });
        let n = E164::from_canonical("+41798284651").unwrap();
        assert!(matches!(
            b.check(&[n]).await,
            Err(BackendError::Transient(_))
        ));
        assert_eq!(b.numbers_checked(), 1);
    }
}
