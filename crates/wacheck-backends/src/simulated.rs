//! The simulated backend: a fixed, documented rule instead of WhatsApp.
//!
//! h = FNV-1a 64 over the E.164 string (with `+`). On WhatsApp iff `h % 100 < registered_percent`.
//! About text = SIGNATURES[(h >> 32) % 5], its date = 2020-01-01 + (h >> 40) % 1800 days,
//! business = (h >> 20) % 10 == 0. The about text is hidden by privacy iff
//! (h >> 48) % 100 < hidden_percent (default 0); a profile picture is visible iff
//! (h >> 56) % 10 < 8.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use rand::Rng;
use serde::{Deserialize, Serialize};
use wacheck_core::E164;

use crate::{BackendError, CheckBackend, CheckResult, Contact, Details, Presence};

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
    pub has_picture: bool,
    /// With the default `hidden_percent` of 0, never.
    pub about_hidden: bool,
}

pub fn rule(number: &str, registered_percent: u8) -> Simulated {
    rule_with_privacy(number, registered_percent, 0)
}

/// The rule with a share of about texts hidden by privacy settings.
pub fn rule_with_privacy(number: &str, registered_percent: u8, hidden_percent: u8) -> Simulated {
    let h = fnv1a64(number.as_bytes());
    let base = NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date");
    Simulated {
        registered: h % 100 < u64::from(registered_percent),
        signature: SIGNATURES[((h >> 32) % 5) as usize],
        status_update: base + chrono::Days::new((h >> 40) % 1800),
        business: (h >> 20).is_multiple_of(10),
        has_picture: (h >> 56) % 10 < 8,
        about_hidden: (h >> 48) % 100 < u64::from(hidden_percent),
    }
}

/// A misbehaviour of the simulated server, for fault tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers "rate limited" with a backoff of 100 ms.
    RateLimited,
    /// Never answers (the caller's timeout has to end the call).
    Timeout,
    /// Fails with a transient server error.
    Error,
    /// Answers with a body that does not match the request (one result too few).
    Malformed,
    /// The account is logged out.
    Account,
}

/// Faults for the first calls, in order: `"rate_limited:3,timeout:1,malformed:2"` makes calls
/// 1-3 rate limited, call 4 hang, calls 5-6 malformed, and every later call normal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan(pub Vec<(Fault, u64)>);

impl std::str::FromStr for FaultPlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut plan = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, count) = part.split_once(':').unwrap_or((part, "1"));
            let fault = match name.trim() {
                "rate_limited" => Fault::RateLimited,
                "timeout" => Fault::Timeout,
                "error" => Fault::Error,
                "malformed" => Fault::Malformed,
                "account" => Fault::Account,
                other => return Err(format!("unknown fault `{other}`")),
            };
            let count = count
                .trim()
                .parse()
                .map_err(|_| format!("bad count in fault `{part}`"))?;
            plan.push((fault, count));
        }
        Ok(FaultPlan(plan))
    }
}

impl<'de> Deserialize<'de> for FaultPlan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for FaultPlan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(f, n)| {
                let name = match f {
                    Fault::RateLimited => "rate_limited",
                    Fault::Timeout => "timeout",
                    Fault::Error => "error",
                    Fault::Malformed => "malformed",
                    Fault::Account => "account",
                };
                format!("{name}:{n}")
            })
            .collect();
        s.serialize_str(&parts.join(","))
    }
}

