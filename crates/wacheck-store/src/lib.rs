//! Postgres repositories of wacheck. The only crate that speaks SQL.
//!
//! Functions take a `&PgPool` or `&mut PgConnection` and return domain values. Every write that
//! workers repeat (storing results, finishing a chunk) is guarded so that running it twice
//! changes nothing.

pub mod accounts;
pub mod cache;
pub mod chunks;
pub mod history;
pub mod keys;
pub mod lifecycle;
pub mod literal;
pub mod tasks;
pub mod users;

pub use sqlx::PgPool;

/// Runs `f` again when Postgres chose it as the victim of a deadlock (a chunk's answers and
/// its task's progress are written by concurrent workers; each statement is safe to repeat).
pub(crate) async fn retry_deadlocks<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0u64;
    loop {
        match f().await {
            Err(StoreError::Db(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("40P01") && attempt < 5 =>
            {
                attempt += 1;
                tracing::debug!(attempt, "deadlock, trying again");
                tokio::time::sleep(std::time::Duration::from_millis(10 * attempt)).await;
            }
            r => return r,
        }
    }
}

/// The schema, from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connects a pool and applies pending migrations (safe with many processes: the migrator
/// takes a database lock).
pub async fn open(url: &str, max: u32) -> Result<PgPool> {
    let pool = connect(url, max).await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::Db(e.into()))?;
    Ok(pool)
}

/// Connects a pool. `max` connections; connections are made lazily and re-made after a
/// server restart.
pub async fn connect(url: &str, max: u32) -> Result<PgPool> {
    let opts: sqlx::postgres::PgConnectOptions = url.parse()?;
    let opts = opts.application_name("wacheck");
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .idle_timeout(Some(std::time::Duration::from_secs(300)))
        .test_before_acquire(true)
        .connect_with(opts)
        .await?)
}
