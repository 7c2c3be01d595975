//! The work of a task: chunks of distinct numbers, their leases, results, and the task's
//! progress through pending -> processing -> completed -> exported.
//!
//! Idempotency: a number's answer is inserted only once (`ON CONFLICT DO NOTHING`), and the
//! task's counters and the chunk's `answered` grow in the same statement by exactly the numbers
//! inserted (counters by their rows); a chunk is finished only once, and only when every number
//! is answered. Running any of these twice changes nothing.

use std::collections::HashMap;

use chrono::NaiveDate;
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::{PgPool, Row};
use wacheck_core::{E164, Outcome, TaskId};

use crate::{Result, StoreError};

/// What the caller has to push to the queue after a state change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushes {
    pub chunks: Vec<(TaskId, i32)>,
    pub exports: Vec<TaskId>,
}

impl Pushes {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.exports.is_empty()
    }

    pub fn extend(&mut self, other: Pushes) {
        self.chunks.extend(other.chunks);
        self.exports.extend(other.exports);
    }
}

fn parse_id(s: &str) -> Result<TaskId> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("task id `{s}`")))
}

/// Moves a task forward: keeps up to `window` of its chunks queued, and once every chunk is
/// done marks it completed and asks for its export. Safe to call any time, from anywhere.
pub async fn advance(pool: &PgPool, task: TaskId, window: u32) -> Result<Pushes> {
    crate::retry_deadlocks(|| advance_once(pool, task, window)).await
}

async fn advance_once(pool: &PgPool, task: TaskId, window: u32) -> Result<Pushes> {
    let id = task.to_string();
    let mut tx = pool.begin().await?;
    let row = sqlx::query_as(
        "SELECT status, chunk_count, chunks_done, export_enqueued_at IS NULL \
         FROM tasks WHERE id = $1 FOR UPDATE",
    )
    .bind(&id)
    .fetch_optional(&mut *tx)
    .await?;
    let pushes = match row {
        Some(progress) => advance_locked(&mut tx, task, progress, window).await?,
        None => Pushes::default(),
    };
    tx.commit().await?;
    Ok(pushes)
}

/// A task's status, chunk count, chunks done, and whether its export is still to be asked for,
/// read with the task's row locked.
type Progress = (String, i32, i32, bool);

