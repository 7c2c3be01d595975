//! Chunk processing, the apalis worker around it, and the reconciler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::{BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};
use wacheck_backends::{BackendError, CheckResult, Presence};
use wacheck_blob::BlobStore;
use wacheck_core::{E164, Outcome, TaskId, TaskKind, WhatsApp};
use wacheck_store::{chunks, lifecycle};

use crate::accounts::{Account, Accounts};
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

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms.max(1))
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
}

/// Everything a job needs.
pub struct Pipeline {
    pub pool: PgPool,
    pub queue: Queue,
    pub blob: Arc<dyn BlobStore>,
    pub accounts: Arc<Accounts>,
    pub settings: PipelineSettings,
    /// Unique name of this worker (host, pid, ulid): lease owner and apalis worker name.
    pub owner: String,
    /// Running jobs (shutdown waits for them).
    jobs: TaskTracker,
    /// Raised when the grace period is over: running jobs give their chunks back and return.
    abort: watch::Sender<bool>,
    watched: Arc<Watched>,
}

impl Pipeline {
    pub fn new(
        pool: PgPool,
        queue: Queue,
        blob: Arc<dyn BlobStore>,
        accounts: Arc<Accounts>,
        settings: PipelineSettings,
        owner: String,
    ) -> Self {
        Self {
            pool,
            queue,
            blob,
            accounts,
            settings,
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
                let export = crate::export::export_task(self, *task)
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
        let checked = tokio::select! {
            r = self.check_numbers(task, chunk, claim.kind, &claim.numbers) => Ok(r),
            _ = stopped_signal(&mut watch.rx) => Err(Interrupted::Cancelled),
            _ = stopped_signal(&mut lost) => Err(Interrupted::LeaseLost),
            _ = stopped_signal(&mut abort) => Err(Interrupted::Shutdown),
        };
        renewer.abort();
        drop(watch);
        match checked {
            Ok(result) => result?,
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

    /// Checks numbers batch by batch, storing each batch's outcomes as soon as it is known
    /// (counters grow while the task runs; a crash loses at most the batch in flight).
    async fn check_numbers(
        &self,
        task: TaskId,
        chunk: i32,
        kind: TaskKind,
        numbers: &[E164],
    ) -> anyhow::Result<()> {
        let account = self.accounts.pick();
        for batch in numbers.chunks(account.batch_size()) {
            let mut outcomes = self.check_batch(task, account, batch).await;
            if kind == TaskKind::Detail {
                self.add_details(task, account, batch, &mut outcomes).await;
            }
            let rows: Vec<(E164, Outcome)> = batch.iter().cloned().zip(outcomes).collect();
            chunks::store_outcomes(&self.pool, task, chunk, &rows).await?;
        }
        Ok(())
    }

    fn backoff(&self, attempt: u32, err: &BackendError) -> Duration {
        if let BackendError::RateLimited { backoff: Some(d) } = err {
            return *d;
        }
        let ms = self
            .settings
            .retry_base_ms
            .saturating_mul(1 << attempt.min(16));
        Duration::from_millis(ms.min(self.settings.retry_max_ms))
    }

    /// One backend call under the call timeout; a malformed answer (not one result per
    /// number) is a transient error like a timeout.
    async fn call<T>(
        &self,
        asked: usize,
        call: impl Future<Output = Result<Vec<T>, BackendError>>,
    ) -> Result<Vec<T>, BackendError> {
        match tokio::time::timeout(self.settings.call_timeout(), call).await {
            Err(_) => Err(BackendError::Transient(format!(
                "no answer within {} ms",
                self.settings.call_timeout_ms
            ))),
            Ok(Ok(r)) if r.len() != asked => Err(BackendError::Transient(format!(
                "malformed answer: {} results for {asked} numbers",
                r.len()
            ))),
            Ok(r) => r,
        }
    }

    /// Waits before the next try after `err`; false when the error is final. Rate limits are
    /// waited out without using up attempts (the account is fine, only busy); other
    /// retryable errors use one of `max_attempts`.
    async fn retry_after(
        &self,
        task: TaskId,
        account: &Account,
        attempt: &mut u32,
        limited: &mut u32,
        err: &BackendError,
    ) -> bool {
        let retry = match err {
            // Waited out, but not for ever (a banned account may answer 429 for good).
            BackendError::RateLimited { .. } => {
                *limited + 1 < self.settings.max_attempts.saturating_mul(20)
            }
            e if e.is_retryable() => *attempt + 1 < self.settings.max_attempts,
            _ => false,
        };
        if !retry {
            return false;
        }
        let (n, delay) = if matches!(err, BackendError::RateLimited { .. }) {
            *limited += 1;
            (
                *limited,
                self.backoff(*limited - 1, err)
                    .max(Duration::from_millis(50)),
            )
        } else {
            *attempt += 1;
            (*attempt, self.backoff(*attempt - 1, err))
        };
        let why = format!("{err} (account {}, retry {n} in {delay:?})", account.name);
        if let Err(e) = lifecycle::record_error(&self.pool, task, &why).await {
            warn!("recording a backend error: {e}");
        }
        tokio::time::sleep(delay).await;
        true
    }

    async fn check_batch(&self, task: TaskId, account: &Account, nums: &[E164]) -> Vec<Outcome> {
        let (mut attempt, mut limited) = (0, 0);
        let err = loop {
            account.acquire(nums.len()).await;
            match self.call(nums.len(), account.backend.check(nums)).await {
                Ok(results) => return results.into_iter().map(outcome_of).collect(),
                Err(e) => {
                    if !self
                        .retry_after(task, account, &mut attempt, &mut limited, &e)
                        .await
                    {
                        break e;
                    }
                }
            }
        };
        warn!(account = %account.name, numbers = nums.len(), "batch left unknown: {err}");
        let why = format!("{} numbers left unknown: {err}", nums.len());
        if let Err(e) = lifecycle::record_error(&self.pool, task, &why).await {
            warn!("recording a backend error: {e}");
        }
        nums.iter()
            .map(|_| Outcome {
                whatsapp: Some(WhatsApp::Unknown),
                reason: Some(err.to_string()),
                ..Default::default()
            })
            .collect()
    }

    /// Fills about text, its date and the business flag of numbers on WhatsApp.
    async fn add_details(
        &self,
        task: TaskId,
        account: &Account,
        nums: &[E164],
        outcomes: &mut [Outcome],
    ) {
        let on: Vec<usize> = (0..nums.len())
            .filter(|&i| outcomes[i].whatsapp == Some(WhatsApp::Yes))
            .collect();
        if on.is_empty() {
            return;
        }
        let wanted: Vec<E164> = on.iter().map(|&i| nums[i].clone()).collect();
        let (mut attempt, mut limited) = (0, 0);
        loop {
            account.acquire(wanted.len()).await;
            match self
                .call(wanted.len(), account.backend.details(&wanted))
                .await
            {
                Ok(details) => {
                    for (&i, d) in on.iter().zip(details) {
                        let o = &mut outcomes[i];
                        o.signature = d.about;
                        o.status_update = d.about_set_at;
                        o.business = d.business.or(o.business);
                    }
                    return;
                }
                Err(e) => {
                    if !self
                        .retry_after(task, account, &mut attempt, &mut limited, &e)
                        .await
                    {
                        // The yes/no answer stands; only the details are missing.
                        warn!(account = %account.name, "details left empty: {e}");
                        return;
                    }
                }
            }
        }
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

    /// Deletes tasks older than the retention period, their result files first. Returns how
    /// many it deleted.
    pub async fn purge_expired(&self) -> anyhow::Result<u64> {
        let days = self.settings.retention_days;
        if days == 0 {
            return Ok(0);
        }
        let retention = Duration::from_secs(u64::from(days) * 86_400);
        let mut deleted = 0;
        loop {
            let expired = lifecycle::expired(&self.pool, retention, 100).await?;
            for t in &expired {
                if let Some(key) = &t.result_key {
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
        if deleted > 0 {
            info!(deleted, days, "deleted tasks past their retention period");
        }
        Ok(deleted)
    }

    /// Raises the cancel flag of tasks this process checks that were cancelled meanwhile.
    async fn poll_cancellations(&self) -> anyhow::Result<()> {
        let tasks = self.watched.tasks();
        if !tasks.is_empty() {
            let stopped = lifecycle::stopped_among(&self.pool, &tasks).await?;
            self.watched.stop(&stopped);
        }
        Ok(())
    }
}

fn outcome_of(r: CheckResult) -> Outcome {
    match r.presence {
        Presence::Yes { jid, lid, business } => Outcome {
            whatsapp: Some(WhatsApp::Yes),
            jid: Some(jid),
            lid,
            business,
            ..Default::default()
        },
        Presence::No => Outcome {
            whatsapp: Some(WhatsApp::No),
            ..Default::default()
        },
        Presence::Unknown { reason } => Outcome {
            whatsapp: Some(WhatsApp::Unknown),
            reason: Some(reason),
            ..Default::default()
        },
    }
}

async fn handle(job: Job, pipeline: Data<Arc<Pipeline>>) -> Result<(), BoxDynError> {
    // Each job on its own tokio task, so jobs of one worker use every core.
    let pipeline = Arc::clone(&pipeline);
    let jobs = pipeline.jobs.clone();
    jobs.spawn(async move { pipeline.run(job).await }).await?;
    Ok(())
}

/// A running worker: the apalis worker plus the reconciler, housekeeping, cancellation and
/// retention loops.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    /// Stops the cancel poller, which keeps running while jobs finish in the grace period.
    stop_late: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pipeline: Arc<Pipeline>,
    grace: Duration,
}

impl WorkerHandle {
    /// Stops fetching and lets running jobs finish within the grace period; jobs still running
    /// then give their chunks back (any worker may take them at once) and stop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let jobs = &self.pipeline.jobs;
        jobs.close();
        if tokio::time::timeout(self.grace, jobs.wait()).await.is_err() {
            warn!(
                running = jobs.len(),
                "grace period over: running jobs give their work back"
            );
            let _ = self.pipeline.abort.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), jobs.wait()).await;
        }
        let _ = self.stop_late.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

async fn stopped_signal(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs `pass` every `period` until the stop signal; a failed pass is logged and the next one
/// comes at its time.
fn periodic<F, Fut>(
    pipeline: &Arc<Pipeline>,
    stopped: &watch::Receiver<bool>,
    period: Duration,
    what: &'static str,
    pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<Pipeline>) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let p = pipeline.clone();
    let mut rx = stopped.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped_signal(&mut rx) => return,
            }
            if let Err(e) = pass(p.clone()).await {
                warn!("{what} failed: {e:#}");
            }
        }
    })
}

pub fn spawn_worker(pipeline: Arc<Pipeline>) -> WorkerHandle {
    let (stop, stopped) = watch::channel(false);
    let (stop_late, stopped_late) = watch::channel(false);
    let settings = pipeline.settings.clone();
    let poll = Duration::from_millis(settings.poll_ms.max(10));

    // The job worker, restarted under a fresh name whenever it dies (a Redis flush or restart
    // unregisters it; apalis stops a worker on any queue error).
    let p = pipeline.clone();
    let mut rx = stopped.clone();
    let apalis = tokio::spawn(async move {
        for generation in 0u64.. {
            let name = format!("{}-{generation}", p.owner);
            let worker = WorkerBuilder::new(name)
                .backend(p.queue.storage().poll_with_interval(poll))
                .data(p.clone())
                .concurrency(p.settings.concurrency.max(1))
                .build(handle);
            let mut signal_rx = rx.clone();
            let signal = async move {
                stopped_signal(&mut signal_rx).await;
                Ok::<(), std::io::Error>(())
            };
            let result = worker.run_until(signal).await;
            if *rx.borrow_and_update() {
                return;
            }
            warn!("job worker stopped ({result:?}); starting a new one");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped_signal(&mut rx) => return,
            }
        }
    });

