//! The account pool: accounts with their limits and state, the daily budget they spent, and
//! what each task cost each of them.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{PgPool, Row};
use wacheck_core::{AccountKind, AccountState, TaskId};

use crate::{Result, StoreError};

/// An account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub id: String,
    pub kind: AccountKind,
    /// `None`: the shared pool; otherwise only this user's work uses it.
    pub owner: Option<String>,
    /// What its backend needs (gateway URL, session name, key, batch size).
    pub settings: Value,
    pub builtin: bool,
    pub state: AccountState,
    pub state_reason: Option<String>,
    pub state_changed_at: DateTime<Utc>,
    pub cool_until: Option<DateTime<Utc>>,
    pub strikes: i32,
    pub paused: bool,
    pub limits: Limits,
    pub me: Option<String>,
    pub qr_code: Option<String>,
    pub qr_expires_at: Option<DateTime<Utc>>,
    pub pair_code: Option<String>,
    pub host: Option<String>,
    pub host_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An account's budget: checks per minute with a burst, a cap per UTC day (0: none), and a
/// random pause of up to `jitter_ms` before each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub per_minute: u32,
    pub burst: u32,
    pub daily_cap: u32,
    pub jitter_ms: u32,
}

impl Default for Limits {
    /// Careful defaults for a real account: one check a second, bursts of 5, 5,000 a day,
    /// up to a second between queries.
    fn default() -> Self {
        Limits {
            per_minute: 60,
            burst: 5,
            daily_cap: 5_000,
            jitter_ms: 1_000,
        }
    }
}

impl Limits {
    /// The most checks a day this budget allows: the rate over 24 hours, or the daily cap
    /// when that is lower; `None` when neither limits it.
    pub fn checks_per_day(&self) -> Option<u64> {
        let by_rate = (self.per_minute > 0).then(|| u64::from(self.per_minute) * 1440);
        let by_cap = (self.daily_cap > 0).then(|| u64::from(self.daily_cap));
        match (by_rate, by_cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        }
    }
}

impl AccountRecord {
    /// Whether the account may get work at `now` (as far as its stored state says).
    pub fn healthy_at(&self, now: DateTime<Utc>) -> bool {
        !self.paused
            && match self.state {
                AccountState::Connected => true,
                AccountState::CoolingDown => self.cool_until.is_none_or(|t| t <= now),
                _ => false,
            }
    }
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub id: String,
    pub kind: AccountKind,
    pub owner: Option<String>,
    pub settings: Value,
    pub limits: Limits,
    pub state: AccountState,
    pub builtin: bool,
}

