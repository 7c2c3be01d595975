//! Single-number checks: each caller's history of what they checked, through which API and
//! session, with what answer.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::Result;

/// One checked number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub user_id: String,
    /// `api`, `walytic` or `commbox`.
    pub source: String,
    pub session_id: Option<String>,
    pub input: String,
    pub e164: Option<String>,
    /// `yes`, `no`, `invalid` or `unknown`.
    pub outcome: String,
    pub account_id: Option<String>,
    pub cached: bool,
    pub created_at: DateTime<Utc>,
}

/// A new entry (its id and time are given here).
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub input: &'a str,
    pub e164: Option<&'a str>,
    pub outcome: &'a str,
    pub account_id: Option<&'a str>,
    pub cached: bool,
}

/// Records the numbers one request checked, in order; returns their ids.
pub async fn record(
    pool: &PgPool,
    user_id: &str,
    source: &str,
    session_id: Option<&str>,
    entries: &[NewEntry<'_>],
) -> Result<Vec<String>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    // ULIDs of one request sort in input order.
    let mut ids_in_order = ulid::Generator::new();
    let ids: Vec<String> = entries
        .iter()
        .map(|_| {
            ids_in_order
                .generate()
                .unwrap_or_else(|_| ulid::Ulid::generate())
                .to_string()
        })
        .collect();
    let input: Vec<&str> = entries.iter().map(|e| e.input).collect();
    let e164: Vec<Option<&str>> = entries.iter().map(|e| e.e164).collect();
    let outcome: Vec<&str> = entries.iter().map(|e| e.outcome).collect();
    let account: Vec<Option<&str>> = entries.iter().map(|e| e.account_id).collect();
    let cached: Vec<bool> = entries.iter().map(|e| e.cached).collect();
    sqlx::query(
        "INSERT INTO check_history (id, user_id, source, session_id, input, e164, outcome, \
           account_id, cached) \
         SELECT id, $2, $3, $4, input, e164, outcome, account_id, cached \
         FROM UNNEST($1::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[]) \
           AS u(id, input, e164, outcome, account_id, cached)",
    )
    .bind(&ids)
    .bind(user_id)
    .bind(source)
    .bind(session_id)
    .bind(&input)
    .bind(&e164)
    .bind(&outcome)
    .bind(&account)
    .bind(&cached)
    .execute(pool)
    .await?;
    Ok(ids)
}

/// Which entries: one user's, optionally of one session and one source.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    pub user_id: &'a str,
    pub session_id: Option<&'a str>,
    pub source: Option<&'a str>,
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    bool,
    DateTime<Utc>,
);

fn entry(r: Row) -> Entry {
    Entry {
        id: r.0,
        user_id: r.1,
        source: r.2,
        session_id: r.3,
        input: r.4,
        e164: r.5,
        outcome: r.6,
        account_id: r.7,
        cached: r.8,
        created_at: r.9,
    }
}

/// A page of entries, newest first, and how many there are in all.
pub async fn page(
    pool: &PgPool,
    f: Filter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Entry>, i64)> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, user_id, source, session_id, input, e164, outcome, account_id, cached, \
           created_at FROM check_history \
         WHERE user_id = $1 AND ($2::text IS NULL OR session_id = $2) \
           AND ($3::text IS NULL OR source = $3) \
         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5",
    )
    .bind(f.user_id)
    .bind(f.session_id)
    .bind(f.source)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM check_history WHERE user_id = $1 \
           AND ($2::text IS NULL OR session_id = $2) AND ($3::text IS NULL OR source = $3)",
    )
    .bind(f.user_id)
    .bind(f.session_id)
    .bind(f.source)
    .fetch_one(pool)
    .await?;
    Ok((rows.into_iter().map(entry).collect(), total))
}

/// Up to `limit` entries older than `after` (the last of the previous call; newest first
/// from the start), for reading them all in turn without counting or skipping.
pub async fn older(
    pool: &PgPool,
    f: Filter<'_>,
    after: Option<&Entry>,
    limit: i64,
) -> Result<Vec<Entry>> {
    // Two statements, so that each keeps a plan that walks the index from where it starts.
    const COLUMNS: &str = "SELECT id, user_id, source, session_id, input, e164, outcome, \
        account_id, cached, created_at FROM check_history \
        WHERE user_id = $1 AND ($2::text IS NULL OR session_id = $2) \
          AND ($3::text IS NULL OR source = $3)";
    let rows: Vec<Row> = match after {
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} ORDER BY created_at DESC, id DESC LIMIT $4"
            )))
            .bind(f.user_id)
            .bind(f.session_id)
            .bind(f.source)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        Some(last) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} AND (created_at, id) < ($4, $5) \
                 ORDER BY created_at DESC, id DESC LIMIT $6"
            )))
            .bind(f.user_id)
            .bind(f.session_id)
            .bind(f.source)
            .bind(last.created_at)
            .bind(&last.id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(entry).collect())
}

/// Deletes the entries `f` selects; returns how many.
pub async fn clear(pool: &PgPool, f: Filter<'_>) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM check_history WHERE user_id = $1 AND ($2::text IS NULL OR session_id = $2) \
           AND ($3::text IS NULL OR source = $3)",
    )
    .bind(f.user_id)
    .bind(f.session_id)
    .bind(f.source)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Deletes entries older than `age` (the retention sweep).
pub async fn purge(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM check_history WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(age.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
