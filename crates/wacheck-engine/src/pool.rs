//! The account pool: every account in the database, each with its backend and its budget.
//!
//! Before a query, a caller asks the pool for a grant: a healthy account (connected, or done
//! cooling down; not paused; in the shared pool or the caller's own; usable from this
//! process) whose budget has room for the numbers now. Budgets hold across every process of
//! the deployment: a GCRA on Redis keeps each account's rate (checks per minute and burst)
//! and its daily cap, governor keeps it within the process. Work spreads over accounts in
//! turn. State changes (a rate limit, a logout) go to Postgres at once, so every process
//! stops using the account at its next refresh; this process stops at once.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::{info, warn};
use wacheck_backends::simulated::{SimConfig, SimulatedBackend};
use wacheck_backends::{AccountDown, BackendError, CheckBackend, GatewaySettings};
use wacheck_core::day::next_utc_midnight;
use wacheck_core::{AccountKind, AccountState};
use wacheck_store::accounts::{self, AccountRecord, Limits};

use crate::rate::{Gcra, Rates, Verdict};

/// Checks per second and burst of the built-in simulated account; `per_second = 0` means
/// unlimited.
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

/// How the pool treats accounts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// How often each process reloads the accounts from the database, in milliseconds.
    pub refresh_ms: u64,
    /// Cool-down after a rate limit without a server backoff, doubled per strike, in ms.
    pub cooldown_base_ms: u64,
    /// Longest cool-down, in ms.
    pub cooldown_max_ms: u64,
    /// How often workers ask gateways whether sessions that stopped work again, in seconds.
    pub probe_secs: u64,
    /// A chunk that waits this long without an account that can take it (all down, capped,
    /// or only usable by another process, as a native session is) is given back, so that
    /// its worker slot serves other work; in seconds.
    pub handoff_secs: u64,
    /// How long a chunk given back rests before it is queued again, in seconds.
    pub park_secs: u64,
    /// Where native accounts keep their WhatsApp sessions (one SQLite file each).
    pub native_dir: std::path::PathBuf,
    /// How long a worker holds a native session without renewing, in seconds.
    pub native_lease_secs: u64,
    /// Use the built-in simulated account while no other account is configured.
    pub builtin_simulated: bool,
    /// Users without the `admin` scope may add accounts of their own. Off by default: an
    /// account's gateway URL is fetched by the service, so adding one is the operator's call.
    pub user_accounts: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            refresh_ms: 2_000,
            cooldown_base_ms: 60_000,
            cooldown_max_ms: 3_600_000,
            probe_secs: 30,
            handoff_secs: 15,
            park_secs: 30,
            native_dir: "./data/native".into(),
            native_lease_secs: 30,
            builtin_simulated: true,
            user_accounts: false,
        }
    }
}

/// Calls in a row without any answer after which an account cools down.
const FAILURES_BEFORE_COOLING: u32 = 3;

/// Name of the built-in simulated account.
pub const BUILTIN: &str = "simulated";

/// The built-in account as stored: the configuration's simulation and rate.
pub fn builtin_account(sim: &SimConfig, rate: RateConfig) -> accounts::NewAccount {
    accounts::NewAccount {
        id: BUILTIN.into(),
        kind: AccountKind::Simulated,
        owner: None,
        settings: serde_json::to_value(sim).expect("simulation settings serialise"),
        limits: Limits {
            per_minute: rate.per_second.saturating_mul(60),
            burst: rate.burst.max(1),
            daily_cap: 0,
            jitter_ms: 0,
        },
        state: AccountState::Connected,
        builtin: true,
    }
}

/// What booking budget said.
enum Booking {
    /// This many numbers may go now.
    Booked(usize),
    Wait(Duration),
    Capped,
}

/// An account as this process uses it.
pub struct Account {
    record: RwLock<AccountRecord>,
    pub backend: Arc<dyn CheckBackend>,
    /// The concrete simulation, for tests and benchmarks that count its calls.
    pub simulated: Option<Arc<SimulatedBackend>>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// The cluster-wide rate; `None` when the account has no per-minute limit.
    rate: Option<Gcra>,
    /// The daily cap was reached: no work until the next UTC day.
    capped_until: Mutex<Option<DateTime<Utc>>>,
    /// Today's count in Redis was raised to what Postgres knows since this was built (a cap
    /// may have been set after checks Redis did not count).
    seeded: std::sync::atomic::AtomicBool,
    /// Calls in a row that got no answer at all (timeouts, refused connections).
    failures_in_a_row: std::sync::atomic::AtomicU32,
}

