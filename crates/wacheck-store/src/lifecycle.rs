//! What happens to a task around its checks: cancellation, export on request, errors worth
//! telling the user about, export retries, chunks given up on, and retention.

use std::time::Duration;

use sqlx::PgPool;
use wacheck_core::{E164, Outcome, TaskId, WhatsApp};

use crate::chunks::{self, Pushes};
use crate::{Result, StoreError};

/// Result of asking to cancel a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// It was pending or processing and is now cancelled.
    Cancelled,
    /// It was cancelled before; nothing changed.
    AlreadyCancelled,
    /// Every number was checked already (completed or exported); it cannot be cancelled.
    Finished,
    NotFound,
}

/// pending/processing -> cancelled. Workers notice within their cancel poll period and stop
/// spending budget on the task; what was checked stays stored.
pub async fn cancel(pool: &PgPool, task: TaskId) -> Result<Cancel> {
    let status: Option<String> = sqlx::query_scalar(
        "WITH c AS ( \
           UPDATE tasks SET status = 'cancelled', cancelled_at = now(), updated_at = now() \
           WHERE id = $1 AND status IN ('pending', 'processing') AND chunks_done < chunk_count \
           RETURNING 'now'::text AS s) \
         SELECT s FROM c UNION ALL \
         SELECT CASE WHEN status IN ('pending', 'processing') AND chunks_done >= chunk_count \
                     THEN 'completed' ELSE status END \
         FROM tasks WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM c)",
    )
    .bind(task.to_string())
    .fetch_optional(pool)
    .await?;
    // The fallback reads the statement's snapshot: `pending`/`processing` there means a
    // concurrent cancel changed the row first.
    Ok(match status.as_deref() {
        Some("now") => Cancel::Cancelled,
        Some("cancelled" | "pending" | "processing") => Cancel::AlreadyCancelled,
        Some(_) => Cancel::Finished,
        None => Cancel::NotFound,
    })
}

/// Result of asking for the result file of a cancelled task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportRequest {
    /// An export was queued now: push it.
    Queued,
    /// One is queued already, or the file exists (or the task exports by itself when done).
    Nothing,
    /// The task still checks numbers; it exports by itself when done.
    StillChecking,
    NotFound,
}

/// Asks for the result file of a cancelled task (what was checked, the rest `unchecked`).
pub async fn request_export(pool: &PgPool, task: TaskId) -> Result<ExportRequest> {
    let status: Option<String> = sqlx::query_scalar(
        "WITH q AS ( \
           UPDATE tasks SET export_enqueued_at = now(), export_retry_at = NULL, \
             updated_at = now() \
           WHERE id = $1 AND status = 'cancelled' AND export_enqueued_at IS NULL \
           RETURNING 'queued'::text AS s) \
         SELECT s FROM q UNION ALL \
         SELECT status FROM tasks WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM q)",
    )
    .bind(task.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(match status.as_deref() {
        Some("queued") => ExportRequest::Queued,
        Some("pending" | "processing") => ExportRequest::StillChecking,
        Some(_) => ExportRequest::Nothing,
        None => ExportRequest::NotFound,
    })
}

/// Of `tasks`, those whose numbers workers should no longer check (cancelled or gone).
pub async fn stopped_among(pool: &PgPool, tasks: &[TaskId]) -> Result<Vec<TaskId>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = tasks.iter().map(ToString::to_string).collect();
    let active: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE id = ANY($1) AND status IN ('pending', 'processing')",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(tasks
        .iter()
        .filter(|t| !active.contains(&t.to_string()))
        .copied()
        .collect())
}

/// Remembers what went wrong last (shown in the task's status).
pub async fn record_error(pool: &PgPool, task: TaskId, error: &str) -> Result<()> {
    sqlx::query("UPDATE tasks SET last_error = $2, last_error_at = now() WHERE id = $1")
        .bind(task.to_string())
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}

/// Start of the error text of a failed export.
pub const EXPORT_FAILED: &str = "storing the result file failed";

/// Whether a worker holds a live lease on one of the task's open chunks.
pub async fn has_live_lease(pool: &PgPool, task: TaskId) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_chunks WHERE task_id = $1 AND done_at IS NULL \
         AND leased_until > now() AND lease_owner IS DISTINCT FROM 'parked')",
    )
    .bind(task.to_string())
    .fetch_one(pool)
    .await?)
}

