//! Chunk processing, the apalis worker around it, and the reconciler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};
use wacheck_blob::BlobStore;
use wacheck_core::{E164, Outcome, TaskId, TaskKind};
use wacheck_engine::check::{CacheSettings, Checker, Effort, Finished, Request, Sink};
use wacheck_engine::native::NativeHost;
use wacheck_engine::pool::Pool;
use wacheck_store::accounts::Spent;
use wacheck_store::{accounts, chunks, lifecycle};

use crate::queue::{Job, Queue};

/// Tuning of the pipeline; every field has a default that suits one machine.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Distinct numbers per chunk (one job).
    pub chunk_size: u32,
    /// Chunks of one task queued at a time; tasks interleave because none can flood the queue.
    pub window: u32,
    /// Jobs one worker process runs at once.
    pub concurrency: usize,
    /// How long a chunk lease lasts without renewal, in seconds.
    pub lease_secs: u64,
    /// A queued job nobody took for this long is pushed again, in seconds.
    pub requeue_after_secs: u64,
    /// Period of the reconciler, in milliseconds.
    pub reconcile_ms: u64,
    /// Period of queue housekeeping (promotion of due jobs, removal of finished ones), in ms.
    pub poll_ms: u64,
    /// Calls per batch before its numbers are stored as `unknown`.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt, in milliseconds.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Grace period for in-flight jobs at shutdown, in seconds; jobs still running after it
    /// give their chunks back.
    pub shutdown_grace_secs: u64,
    /// Longest a backend call may take before it counts as a transient failure, in ms.
    pub call_timeout_ms: u64,
    /// How often a worker looks for cancelled tasks among those it is checking, in ms.
    pub cancel_poll_ms: u64,
    /// A chunk taken this many times without finishing is given up: its open numbers become
    /// `unknown` with the reason, so that its task can end.
    pub max_chunk_attempts: u32,
    /// First delay before a failed export is tried again, doubled per failure, in ms.
    pub export_retry_base_ms: u64,
    /// Longest delay between export attempts, in ms.
    pub export_retry_max_ms: u64,
    /// Tasks, their rows and result files are deleted this many days after creation
    /// (0 keeps them for ever).
    pub retention_days: u32,
    /// Period of the retention sweep, in seconds.
    pub purge_interval_secs: u64,
}

impl PipelineSettings {
    /// How hard the checker tries under these settings, with the cache; no deadline.
    pub fn effort(&self, cache: &CacheSettings, handoff: Duration) -> Effort {
        Effort {
            max_attempts: self.max_attempts.max(1),
            retry_base: Duration::from_millis(self.retry_base_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            call_timeout: Duration::from_millis(self.call_timeout_ms.max(1)),
            handoff,
            deadline: None,
            cache: cache.clone(),
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            chunk_size: 500,
            window: 2,
            concurrency: 4,
            lease_secs: 60,
            requeue_after_secs: 300,
            reconcile_ms: 10_000,
            poll_ms: 200,
            max_attempts: 5,
            retry_base_ms: 200,
            retry_max_ms: 30_000,
            shutdown_grace_secs: 30,
            call_timeout_ms: 30_000,
            cancel_poll_ms: 500,
            max_chunk_attempts: 5,
            export_retry_base_ms: 1_000,
            export_retry_max_ms: 60_000,
            retention_days: 30,
            purge_interval_secs: 3_600,
        }
    }
}

impl PipelineSettings {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

/// Tasks this process is checking, each with a flag raised when the task is cancelled.
#[derive(Default)]
struct Watched {
    tasks: Mutex<HashMap<TaskId, (watch::Sender<bool>, usize)>>,
}

/// A job's interest in its task's cancellation; dropping it ends the interest.
struct Watch {
    watched: Arc<Watched>,
    task: TaskId,
    rx: watch::Receiver<bool>,
}

impl Watched {
    fn watch(self: &Arc<Self>, task: TaskId) -> Watch {
        let mut map = self.tasks.lock().expect("watch map");
        let entry = map
            .entry(task)
            .or_insert_with(|| (watch::channel(false).0, 0));
        entry.1 += 1;
        Watch {
            watched: self.clone(),
            task,
            rx: entry.0.subscribe(),
        }
    }

    fn tasks(&self) -> Vec<TaskId> {
        self.tasks
            .lock()
            .expect("watch map")
            .keys()
            .copied()
            .collect()
    }