impl Account {
    pub fn id(&self) -> String {
        self.record().id
    }

    pub fn record(&self) -> AccountRecord {
        self.record.read().expect("account record").clone()
    }

    fn update(&self, f: impl FnOnce(&mut AccountRecord)) {
        f(&mut self.record.write().expect("account record"));
    }

    pub fn kind(&self) -> AccountKind {
        self.record.read().expect("account record").kind
    }

    pub fn is_simulated(&self) -> bool {
        self.backend.is_simulated()
    }

    fn limits(&self) -> Limits {
        self.record.read().expect("account record").limits
    }

    /// Numbers per check call: the backend's batch, never more than the burst.
    pub fn batch_size(&self, details: bool) -> usize {
        let batch = if details {
            self.backend.details_batch()
        } else {
            self.backend.max_batch()
        }
        .max(1);
        let limits = self.limits();
        if limits.per_minute > 0 {
            batch.min(limits.burst.max(1) as usize)
        } else {
            batch
        }
    }

    fn usable_by(&self, user: Option<&str>) -> bool {
        let r = self.record.read().expect("account record");
        match (&r.owner, user) {
            (None, _) => true,
            (Some(owner), Some(user)) => owner == user,
            (Some(_), None) => false,
        }
    }

    fn capped_at(&self, now: DateTime<Utc>) -> bool {
        let mut c = self.capped_until.lock().expect("cap");
        match *c {
            Some(until) if until > now => true,
            Some(_) => {
                *c = None;
                false
            }
            None => false,
        }
    }

    /// Random pause of up to the account's jitter before a query.
    pub async fn jitter(&self) {
        let max = self.limits().jitter_ms;
        if max > 0 {
            let ms = rand::rng().random_range(0..=max);
            tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        }
    }
}

/// Why no grant came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoGrant {
    /// Healthy accounts exist but their budget is spent for now: ask again after `wait`.
    Busy { wait: Duration },
    /// No account can take work: `reason` says why, for the task's status. `elsewhere`: an
    /// account is healthy but only another process can use it (a native session).
    NoAccount { reason: String, elsewhere: bool },
}

/// Room for `n` numbers on one account, booked.
pub struct Grant {
    pub account: Arc<Account>,
    pub n: usize,
}

/// Accounts and the budget they have, shared by every job of the process.
pub struct Pool {
    db: PgPool,
    prefix: String,
    pub settings: PoolSettings,
    accounts: RwLock<Vec<Arc<Account>>>,
    next: AtomicUsize,
    rates: Rates,
    /// Native sessions run by this process, by account.
    natives: RwLock<HashMap<String, Arc<dyn CheckBackend>>>,
}

impl Pool {
    pub fn new(db: PgPool, redis: ConnectionManager, prefix: &str, settings: PoolSettings) -> Self {
        Pool {
            db,
            prefix: prefix.to_owned(),
            settings,
            accounts: RwLock::default(),
            next: AtomicUsize::new(0),
            rates: Rates::new(redis),
            natives: RwLock::default(),
        }
    }

    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Every account as last loaded.
    pub fn all(&self) -> Vec<Arc<Account>> {
        self.accounts.read().expect("pool").clone()
    }

    /// The account named `id`, as last loaded.
    pub fn get(&self, id: &str) -> Option<Arc<Account>> {
        self.all().into_iter().find(|a| a.record().id == id)
    }

    /// Whether a simulated account may answer `user`'s work.
    pub fn simulated_in_use(&self, user: Option<&str>) -> bool {
        self.all()
            .iter()
            .any(|a| a.is_simulated() && a.usable_by(user) && !a.record().paused)
    }

