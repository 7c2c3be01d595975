//! The result cache: definite answers reused across tasks and users while they are fresh, so
//! that a number checked yesterday costs no account budget today. Answers are written by
//! `chunks::store_outcomes`, in the statement that stores them for their task.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use wacheck_core::{E164, Outcome, WhatsApp};

use crate::Result;

/// What a lookup may use.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// Answers older than this are not used.
    pub max_age: Duration,
    /// Detail tasks need the about text too: a `yes` without details does not count.
    pub details: bool,
    /// Simulated answers are used only while a simulated account is in use.
    pub simulated: bool,
}

type CachedRow = (
    DateTime<Utc>,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    bool,
    Option<String>,
    Option<String>,
    Option<NaiveDate>,
    Option<bool>,
    Option<String>,
);

/// Cached answers for those of `numbers` the cache knows, in no particular order; each is
/// marked `cached`.
pub async fn lookup(pool: &PgPool, numbers: &[E164], how: Lookup) -> Result<Vec<(E164, Outcome)>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<i64> = numbers.iter().map(|n| n.key() as i64).collect();
    let rows: Vec<CachedRow> = sqlx::query_as(
        "SELECT checked_at, number, outcome, jid, lid, business, simulated, account_id, signature, \
           status_update, has_picture, privacy \
         FROM number_cache WHERE number = ANY($1) \
           AND checked_at > now() - make_interval(secs => $2) \
           AND (NOT simulated OR $3) \
           AND (NOT $4 OR outcome = 'no' OR details_at > now() - make_interval(secs => $2))",
    )
    .bind(&keys)
    .bind(how.max_age.as_secs_f64())
    .bind(how.simulated)
    .bind(how.details)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (
        at,
        n,
        outcome,
        jid,
        lid,
        business,
        simulated,
        account,
        signature,
        date,
        picture,
        privacy,
    ) in rows
    {
        let Some(number) = u64::try_from(n).ok().and_then(E164::from_key) else {
            continue;
        };
        let whatsapp = if outcome == "yes" {
            WhatsApp::Yes
        } else {
            WhatsApp::No
        };
        out.push((
            number,
            Outcome {
                whatsapp: Some(whatsapp),
                jid,
                lid,
                business,
                signature,
                status_update: date,
                has_picture: picture,
                privacy,
                account,
                cached: true,
                simulated,
                reason: None,
                details_checked: false,
                checked_at: Some(at),
            },
        ));
    }
    Ok(out)
}

/// The cache upsert over the answers of a `v` CTE (`answers::answers_cte`): fresh definite
/// answers of shared accounts go in (a user's own account could answer anything, so its
/// answers never serve anyone else), details are kept while the answer stays the same, and a
/// simulated answer never replaces a real one.
pub(crate) const UPSERT_FROM_V: &str = "\
    INSERT INTO number_cache AS nc (number, outcome, jid, lid, business, simulated, \
      account_id, checked_at, details_at, signature, status_update, has_picture, privacy) \
    SELECT number, outcome, jid, lid, business, simulated, account_id, now(), \
      CASE WHEN details THEN now() END, signature, status_update, has_picture, privacy \
    FROM v WHERE NOT cached AND outcome IN ('yes', 'no') \
      AND account_id IN (SELECT id FROM accounts WHERE owner_id IS NULL) \
    ORDER BY number \
    ON CONFLICT (number) DO UPDATE SET \
      details_at = CASE WHEN EXCLUDED.details_at IS NOT NULL THEN EXCLUDED.details_at \
        WHEN (nc.outcome, nc.simulated) = (EXCLUDED.outcome, EXCLUDED.simulated) \
        THEN nc.details_at END, \
      signature = CASE WHEN EXCLUDED.details_at IS NOT NULL THEN EXCLUDED.signature \
        WHEN (nc.outcome, nc.simulated) = (EXCLUDED.outcome, EXCLUDED.simulated) \
        THEN nc.signature END, \
      status_update = CASE WHEN EXCLUDED.details_at IS NOT NULL THEN EXCLUDED.status_update \
        WHEN (nc.outcome, nc.simulated) = (EXCLUDED.outcome, EXCLUDED.simulated) \
        THEN nc.status_update END, \
      has_picture = CASE WHEN EXCLUDED.details_at IS NOT NULL THEN EXCLUDED.has_picture \
        WHEN (nc.outcome, nc.simulated) = (EXCLUDED.outcome, EXCLUDED.simulated) \
        THEN nc.has_picture END, \
      privacy = CASE WHEN EXCLUDED.details_at IS NOT NULL THEN EXCLUDED.privacy \
        WHEN (nc.outcome, nc.simulated) = (EXCLUDED.outcome, EXCLUDED.simulated) \
        THEN nc.privacy END, \
      business = coalesce(EXCLUDED.business, CASE WHEN \
        (nc.outcome, nc.simulated) = (EXCLUDED.outcome, EXCLUDED.simulated) \
        THEN nc.business END), \
      outcome = EXCLUDED.outcome, jid = EXCLUDED.jid, lid = EXCLUDED.lid, \
      simulated = EXCLUDED.simulated, account_id = EXCLUDED.account_id, \
      checked_at = EXCLUDED.checked_at \
    WHERE nc.simulated OR NOT EXCLUDED.simulated";

/// Keeps answers obtained outside a task (single-number requests) for later use.
pub async fn remember(pool: &PgPool, answers: &[(E164, Outcome)]) -> Result<()> {
    if answers.is_empty() {
        return Ok(());
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("WITH {} {}", crate::answers::answers_cte(1), UPSERT_FROM_V)
    });
    let columns = crate::answers::AnswerColumns::of(answers);
    columns
        .bind(sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())))
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets every cached answer (`wacheck cache clear`); returns how many there were.
pub async fn clear(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM number_cache")
        .execute(pool)
        .await?
        .rows_affected())
}

/// Deletes answers older than `max_age` (they are never used again).
pub async fn purge(pool: &PgPool, max_age: Duration) -> Result<u64> {
    Ok(
        sqlx::query(
            "DELETE FROM number_cache WHERE checked_at < now() - make_interval(secs => $1)",
        )
        .bind(max_age.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected(),
    )
}
