//! What the queue relies on in apalis-redis's own keys, against a real Redis. The promoter and
//! the cleaner (`Queue::promote_due`, `Queue::clean_finished`) run scripts on those keys
//! because of two upstream limits (docs/ARCHITECTURE.md, "apalis-redis hazards"): every
//! pushed job waits in `{queue}:scheduled` until something moves it, and finished jobs stay in
//! `{queue}:done` with their data for ever. When an upgrade changes either, these tests fail,
//! and the scripts must follow or go.

use std::time::{Duration, Instant};

use apalis::prelude::{BoxDynError, WorkerBuilder, WorkerBuilderExt};
use redis::AsyncCommands;
use wacheck_core::TaskId;
use wacheck_store::chunks::Pushes;
use wacheck_worker::{Job, Queue};

async fn queue() -> Queue {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "wacheck-test-{}",
        ulid::Ulid::generate().to_string().to_ascii_lowercase()
    );
    Queue::connect(&url, &prefix, 4)
        .await
        .expect("Redis is running (REDIS_URL)")
}

fn chunks(n: i32) -> Pushes {
    let task = TaskId::new();
    Pushes {
        chunks: (0..n).map(|c| (task, c)).collect(),
        exports: Vec::new(),
    }
}

async fn count(q: &Queue, cmd: &str, key: &str) -> u64 {
    let mut conn = q.connection();
    redis::cmd(cmd)
        .arg(format!("{}:{key}", q.name()))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn pushed_jobs_wait_as_scheduled_until_the_promoter_moves_them() {
    let q = queue().await;
    q.push_all(&chunks(3)).await.unwrap();
    assert_eq!(count(&q, "ZCARD", "scheduled").await, 3);
    assert_eq!(count(&q, "LLEN", "active").await, 0);
    assert_eq!(q.promote_due().await.unwrap(), 3);
    assert_eq!(count(&q, "ZCARD", "scheduled").await, 0);
    assert_eq!(count(&q, "LLEN", "active").await, 3);
    // Bounded steps: 1,200 due jobs move in three steps of at most 500, all of them.
    q.push_all(&chunks(1_200)).await.unwrap();
    assert_eq!(q.promote_due().await.unwrap(), 1_200);
    assert_eq!(count(&q, "LLEN", "active").await, 1_203);
    q.purge().await.unwrap();
}

async fn finish(_job: Job) -> Result<(), BoxDynError> {
    Ok(())
}

#[tokio::test]
async fn finished_jobs_stay_until_the_cleaner_removes_them() {
    let q = queue().await;
    q.push_all(&chunks(2)).await.unwrap();
    q.promote_due().await.unwrap();
    let worker = WorkerBuilder::new(format!("{}-worker", q.name()))
        .backend(q.storage())
        .concurrency(1)
        .build(finish);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
        Ok::<(), std::io::Error>(())
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&q, "SCARD", "done").await < 2 {
        assert!(
            Instant::now() < deadline,
            "the jobs never reached {}:done",
            q.name()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let _ = running.await;
    let mut conn = q.connection();
    let data: u64 = conn.hlen(format!("{}:data", q.name())).await.unwrap();
    assert_eq!(data, 2, "finished jobs keep their data");
    assert_eq!(q.clean_finished().await.unwrap(), 2);
    assert_eq!(count(&q, "SCARD", "done").await, 0);
    let data: u64 = conn.hlen(format!("{}:data", q.name())).await.unwrap();
    assert_eq!(data, 0);
    q.purge().await.unwrap();
}
