//! Checking numbers now, within a request (the single-number routes of every API family): the
//! caller's quota, the account pool with its budgets and the cache, waiting for budget up to
//! `api.check_max_wait_ms`, and the caller's history.

use std::collections::HashMap;
use std::time::Instant;

use async_trait::async_trait;
use wacheck_core::{AccountState, E164, Normalizer, Outcome, WhatsApp};
use wacheck_engine::check::{Checker, Finished, Request, Sink};
use wacheck_store::accounts::{self, AccountRecord, Spent};
use wacheck_store::history::{self, NewEntry};
use wacheck_store::tasks::QuotaExceeded;
use wacheck_store::users;

use crate::{Caller, Code, Error, Services};

/// One number as checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// As given.
    pub input: String,
    /// `None` when it is not a valid number.
    pub e164: Option<E164>,
    /// `whatsapp` is `Invalid` for an invalid number.
    pub outcome: Outcome,
    /// The history entry of this check.
    pub id: String,
}

impl Checked {
    pub fn whatsapp(&self) -> WhatsApp {
        self.outcome.whatsapp.unwrap_or(WhatsApp::Unknown)
    }
}

/// Where the numbers are checked and recorded.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// `api`, `walytic` or `commbox`.
    pub source: &'a str,
    /// The session or stream the client named (the account that must answer).
    pub session: Option<&'a str>,
    pub account: Option<&'a str>,
    pub details: bool,
}

/// Answers stay in memory for the response; budget goes to the usage log.
struct Collect<'a> {
    pool: &'a sqlx::PgPool,
    user: &'a str,
    answers: HashMap<u64, Outcome>,
}

#[async_trait]
impl Sink for Collect<'_> {
    async fn store(
        &mut self,
        rows: &[(E164, Outcome)],
        spent: Option<(&str, &Spent)>,
    ) -> anyhow::Result<()> {
        for (n, o) in rows {
            self.answers.insert(n.key(), o.clone());
        }
        wacheck_store::cache::remember(self.pool, rows).await?;
        if let Some((account, spent)) = spent {
            self.spent(account, spent).await?;
        }
        Ok(())
    }

    async fn spent(&mut self, account: &str, spent: &Spent) -> anyhow::Result<()> {
        accounts::record_spent(self.pool, None, Some(self.user), account, spent).await?;
        Ok(())
    }

    async fn error(&mut self, _why: &str) {}

    async fn waiting(&mut self, _why: Option<&str>) {}
}

/// The account a client named (an alias or an account id) if the caller may use it.
pub async fn named_account(
    s: &Services,
    user: &Caller,
    name: &str,
) -> Result<Option<AccountRecord>, Error> {
    Ok(accounts::resolve(&s.pool, name)
        .await?
        .filter(|a| a.owner.is_none() || a.owner.as_deref() == Some(user.id.as_str())))
}

/// Why a named account cannot answer now, if it cannot (a cool-down is waited out instead).
pub fn unavailable(a: &AccountRecord) -> Option<String> {
    if a.paused {
        return Some(format!("the account `{}` is paused", a.id));
    }
    match a.state {
        AccountState::Connected | AccountState::CoolingDown => None,
        AccountState::Banned if a.cool_until.is_some_and(|t| t <= chrono::Utc::now()) => None,
        state => Some(format!(
            "the account `{}` is not connected ({state}{})",
            a.id,
            a.state_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )),
    }
}