/// [`advance`] for a task whose row this transaction has locked, as it was read then.
async fn advance_locked(
    tx: &mut sqlx::PgConnection,
    task: TaskId,
    (status, chunk_count, chunks_done, no_export): Progress,
    window: u32,
) -> Result<Pushes> {
    let id = task.to_string();
    let mut pushes = Pushes::default();
    match status.as_str() {
        "pending" | "processing" if chunks_done >= chunk_count => {
            start(&mut *tx, &id).await?;
            sqlx::query(
                "UPDATE tasks SET status = 'completed', completed_at = now(), updated_at = now(), \
                 export_enqueued_at = now() WHERE id = $1",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            pushes.exports.push(task);
        }
        "pending" | "processing" => {
            let chunks: Vec<i32> = sqlx::query_scalar(
                "WITH free AS ( \
                   SELECT GREATEST(0, $2 - count(*)) AS n FROM task_chunks \
                   WHERE task_id = $1 AND done_at IS NULL AND enqueued_at IS NOT NULL) \
                 UPDATE task_chunks SET enqueued_at = now() \
                 WHERE task_id = $1 AND chunk_no IN ( \
                   SELECT chunk_no FROM task_chunks WHERE task_id = $1 AND done_at IS NULL \
                   AND enqueued_at IS NULL ORDER BY chunk_no LIMIT (SELECT n FROM free)) \
                 RETURNING chunk_no",
            )
            .bind(&id)
            .bind(window as i64)
            .fetch_all(&mut *tx)
            .await?;
            pushes.chunks.extend(chunks.into_iter().map(|c| (task, c)));
        }
        "completed" if no_export => {
            sqlx::query("UPDATE tasks SET export_enqueued_at = now() WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            pushes.exports.push(task);
        }
        _ => {}
    }
    Ok(pushes)
}

/// pending -> processing; invalid rows are counted as failures at that moment.
async fn start(conn: &mut sqlx::PgConnection, id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = 'processing', failure = failure + invalid, updated_at = now(), \
         started_at = now() WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A claimed chunk: the numbers of it that still have no outcome.
#[derive(Debug, Clone)]
pub struct Claim {
    pub kind: wacheck_core::TaskKind,
    pub numbers: Vec<E164>,
    /// The task's owner (only the shared pool and this user's accounts may check it).
    pub user_id: String,
    pub use_cache: bool,
}

/// The numbers of a chunk that have no answer yet, in order.
pub(crate) async fn open_numbers(
    conn: &mut sqlx::PgConnection,
    id: &str,
    chunk: i32,
) -> Result<Vec<E164>> {
    let open: Vec<i64> = sqlx::query_scalar(
        "SELECT u.n FROM task_chunks c CROSS JOIN LATERAL unnest(c.numbers) WITH ORDINALITY u(n, ord) \
         WHERE c.task_id = $1 AND c.chunk_no = $2 AND NOT EXISTS ( \
           SELECT 1 FROM task_results r WHERE r.task_id = $1 AND r.number = u.n) \
         ORDER BY u.ord",
    )
    .bind(id)
    .bind(chunk)
    .fetch_all(conn)
    .await?;
    open.into_iter().map(stored_number).collect()
}

fn stored_number(n: i64) -> Result<E164> {
    u64::try_from(n)
        .ok()
        .and_then(E164::from_key)
        .ok_or_else(|| StoreError::Corrupt(format!("stored number `{n}`")))
}

/// Takes the lease of a chunk for `owner` (unique per attempt). `None` when the chunk is done,
/// its task is gone or no longer checked, a live lease is held by anyone, or it was taken
/// `max_attempts` times already (the reconciler gives such a chunk up).
pub async fn claim(
    pool: &PgPool,
    task: TaskId,
    chunk: i32,
    owner: &str,
    lease: std::time::Duration,
    max_attempts: u32,
) -> Result<Option<Claim>> {
    let id = task.to_string();
    // One statement: the lease, and pending -> processing with the first claim of the task.
    let claimed = sqlx::query(
        "WITH c AS ( \
           UPDATE task_chunks c SET leased_until = now() + make_interval(secs => $3), \
             lease_owner = $4, attempts = attempts + 1 \
           FROM tasks t \
           WHERE c.task_id = $1 AND c.chunk_no = $2 AND t.id = c.task_id \
             AND t.status IN ('pending', 'processing') AND c.done_at IS NULL \
             AND (c.leased_until IS NULL OR c.leased_until < now()) AND c.attempts < $5 \
           RETURNING t.kind, c.answered, c.numbers, t.user_id, t.use_cache), \
         started AS ( \
           UPDATE tasks SET status = 'processing', failure = failure + invalid, \
             updated_at = now(), started_at = now() \
           WHERE id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM c)) \
         SELECT * FROM c",
    )
    .bind(&id)
    .bind(chunk)
    .bind(lease.as_secs_f64())
    .bind(owner)
    .bind(max_attempts.max(1) as i32)
    .fetch_optional(pool)
    .await?;
    let Some(claimed) = claimed else {
        return Ok(None);
    };
    let kind: String = claimed.try_get("kind")?;
    let answered: i32 = claimed.try_get("answered")?;
    // Usually nothing of the chunk is answered yet; after an interrupted attempt, look up what
    // is (the lease keeps others from answering meanwhile).
    let numbers = if answered == 0 {
        let all: Vec<i64> = claimed.try_get("numbers")?;
        all.into_iter().map(stored_number).collect::<Result<_>>()?
    } else {
        open_numbers(&mut *pool.acquire().await?, &id, chunk).await?
    };
    Ok(Some(Claim {
        kind: kind
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("kind `{kind}`")))?,
        numbers,
        user_id: claimed.try_get("user_id")?,
        use_cache: claimed.try_get("use_cache")?,
    }))
}

/// Extends a lease this owner holds; false when it lost it.
pub async fn renew(
    pool: &PgPool,
    task: TaskId,
    chunk: i32,
    owner: &str,
    lease: std::time::Duration,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE task_chunks SET leased_until = now() + make_interval(secs => $3) \
         WHERE task_id = $1 AND chunk_no = $2 AND lease_owner = $4 AND done_at IS NULL",
    )
    .bind(task.to_string())
    .bind(chunk)
    .bind(lease.as_secs_f64())
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Budget an account spent on the answers being stored (and on failed calls before them).
#[derive(Debug, Clone, Copy)]
pub struct Usage<'a> {
    pub account: &'a str,
    pub spent: &'a crate::accounts::Spent,
}

