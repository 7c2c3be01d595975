//! Users: who owns tasks, keys and accounts; whether they may still call; their own limits;
//! and what their quotas have used.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::Result;

/// Limits of one user; `None` takes the service's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserLimits {
    pub requests_per_minute: Option<u32>,
    pub request_burst: Option<u32>,
    pub numbers_per_day: Option<u64>,
    pub max_concurrent_tasks: Option<u32>,
    pub max_rows: Option<u64>,
}

impl UserLimits {
    /// Why these limits cannot be stored, if they cannot: `request_burst` and `max_rows` are at
    /// least 1, and every value fits its column.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.request_burst == Some(0) || self.max_rows == Some(0) {
            return Err("request_burst and max_rows must be at least 1".into());
        }
        let small = [
            ("requests_per_minute", self.requests_per_minute),
            ("request_burst", self.request_burst),
            ("max_concurrent_tasks", self.max_concurrent_tasks),
        ];
        for (name, v) in small {
            if v.is_some_and(|v| i32::try_from(v).is_err()) {
                return Err(format!("{name} must be at most {}", i32::MAX));
            }
        }
        for (name, v) in [
            ("numbers_per_day", self.numbers_per_day),
            ("max_rows", self.max_rows),
        ] {
            if v.is_some_and(|v| i64::try_from(v).is_err()) {
                return Err(format!("{name} must be at most {}", i64::MAX));
            }
        }
        Ok(())
    }

    pub(crate) fn from_columns(
        rpm: Option<i32>,
        burst: Option<i32>,
        per_day: Option<i64>,
        concurrent: Option<i32>,
        rows: Option<i64>,
    ) -> Self {
        UserLimits {
            requests_per_minute: rpm.and_then(|v| u32::try_from(v).ok()),
            request_burst: burst.and_then(|v| u32::try_from(v).ok()),
            numbers_per_day: per_day.and_then(|v| u64::try_from(v).ok()),
            max_concurrent_tasks: concurrent.and_then(|v| u32::try_from(v).ok()),
            max_rows: rows.and_then(|v| u64::try_from(v).ok()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRecord {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub limits: UserLimits,
}

type UserRow = (
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i64>,
);

fn user_of(r: UserRow) -> UserRecord {
    UserRecord {
        id: r.0,
        created_at: r.1,
        disabled_at: r.2,
        limits: UserLimits::from_columns(r.3, r.4, r.5, r.6, r.7),
    }
}

const USER_COLUMNS: &str = "id, created_at, disabled_at, requests_per_minute, request_burst, \
    numbers_per_day, max_concurrent_tasks, max_rows";

/// Creates a user; false when one of that id exists already.
pub async fn create(pool: &PgPool, id: &str) -> Result<bool> {
    let r = sqlx::query("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<UserRecord>> {
    let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(user_of))
}

/// What deleting a user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// The user and everything of theirs is gone; these stored files were theirs (the caller
    /// removes them from the result store).
    Done {
        tasks: u64,
        files: Vec<String>,
    },
    NotFound,
    /// Refused: the user has tasks, and their data was not to be deleted.
    HasTasks(u64),
}

/// Deletes a user with their keys, history, quotas and own accounts; with their tasks too
/// when `with_data`, else only while they have none. One transaction: all or nothing.
pub async fn delete(pool: &PgPool, id: &str, with_data: bool) -> Result<Deleted> {
    let mut tx = pool.begin().await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Ok(Deleted::NotFound);
    }
    let tasks: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, result_key, input_key FROM tasks WHERE user_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if !tasks.is_empty() && !with_data {
        return Ok(Deleted::HasTasks(tasks.len() as u64));
    }
    let ids: Vec<&str> = tasks.iter().map(|t| t.0.as_str()).collect();
    let count = ids.len() as u64;
    // Answers are not tied to their task by a foreign key (it would slow every insert).
    sqlx::query("DELETE FROM task_results WHERE task_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let files = tasks
        .into_iter()
        .flat_map(|(_, result, input)| result.into_iter().chain(input))
        .collect();
    Ok(Deleted::Done {
        tasks: count,
        files,
    })
}

/// An enabled user (a JWT's subject must be one).
pub async fn active(pool: &PgPool, id: &str) -> Result<Option<UserRecord>> {
    Ok(get(pool, id).await?.filter(|u| u.disabled_at.is_none()))
}

pub async fn list(pool: &PgPool) -> Result<Vec<UserRecord>> {
    let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY id"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(user_of).collect())
}

/// Disables (every key and token of the user is refused) or enables a user. False when
/// there is no such user.
pub async fn set_disabled(pool: &PgPool, id: &str, disabled: bool) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(disabled)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

fn column<T: TryInto<i64>>(v: Option<T>) -> Option<i64> {
    v.and_then(|v| v.try_into().ok())
}

/// Sets a user's limits (`None`: the service's default). False when there is no such user.
pub async fn set_limits(pool: &PgPool, id: &str, l: UserLimits) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE users SET requests_per_minute = $2::bigint::int, request_burst = $3::bigint::int, \
           numbers_per_day = $4, max_concurrent_tasks = $5::bigint::int, max_rows = $6 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(column(l.requests_per_minute))
    .bind(column(l.request_burst))
    .bind(column(l.numbers_per_day))
    .bind(column(l.max_concurrent_tasks))
    .bind(column(l.max_rows))
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What a user's quotas have used: input rows of tasks created today (UTC) and numbers
/// checked one by one today, and tasks still being checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuotaUse {
    pub numbers_today: u64,
    pub running_tasks: u64,
}

pub async fn quota_use(conn: impl sqlx::PgExecutor<'_>, id: &str) -> Result<QuotaUse> {
    let (numbers, running): (i64, i64) = sqlx::query_as(
        "WITH today AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS t) \
         SELECT (coalesce(sum(total) FILTER (WHERE created_at >= (SELECT t FROM today)), 0) \
                 + (SELECT coalesce(sum(numbers), 0) FROM daily_checks \
                    WHERE user_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date))::bigint, \
           count(*) FILTER (WHERE status IN ('pending', 'processing')) \
         FROM tasks WHERE user_id = $1 \
           AND (status IN ('pending', 'processing') OR created_at >= (SELECT t FROM today))",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(QuotaUse {
        numbers_today: numbers.max(0) as u64,
        running_tasks: running.max(0) as u64,
    })
}

/// Reserves `n` of today's (UTC) numbers for single checks by `id`, when with the rows of the
/// tasks they created today they stay within `limit` (0: no limit). One conditional upsert, so
/// concurrent requests cannot pass the same last slot. Returns the day it counted them on and
/// the day's count with them (task rows and single checks), or `None` when they do not fit
/// (nothing is counted then).
pub async fn reserve_checks(
    pool: &PgPool,
    id: &str,
    n: u64,
    limit: u64,
) -> Result<Option<(chrono::NaiveDate, u64)>> {
    let row: Option<(chrono::NaiveDate, i64)> = sqlx::query_as(
        "WITH start AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS t), \
              tasks_today AS (SELECT coalesce(sum(total), 0)::bigint AS n FROM tasks \
                              WHERE user_id = $1 AND created_at >= (SELECT t FROM start)) \
         INSERT INTO daily_checks AS d (user_id, day, numbers) \
         SELECT $1, (now() AT TIME ZONE 'UTC')::date, $2 \
         WHERE $3 = 0 OR (SELECT n FROM tasks_today) + $2 <= $3 \
         ON CONFLICT (user_id, day) DO UPDATE SET numbers = d.numbers + EXCLUDED.numbers \
         WHERE $3 = 0 OR d.numbers + EXCLUDED.numbers + (SELECT n FROM tasks_today) <= $3 \
         RETURNING day, numbers + (SELECT n FROM tasks_today)",
    )
    .bind(id)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(day, used)| (day, used.max(0) as u64)))
}

/// Gives back `n` numbers reserved on `day` that were not checked after all.
pub async fn release_checks(pool: &PgPool, id: &str, day: chrono::NaiveDate, n: u64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE daily_checks SET numbers = greatest(numbers - $3, 0) WHERE user_id = $1 AND day = $2",
    )
    .bind(id)
    .bind(day)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    Ok(())
}