impl FaultPlan {
    /// The fault of call number `call` (0-based), if any.
    pub fn at(&self, call: u64) -> Option<Fault> {
        let mut end = 0;
        for &(fault, n) in &self.0 {
            end += n;
            if call < end {
                return Some(fault);
            }
        }
        None
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Share of numbers on WhatsApp, in percent.
    pub registered_percent: u8,
    /// Share of about texts hidden by privacy settings, in percent.
    pub hidden_percent: u8,
    /// Delay of every call, in milliseconds.
    pub latency_ms: u64,
    /// Share of calls that fail with a transient error, in percent.
    pub fail_percent: u8,
    /// Numbers per check call.
    pub batch: usize,
    /// Faults of the first calls (fault tests), e.g. `"rate_limited:3,timeout:1"`.
    pub faults: FaultPlan,
    /// A file to which every answered check call appends its numbers, one per line (fault
    /// tests count the budget spent across processes with it).
    pub ledger: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            registered_percent: 70,
            hidden_percent: 0,
            latency_ms: 0,
            fail_percent: 0,
            batch: 100,
            faults: FaultPlan::default(),
            ledger: None,
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
    calls: AtomicU64,
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

    /// One call's latency and faults; `Ok(true)` asks for a malformed answer.
    async fn call(&self) -> Result<bool, BackendError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
        match self.config.faults.at(n) {
            Some(Fault::RateLimited) => {
                return Err(BackendError::RateLimited {
                    backoff: Some(Duration::from_millis(100)),
                });
            }
            Some(Fault::Timeout) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Some(Fault::Error) => {
                return Err(BackendError::Transient(
                    "simulated server error (HTTP 500)".into(),
                ));
            }
            Some(Fault::Account) => {
                return Err(BackendError::Account {
                    down: crate::AccountDown::LoggedOut,
                    reason: "simulated: logged out".into(),
                });
            }
            Some(Fault::Malformed) => return Ok(true),
            None => {}
        }
        let fail = self.config.fail_percent > 0
            && rand::rng().random_range(0..100u8) < self.config.fail_percent;
        if fail {
            return Err(BackendError::Transient(
                "simulated transient failure".into(),
            ));
        }
        Ok(false)
    }

    fn write_ledger(&self, numbers: &[E164]) {
        let Some(path) = &self.config.ledger else {
            return;
        };
        let mut buf = String::with_capacity(numbers.len() * 16);
        for n in numbers {
            buf.push_str(n.as_str());
            buf.push('\n');
        }
        // One append per call: O_APPEND keeps lines of concurrent processes whole.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(buf.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("writing the simulation ledger {}: {e}", path.display());
        }
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
        let malformed = self.call().await?;
        let answered = if malformed {
            &numbers[..numbers.len().saturating_sub(1)]
        } else {
            self.write_ledger(numbers);
            numbers
        };
        Ok(answered
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

    async fn details(&self, contacts: &[Contact]) -> Result<Vec<Details>, BackendError> {
        self.detail_lookups
            .fetch_add(contacts.len() as u64, Ordering::Relaxed);
        let malformed = self.call().await?;
        let answered = if malformed {
            &contacts[..contacts.len().saturating_sub(1)]
        } else {
            contacts
        };
        Ok(answered
            .iter()
            .map(|Contact { number: n, .. }| {
                let c = &self.config;
                let r = rule_with_privacy(n.as_str(), c.registered_percent, c.hidden_percent);
                Details {
                    number: Some(n.clone()),
                    about: (!r.about_hidden).then(|| r.signature.to_owned()),
                    about_set_at: (!r.about_hidden).then_some(r.status_update),
                    about_hidden: r.about_hidden,
                    business: Some(r.business),
                    has_picture: Some(r.has_picture),
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
        assert_eq!(r.has_picture, (h >> 56) % 10 < 8);
        assert!(!r.about_hidden);
        let hidden = (0..1_000)
            .filter(|i| rule_with_privacy(&format!("+4179{:07}", i), 70, 20).about_hidden)
            .count();
        assert!((150..320).contains(&hidden), "{hidden}");
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

    #[tokio::test]
    async fn fault_plan_misbehaves_then_recovers() {
        let plan: FaultPlan = "rate_limited:2, malformed, account:1".parse().unwrap();
        assert_eq!(plan.at(0), Some(Fault::RateLimited));
        assert_eq!(plan.at(2), Some(Fault::Malformed));
        assert_eq!(plan.at(3), Some(Fault::Account));
        assert_eq!(plan.at(4), None);
        assert!("nonsense:1".parse::<FaultPlan>().is_err());
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("ledger");
        let b = SimulatedBackend::new(SimConfig {
            faults: plan,
            ledger: Some(ledger.clone()),
            ..Default::default()
        });
        let n = [
            E164::from_canonical("+41798284651").unwrap(),
            E164::from_canonical("+41798284652").unwrap(),
        ];
        for _ in 0..2 {
            assert!(matches!(
                b.check(&n).await,
                Err(BackendError::RateLimited { backoff: Some(_) })
            ));
        }
        assert_eq!(b.check(&n).await.unwrap().len(), 1, "malformed: one short");
        assert!(matches!(
            b.check(&n).await,
            Err(BackendError::Account { .. })
        ));
        assert_eq!(b.check(&n).await.unwrap().len(), 2);
        // Only the answered call is in the ledger.
        let lines = std::fs::read_to_string(&ledger).unwrap();
        assert_eq!(lines, "+41798284651\n+41798284652\n");
    }
}
