//! Checking numbers through the account pool: the result cache first, then batches on
//! whichever healthy account has budget, retries, and what failures mean for accounts.
//!
//! The same code serves task chunks and single-number requests; a [`Sink`] decides where
//! answers, spent budget and waiting reasons go.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::warn;
use wacheck_backends::{BackendError, CheckResult, Contact, Details, Presence};
use wacheck_core::outcome::ABOUT_HIDDEN;
use wacheck_core::{E164, Outcome, WhatsApp};
use wacheck_store::accounts::Spent;
use wacheck_store::cache;

use crate::pool::{Account, Grant, NoGrant, Pool};

/// The result cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Reuse definite answers across tasks and users.
    pub enabled: bool,
    /// How long an answer is reused, in seconds (default 7 days).
    pub ttl_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            ttl_secs: 7 * 86_400,
        }
    }
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct Effort {
    /// Calls per number before it is `unknown` (rate limits and account failures aside).
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub call_timeout: Duration,
    /// Give the work back after waiting this long without any account that could take it.
    pub handoff: Duration,
    /// Give up waiting for budget at this time (single-number requests answer 429 then).
    pub deadline: Option<Instant>,
    pub cache: CacheSettings,
}

/// Whose numbers, and what to find out.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Only the shared pool and this user's accounts may answer.
    pub user: Option<&'a str>,
    /// Also the about text, its date and the picture flag of numbers on WhatsApp.
    pub details: bool,
    pub use_cache: bool,
    /// Only this account may answer (a client named it).
    pub only: Option<&'a str>,
}

/// Where answers go.
#[async_trait]
pub trait Sink: Send {
    /// Stores answers; `spent` is what their account spent on them (and on failures before).
    async fn store(
        &mut self,
        rows: &[(E164, Outcome)],
        spent: Option<(&str, &Spent)>,
    ) -> anyhow::Result<()>;
    /// Records budget spent without answers (failed calls).
    async fn spent(&mut self, account: &str, spent: &Spent) -> anyhow::Result<()>;
    /// Something went wrong worth telling the user.
    async fn error(&mut self, why: &str);
    /// The work waits for an account (`Some`), or moves again (`None`).
    async fn waiting(&mut self, why: Option<&str>);
}

/// How checking ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Every number has an answer in the sink.
    Done,
    /// No account could take the rest of the work for a while (or before the deadline): the
    /// caller gives it back to be tried again later, after about `retry_after`.
    Parked { retry_after: Duration },
}

/// Per-number tries: failed calls and rate limits.
#[derive(Debug, Clone, Copy, Default)]
struct Tries {
    failed: u32,
    limited: u32,
}

/// A number whose tries ran out is `unknown`, with the reason.
fn unknown(reason: &str) -> Outcome {
    Outcome {
        whatsapp: Some(WhatsApp::Unknown),
        reason: Some(reason.to_owned()),
        ..Default::default()
    }
}

pub(crate) fn outcome_of(r: CheckResult, account: &Account) -> Outcome {
    let base = Outcome {
        account: Some(account.id()),
        simulated: account.is_simulated(),
        ..Default::default()
    };
    match r.presence {
        Presence::Yes { jid, lid, business } => Outcome {
            whatsapp: Some(WhatsApp::Yes),
            jid: Some(jid),
            lid,
            business,
            ..base
        },
        Presence::No => Outcome {
            whatsapp: Some(WhatsApp::No),
            ..base
        },
        Presence::Unknown { reason } => Outcome {
            whatsapp: Some(WhatsApp::Unknown),
            reason: Some(reason),
            ..base
        },
    }
}

/// Adds what a details call said to a `yes` answer.
fn add_details(o: &mut Outcome, d: Details, account: &Account) {
    // Only an answer that says something is worth caching as "details known".
    o.details_checked =
        d.about.is_some() || d.about_hidden || d.has_picture.is_some() || d.business.is_some();
    o.signature = d.about;
    o.status_update = d.about_set_at;
    o.business = d.business.or(o.business);
    o.has_picture = d.has_picture;
    o.privacy = d.about_hidden.then(|| ABOUT_HIDDEN.to_owned());
    o.account = Some(account.id());
    o.simulated |= account.is_simulated();
}