    /// The most checks a day the healthy accounts `user`'s work may use can make, by their
    /// budgets (per minute, and daily cap); `None` when one of them has no limit at all.
    pub fn checks_per_day(&self, user: Option<&str>) -> Option<u64> {
        let now = Utc::now();
        let mut total = 0u64;
        for a in self.all() {
            let r = a.record();
            if !a.usable_by(user) || !r.healthy_at(now) {
                continue;
            }
            total += r.limits.checks_per_day()?;
        }
        Some(total)
    }

    /// Registers the backend of a native session this process runs (or removes it).
    pub fn set_native(&self, id: &str, backend: Option<Arc<dyn CheckBackend>>) {
        let mut natives = self.natives.write().expect("natives");
        match backend {
            Some(b) => natives.insert(id.to_owned(), b),
            None => natives.remove(id),
        };
    }

    /// Reloads the accounts from the database. An account whose kind, settings or limits
    /// did not change keeps its backend and in-process limiter.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let records = accounts::list(&self.db).await?;
        let builtin_only = records.iter().all(|r| r.builtin || r.owner.is_some());
        let old: HashMap<String, Arc<Account>> =
            self.all().into_iter().map(|a| (a.record().id, a)).collect();
        let mut fresh = Vec::with_capacity(records.len());
        for r in records {
            if r.builtin && (!builtin_only || !self.settings.builtin_simulated) {
                continue;
            }
            match old.get(&r.id) {
                Some(a)
                    if a.record().updated_at == r.updated_at && !native_changed(self, a, &r) =>
                {
                    a.update(|cur| *cur = r);
                    fresh.push(a.clone());
                }
                _ => match self.build(r.clone()) {
                    Ok(a) => fresh.push(Arc::new(a)),
                    Err(e) => {
                        warn!(account = %r.id, "account cannot be used: {e}");
                        let why = format!("its settings are not usable: {e}");
                        if r.state != AccountState::Failed {
                            accounts::set_state(
                                &self.db,
                                &r.id,
                                AccountState::Failed,
                                Some(&why),
                                None,
                            )
                            .await?;
                        }
                    }
                },
            }
        }
        *self.accounts.write().expect("pool") = fresh;
        Ok(())
    }

    fn build(&self, record: AccountRecord) -> Result<Account, String> {
        let mut simulated = None;
        let backend: Arc<dyn CheckBackend> = match record.kind {
            AccountKind::Simulated => {
                let config: SimConfig = serde_json::from_value(record.settings.clone())
                    .map_err(|e| format!("simulation settings: {e}"))?;
                let sim = Arc::new(SimulatedBackend::new(config));
                simulated = Some(sim.clone());
                sim
            }
            AccountKind::Waha | AccountKind::Evolution => {
                gateway_backend(record.kind, &record.settings)?
            }
            AccountKind::Native => match self.natives.read().expect("natives").get(&record.id) {
                Some(b) => b.clone(),
                None => Arc::new(Elsewhere),
            },
        };
        let limits = record.limits;
        let burst = limits.burst.max(1);
        let limiter = match limits.per_minute {
            0 => None,
            per_minute => {
                let period = Duration::from_secs(60) / per_minute;
                let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
                    .expect("a positive period")
                    .allow_burst(NonZeroU32::new(burst).expect("burst >= 1"));
                Some(RateLimiter::direct(quota))
            }
        };
        Ok(Account {
            record: RwLock::new(record),
            backend,
            simulated,
            limiter,
            rate: Gcra::per_minute(limits.per_minute, burst),
            capped_until: Mutex::new(None),
            seeded: std::sync::atomic::AtomicBool::new(false),
            failures_in_a_row: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn rate_key(&self, id: &str) -> String {
        format!("{}:rate:{id}", self.prefix)
    }

    fn day_key(&self, id: &str, now: DateTime<Utc>) -> String {
        format!("{}:day:{id}:{}", self.prefix, now.format("%Y-%m-%d"))
    }

    /// Raises today's count of `account` in Redis to what Postgres knows.
    async fn seed(
        &self,
        account: &Account,
        day_key: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let used = accounts::checks_on(&self.db, &account.id(), now.date_naive()).await?;
        self.rates.seed(day_key, used.max(0) as u64).await?;
        account.seeded.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Books up to `n` checks on `account`, or says how long to wait.
    async fn book(&self, account: &Account, n: usize) -> anyhow::Result<Booking> {
        let limits = account.limits();
        let id = account.id();
        if limits.per_minute == 0 && limits.daily_cap == 0 {
            return Ok(Booking::Booked(n));
        }
        let now = Utc::now();
        let day_key = self.day_key(&id, now);
        if limits.daily_cap > 0 && !account.seeded.load(Ordering::Relaxed) {
            self.seed(account, &day_key, now).await?;
        }
        let cap = (limits.daily_cap > 0).then(|| (day_key.as_str(), u64::from(limits.daily_cap)));
        for _ in 0..2 {
            let verdict = self
                .rates
                .book(&self.rate_key(&id), account.rate, n as u64, cap)
                .await?;
            match verdict {
                Verdict::Booked { booked, .. } => {
                    let booked = usize::try_from(booked).unwrap_or(0).clamp(1, n.max(1));
                    if let Some(limiter) = &account.limiter {
                        let k = booked.clamp(1, limits.burst.max(1) as usize) as u32;
                        // k <= burst, so this cannot fail with InsufficientCapacity.
                        let _ = limiter
                            .until_n_ready(NonZeroU32::new(k).expect("k >= 1"))
                            .await;
                    }
                    return Ok(Booking::Booked(booked));
                }
                Verdict::Wait { wait, .. } => return Ok(Booking::Wait(wait)),
                Verdict::Capped => return Ok(Booking::Capped),
                Verdict::Unseeded => self.seed(account, &day_key, now).await?,
            }
        }
        Ok(Booking::Wait(Duration::from_millis(10)))
    }

    /// Room for up to `want` numbers (check calls, or detail calls) on a healthy account
    /// `user` may use (only the account `only`, when given). Accounts take turns; but while
    /// `prefer` is healthy, only it is asked (the details of a number come from the account
    /// that checked it).
    pub async fn try_acquire(
        &self,
        user: Option<&str>,
        want: usize,
        details: bool,
        prefer: Option<&str>,
        only: Option<&str>,
    ) -> Result<Grant, NoGrant> {
        let now = Utc::now();
        let eligible: Vec<Arc<Account>> = self
            .all()
            .into_iter()
            .filter(|a| a.usable_by(user) && only.is_none_or(|o| a.record().id == o))
            .collect();
        let mut healthy: Vec<&Arc<Account>> = eligible
            .iter()
            .filter(|a| a.record().healthy_at(now) && a.backend.ready() && !a.capped_at(now))
            .collect();
        if healthy.is_empty() {
            return Err(NoGrant::NoAccount {
                reason: describe(&eligible, now),
                elsewhere: eligible
                    .iter()
                    .any(|a| a.record().healthy_at(now) && !a.backend.ready()),
            });
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let len = healthy.len();
        healthy.rotate_left(start % len);
        if let Some(p) = prefer
            && let Some(i) = healthy.iter().position(|a| a.record().id == p)
        {
            healthy = vec![healthy.remove(i)];
        }
        let mut wait: Option<Duration> = None;
        let mut capped = 0;
        for a in healthy {
            let n = want.min(a.batch_size(details)).max(1);
            match self.book(a, n).await {
                Ok(Booking::Booked(n)) => {
                    return Ok(Grant {
                        account: a.clone(),
                        n,
                    });
                }
                Ok(Booking::Wait(d)) => wait = Some(wait.map_or(d, |w| w.min(d))),
                Ok(Booking::Capped) => {
                    capped += 1;
                    *a.capped_until.lock().expect("cap") = Some(next_utc_midnight(now));
                    info!(account = %a.id(), "daily cap reached; no more checks until 00:00 UTC");
                }
                Err(e) => {
                    // While Redis cannot be asked, nothing is spent: the account's budget
                    // matters more than the task's speed.
                    warn!(account = %a.id(), "budget unknown (Redis unreachable?), waiting: {e:#}");
                    wait = Some(
                        wait.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1))),
                    );
                }
            }
        }
        match wait {
            Some(wait) => Err(NoGrant::Busy { wait }),
            None if capped > 0 => Err(NoGrant::NoAccount {
                reason: describe(&eligible, now),
                elsewhere: false,
            }),
            None => Err(NoGrant::Busy {
                wait: Duration::from_millis(10),
            }),
        }
    }

    /// What an account's failed call means for it: a rate limit cools it down, an account
    /// error takes it out of rotation. Other errors leave it as it is.
    pub async fn report_failure(
        &self,
        account: &Account,
        err: &BackendError,
    ) -> anyhow::Result<()> {
        let id = account.id();
        match err {
            BackendError::RateLimited { backoff } => {
                let reason = match backoff {
                    Some(d) => format!("rate limited by the server (back off {} s)", d.as_secs()),
                    None => "rate limited by the server".to_owned(),
                };
                self.cool_down(account, *backoff, &reason).await?;
            }
            BackendError::Account { down, reason } => {
                let until = match down {
                    AccountDown::Banned { for_secs } => {
                        for_secs.map(|s| Utc::now() + chrono::Duration::seconds(s as i64))
                    }
                    _ => None,
                };
                let state = state_of(*down);
                warn!(account = %id, %state, "account taken out of rotation: {reason}");
                accounts::set_state(&self.db, &id, state, Some(reason), until).await?;
                account.update(|r| {
                    r.state = state;
                    r.state_reason = Some(reason.clone());
                    r.cool_until = until;
                    r.state_changed_at = Utc::now();
                });
            }
            BackendError::Transient(e) => {
                // A gateway that stopped answering altogether cools down like a throttled
                // account instead of turning numbers `unknown` one batch after the other.
                let streak = account.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if streak >= FAILURES_BEFORE_COOLING {
                    account.failures_in_a_row.store(0, Ordering::Relaxed);
                    let reason = format!("{streak} calls in a row got no answer: {e}");
                    self.cool_down(account, None, &reason).await?;
                }
            }
            BackendError::Permanent(_) => {}
        }
        Ok(())
    }

    /// Cools an account down (in Postgres for every process, and here at once).
    async fn cool_down(
        &self,
        account: &Account,
        backoff: Option<Duration>,
        reason: &str,
    ) -> anyhow::Result<()> {
        let id = account.id();
        let until = accounts::rate_limited(
            &self.db,
            &id,
            backoff,
            Duration::from_millis(self.settings.cooldown_base_ms),
            Duration::from_millis(self.settings.cooldown_max_ms),
            reason,
        )
        .await?;
        if let Some(until) = until {
            warn!(account = %id, %until, "{reason}: cooling down");
            account.update(|r| {
                r.state = AccountState::CoolingDown;
                r.cool_until = Some(until);
                r.state_changed_at = Utc::now();
            });
        }
        Ok(())
    }

    /// A good answer: an account whose cool-down is over works again.
    pub async fn report_success(&self, account: &Account) -> anyhow::Result<()> {
        account.failures_in_a_row.store(0, Ordering::Relaxed);
        let r = account.record();
        if (r.state == AccountState::CoolingDown || r.strikes > 0)
            && accounts::recovered(&self.db, &r.id).await?
        {
            info!(account = %r.id, "answering again after its cool-down");
            account.update(|r| {
                r.state = AccountState::Connected;
                r.cool_until = None;
                r.strikes = 0;
                r.state_changed_at = Utc::now();
            });
        }
        Ok(())
    }

    /// Asks gateways whether sessions that stopped work again, and puts those that do back
    /// into rotation. Accounts the operator paused, and bans not yet over, are left alone.
    pub async fn probe(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        for a in self.all() {
            let r = a.record();
            let waiting = match r.state {
                AccountState::Pairing
                | AccountState::Unreachable
                | AccountState::LoggedOut
                | AccountState::Failed => true,
                AccountState::Banned => r.cool_until.is_some_and(|t| t <= now),
                _ => false,
            };
            if r.paused || !waiting || r.kind == AccountKind::Native {
                continue;
            }
            match a.backend.probe().await {
                Ok(()) => {
                    info!(account = %r.id, "the session works again: back in rotation");
                    accounts::set_state(
                        &self.db,
                        &r.id,
                        AccountState::Connected,
                        Some("the session works again"),
                        None,
                    )
                    .await?;
                    a.update(|r| r.state = AccountState::Connected);
                }
                Err(e @ BackendError::Account { .. }) if r.state != AccountState::Banned => {
                    // Still down; keep the latest reason.
                    if let BackendError::Account { down, reason } = &e {
                        accounts::set_state(&self.db, &r.id, state_of(*down), Some(reason), None)
                            .await?;
                    }
                }
                // No answer at all: the gateway itself is down or cannot be reached.
                Err(e)
                    if e.is_no_answer()
                        && (r.state == AccountState::Pairing
                            || r.state == AccountState::Unreachable) =>
                {
                    let reason = unreachable(&e.to_string());
                    if r.state_reason.as_deref() != Some(reason.as_str()) {
                        accounts::set_state(
                            &self.db,
                            &r.id,
                            AccountState::Unreachable,
                            Some(&reason),
                            None,
                        )
                        .await?;
                        a.update(|r| {
                            r.state = AccountState::Unreachable;
                            r.state_reason = Some(reason);
                        });
                    }
                }
                Err(e) => tracing::debug!(account = %r.id, "probe: {e}"),
            }
        }
        Ok(())
    }

    /// Numbers the simulated accounts of this process were asked about (tests, benchmarks).
    pub fn simulated_numbers_checked(&self) -> u64 {
        self.all()
            .iter()
            .filter_map(|a| a.simulated.as_ref())
            .map(|s| s.numbers_checked())
            .sum()
    }
}

/// A native account is rebuilt when this process starts or stops running its session.
fn native_changed(pool: &Pool, a: &Account, r: &AccountRecord) -> bool {
    r.kind == AccountKind::Native
        && pool.natives.read().expect("natives").contains_key(&r.id)
            == (a.backend.kind() == "elsewhere")
}

/// Why no account can take work, in words.
fn describe(eligible: &[Arc<Account>], now: DateTime<Utc>) -> String {
    if eligible.is_empty() {
        return "no WhatsApp account is configured for this work (add one: see docs/backends.md)"
            .into();
    }
    let parts: Vec<String> = eligible
        .iter()
        .map(|a| {
            let r = a.record();
            let what = if r.paused {
                "paused".to_owned()
            } else if a.capped_at(now) {
                format!("daily cap of {} reached", r.limits.daily_cap)
            } else if r.healthy_at(now) && !a.backend.ready() {
                "its session runs in another worker process".to_owned()
            } else {
                match (r.state, r.cool_until) {
                    (AccountState::CoolingDown | AccountState::Banned, Some(t)) => {
                        format!("{} until {}", r.state, t.format("%H:%M:%S UTC"))
                    }
                    (state, _) => state.to_string(),
                }
            };
            format!("{} {what}", r.id)
        })
        .collect();
    format!("no healthy WhatsApp account: {}", parts.join(", "))
}

/// The backend of a native account whose session runs in another process (or nowhere yet).
struct Elsewhere;

#[async_trait::async_trait]
impl CheckBackend for Elsewhere {
    fn kind(&self) -> &'static str {
        "elsewhere"
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn ready(&self) -> bool {
        false
    }

    async fn check(
        &self,
        _: &[wacheck_core::E164],
    ) -> Result<Vec<wacheck_backends::CheckResult>, BackendError> {
        Err(BackendError::Transient(
            "this account's session runs in another process".into(),
        ))
    }

    async fn details(
        &self,
        _: &[wacheck_backends::Contact],
    ) -> Result<Vec<wacheck_backends::Details>, BackendError> {
        Err(BackendError::Transient(
            "this account's session runs in another process".into(),
        ))
    }
}

/// Reloads the pool every `refresh_ms` until dropped (aborted).
pub fn spawn_refresher(pool: Arc<Pool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_millis(pool.settings.refresh_ms.max(10));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = pool.refresh().await {
                warn!("reloading the accounts: {e:#}");
            }
        }
    })
}

