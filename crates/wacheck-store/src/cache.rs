//! The result cache: definite answers reused across tasks and users while they are fresh, so
//! that a number checked yesterday costs no account budget today. Answers are written by
//! `chunks::store_outcomes`, in the statement that stores them for their task.

use std::time::Duration;

use chrono::NaiveDate;
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
        "SELECT number, outcome, jid, lid, business, simulated, account_id, signature, \
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
    for (n, outcome, jid, lid, business, simulated, account, signature, date, picture, privacy) in
        rows
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
            },
        ));
    }
    Ok(out)
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
