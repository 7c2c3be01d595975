//! Chunk processing, the apalis worker around it, and the reconciler.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BackendExt, BoxDynError, Data, WorkerBuilder, WorkerBuilderExt};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};
use wacheck_backends::{BackendError, CheckResult, Presence};
use wacheck_blob::BlobStore;
use wacheck_core::{E164, Outcome, TaskId, TaskKind, WhatsApp};
use wacheck_store::chunks;

use crate::accounts::{Account, Accounts};
use crate::queue::{Job, Queue};

/// Tuning of the pipeline; every field has a default that suits one machine.
#[derive(Debug, Clone, Deserialize)]
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
    /// Grace period for in-flight jobs at shutdown, in seconds.
    pub shutdown_grace_secs: u64,
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
        }
    }
}

impl PipelineSettings {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
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
}

impl Pipeline {
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
                crate::export::export_task(self, *task)
                    .instrument(info_span!("export", task = %task))
                    .await
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
        let Some(claim) = chunks::claim(&self.pool, task, chunk, &owner, lease).await? else {
            return Ok(()); // done already, or someone holds it
        };
        let renewer = self.spawn_renewer(task, chunk, owner);
        let result = self.check_numbers(task, claim.kind, &claim.numbers).await;
        renewer.abort();
        result?;
        let pushes = chunks::finish(&self.pool, task, chunk, self.settings.window).await?;
        self.queue.push_all(&pushes).await
    }

    fn spawn_renewer(
        &self,
        task: TaskId,
        chunk: i32,
        owner: String,
    ) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        let lease = self.settings.lease();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = chunks::renew(&pool, task, chunk, &owner, lease).await {
                    warn!("renewing lease of {task}/{chunk}: {e}");
                }
            }
        })
    }

    /// Checks numbers batch by batch, storing each batch's outcomes as soon as it is known
    /// (counters grow while the task runs; a crash loses at most the batch in flight).
    async fn check_numbers(
        &self,
        task: TaskId,
        kind: TaskKind,
        numbers: &[(i32, E164)],
    ) -> anyhow::Result<()> {
        let account = self.accounts.pick();
        for batch in numbers.chunks(account.batch_size()) {
            let nums: Vec<E164> = batch.iter().map(|(_, n)| n.clone()).collect();
            let mut outcomes = self.check_batch(account, &nums).await;
            if kind == TaskKind::Detail {
                self.add_details(account, &nums, &mut outcomes).await;
            }
            let rows: Vec<(i32, Outcome)> = batch.iter().map(|(i, _)| *i).zip(outcomes).collect();
            chunks::store_outcomes(&self.pool, task, &rows).await?;
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

    async fn check_batch(&self, account: &Account, nums: &[E164]) -> Vec<Outcome> {
        let mut attempt = 0;
        let err = loop {
            account.acquire(nums.len()).await;
            match account.backend.check(nums).await {
                Ok(results) if results.len() == nums.len() => {
                    return results.into_iter().map(outcome_of).collect();
                }
                Ok(results) => {
                    break BackendError::Permanent(format!(
                        "backend answered {} results for {} numbers",
                        results.len(),
                        nums.len()
                    ));
                }
                Err(e) if e.is_retryable() && attempt + 1 < self.settings.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt, &e)).await;
                    attempt += 1;
                }
                Err(e) => break e,
            }
        };
        warn!(account = %account.name, numbers = nums.len(), "batch left unknown: {err}");
        nums.iter()
            .map(|_| Outcome {
                whatsapp: Some(WhatsApp::Unknown),
                reason: Some(err.to_string()),
                ..Default::default()
            })
            .collect()
    }

    /// Fills about text, its date and the business flag of numbers on WhatsApp.
    async fn add_details(&self, account: &Account, nums: &[E164], outcomes: &mut [Outcome]) {
        let on: Vec<usize> = (0..nums.len())
            .filter(|&i| outcomes[i].whatsapp == Some(WhatsApp::Yes))
            .collect();
        if on.is_empty() {
            return;
        }
        let wanted: Vec<E164> = on.iter().map(|&i| nums[i].clone()).collect();
        let mut attempt = 0;
        loop {
            account.acquire(wanted.len()).await;
            match account.backend.details(&wanted).await {
                Ok(details) if details.len() == wanted.len() => {
                    for (&i, d) in on.iter().zip(details) {
                        let o = &mut outcomes[i];
                        o.signature = d.about;
                        o.status_update = d.about_set_at;
                        o.business = d.business.or(o.business);
                    }
                    return;
                }
                Err(e) if e.is_retryable() && attempt + 1 < self.settings.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt, &e)).await;
                    attempt += 1;
                }
                other => {
                    // The yes/no answer stands; only the details are missing.
                    let why = match other {
                        Err(e) => e.to_string(),
                        Ok(d) => format!("{} details for {} numbers", d.len(), wanted.len()),
                    };
                    warn!(account = %account.name, "details left empty: {why}");
                    return;
                }
            }
        }
    }

    /// One reconciler pass: re-push lost work, keep windows full, tidy the queue.
    pub async fn reconcile(&self) -> anyhow::Result<()> {
        let requeue = Duration::from_secs(self.settings.requeue_after_secs);
        let pushes = chunks::reconcile(&self.pool, requeue, self.settings.window).await?;
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
    tokio::spawn(async move { pipeline.run(job).await }).await?;
    Ok(())
}

/// A running worker: the apalis worker plus the reconciler and queue housekeeping loops.
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

impl WorkerHandle {
    /// Stops fetching, lets in-flight jobs finish within the grace period, then returns.
    /// Jobs still running after it are abandoned; their leases run out and the reconciler
    /// hands them to another worker.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(self.grace, t).await.is_err() {
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

pub fn spawn_worker(pipeline: Arc<Pipeline>) -> WorkerHandle {
    let (stop, stopped) = watch::channel(false);
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

    let p = pipeline.clone();
    let mut rx = stopped.clone();
    let reconciler = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(Duration::from_millis(p.settings.reconcile_ms.max(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped_signal(&mut rx) => return,
            }
            if let Err(e) = p.reconcile().await {
                warn!("reconciler pass failed: {e:#}");
            }
        }
    });

    let p = pipeline;
    let mut rx = stopped;
    let housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped_signal(&mut rx) => return,
            }
            if let Err(e) = p.queue.promote_due().await {
                warn!("promoting due jobs: {e:#}");
            }
            n += 1;
            if n.is_multiple_of(25)
                && let Err(e) = p.queue.clean_finished().await
            {
                warn!("cleaning finished jobs: {e:#}");
            }
        }
    });

    WorkerHandle {
        stop,
        tasks: vec![apalis, reconciler, housekeeping],
        grace: Duration::from_secs(settings.shutdown_grace_secs),
    }
}