    let ms = Duration::from_millis;
    let reconciler = periodic(
        &pipeline,
        &stopped,
        ms(settings.reconcile_ms.max(100)),
        "reconciler pass",
        |p| async move { p.reconcile().await },
    );
    let cancels = periodic(
        &pipeline,
        &stopped_late,
        ms(settings.cancel_poll_ms.max(10)),
        "looking for cancelled tasks",
        |p| async move { p.poll_cancellations().await },
    );
    let retention = periodic(
        &pipeline,
        &stopped,
        Duration::from_secs(settings.purge_interval_secs.max(1)),
        "retention sweep",
        |p| async move { p.purge_expired().await.map(drop) },
    );
    let promoter = periodic(
        &pipeline,
        &stopped,
        poll,
        "promoting due jobs",
        |p| async move { p.queue.promote_due().await.map(drop) },
    );
    let cleaner = periodic(
        &pipeline,
        &stopped,
        poll * 25,
        "cleaning finished jobs",
        |p| async move { p.queue.clean_finished().await.map(drop) },
    );

    WorkerHandle {
        stop,
        stop_late,
        tasks: vec![apalis, reconciler, cancels, retention, promoter, cleaner],
        pipeline,
        grace: Duration::from_secs(settings.shutdown_grace_secs),
    }
}