/// Checks `inputs` for `user` and records them in the user's history. Invalid numbers are
/// answered at once; valid ones from the cache or an account. When no account has budget
/// within the wait, the answers obtained are kept (cache, history) and the request answers 429.
pub async fn check_now(
    s: &Services,
    user: &Caller,
    inputs: &[String],
    region: Option<&str>,
    route: Route<'_>,
) -> Result<Vec<Checked>, Error> {
    let normalizer = Normalizer::new(region)
        .map_err(|e| Error::new(Code::InvalidDefaultRegion, e.to_string()))?;
    // Today's quota is taken before checking; what is not checked in the end is given back.
    let limit = crate::quota::of(&user.limits).numbers_per_day;
    let asked = inputs.len() as u64;
    let Some((day, used)) = users::reserve_checks(&s.pool, &user.id, asked, limit).await? else {
        let used = users::quota_use(&s.pool, &user.id).await?;
        user.quota.numbers(limit, used.numbers_today);
        return Err(crate::quota::exceeded(QuotaExceeded::NumbersPerDay {
            limit,
            used: used.numbers_today,
            asked,
        }));
    };
    let result = check_reserved(s, user, inputs, &normalizer, route).await;
    let checked = result.as_ref().map_or(0, |(checked, _)| checked.len());
    let unchecked = (inputs.len() - checked) as u64;
    if let Err(e) = users::release_checks(&s.pool, &user.id, day, unchecked).await {
        // The answer (or the error that matters) goes out; the numbers stay counted.
        tracing::warn!(user = %user.id, unchecked, "giving back unchecked numbers failed: {e}");
    }
    user.quota.numbers(limit, used.saturating_sub(unchecked));
    let (checked, finished) = result?;
    match finished {
        Finished::Done => Ok(checked),
        Finished::Parked { retry_after } => {
            let left = inputs.len() - checked.len();
            Err(Error::new(
                Code::NoBudget,
                format!(
                    "no WhatsApp account had budget for {left} of the numbers within {} s \
                     (those answered are cached and in your history); retry later",
                    s.checks.max_wait.as_secs()
                ),
            )
            .retry_after(retry_after.as_secs().max(1)))
        }
    }
}

/// [`check_now`] once the numbers are counted against the caller's quota.
async fn check_reserved(
    s: &Services,
    user: &Caller,
    inputs: &[String],
    normalizer: &Normalizer,
    route: Route<'_>,
) -> Result<(Vec<Checked>, Finished), Error> {
    // What goes to the history: as given, but without NUL characters and at most as long as
    // any cell kept.
    let inputs: Vec<String> = inputs
        .iter()
        .map(|i| {
            i.replace('\0', "\u{fffd}")
                .chars()
                .take(wacheck_core::input::MAX_RAW_CHARS)
                .collect()
        })
        .collect();
    let numbers: Vec<Option<E164>> = inputs.iter().map(|i| normalizer.normalize(i)).collect();
    let mut distinct: Vec<E164> = numbers.iter().flatten().cloned().collect();
    distinct.sort_by_key(E164::key);
    distinct.dedup_by_key(|n| n.key());

    let wait = s.checks.max_wait;
    let mut effort = s.checks.effort.clone();
    effort.handoff = wait;
    effort.deadline = Some(Instant::now() + wait);
    let checker = Checker {
        pool: &s.accounts,
        effort: &effort,
    };
    let req = Request {
        user: Some(&user.id),
        details: route.details,
        use_cache: true,
        only: route.account,
    };
    let mut sink = Collect {
        pool: &s.pool,
        user: &user.id,
        answers: HashMap::new(),
    };
    let finished = checker
        .check_all(req, distinct, &mut sink)
        .await
        .map_err(Error::internal)?;

    let mut checked: Vec<Checked> = inputs
        .iter()
        .zip(numbers)
        .map(|(input, e164)| {
            let outcome = match &e164 {
                None => Some(Outcome {
                    whatsapp: Some(WhatsApp::Invalid),
                    reason: Some(normalizer.why_invalid(input).reason().to_owned()),
                    ..Default::default()
                }),
                Some(n) => sink.answers.get(&n.key()).cloned(),
            };
            (input, e164, outcome)
        })
        .filter_map(|(input, e164, outcome)| {
            outcome.map(|outcome| Checked {
                input: input.clone(),
                e164,
                outcome,
                id: String::new(),
            })
        })
        .collect();
    let entries: Vec<NewEntry<'_>> = checked
        .iter()
        .map(|c| NewEntry {
            input: &c.input,
            e164: c.e164.as_ref().map(E164::as_str),
            outcome: c.whatsapp().as_str(),
            account_id: c.outcome.account.as_deref(),
            cached: c.outcome.cached,
        })
        .collect();
    let ids = history::record(&s.pool, &user.id, route.source, route.session, &entries).await?;
    for (c, id) in checked.iter_mut().zip(ids) {
        c.id = id;
    }
    Ok((checked, finished))
}
