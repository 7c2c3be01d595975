//! API keys. Keys are random (160 bits), shown once, stored as SHA-256, with a visible prefix,
//! scopes, a name, the time of their last use, and revocation.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::Result;
use crate::users::{self, UserLimits};

/// The visible part of every key; the rest is secret.
pub const KEY_PREFIX: &str = "wck_";

/// Characters of a key shown in lists (`wck_` and 8 hex digits of its 40).
const SHOWN: usize = KEY_PREFIX.len() + 8;

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// What a key may do: `check` (single-number routes), `tasks` (the task API), `admin`
/// (accounts, users and keys of everyone).
pub const SCOPES: [&str; 3] = ["check", "tasks", "admin"];

/// The scopes a key gets unless told otherwise.
pub const DEFAULT_SCOPES: [&str; 2] = ["check", "tasks"];

/// A key as stored (never its secret part).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub user_id: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

type KeyRow = (
    String,
    String,
    String,
    Option<String>,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn key_of(r: KeyRow) -> KeyRecord {
    KeyRecord {
        id: r.0,
        user_id: r.1,
        prefix: r.2,
        name: r.3,
        scopes: r.4,
        created_at: r.5,
        last_used_at: r.6,
        revoked_at: r.7,
    }
}

const KEY_COLUMNS: &str = "id, user_id, prefix, name, scopes, created_at, last_used_at, revoked_at";

/// Creates the user if missing and a new key for it with the default scopes; returns the
/// plaintext key.
pub async fn create(pool: &PgPool, user_id: &str) -> Result<String> {
    create_with_scopes(pool, user_id, &DEFAULT_SCOPES).await
}

/// Creates the user if missing and a new key for it with `scopes`; returns the plaintext key.
pub async fn create_with_scopes(pool: &PgPool, user_id: &str, scopes: &[&str]) -> Result<String> {
    users::create(pool, user_id).await?;
    Ok(issue(pool, user_id, scopes, None).await?.1)
}

/// A new key for an existing user: its record and the plaintext key (shown once).
pub async fn issue(
    pool: &PgPool,
    user_id: &str,
    scopes: &[&str],
    name: Option<&str>,
) -> Result<(KeyRecord, String)> {
    let mut secret = [0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let row: KeyRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_keys (id, user_id, prefix, key_hash, scopes, name) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {KEY_COLUMNS}"
    )))
    .bind(ulid::Ulid::generate().to_string())
    .bind(user_id)
    .bind(&key[..SHOWN])
    .bind(hash_key(&key))
    .bind(&scopes)
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok((key_of(row), key))
}

/// Keys of one user, or of everyone, newest first.
pub async fn list(pool: &PgPool, user_id: Option<&str>) -> Result<Vec<KeyRecord>> {
    let rows: Vec<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE $1::text IS NULL OR user_id = $1 \
         ORDER BY created_at DESC, id DESC"
    )))
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(key_of).collect())
}

pub async fn get(pool: &PgPool, id: &str) -> Result<Option<KeyRecord>> {
    let row: Option<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(key_of))
}

/// Revokes a key (it is refused from now on). False when there is no such live key.
pub async fn revoke(pool: &PgPool, id: &str) -> Result<bool> {
    let r =
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(pool)
            .await?;
    Ok(r.rows_affected() == 1)
}

/// Creates a user if there is none of that id.
pub async fn ensure_user(pool: &PgPool, user_id: &str) -> Result<()> {
    users::create(pool, user_id).await.map(drop)
}

/// `last_used_at` is written at most this often per key, so that polling a task does not turn
/// every read into a write (and every request of a key into a wait for the same row lock).
const LAST_USED_RESOLUTION_SECS: f64 = 60.0;

/// Who a live key of an active user speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    pub key_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub limits: UserLimits,
}

/// The key's owner, scopes and limits; `None` for an unknown or revoked key, or a key of a
/// disabled user.
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<KeyAuth>> {
    type Row = (
        String,
        String,
        bool,
        Vec<String>,
        Option<i32>,
        Option<i32>,
        Option<i64>,
        Option<i32>,
        Option<i64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT k.id, k.user_id, coalesce(k.last_used_at < now() - make_interval(secs => $2), true), \
           k.scopes, u.requests_per_minute, u.request_burst, u.numbers_per_day, \
           u.max_concurrent_tasks, u.max_rows \
         FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL",
    )
    .bind(hash_key(key))
    .bind(LAST_USED_RESOLUTION_SECS)
    .fetch_optional(pool)
    .await?;
    let Some((id, user, stale, scopes, rpm, burst, per_day, concurrent, rows)) = row else {
        return Ok(None);
    };
    if stale {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1 \
             AND coalesce(last_used_at < now() - make_interval(secs => $2), true)",
        )
        .bind(&id)
        .bind(LAST_USED_RESOLUTION_SECS)
        .execute(pool)
        .await?;
    }
    Ok(Some(KeyAuth {
        key_id: id,
        user_id: user,
        scopes,
        limits: UserLimits::from_columns(rpm, burst, per_day, concurrent, rows),
    }))
}

/// A random secret shared by every process of this deployment, made on first use.
pub async fn shared_secret(pool: &PgPool, name: &str) -> Result<String> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(name)
        .bind(hex::encode(fresh))
        .execute(pool)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(name)
            .fetch_one(pool)
            .await?,
    )
}