/// An export failed: remember why and when to try again (exponential, at most `max_delay`).
pub async fn export_failed(
    pool: &PgPool,
    task: TaskId,
    error: &str,
    base_delay: Duration,
    max_delay: Duration,
) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET last_error = $2, last_error_at = now(), \
           export_attempts = export_attempts + 1, \
           export_retry_at = now() + make_interval(secs => \
             LEAST($4, $3 * power(2, LEAST(export_attempts, 20)))) \
         WHERE id = $1",
    )
    .bind(task.to_string())
    .bind(error)
    .bind(base_delay.as_secs_f64())
    .bind(max_delay.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives a lease back so that any worker may take the chunk at once (a stopping worker). The
/// attempt does not count towards giving the chunk up: it ended on purpose.
pub async fn release(pool: &PgPool, task: TaskId, chunk: i32, owner: &str) -> Result<()> {
    sqlx::query(
        "UPDATE task_chunks SET leased_until = now() - interval '1 second', \
           attempts = GREATEST(attempts - 1, 0) \
         WHERE task_id = $1 AND chunk_no = $2 AND lease_owner = $3 AND done_at IS NULL",
    )
    .bind(task.to_string())
    .bind(chunk)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

/// Owner of a parked chunk's lease.
pub const PARKED: &str = "parked";

/// Gives a lease back for later: no account could take the chunk's work, so it rests for
/// `rest` (no worker takes it) and the reconciler queues it again afterwards. The attempt
/// does not count towards giving the chunk up.
pub async fn park(
    pool: &PgPool,
    task: TaskId,
    chunk: i32,
    owner: &str,
    rest: Duration,
) -> Result<()> {
    sqlx::query(
        "UPDATE task_chunks SET leased_until = now() + make_interval(secs => $4), \
           lease_owner = $5, attempts = GREATEST(attempts - 1, 0) \
         WHERE task_id = $1 AND chunk_no = $2 AND lease_owner = $3 AND done_at IS NULL",
    )
    .bind(task.to_string())
    .bind(chunk)
    .bind(owner)
    .bind(rest.as_secs_f64())
    .bind(PARKED)
    .execute(pool)
    .await?;
    Ok(())
}

/// Chunks taken `max_attempts` times without finishing (each worker that took one stopped
/// before storing it): their open numbers become `unknown` with the reason, and the task moves
/// on instead of waiting for ever. Returns what to push.
pub async fn give_up_exhausted(pool: &PgPool, max_attempts: u32, window: u32) -> Result<Pushes> {
    let stuck: Vec<(String, i32, i32)> = sqlx::query_as(
        "SELECT c.task_id, c.chunk_no, c.attempts FROM task_chunks c JOIN tasks t ON t.id = c.task_id \
         WHERE t.status IN ('pending', 'processing') AND c.done_at IS NULL \
           AND c.attempts >= $1 AND (c.leased_until IS NULL OR c.leased_until < now()) \
         LIMIT 100",
    )
    .bind(max_attempts.max(1) as i32)
    .fetch_all(pool)
    .await?;
    let mut pushes = Pushes::default();
    for (task, chunk, attempts) in stuck {
        let task: TaskId = task
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("task id `{task}`")))?;
        let open =
            chunks::open_numbers(&mut *pool.acquire().await?, &task.to_string(), chunk).await?;
        let reason = format!(
            "gave up after {attempts} attempts: every worker that took these numbers stopped \
             before storing their answers"
        );
        let rows: Vec<(E164, Outcome)> = open
            .into_iter()
            .map(|i| {
                (
                    i,
                    Outcome {
                        whatsapp: Some(WhatsApp::Unknown),
                        reason: Some(reason.clone()),
                        ..Default::default()
                    },
                )
            })
            .collect();
        chunks::store_outcomes(pool, task, chunk, &rows, None).await?;
        record_error(pool, task, &reason).await?;
        tracing::warn!(%task, chunk, attempts, "chunk given up; its open numbers are unknown");
        pushes.extend(chunks::finish(pool, task, chunk, window).await?);
    }
    Ok(pushes)
}

/// A task past its retention period.
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: TaskId,
    pub result_key: Option<String>,
    /// The kept upload.
    pub input_key: Option<String>,
}

/// Up to `limit` finished (exported or cancelled) tasks created more than `retention` ago,
/// oldest first. Tasks still at work are left alone.
pub async fn expired(pool: &PgPool, retention: Duration, limit: i64) -> Result<Vec<Expired>> {
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, result_key, input_key FROM tasks \
         WHERE created_at < now() - make_interval(secs => $1) \
         AND status IN ('exported', 'cancelled') ORDER BY created_at LIMIT $2",
    )
    .bind(retention.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, result_key, input_key)| {
            Ok(Expired {
                input_key,
                id: id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("task id `{id}`")))?,
                result_key,
            })
        })
        .collect()
}

/// Deletes a task with its rows, chunks and results.
pub async fn delete(pool: &PgPool, task: TaskId) -> Result<bool> {
    let id = task.to_string();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM task_results WHERE task_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query("DELETE FROM tasks WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(r.rows_affected() == 1)
}

/// Says why a task's work waits (`Some`), or that it moves again (`None`); writes only when
/// that changes, so a waiting worker may call it at every turn.
pub async fn set_waiting(pool: &PgPool, task: TaskId, why: Option<&str>) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET waiting = $2, \
           waiting_since = CASE WHEN $2 IS NULL THEN NULL ELSE coalesce(waiting_since, now()) END \
         WHERE id = $1 AND waiting IS DISTINCT FROM $2",
    )
    .bind(task.to_string())
    .bind(why)
    .execute(pool)
    .await?;
    Ok(())
}
