//! Users and API keys. Keys are random (160 bits), shown once, stored as SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::Result;

/// The visible part of every key; the rest is secret.
pub const KEY_PREFIX: &str = "wck_";

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// What a key may do: `check` (single-number routes), `tasks` (the task API), `admin`
/// (accounts, users and keys of everyone).
pub const SCOPES: [&str; 3] = ["check", "tasks", "admin"];

/// The scopes a key gets unless told otherwise.
pub const DEFAULT_SCOPES: [&str; 2] = ["check", "tasks"];

/// Creates the user if missing and a new key for it with the default scopes; returns the
/// plaintext key.
pub async fn create(pool: &PgPool, user_id: &str) -> Result<String> {
    create_with_scopes(pool, user_id, &DEFAULT_SCOPES).await
}

/// Creates the user if missing and a new key for it with `scopes`; returns the plaintext key.
pub async fn create_with_scopes(pool: &PgPool, user_id: &str, scopes: &[&str]) -> Result<String> {
    let mut secret = [0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ulid::Ulid::generate().to_string())
    .bind(user_id)
    .bind(&key[..KEY_PREFIX.len() + 8])
    .bind(hash_key(&key))
    .bind(&scopes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(key)
}

/// Creates a user if there is none of that id.
pub async fn ensure_user(pool: &PgPool, user_id: &str) -> Result<()> {
    sqlx::query("INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// `last_used_at` is written at most this often per key, so that polling a task does not turn
/// every read into a write (and every request of a key into a wait for the same row lock).
const LAST_USED_RESOLUTION_SECS: f64 = 60.0;

/// A live key's user and scopes.
pub async fn authenticate(pool: &PgPool, key: &str) -> Result<Option<(String, Vec<String>)>> {
    let row: Option<(String, String, bool, Vec<String>)> = sqlx::query_as(
        "SELECT id, user_id, coalesce(last_used_at < now() - make_interval(secs => $2), true), \
           scopes \
         FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_key(key))
    .bind(LAST_USED_RESOLUTION_SECS)
    .fetch_optional(pool)
    .await?;
    let Some((id, user, stale, scopes)) = row else {
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
    Ok(Some((user, scopes)))
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