/// Stores outcomes of numbers of a chunk that have none yet and grows the task's counters by
/// the rows of exactly those numbers. In the same statement: fresh definite answers of shared
/// accounts go to the result cache (never a simulated one over a real one; users' own
/// accounts could answer anything and so do not feed what everyone is served), and `usage`
/// to the usage log. Returns how many numbers
/// got their outcome now.
pub async fn store_outcomes(
    pool: &PgPool,
    task: TaskId,
    chunk: i32,
    results: &[(E164, Outcome)],
    usage: Option<Usage<'_>>,
) -> Result<u64> {
    crate::retry_deadlocks(|| store_once(pool, task, chunk, results, usage)).await
}

async fn store_once(
    pool: &PgPool,
    task: TaskId,
    chunk: i32,
    results: &[(E164, Outcome)],
    usage: Option<Usage<'_>>,
) -> Result<u64> {
    if results.is_empty() && usage.is_none() {
        return Ok(0);
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH {}, \
             c AS ( \
               SELECT u.n, u.r FROM task_chunks, unnest(numbers, rows) AS u(n, r) \
               WHERE task_id = $1 AND chunk_no = $2 FOR SHARE OF task_chunks), \
             ins AS ( \
               INSERT INTO task_results (task_id, number, outcome, reason, jid, lid, business, \
                 signature, status_update, has_picture, privacy, account_id, cached, simulated) \
               SELECT $1, v.number, v.outcome, v.reason, v.jid, v.lid, v.business, v.signature, \
                 v.status_update, v.has_picture, v.privacy, v.account_id, v.cached, v.simulated \
               FROM v JOIN c ON c.n = v.number \
               ON CONFLICT DO NOTHING RETURNING number, outcome, cached, simulated), \
             sums AS ( \
               SELECT count(*) AS numbers, \
                 coalesce(sum(c.r) FILTER (WHERE ins.outcome IN ('yes', 'no')), 0) AS ok, \
                 coalesce(sum(c.r) FILTER (WHERE ins.outcome = 'unknown'), 0) AS bad, \
                 coalesce(sum(c.r) FILTER (WHERE ins.cached), 0) AS from_cache, \
                 coalesce(bool_or(ins.simulated), false) AS simulated \
               FROM ins JOIN c ON c.n = ins.number), \
             t AS ( \
               UPDATE tasks SET success = success + sums.ok, failure = failure + sums.bad, \
                 unknown = unknown + sums.bad, cached = cached + sums.from_cache, \
                 simulated = tasks.simulated OR sums.simulated, updated_at = now(), \
                 waiting = NULL, waiting_since = NULL \
               FROM sums WHERE id = $1 AND sums.numbers > 0), \
             ch AS ( \
               UPDATE task_chunks SET answered = answered + sums.numbers \
               FROM sums WHERE task_id = $1 AND chunk_no = $2 AND sums.numbers > 0), \
             fresh AS ({}), \
             used AS ( \
               INSERT INTO account_usage (account_id, task_id, user_id, checks, details, calls) \
               SELECT $17, $1, (SELECT user_id FROM tasks WHERE id = $1), $18, $19, $20 \
               WHERE $17 IS NOT NULL AND $20 > 0) \
             SELECT coalesce((SELECT numbers FROM sums), 0)",
            crate::answers::answers_cte(3),
            crate::cache::UPSERT_FROM_V
        )
    });
    let columns = crate::answers::AnswerColumns::of(results);
    let (u_account, u_checks, u_details, u_calls) = match usage {
        Some(u) => (
            Some(u.account),
            u.spent.checks as i64,
            u.spent.details as i64,
            u.spent.calls as i64,
        ),
        None => (None, 0, 0, 0),
    };
    let task_id = task.to_string();
    let q = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(&task_id)
        .bind(chunk);
    let row = columns
        .bind(q)
        .bind(u_account)
        .bind(u_checks)
        .bind(u_details)
        .bind(u_calls)
        .fetch_one(pool)
        .await?;
    let updated: i64 = row.try_get(0)?;
    Ok(updated as u64)
}