const COLUMNS: &str = "id, kind, owner_id, settings, builtin, state, state_reason, \
    state_changed_at, cool_until, strikes, paused, per_minute, burst, daily_cap, jitter_ms, me, \
    qr_code, qr_expires_at, pair_code, host, host_until, created_at, updated_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<AccountRecord> {
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("account {what} `{v}`"));
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let int = |name: &str| -> Result<u32> {
        let v: i32 = row.try_get(name)?;
        u32::try_from(v).map_err(|_| corrupt(name, &v.to_string()))
    };
    Ok(AccountRecord {
        id: row.try_get("id")?,
        kind: kind.parse().map_err(|_| corrupt("kind", &kind))?,
        owner: row.try_get("owner_id")?,
        settings: row.try_get("settings")?,
        builtin: row.try_get("builtin")?,
        state: state.parse().map_err(|_| corrupt("state", &state))?,
        state_reason: row.try_get("state_reason")?,
        state_changed_at: row.try_get("state_changed_at")?,
        cool_until: row.try_get("cool_until")?,
        strikes: row.try_get("strikes")?,
        paused: row.try_get("paused")?,
        limits: Limits {
            per_minute: int("per_minute")?,
            burst: int("burst")?,
            daily_cap: int("daily_cap")?,
            jitter_ms: int("jitter_ms")?,
        },
        me: row.try_get("me")?,
        qr_code: row.try_get("qr_code")?,
        qr_expires_at: row.try_get("qr_expires_at")?,
        pair_code: row.try_get("pair_code")?,
        host: row.try_get("host")?,
        host_until: row.try_get("host_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn limit(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Inserts an account; `Ok(None)` when the id is taken.
pub async fn create(pool: &PgPool, new: &NewAccount) -> Result<Option<AccountRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO accounts (id, kind, owner_id, settings, builtin, state, per_minute, burst, \
           daily_cap, jitter_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(&new.id)
    .bind(new.kind.as_str())
    .bind(&new.owner)
    .bind(&new.settings)
    .bind(new.builtin)
    .bind(new.state.as_str())
    .bind(limit(new.limits.per_minute))
    .bind(limit(new.limits.burst.max(1)))
    .bind(limit(new.limits.daily_cap))
    .bind(limit(new.limits.jitter_ms))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Makes the service's own simulated account (from its configuration) exist and match that
/// configuration, unless the shared pool has an account of the operator's: then the built-in
/// one goes. (Users' own accounts do not count: they work for their owners only.)
/// Returns whether it is in use.
pub async fn ensure_builtin(pool: &PgPool, new: &NewAccount) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // One process at a time (several start together in a deployment).
    sqlx::query("SELECT pg_advisory_xact_lock(7020431)")
        .execute(&mut *tx)
        .await?;
    let others: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE NOT builtin AND owner_id IS NULL)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if others {
        sqlx::query("DELETE FROM accounts WHERE builtin")
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO accounts (id, kind, settings, builtin, state, per_minute, burst, \
               daily_cap, jitter_ms) \
             VALUES ($1, $2, $3, true, 'connected', $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET settings = EXCLUDED.settings, \
               per_minute = EXCLUDED.per_minute, burst = EXCLUDED.burst, \
               daily_cap = EXCLUDED.daily_cap, jitter_ms = EXCLUDED.jitter_ms, \
               updated_at = now() \
             WHERE accounts.builtin AND (accounts.settings, accounts.per_minute, accounts.burst, \
               accounts.daily_cap, accounts.jitter_ms) IS DISTINCT FROM (EXCLUDED.settings, \
               EXCLUDED.per_minute, EXCLUDED.burst, EXCLUDED.daily_cap, EXCLUDED.jitter_ms)",
        )
        .bind(&new.id)
        .bind(new.kind.as_str())
        .bind(&new.settings)
        .bind(limit(new.limits.per_minute))
        .bind(limit(new.limits.burst.max(1)))
        .bind(limit(new.limits.daily_cap))
        .bind(limit(new.limits.jitter_ms))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(!others)
}

/// Every account, by id.
pub async fn list(pool: &PgPool) -> Result<Vec<AccountRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM accounts ORDER BY id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<AccountRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM accounts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Pauses or resumes an account. Resuming also brings an account that is logged out, banned
/// or failed back to `connected` (the operator says it works again; a failing call takes it
/// out again). False when there is no such account.
pub async fn set_paused(pool: &PgPool, id: &str, paused: bool) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE accounts SET paused = $2, updated_at = now(), \
           state = CASE WHEN NOT $2 AND state IN ('logged_out', 'banned', 'failed') \
                        THEN 'connected' ELSE state END, \
           state_reason = CASE WHEN NOT $2 AND state IN ('logged_out', 'banned', 'failed') \
                        THEN 'resumed by the operator' ELSE state_reason END, \
           strikes = CASE WHEN $2 THEN strikes ELSE 0 END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(paused)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Changes an account's limits. False when there is no such account.
pub async fn set_limits(pool: &PgPool, id: &str, limits: Limits) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE accounts SET per_minute = $2, burst = $3, daily_cap = $4, jitter_ms = $5, \
           updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(limit(limits.per_minute))
    .bind(limit(limits.burst.max(1)))
    .bind(limit(limits.daily_cap))
    .bind(limit(limits.jitter_ms))
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes an account (its per-task usage stays, for the record). False when there was none.
pub async fn remove(pool: &PgPool, id: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The server throttled the account: it cools down for the server's backoff, or without one
/// for `base * 2^strikes` (at most `max`), and gets no work meanwhile. Only a throttle that
/// starts a cool-down is a strike: calls that were in flight when it began and are throttled
/// too (a burst) extend it to the server's backoff at most.
/// Returns when the cool-down ends.
pub async fn rate_limited(
    pool: &PgPool,
    id: &str,
    backoff: Option<std::time::Duration>,
    base: std::time::Duration,
    max: std::time::Duration,
    reason: &str,
) -> Result<Option<DateTime<Utc>>> {
    let until: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE accounts SET state = 'cooling_down', state_reason = $5, \
           state_changed_at = CASE WHEN state = 'connected' OR coalesce(cool_until <= now(), true) \
             THEN now() ELSE state_changed_at END, \
           strikes = CASE WHEN state = 'connected' OR coalesce(cool_until <= now(), true) \
             THEN strikes + 1 ELSE strikes END, \
           cool_until = CASE WHEN state = 'connected' OR coalesce(cool_until <= now(), true) \
             THEN now() + make_interval(secs => \
               coalesce($2, LEAST($4, $3 * power(2, LEAST(strikes, 20))))) \
             ELSE GREATEST(cool_until, now() + make_interval(secs => coalesce($2, 0))) END \
         WHERE id = $1 AND state IN ('connected', 'cooling_down') RETURNING cool_until",
    )
    .bind(id)
    .bind(backoff.map(|d| d.as_secs_f64()))
    .bind(base.as_secs_f64())
    .bind(max.as_secs_f64())
    .bind(reason)
    .fetch_optional(pool)
    .await?;
    Ok(until)
}

/// A good answer after a cool-down ended: the account is `connected` again and its strikes
/// are forgiven. An answer to a call that was in flight while the cool-down began changes
/// nothing, and neither does any answer while the account is out of rotation.
pub async fn recovered(pool: &PgPool, id: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE accounts SET state = 'connected', state_reason = 'answering again', \
           state_changed_at = now(), cool_until = NULL, strikes = 0 \
         WHERE id = $1 AND ((state = 'cooling_down' AND coalesce(cool_until <= now(), true)) \
           OR (state = 'connected' AND strikes > 0))",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves an account to `state` with a reason (and, for a temporary ban, until when), unless
/// it is there already with the same reason. Returns whether anything changed.
pub async fn set_state(
    pool: &PgPool,
    id: &str,
    state: AccountState,
    reason: Option<&str>,
    until: Option<DateTime<Utc>>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE accounts SET state = $2, state_reason = $3, cool_until = $4, \
           state_changed_at = CASE WHEN state = $2 THEN state_changed_at ELSE now() END, \
           strikes = CASE WHEN $2 = 'connected' THEN 0 ELSE strikes END, \
           qr_code = CASE WHEN $2 = 'pairing' THEN qr_code END, \
           qr_expires_at = CASE WHEN $2 = 'pairing' THEN qr_expires_at END, \
           pair_code = CASE WHEN $2 = 'pairing' THEN pair_code END \
         WHERE id = $1 AND (state, state_reason, cool_until) IS DISTINCT FROM ($2, $3, $4)",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(reason)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Pairing of a native account: the QR payload to show and until when it is valid, or a pair
/// code to type on the phone.
pub async fn set_pairing(
    pool: &PgPool,
    id: &str,
    qr: Option<(&str, DateTime<Utc>)>,
    pair_code: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE accounts SET state = 'pairing', \
           state_changed_at = CASE WHEN state = 'pairing' THEN state_changed_at ELSE now() END, \
           state_reason = 'waiting for the QR code (or pair code) to be used on the phone', \
           qr_code = coalesce($2, qr_code), qr_expires_at = coalesce($3, qr_expires_at), \
           pair_code = coalesce($4, pair_code) WHERE id = $1",
    )
    .bind(id)
    .bind(qr.map(|q| q.0))
    .bind(qr.map(|q| q.1))
    .bind(pair_code)
    .execute(pool)
    .await?;
    Ok(())
}

/// A native account is paired (or its session came back): it is `connected` as `me`.
pub async fn paired(pool: &PgPool, id: &str, me: &str) -> Result<()> {
    sqlx::query(
        "UPDATE accounts SET state = 'connected', state_reason = 'paired', me = $2, \
           state_changed_at = now(), qr_code = NULL, qr_expires_at = NULL, pair_code = NULL, \
           cool_until = NULL, strikes = 0 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(me)
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes (or keeps) the right to run a native account's session in process `host` for
/// `lease`. True when this host holds it now.
pub async fn hold(pool: &PgPool, id: &str, host: &str, lease: std::time::Duration) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE accounts SET host = $2, host_until = now() + make_interval(secs => $3) \
         WHERE id = $1 AND NOT paused AND (host IS NULL OR host = $2 OR host_until < now())",
    )
    .bind(id)
    .bind(host)
    .bind(lease.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives up the session of a native account (a stopping worker).
pub async fn let_go(pool: &PgPool, id: &str, host: &str) -> Result<()> {
    sqlx::query("UPDATE accounts SET host = NULL, host_until = NULL WHERE id = $1 AND host = $2")
        .bind(id)
        .bind(host)
        .execute(pool)
        .await?;
    Ok(())
}

/// Numbers an account was asked about on a UTC day (checks and detail lookups).
pub async fn checks_on(pool: &PgPool, id: &str, day: NaiveDate) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(checks + details), 0)::bigint FROM account_usage \
         WHERE account_id = $1 AND day = $2",
    )
    .bind(id)
    .bind(day)
    .fetch_one(pool)
    .await?)
}

/// Numbers each account was asked about today (UTC), by account.
pub async fn checks_today(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT account_id, sum(checks + details)::bigint FROM account_usage \
         WHERE day = (now() AT TIME ZONE 'UTC')::date GROUP BY account_id ORDER BY account_id",
    )
    .fetch_all(pool)
    .await?)
}