/// One backend call under the call timeout; a malformed answer (not one result per number)
/// is a transient error like a timeout.
async fn call<T>(
    timeout: Duration,
    asked: usize,
    call: impl Future<Output = Result<Vec<T>, BackendError>>,
) -> Result<Vec<T>, BackendError> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(BackendError::Transient(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
        Ok(Ok(r)) if r.len() != asked => Err(BackendError::Transient(format!(
            "malformed answer: {} results for {asked} numbers",
            r.len()
        ))),
        Ok(r) => r,
    }
}

/// Checks numbers through the pool.
pub struct Checker<'a> {
    pub pool: &'a Pool,
    pub effort: &'a Effort,
}

/// What to do after a failed call, for the numbers it carried.
enum Retry {
    /// Try again (after the delay), on any account.
    Again(Duration),
    /// Their answer is `unknown`, for this reason.
    GiveUp(String),
}

impl Checker<'_> {
    fn backoff(&self, failed: u32) -> Duration {
        let base = self.effort.retry_base.as_millis() as u64;
        let ms = base.saturating_mul(1 << failed.min(16));
        Duration::from_millis(ms).min(self.effort.retry_max)
    }

    /// What a failed call means for one number it carried (its tries already counted).
    fn retry(&self, err: &BackendError, tries: Tries) -> Retry {
        match err {
            // The account cools down or leaves rotation; another one (or it, later) goes on.
            // Not for ever: an account may answer 429 for good.
            BackendError::RateLimited { .. } | BackendError::Account { .. }
                if tries.limited < self.effort.max_attempts.saturating_mul(20) =>
            {
                Retry::Again(Duration::ZERO)
            }
            BackendError::Transient(_) if tries.failed < self.effort.max_attempts => {
                Retry::Again(self.backoff(tries.failed - 1))
            }
            e => Retry::GiveUp(e.to_string()),
        }
    }

    /// After a failed call: tells its account's state, counts the try against each item the
    /// call carried, puts those worth another try back at the front of `queue` (after the
    /// longest delay one of them needs), and returns the others with the reason they are
    /// given up. Each item is judged on its own tries.
    async fn after_failure<T>(
        &self,
        account: &Account,
        err: &BackendError,
        mut batch: Vec<(T, Tries)>,
        queue: &mut VecDeque<(T, Tries)>,
        what: &str,
        sink: &mut dyn Sink,
    ) -> Vec<(T, String)> {
        let id = account.id();
        if let Err(e) = self.pool.report_failure(account, err).await {
            warn!(account = %id, "recording an account failure: {e:#}");
        }
        let mut delay = Duration::ZERO;
        let mut again = Vec::with_capacity(batch.len());
        let mut given_up = Vec::new();
        for (item, mut t) in batch.drain(..) {
            match err {
                BackendError::RateLimited { .. } | BackendError::Account { .. } => t.limited += 1,
                _ => t.failed += 1,
            }
            match self.retry(err, t) {
                Retry::Again(d) => {
                    delay = delay.max(d);
                    again.push((item, t));
                }
                Retry::GiveUp(reason) => given_up.push((item, reason)),
            }
        }
        if !again.is_empty() {
            sink.error(&format!("{what}: {err} (account {id}; retrying)"))
                .await;
            tokio::time::sleep(delay).await;
            for b in again.into_iter().rev() {
                queue.push_front(b);
            }
        }
        if !given_up.is_empty() {
            warn!(account = %id, numbers = given_up.len(), "{what} given up: {err}");
        }
        given_up
    }

    /// A grant for up to `want` numbers, waiting while no account has budget. `None` when
    /// no account could take the work for `handoff`: the caller gives it back, so that its
    /// worker slot serves work that can move (and a process whose account can take it gets
    /// it).
    async fn grant(
        &self,
        req: Request<'_>,
        want: usize,
        details: bool,
        prefer: Option<&str>,
        sink: &mut dyn Sink,
    ) -> Result<Grant, Duration> {
        let mut since: Option<Instant> = None;
        loop {
            let past = |wait: Duration| {
                self.effort
                    .deadline
                    .is_some_and(|d| Instant::now() + wait.min(Duration::from_secs(1)) > d)
            };
            match self
                .pool
                .try_acquire(req.user, want, details, prefer, req.only)
                .await
            {
                Ok(g) => {
                    if since.is_some() {
                        sink.waiting(None).await;
                    }
                    return Ok(g);
                }
                Err(NoGrant::Busy { wait }) => {
                    if past(wait) {
                        return Err(wait);
                    }
                    tokio::time::sleep(
                        wait.clamp(Duration::from_millis(1), Duration::from_secs(1)),
                    )
                    .await;
                }
                Err(NoGrant::NoAccount { reason, .. }) => {
                    let started = *since.get_or_insert_with(Instant::now);
                    sink.waiting(Some(&reason)).await;
                    let nap = Duration::from_millis(self.pool.settings.refresh_ms.max(10))
                        .min(Duration::from_secs(1));
                    if started.elapsed() >= self.effort.handoff || past(nap) {
                        return Err(Duration::from_secs(self.pool.settings.park_secs.max(1)));
                    }
                    tokio::time::sleep(nap).await;
                }
            }
        }
    }

    /// Answers every number (cache, then accounts), storing them batch by batch so that a
    /// crash loses at most the batch in flight.
    pub async fn check_all(
        &self,
        req: Request<'_>,
        numbers: Vec<E164>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Finished> {
        let mut open = numbers;
        if req.use_cache && self.effort.cache.enabled && !open.is_empty() {
            let how = cache::Lookup {
                max_age: Duration::from_secs(self.effort.cache.ttl_secs),
                details: req.details,
                simulated: self.pool.simulated_in_use(req.user),
            };
            let hits = cache::lookup(self.pool.db(), &open, how).await?;
            if !hits.is_empty() {
                let known: HashSet<u64> = hits.iter().map(|(n, _)| n.key()).collect();
                sink.store(&hits, None).await?;
                open.retain(|n| !known.contains(&n.key()));
            }
        }
        let mut queue: VecDeque<(E164, Tries)> =
            open.into_iter().map(|n| (n, Tries::default())).collect();
        while !queue.is_empty() {
            let grant = match self.grant(req, queue.len(), false, None, sink).await {
                Ok(g) => g,
                Err(retry_after) => return Ok(Finished::Parked { retry_after }),
            };
            let batch: Vec<(E164, Tries)> = queue.drain(..grant.n.min(queue.len())).collect();
            let account = grant.account.clone();
            let id = account.id();
            let nums: Vec<E164> = batch.iter().map(|(n, _)| n.clone()).collect();
            account.jitter().await;
            let spent = Spent {
                checks: nums.len() as u64,
                details: 0,
                calls: 1,
            };
            let answer = call(
                self.effort.call_timeout,
                nums.len(),
                account.backend.check(&nums),
            )
            .await;
            let results = match answer {
                Ok(results) => results,
                Err(err) => {
                    sink.spent(&id, &spent).await?;
                    let given_up = self
                        .after_failure(&account, &err, batch, &mut queue, "checks", sink)
                        .await;
                    if !given_up.is_empty() {
                        sink.error(&format!("{} numbers left unknown: {err}", given_up.len()))
                            .await;
                        let rows: Vec<_> = given_up
                            .into_iter()
                            .map(|(n, why)| (n, unknown(&why)))
                            .collect();
                        sink.store(&rows, None).await?;
                    }
                    continue;
                }
            };
            if let Err(e) = self.pool.report_success(&account).await {
                warn!(account = %id, "recording a recovery: {e:#}");
            }
            let mut outcomes: Vec<Outcome> = results
                .into_iter()
                .map(|r| outcome_of(r, &account))
                .collect();
            if !req.details {
                let rows: Vec<_> = nums.into_iter().zip(outcomes).collect();
                sink.store(&rows, Some((&id, &spent))).await?;
                continue;
            }
            let d = self
                .details(req, &account, &nums, &mut outcomes, sink)
                .await;
            // Rows are stored whole: a `yes` without its details waits for the next attempt
            // (after a park) rather than being stored incomplete for good.
            let rows: Vec<_> = nums
                .into_iter()
                .zip(outcomes)
                .enumerate()
                .filter(|(i, (_, o))| o.whatsapp != Some(WhatsApp::Yes) || d.answered[*i])
                .map(|(_, row)| row)
                .collect();
            sink.store(&rows, Some((&id, &spent.plus(d.tally.get(&id)))))
                .await?;
            for (other, s) in d.tally.others(&id) {
                sink.spent(other, s).await?;
            }
            if let Some(retry_after) = d.parked {
                return Ok(Finished::Parked { retry_after });
            }
        }
        Ok(Finished::Done)
    }

    /// Fills the details of the `yes` answers, preferring the account that checked them. A
    /// number whose details calls keep failing keeps its yes/no answer with empty details.
    async fn details(
        &self,
        req: Request<'_>,
        checked_by: &Arc<Account>,
        nums: &[E164],
        outcomes: &mut [Outcome],
        sink: &mut dyn Sink,
    ) -> Detailed {
        let mut out = Detailed {
            tally: Tally::default(),
            answered: vec![false; nums.len()],
            parked: None,
        };
        let mut queue: VecDeque<(usize, Tries)> = (0..nums.len())
            .filter(|&i| outcomes[i].whatsapp == Some(WhatsApp::Yes))
            .map(|i| (i, Tries::default()))
            .collect();
        let prefer = checked_by.id();
        while !queue.is_empty() {
            let grant = match self
                .grant(req, queue.len(), true, Some(&prefer), sink)
                .await
            {
                Ok(g) => g,
                Err(retry_after) => {
                    out.parked = Some(retry_after);
                    return out;
                }
            };
            let account = grant.account.clone();
            let batch: Vec<(usize, Tries)> = queue.drain(..grant.n.min(queue.len())).collect();
            let wanted: Vec<Contact> = batch
                .iter()
                .map(|&(i, _)| Contact {
                    number: nums[i].clone(),
                    jid: outcomes[i].jid.clone(),
                })
                .collect();
            account.jitter().await;
            out.tally.add(&account.id(), wanted.len() as u64);
            let answer = call(
                self.effort.call_timeout,
                wanted.len(),
                account.backend.details(&wanted),
            )
            .await;
            match answer {
                Ok(details) => {
                    if let Err(e) = self.pool.report_success(&account).await {
                        warn!("recording a recovery: {e:#}");
                    }
                    for (&(i, _), d) in batch.iter().zip(details) {
                        add_details(&mut outcomes[i], d, &account);
                        out.answered[i] = true;
                    }
                }
                Err(err) => {
                    let given_up = self
                        .after_failure(&account, &err, batch, &mut queue, "details", sink)
                        .await;
                    // The yes/no answer stands; only the details are missing.
                    for (i, _) in given_up {
                        out.answered[i] = true;
                    }
                }
            }
        }
        out
    }
}