/// Marks a chunk done (once) and moves the task forward, in one transaction.
pub async fn finish(pool: &PgPool, task: TaskId, chunk: i32, window: u32) -> Result<Pushes> {
    crate::retry_deadlocks(|| finish_once(pool, task, chunk, window)).await
}

async fn finish_once(pool: &PgPool, task: TaskId, chunk: i32, window: u32) -> Result<Pushes> {
    let id = task.to_string();
    let mut tx = pool.begin().await?;
    let mut done = sqlx::query(
        "UPDATE task_chunks SET done_at = now(), leased_until = NULL \
         WHERE task_id = $1 AND chunk_no = $2 AND done_at IS NULL \
           AND answered >= cardinality(numbers)",
    )
    .bind(&id)
    .bind(chunk)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        // Done already, or `answered` is short: then the answers themselves decide.
        if !open_numbers(&mut tx, &id, chunk).await?.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "chunk {chunk} of {task} finished with numbers unchecked"
            )));
        }
        done = sqlx::query(
            "UPDATE task_chunks SET done_at = now(), leased_until = NULL, \
               answered = cardinality(numbers) \
             WHERE task_id = $1 AND chunk_no = $2 AND done_at IS NULL",
        )
        .bind(&id)
        .bind(chunk)
        .execute(&mut *tx)
        .await?;
    }
    // Counting the chunk locks the task's row, as `advance` needs it locked.
    let progress: Option<Progress> = sqlx::query_as(
        "UPDATE tasks SET chunks_done = chunks_done + $2, \
           updated_at = CASE WHEN $2 > 0 THEN now() ELSE updated_at END \
         WHERE id = $1 \
         RETURNING status, chunk_count, chunks_done, export_enqueued_at IS NULL",
    )
    .bind(&id)
    .bind(done.rows_affected() as i32)
    .fetch_optional(&mut *tx)
    .await?;
    let pushes = match progress {
        Some(progress) => advance_locked(&mut tx, task, progress, window).await?,
        None => Pushes::default(),
    };
    tx.commit().await?;
    Ok(pushes)
}

/// Re-pushes work that has no live job: queued chunks nobody took within `requeue_after`,
/// leases that ran out, and exports asked for longer than `requeue_after` ago. Also fills the
/// window of every unfinished task (a lost push after ingest).
pub async fn reconcile(
    pool: &PgPool,
    requeue_after: std::time::Duration,
    window: u32,
) -> Result<Pushes> {
    let secs = requeue_after.as_secs_f64();
    let mut pushes = Pushes::default();
    let stale: Vec<(String, i32)> = sqlx::query_as(
        "UPDATE task_chunks c SET enqueued_at = now() FROM tasks t \
         WHERE t.id = c.task_id AND t.status IN ('pending', 'processing') AND c.done_at IS NULL \
           AND c.enqueued_at IS NOT NULL \
           AND ((c.leased_until IS NULL AND c.enqueued_at < now() - make_interval(secs => $1)) \
                OR c.leased_until < now()) \
         RETURNING c.task_id, c.chunk_no",
    )
    .bind(secs)
    .fetch_all(pool)
    .await?;
    for (t, c) in stale {
        pushes.chunks.push((parse_id(&t)?, c));
    }
    // Exports: lost ones after `requeue_after`, failed ones when their retry is due.
    let exports: Vec<String> = sqlx::query_scalar(
        "UPDATE tasks SET export_enqueued_at = now(), export_retry_at = NULL \
         WHERE status IN ('completed', 'cancelled') AND result_key IS NULL \
           AND export_enqueued_at IS NOT NULL \
           AND (export_retry_at < now() OR (export_retry_at IS NULL \
                AND export_enqueued_at < now() - make_interval(secs => $1))) \
         RETURNING id",
    )
    .bind(secs)
    .fetch_all(pool)
    .await?;
    for t in exports {
        pushes.exports.push(parse_id(&t)?);
    }
    let unfinished: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE status IN ('pending', 'processing', 'completed') ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    for t in unfinished {
        pushes.extend(advance(pool, parse_id(&t)?, window).await?);
    }
    Ok(pushes)
}

/// One row of a result file, in input order.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub raw: Option<String>,
    pub e164: Option<String>,
    pub outcome: Option<String>,
    pub signature: Option<String>,
    pub status_update: Option<NaiveDate>,
    pub business: Option<bool>,
    pub has_picture: Option<bool>,
    pub privacy: Option<String>,
    pub jid: Option<String>,
    pub cached: bool,
    /// Why the number is `unknown`, when it is.
    pub reason: Option<String>,
}

