//! Postgres repositories of wacheck. The only crate that speaks SQL.
//!
//! Functions take a `&PgPool` or `&mut PgConnection` and return domain values. Every write that
//! workers repeat (storing results, finishing a chunk) is guarded so that running it twice
//! changes nothing.

pub mod accounts;
mod answers;
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
            Err(StoreError::Db(e)) if e.sqlstate().as_deref() == Some("40P01") && attempt < 5 => {
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

/// What went wrong in the store, sorted here so that callers never look at database codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (refused or lost connections, no connection free).
    #[error("the database is unreachable: {0}")]
    Unavailable(DbError),
    /// Text Postgres cannot hold: a NUL character, in a parameter or a JSON string.
    #[error("text the database cannot hold: {0}")]
    UnsupportedText(DbError),
    #[error("database error: {0}")]
    Db(DbError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// A database error, opaque: its meaning is the [`StoreError`] variant that holds it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(sqlx::Error);

impl DbError {
    /// The SQLSTATE of an error the server answered.
    fn sqlstate(&self) -> Option<String> {
        match &self.0 {
            sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let e = DbError(e);
        match (&e.0, e.sqlstate().as_deref()) {
            (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed, _) => {
                StoreError::Unavailable(e)
            }
            // character_not_in_repertoire, untranslatable_character
            (_, Some("22021" | "22P05")) => StoreError::UnsupportedText(e),
            _ => StoreError::Db(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connects a pool and applies pending migrations (safe with many processes: the migrator
/// takes a database lock).
pub async fn open(url: &str, max: u32) -> Result<PgPool> {
    let pool = connect(url, max).await?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::from(sqlx::Error::from(e)))?;
    Ok(pool)
}

/// Whether the database answers a query now.
pub async fn answers(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
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
        // A connection used within the last second is handed out as it is: pinging each one
        // would add a round trip to every statement of a busy worker. One idle for longer is
        // asked first, so that connections a server restart broke are replaced, not used.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > std::time::Duration::from_secs(1) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(opts)
        .await?)
}
