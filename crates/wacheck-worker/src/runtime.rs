//! A worker process at run time: the job worker (apalis, restarted whenever it stops) and the
//! background loops, each in this one place with its period and what it repairs. Every pass is safe to repeat and to run in many processes at once: Postgres
//! holds the truth, and a pass only brings Redis, the accounts or the stored data back in
//! line with it. (The account pool's refresher, `wacheck_engine::pool::spawn_refresher`,
//! runs in API processes too.)
//!
//! | Loop | Period | What it repairs |
//! |---|---|---|
//! | reconciler | `reconcile_ms` (10 s) | chunks queued but never taken, expired leases, lost export jobs, chunks taken too often (given up as `unknown`), windows not full |
//! | cancellations | `cancel_poll_ms` | chunks still being checked for a task that was cancelled |
//! | prober | `accounts.probe_secs` (30 s) | gateway sessions out of rotation that work again |
//! | native sessions | `accounts.refresh_ms` | native sessions this process should run, or stop |
//! | retention | `purge_interval_secs` | tasks, usage, history and cached answers past their time |
//! | promoter | `poll_ms` (200 ms) | due jobs left in the queue's scheduled set (an apalis-redis limit) |
//! | cleaner | 25 × `poll_ms` | finished jobs the queue keeps for ever (an apalis-redis limit) |

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BackendExt, WorkerBuilder, WorkerBuilderExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::pipeline::{Pipeline, handle, stopped_signal};

/// Starts every loop. `stopped` ends them at shutdown; `stopped_late` ends the cancellation
/// loop only once running jobs are done, since they still look for cancellations.
fn spawn_loops(
    pipeline: &Arc<Pipeline>,
    stopped: &watch::Receiver<bool>,
    stopped_late: &watch::Receiver<bool>,
    poll: Duration,
) -> Vec<JoinHandle<()>> {
    let settings = &pipeline.settings;
    let accounts = &pipeline.accounts.settings;
    let ms = Duration::from_millis;
    vec![
        periodic(
            pipeline,
            stopped,
            ms(settings.reconcile_ms.max(100)),
            "reconciler pass",
            |p| async move { p.reconcile().await },
        ),
        periodic(
            pipeline,
            stopped_late,
            ms(settings.cancel_poll_ms.max(10)),
            "looking for cancelled tasks",
            |p| async move { p.poll_cancellations().await },
        ),
        periodic(
            pipeline,
            stopped,
            Duration::from_secs(accounts.probe_secs.max(1)),
            "probing accounts out of rotation",
            |p| async move { p.accounts.probe().await },
        ),
        periodic(
            pipeline,
            stopped,
            ms(accounts.refresh_ms.max(100)),
            "running native sessions",
            |p| async move { p.natives.tick().await },
        ),
        periodic(
            pipeline,
            stopped,
            Duration::from_secs(settings.purge_interval_secs.max(1)),
            "retention sweep",
            |p| async move { p.purge_expired().await.map(drop) },
        ),
        periodic(
            pipeline,
            stopped,
            poll,
            "promoting due jobs",
            |p| async move { p.queue.promote_due().await.map(drop) },
        ),
        periodic(
            pipeline,
            stopped,
            poll * 25,
            "cleaning finished jobs",
            |p| async move { p.queue.clean_finished().await.map(drop) },
        ),
    ]
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
        self.pipeline.natives.stop_all().await;
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

    let mut tasks = vec![apalis];
    tasks.extend(spawn_loops(&pipeline, &stopped, &stopped_late, poll));

    WorkerHandle {
        stop,
        stop_late,
        tasks,
        pipeline,
        grace: Duration::from_secs(settings.shutdown_grace_secs),
    }
}