/// A stored block: its number, the rows' E.164 digits, the raw text of invalid rows.
type BlockRow = (i32, Vec<Option<i64>>, Option<Vec<Option<String>>>);
/// A stored answer: number, outcome, signature, status date, business flag, picture flag,
/// privacy note, JID, cached, reason.
type AnswerRow = (
    i64,
    String,
    Option<String>,
    Option<NaiveDate>,
    Option<bool>,
    Option<bool>,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
);

/// Blocks of input rows per step of [`result_rows`] (64k rows).
const EXPORT_BLOCKS: i32 = 64;

/// A task's rows with their numbers' answers, in input order, as batches of up to 64k rows.
///
/// The join happens here, per batch: the batch's blocks, then the answers of exactly their
/// numbers by primary key. A single SQL join depends on the planner's row estimates, which
/// are wrong for a task that finished before statistics caught up: it picked a per-row
/// nested loop that took 8 s for 1M rows.
pub fn result_rows(pool: &PgPool, task: TaskId) -> BoxStream<'_, Result<Vec<ResultRow>>> {
    // One snapshot for every batch, so the file agrees with itself and with the counters.
    futures::stream::try_unfold((None, Some(0i32)), move |(tx, next)| async move {
        let Some(first) = next else {
            return Ok(None);
        };
        let mut tx = match tx {
            Some(tx) => tx,
            None => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let id = task.to_string();
        let blocks: Vec<BlockRow> = sqlx::query_as(
            "SELECT block_no, numbers, raw FROM task_row_blocks \
             WHERE task_id = $1 AND block_no >= $2 AND block_no < $3 ORDER BY block_no",
        )
        .bind(&id)
        .bind(first)
        .bind(first + EXPORT_BLOCKS)
        .fetch_all(&mut *tx)
        .await?;
        if blocks.is_empty() {
            return Ok(None);
        }
        let mut wanted: Vec<i64> = blocks
            .iter()
            .flat_map(|(_, numbers, _)| numbers.iter().flatten().copied())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let answers: Vec<AnswerRow> = sqlx::query_as(
            "SELECT number, outcome, signature, status_update, business, has_picture, privacy, \
               jid, cached, reason FROM task_results \
                 WHERE task_id = $1 AND number = ANY($2)",
        )
        .bind(&id)
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
        let answers: HashMap<i64, AnswerRow> = answers.into_iter().map(|a| (a.0, a)).collect();
        let mut rows = Vec::with_capacity(blocks.len() * crate::tasks::ROWS_PER_BLOCK);
        for (_, numbers, raw) in &blocks {
            for (i, n) in numbers.iter().enumerate() {
                let raw = raw.as_ref().and_then(|r| r.get(i).cloned().flatten());
                let answer = n.and_then(|n| answers.get(&n));
                rows.push(ResultRow {
                    raw,
                    e164: n.map(|n| format!("+{n}")),
                    outcome: answer.map(|a| a.1.clone()),
                    signature: answer.and_then(|a| a.2.clone()),
                    status_update: answer.and_then(|a| a.3),
                    business: answer.and_then(|a| a.4),
                    has_picture: answer.and_then(|a| a.5),
                    privacy: answer.and_then(|a| a.6.clone()),
                    jid: answer.and_then(|a| a.7.clone()),
                    cached: answer.is_some_and(|a| a.8),
                    reason: answer.and_then(|a| a.9.clone()),
                });
            }
        }
        let more = blocks.len() as i32 == EXPORT_BLOCKS;
        Ok(Some((
            rows,
            (Some(tx), more.then_some(first + EXPORT_BLOCKS)),
        )))
    })
    .boxed()
}

/// completed -> exported, recording where the file is; a cancelled task keeps its status and
/// gets the file. False when it was neither.
pub async fn mark_exported(pool: &PgPool, task: TaskId, key: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE tasks SET status = CASE status WHEN 'completed' THEN 'exported' ELSE status END, \
           result_key = $2, exported_at = now(), updated_at = now(), export_retry_at = NULL \
         WHERE id = $1 AND status IN ('completed', 'cancelled')",
    )
    .bind(task.to_string())
    .bind(key)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}