    fn stop(&self, tasks: &[TaskId]) {
        let map = self.tasks.lock().expect("watch map");
        for t in tasks {
            if let Some((tx, _)) = map.get(t) {
                let _ = tx.send(true);
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = self.watched.tasks.lock().expect("watch map");
        if let Some(entry) = map.get_mut(&self.task) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.task);
            }
        }
    }
}

/// Why a chunk job stopped before its numbers were all checked.
enum Interrupted {
    Cancelled,
    LeaseLost,
    Shutdown,
    Failed(anyhow::Error),
}

/// Everything a job needs.
pub struct Pipeline {
    pub pool: PgPool,
    pub queue: Queue,
    pub blob: Arc<dyn BlobStore>,
    pub accounts: Arc<Pool>,
    pub settings: PipelineSettings,
    pub cache: CacheSettings,
    /// Unique name of this worker (host, pid, ulid): lease owner and apalis worker name.
    pub owner: String,
    /// Native sessions run by this process.
    pub natives: Arc<NativeHost>,
    /// Running jobs (shutdown waits for them).
    pub(crate) jobs: TaskTracker,
    /// Raised when the grace period is over: running jobs give their chunks back and return.
    pub(crate) abort: watch::Sender<bool>,
    watched: Arc<Watched>,
}

impl Pipeline {
    pub fn new(
        pool: PgPool,
        queue: Queue,
        blob: Arc<dyn BlobStore>,
        accounts: Arc<Pool>,
        settings: PipelineSettings,
        cache: CacheSettings,
        owner: String,
    ) -> Self {
        Self {
            natives: Arc::new(NativeHost::new(accounts.clone(), owner.clone())),
            pool,
            queue,
            blob,
            accounts,
            settings,
            cache,
            owner,
            jobs: TaskTracker::new(),
            abort: watch::channel(false).0,
            watched: Arc::default(),
        }
    }

    /// Runs one job. Errors are logged, never retried by the queue: the reconciler re-pushes
    /// whatever is left undone, and Postgres makes the rerun harmless.
    pub async fn run(&self, job: Job) {
        let result = match &job {
            Job::Chunk { task, chunk } => {
                self.process_chunk(*task, *chunk)
                    .instrument(info_span!("chunk", task = %task, chunk))
                    .await
            }
            Job::Export { task } => {
                let mut abort = self.abort.subscribe();
                let export = crate::export::export_task(&self.pool, self.blob.as_ref(), *task)
                    .instrument(info_span!("export", task = %task));
                let result = tokio::select! {
                    r = export => r,
                    _ = stopped_signal(&mut abort) => Err(anyhow::anyhow!("the worker stopped")),
                };
                if let Err(e) = &result {
                    let (base, max) = (
                        Duration::from_millis(self.settings.export_retry_base_ms),
                        Duration::from_millis(self.settings.export_retry_max_ms),
                    );
                    let why = format!("{}: {e:#}", lifecycle::EXPORT_FAILED);
                    if let Err(e2) =
                        lifecycle::export_failed(&self.pool, *task, &why, base, max).await
                    {
                        warn!("recording the export failure of {task}: {e2}");
                    }
                }
                result
            }
        };
        if let Err(e) = result {
            warn!(?job, "job failed, the reconciler will retry it: {e:#}");
        }
    }

    async fn process_chunk(&self, task: TaskId, chunk: i32) -> anyhow::Result<()> {
        let lease = self.settings.lease();
        // One owner per attempt: two deliveries of a chunk never both hold its lease.
        let owner = format!("{}/{}", self.owner, ulid::Ulid::generate());
        let max = self.settings.max_chunk_attempts;
        let Some(claim) = chunks::claim(&self.pool, task, chunk, &owner, lease, max).await? else {
            return Ok(()); // done already, or someone holds it
        };
        let (lost_tx, mut lost) = watch::channel(false);
        let renewer = self.spawn_renewer(task, chunk, owner.clone(), lost_tx);
        let mut watch = self.watched.watch(task);
        let mut abort = self.abort.subscribe();
        let req = Request {
            user: Some(&claim.user_id),
            details: claim.kind == TaskKind::Detail,
            use_cache: claim.use_cache,
            only: None,
        };
        let effort = self.effort();
        let checker = Checker {
            pool: &self.accounts,
            effort: &effort,
        };
        let mut sink = TaskSink {
            pool: &self.pool,
            task,
            chunk,
        };
        let checked = tokio::select! {
            r = checker.check_all(req, claim.numbers.clone(), &mut sink) => r.map_err(Interrupted::Failed),
            _ = stopped_signal(&mut watch.rx) => Err(Interrupted::Cancelled),
            _ = stopped_signal(&mut lost) => Err(Interrupted::LeaseLost),
            _ = stopped_signal(&mut abort) => Err(Interrupted::Shutdown),
        };
        renewer.abort();
        drop(watch);
        match checked {
            Ok(Finished::Done) => {}
            Ok(Finished::Parked { .. }) => {
                let rest = Duration::from_secs(self.accounts.settings.park_secs.max(1));
                info!(?rest, "no account could take this chunk: parked");
                lifecycle::park(&self.pool, task, chunk, &owner, rest).await?;
                return Ok(());
            }
            Err(Interrupted::Failed(e)) => return Err(e),
            Err(Interrupted::LeaseLost) => {
                warn!("lease lost (another worker holds the chunk now); stopped checking it");
                return Ok(());
            }
            Err(why) => {
                let why = match why {
                    Interrupted::Cancelled => "task cancelled",
                    _ => "worker stopping",
                };
                info!("{why}: chunk given back");
                lifecycle::release(&self.pool, task, chunk, &owner).await?;
                return Ok(());
            }
        }
        let pushes = chunks::finish(&self.pool, task, chunk, self.settings.window).await?;
        self.queue.push_all(&pushes).await
    }