/// The backend an account of `kind` with `settings` would use (not for native accounts, whose
/// backend is their running session). Also checks the settings.
pub fn gateway_backend(
    kind: AccountKind,
    settings: &serde_json::Value,
) -> Result<Arc<dyn CheckBackend>, String> {
    match kind {
        AccountKind::Simulated => {
            let config: SimConfig = serde_json::from_value(settings.clone())
                .map_err(|e| format!("simulation settings: {e}"))?;
            Ok(Arc::new(SimulatedBackend::new(config)))
        }
        AccountKind::Waha | AccountKind::Evolution => {
            let g: GatewaySettings = serde_json::from_value(settings.clone())
                .map_err(|e| format!("gateway settings: {e}"))?;
            Ok(if kind == AccountKind::Waha {
                Arc::new(wacheck_backends::waha::WahaBackend::new(g)?)
            } else {
                Arc::new(wacheck_backends::evolution::EvolutionBackend::new(g)?)
            })
        }
        AccountKind::Native => Err("a native account's backend is its session".into()),
    }
}

/// Why an account was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("{0}")]
    Invalid(String),
    #[error("an account named `{0}` exists already")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] wacheck_store::StoreError),
}

/// Adds an account to the pool after checking its settings. A gateway account is asked at
/// once whether its session works: it starts `connected` if so, otherwise in the state the
/// gateway's answer means (a worker asks again every `probe_secs`). A native account starts
/// `pairing`; a simulated one `connected`. The built-in simulated account leaves the pool.
pub async fn add_account(
    db: &PgPool,
    mut new: accounts::NewAccount,
) -> Result<AccountRecord, AddError> {
    if !wacheck_core::account::valid_account_id(&new.id) {
        return Err(AddError::Invalid(format!(
            "account names are 1-64 characters of letters, digits, `-`, `_` and `.`, not `{}`",
            new.id
        )));
    }
    if new.limits.burst == 0 {
        return Err(AddError::Invalid("burst must be at least 1".into()));
    }
    let (state, reason) = match new.kind {
        AccountKind::Native => {
            let s: wacheck_backends::native::NativeSettings =
                serde_json::from_value(new.settings.clone())
                    .map_err(|e| AddError::Invalid(format!("native settings: {e}")))?;
            new.settings = serde_json::to_value(&s).expect("native settings serialise");
            (
                AccountState::Pairing,
                "waiting for a worker to start its session and show a QR code".to_owned(),
            )
        }
        kind => {
            let backend = gateway_backend(kind, &new.settings).map_err(AddError::Invalid)?;
            if kind != AccountKind::Simulated {
                let g: GatewaySettings =
                    serde_json::from_value(new.settings.clone()).expect("checked above");
                new.settings = serde_json::to_value(&g).expect("gateway settings serialise");
            }
            match tokio::time::timeout(Duration::from_secs(10), backend.probe()).await {
                Ok(Ok(())) => (AccountState::Connected, "the session works".to_owned()),
                Ok(Err(BackendError::Account { down, reason })) => (state_of(down), reason),
                Ok(Err(e)) if e.is_no_answer() => {
                    (AccountState::Unreachable, unreachable(&e.to_string()))
                }
                Ok(Err(e)) => (
                    AccountState::Pairing,
                    format!("the gateway did not answer yet ({e}); asking again shortly"),
                ),
                Err(_) => (
                    AccountState::Unreachable,
                    unreachable("no answer within 10 s"),
                ),
            }
        }
    };
    new.state = state;
    new.builtin = false;
    let Some(record) = accounts::create(db, &new).await? else {
        return Err(AddError::Exists(new.id));
    };
    accounts::set_state(db, &record.id, state, Some(&reason), None).await?;
    accounts::drop_builtin(db).await?;
    Ok(accounts::get(db, &record.id).await?.unwrap_or(record))
}

/// Why a gateway is `unreachable`, in words.
fn unreachable(error: &str) -> String {
    format!(
        "the gateway cannot be reached ({error}): is it running, and is its URL right? \
         Workers ask again every accounts.probe_secs"
    )
}

/// The state an account moves to when its backend says it is down.
pub fn state_of(down: AccountDown) -> AccountState {
    match down {
        AccountDown::Pairing => AccountState::Pairing,
        AccountDown::LoggedOut => AccountState::LoggedOut,
        AccountDown::Banned { .. } => AccountState::Banned,
        AccountDown::Failed => AccountState::Failed,
    }
}