/// Budget spent since the last report: numbers in check calls and in detail calls, and calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spent {
    pub checks: u64,
    pub details: u64,
    pub calls: u64,
}

/// What one task cost one account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskUsage {
    pub account: String,
    pub checks: i64,
    pub details: i64,
    pub calls: i64,
}

/// What a task cost each account, by account.
pub async fn task_usage(pool: &PgPool, task: TaskId) -> Result<Vec<TaskUsage>> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT account_id, sum(checks)::bigint, sum(details)::bigint, sum(calls)::bigint \
         FROM account_usage WHERE task_id = $1 GROUP BY account_id ORDER BY account_id",
    )
    .bind(task.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(account, checks, details, calls)| TaskUsage {
            account,
            checks,
            details,
            calls,
        })
        .collect())
}

/// Records budget an account spent for a task (or, without one, for a user's single-number
/// request) apart from any answers stored with it: failed calls, and detail calls.
pub async fn record_spent(
    pool: &PgPool,
    task: Option<TaskId>,
    user: Option<&str>,
    account: &str,
    spent: &Spent,
) -> Result<()> {
    if spent.calls == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO account_usage (account_id, task_id, user_id, checks, details, calls) \
         VALUES ($1, $2, coalesce($3, (SELECT user_id FROM tasks WHERE id = $2)), $4, $5, $6)",
    )
    .bind(account)
    .bind(task.map(|t| t.to_string()))
    .bind(user)
    .bind(spent.checks as i64)
    .bind(spent.details as i64)
    .bind(spent.calls as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes the built-in simulated account once the shared pool has an account of the
/// operator's.
pub async fn drop_builtin(pool: &PgPool) -> Result<()> {
    sqlx::query(
        "DELETE FROM accounts WHERE builtin AND EXISTS ( \
           SELECT 1 FROM accounts WHERE NOT builtin AND owner_id IS NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes usage records older than `age` (their tasks are gone by then too).
pub async fn purge_usage(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM account_usage WHERE at < now() - make_interval(secs => $1)")
            .bind(age.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// The account a name stands for: an alias (a Walytic session, a CommBox stream) or its id.
pub async fn resolve(pool: &PgPool, name: &str) -> Result<Option<AccountRecord>> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT account_id FROM account_aliases WHERE alias = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    get(pool, id.as_deref().unwrap_or(name)).await
}

/// Gives an account another name; false when the name is taken (by an alias or an account).
pub async fn add_alias(pool: &PgPool, alias: &str, account: &str) -> Result<bool> {
    let r = sqlx::query(
        "INSERT INTO account_aliases (alias, account_id) \
         SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
         ON CONFLICT (alias) DO NOTHING",
    )
    .bind(alias)
    .bind(account)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Removes an alias of an account; false when it had none of that name.
pub async fn remove_alias(pool: &PgPool, alias: &str, account: &str) -> Result<bool> {
    let r = sqlx::query("DELETE FROM account_aliases WHERE alias = $1 AND account_id = $2")
        .bind(alias)
        .bind(account)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Every alias, by account.
pub async fn aliases(pool: &PgPool) -> Result<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT account_id, alias FROM account_aliases ORDER BY account_id, alias")
            .fetch_all(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::Limits;

    #[test]
    fn a_day_of_checks_is_the_lower_of_rate_and_cap() {
        let l = |per_minute, daily_cap| Limits {
            per_minute,
            daily_cap,
            ..Limits::default()
        };
        assert_eq!(l(60, 5_000).checks_per_day(), Some(5_000));
        assert_eq!(l(2, 5_000).checks_per_day(), Some(2_880));
        assert_eq!(l(60, 0).checks_per_day(), Some(86_400));
        assert_eq!(l(0, 12).checks_per_day(), Some(12));
        assert_eq!(l(0, 0).checks_per_day(), None);
    }
}