    /// Renews the lease every third of its length; raises `lost` when another owner has it.
    fn spawn_renewer(
        &self,
        task: TaskId,
        chunk: i32,
        owner: String,
        lost: watch::Sender<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        let lease = self.settings.lease();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                match chunks::renew(&pool, task, chunk, &owner, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = lost.send(true);
                        std::future::pending::<()>().await;
                    }
                    Err(e) => warn!("renewing lease of {task}/{chunk}: {e}"),
                }
            }
        })
    }

    /// How hard checks try, from the settings.
    fn effort(&self) -> Effort {
        let handoff = Duration::from_secs(self.accounts.settings.handoff_secs);
        self.settings.effort(&self.cache, handoff)
    }

    /// One reconciler pass: give up chunks nobody could finish, re-push lost work, keep
    /// windows full.
    pub async fn reconcile(&self) -> anyhow::Result<()> {
        let requeue = Duration::from_secs(self.settings.requeue_after_secs);
        let window = self.settings.window;
        let mut pushes =
            lifecycle::give_up_exhausted(&self.pool, self.settings.max_chunk_attempts, window)
                .await?;
        pushes.extend(chunks::reconcile(&self.pool, requeue, window).await?);
        if !pushes.is_empty() {
            info!(
                chunks = pushes.chunks.len(),
                exports = pushes.exports.len(),
                "reconciler re-pushed work"
            );
            self.queue.push_all(&pushes).await?;
        }
        Ok(())
    }

    /// Deletes tasks older than the retention period, their result files first, and account
    /// usage records and single-number history as old; forgets cached answers past the cache's
    /// time. Returns how many tasks it deleted.
    pub async fn purge_expired(&self) -> anyhow::Result<u64> {
        // Cached answers past their time are never used again. Answers are written with the
        // cache turned off too (it only stops their reuse), so the sweep runs either way.
        wacheck_store::cache::purge(&self.pool, Duration::from_secs(self.cache.ttl_secs)).await?;
        let days = self.settings.retention_days;
        if days == 0 {
            return Ok(0);
        }
        let retention = Duration::from_secs(u64::from(days) * 86_400);
        let mut deleted = 0;
        loop {
            let expired = lifecycle::expired(&self.pool, retention, 100).await?;
            for t in &expired {
                for key in t.result_key.iter().chain(&t.input_key) {
                    self.blob.delete(key).await?;
                }
                if lifecycle::delete(&self.pool, t.id).await? {
                    deleted += 1;
                }
            }
            if expired.len() < 100 {
                break;
            }
        }
        accounts::purge_usage(&self.pool, retention).await?;
        wacheck_store::history::purge(&self.pool, retention).await?;
        if deleted > 0 {
            info!(deleted, days, "deleted tasks past their retention period");
        }
        Ok(deleted)
    }

    /// Raises the cancel flag of tasks this process checks that were cancelled meanwhile.
    pub(crate) async fn poll_cancellations(&self) -> anyhow::Result<()> {
        let tasks = self.watched.tasks();
        if !tasks.is_empty() {
            let stopped = lifecycle::stopped_among(&self.pool, &tasks).await?;
            self.watched.stop(&stopped);
        }
        Ok(())
    }
}

/// A chunk's answers go to its task: stored with their counters, errors and waits shown in
/// the task's status.
struct TaskSink<'a> {
    pool: &'a PgPool,
    task: TaskId,
    chunk: i32,
}

#[async_trait::async_trait]
impl Sink for TaskSink<'_> {
    async fn store(
        &mut self,
        rows: &[(E164, Outcome)],
        spent: Option<(&str, &Spent)>,
    ) -> anyhow::Result<()> {
        let usage = spent.map(|(account, spent)| chunks::Usage { account, spent });
        chunks::store_outcomes(self.pool, self.task, self.chunk, rows, usage).await?;
        Ok(())
    }

    async fn spent(&mut self, account: &str, spent: &Spent) -> anyhow::Result<()> {
        accounts::record_spent(self.pool, Some(self.task), None, account, spent).await?;
        Ok(())
    }

    async fn error(&mut self, why: &str) {
        if let Err(e) = lifecycle::record_error(self.pool, self.task, why).await {
            warn!("recording a backend error: {e}");
        }
    }

    async fn waiting(&mut self, why: Option<&str>) {
        if let Err(e) = lifecycle::set_waiting(self.pool, self.task, why).await {
            warn!("recording why the task waits: {e}");
        }
    }
}

pub(crate) async fn handle(job: Job, pipeline: Data<Arc<Pipeline>>) -> Result<(), BoxDynError> {
    // Each job on its own tokio task, so jobs of one worker use every core.
    let pipeline = Arc::clone(&pipeline);
    let jobs = pipeline.jobs.clone();
    jobs.spawn(async move { pipeline.run(job).await }).await?;
    Ok(())
}

pub(crate) async fn stopped_signal(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