/// What filling details did.
struct Detailed {
    tally: Tally,
    /// Per number: its details call answered, or was given up (a `yes` is complete).
    answered: Vec<bool>,
    /// No account could take the rest: the work is given back (try again after this).
    parked: Option<Duration>,
}

/// Detail-call budget spent per account.
#[derive(Debug, Default)]
struct Tally(Vec<(String, Spent)>);

impl Tally {
    fn add(&mut self, account: &str, numbers: u64) {
        match self.0.iter_mut().find(|(a, _)| a == account) {
            Some((_, s)) => {
                s.details += numbers;
                s.calls += 1;
            }
            None => self.0.push((
                account.to_owned(),
                Spent {
                    checks: 0,
                    details: numbers,
                    calls: 1,
                },
            )),
        }
    }

    fn get(&self, account: &str) -> Option<&Spent> {
        self.0.iter().find(|(a, _)| a == account).map(|(_, s)| s)
    }

    fn others<'a>(&'a self, account: &'a str) -> impl Iterator<Item = (&'a str, &'a Spent)> {
        self.0
            .iter()
            .filter(move |(a, _)| a != account)
            .map(|(a, s)| (a.as_str(), s))
    }
}

trait Plus {
    fn plus(&self, other: Option<&Spent>) -> Spent;
}

impl Plus for Spent {
    fn plus(&self, other: Option<&Spent>) -> Spent {
        match other {
            None => self.clone(),
            Some(o) => Spent {
                checks: self.checks + o.checks,
                details: self.details + o.details,
                calls: self.calls + o.calls,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_add_up_per_account() {
        let mut t = Tally::default();
        t.add("a", 3);
        t.add("b", 2);
        t.add("a", 1);
        assert_eq!(
            t.get("a"),
            Some(&Spent {
                checks: 0,
                details: 4,
                calls: 2
            })
        );
        let others: Vec<_> = t.others("a").collect();
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].0, "b");
        let check = Spent {
            checks: 5,
            details: 0,
            calls: 1,
        };
        assert_eq!(
            check.plus(t.get("a")),
            Spent {
                checks: 5,
                details: 4,
                calls: 3
            }
        );
    }
}
