//! Task lifecycle: cancellation, export of what was checked, tasks that cannot finish ending
//! with a reason, retention, and Redis staying small however many tasks ran.

use std::time::{Duration, Instant};

use crate::common::{OTHER, Store, TestEnv, USER, expected_row, messy_numbers, parse_result};
use serde_json::Value;
use wacheck::app::{App, Role};

async fn call(
    env: &TestEnv,
    method: reqwest::Method,
    path: &str,
    key: &str,
    user: &str,
) -> (u16, Value) {
    let resp = env
        .http
        .request(method, format!("{}{path}", env.base))
        .query(&[("user_id", user)])
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_spending_and_exports_what_was_checked() {
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.latency_ms = 30;
        c.sim.batch = 10;
        c.pipeline.cancel_poll_ms = 100;
    })
    .await;
    let raws = messy_numbers(3_000, 21);
    let body = env
        .upload(
            "simple",
            "n.txt",
            raws.join("\n").into_bytes(),
            &[("result_format", "csv")],
        )
        .await;
    let id = body["task_id"].as_str().unwrap().to_owned();
    let path = format!("/wa/api/simple/tasks/{id}");
    env.wait_task("simple", &id, Duration::from_secs(60), |s| {
        s["success"].as_i64().unwrap_or(0) >= 100
    })
    .await;

    // Only the owner can cancel; for anyone else the task does not exist.
    let (code, body) = call(&env, reqwest::Method::DELETE, &path, &env.other_key, OTHER).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // Exporting a task that is still being checked is refused with the reason.
    let (code, body) = call(
        &env,
        reqwest::Method::POST,
        &format!("{path}/export"),
        &env.key,
        USER,
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("task_not_finished")),
        "{body}"
    );

    // Two cancels at once (a client retrying): both see the task cancelled.
    let ((code, cancelled), (code2, cancelled2)) = tokio::join!(
        call(&env, reqwest::Method::DELETE, &path, &env.key, USER),
        call(&env, reqwest::Method::DELETE, &path, &env.key, USER),
    );
    assert_eq!((code, code2), (200, 200), "{cancelled} {cancelled2}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled2["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());
    // The calls in flight end, then no more numbers are sent to the backend.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut spent = env.backend_numbers();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = env.backend_numbers();
        if now == spent {
            break;
        }
        assert!(Instant::now() < deadline, "budget still spent after cancel");
        spent = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.backend_numbers(),
        spent,
        "budget still spent after cancel"
    );
    // A worker that went on after the cancel would have checked every distinct number by now.
    let distinct: i64 = sqlx::query_scalar("SELECT distinct_numbers FROM tasks WHERE id = $1")
        .bind(&id)
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert!(
        (spent as i64) < distinct,
        "{spent} of {distinct} numbers checked: the cancel did not stop the work"
    );

    // Cancelling again is harmless (POST form too); the task stays cancelled, no file yet.
    let (code, again) = call(
        &env,
        reqwest::Method::POST,
        &format!("{path}/cancel"),
        &env.key,
        USER,
    )
    .await;
    assert_eq!(
        (code, again["status"].as_str()),
        (200, Some("cancelled")),
        "{again}"
    );
    assert!(again.get("result_url").is_none(), "{again}");
    assert!(
        again["message"].as_str().unwrap().contains("POST"),
        "{again}"
    );

    // On request, the rows answered so far are exported; the others say `unchecked`.
    let (code, _) = call(
        &env,
        reqwest::Method::POST,
        &format!("{path}/export"),
        &env.key,
        USER,
    )
    .await;
    assert_eq!(code, 200);
    let done = env
        .wait_task("simple", &id, Duration::from_secs(60), |s| {
            s["result_url"].is_string()
        })
        .await;
    assert_eq!(done["status"], "cancelled");
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "csv",
    );
    assert_eq!(rows.len() - 1, raws.len());
    let (mut answered, mut unchecked) = (0i64, 0);
    for (row, raw) in rows[1..].iter().zip(&raws) {
        let want = expected_row(raw, None, false, "csv");
        if row[1] == "unchecked" {
            assert_eq!(row[0], want[0]);
            unchecked += 1;
        } else {
            assert_eq!(row[..want.len()], want[..], "input {raw:?}");
            answered += 1;
        }
    }
    assert!(unchecked > 0);
    assert_eq!(
        done["success"].as_i64().unwrap() + done["failure"].as_i64().unwrap(),
        answered
    );

    // A task whose numbers were all checked cannot be cancelled.
    let small = env
        .upload(
            "simple",
            "s.txt",
            b"+41798284651\n+41798284652".to_vec(),
            &[],
        )
        .await;
    let small_id = small["task_id"].as_str().unwrap();
    env.wait_exported("simple", small_id, Duration::from_secs(30))
        .await;
    let (code, body) = call(
        &env,
        reqwest::Method::DELETE,
        &format!("/wa/api/simple/tasks/{small_id}"),
        &env.key,
        USER,
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("task_finished")),
        "{body}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_task_the_backend_cannot_answer_ends_exported_with_the_reason() {
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.fail_percent = 100;
        c.pipeline.max_attempts = 2;
    })
    .await;
    let body = env
        .upload(
            "simple",
            "n.txt",
            b"+41798284651\n+41798284652\nnonsense".to_vec(),
            &[],
        )
        .await;
    let id = body["task_id"].as_str().unwrap();
    let done = env
        .wait_exported("simple", id, Duration::from_secs(60))
        .await;
    assert_eq!(done["unknown"], 2, "{done}");
    assert_eq!(done["failure"], 3, "{done}");
    let message = done["message"].as_str().unwrap();
    assert!(message.contains("2 of 3 rows are unknown"), "{message}");
    assert!(message.contains("simulated transient failure"), "{message}");
    env.stop().await;
}

#[tokio::test]
async fn a_chunk_no_worker_could_finish_is_given_up_with_the_reason() {
    // Upload while no worker runs; chunk 0 has been taken as often as allowed already.
    let env = TestEnv::start_role(Store::Local, Role::Api, |c| {
        c.pipeline.chunk_size = 10;
        c.pipeline.max_chunk_attempts = 3;
    })
    .await;
    let raws: Vec<String> = (0..25).map(|i| format!("+417982846{i:02}")).collect();
    let body = env
        .upload("simple", "n.txt", raws.join("\n").into_bytes(), &[])
        .await;
    let id = body["task_id"].as_str().unwrap();
    sqlx::query("UPDATE task_chunks SET attempts = 3 WHERE task_id = $1 AND chunk_no = 0")
        .bind(id)
        .execute(env.pool())
        .await
        .unwrap();
    let worker = App::start(env.config.clone(), Role::Worker).await.unwrap();
    let done = env
        .wait_exported("simple", id, Duration::from_secs(60))
        .await;
    assert_eq!(done["unknown"], 10, "{done}");
    assert_eq!(done["success"], 15, "{done}");
    assert!(
        done["last_error"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{done}"
    );
    assert_eq!(worker.accounts.simulated_numbers_checked(), 15);
    worker.stop().await;
    env.stop().await;
}

async fn retention_removes_old_tasks_and_files(store: Store) {
    let env = TestEnv::start_with(store, |c| {
        c.pipeline.retention_days = 30;
        c.pipeline.purge_interval_secs = 1;
    })
    .await;
    let old = env
        .upload("simple", "a.txt", b"+41798284651".to_vec(), &[])
        .await;
    let old = old["task_id"].as_str().unwrap().to_owned();
    let young = env
        .upload("simple", "b.txt", b"+41798284652".to_vec(), &[])
        .await;
    let young = young["task_id"].as_str().unwrap().to_owned();
    let old_view = env
        .wait_exported("simple", &old, Duration::from_secs(30))
        .await;
    env.wait_exported("simple", &young, Duration::from_secs(30))
        .await;
    let key = format!("results/{old}.xlsx");
    assert!(env.app().blob.get(&key).await.is_ok());
    // Two numbers checked one at a time: one entry of the caller's history is made old.
    let mut checked = Vec::new();
    for number in ["+41798284651", "+41798284652"] {
        let path = format!("/v1/numbers/{number}");
        let (status, _) = env.call(reqwest::Method::GET, &path, &env.key, None).await;
        assert_eq!(status, 200);
        let id: String =
            sqlx::query_scalar("SELECT id FROM check_history WHERE e164 = $1 ORDER BY id DESC")
                .bind(number)
                .fetch_one(env.pool())
                .await
                .unwrap();
        checked.push(id);
    }
    sqlx::query("UPDATE check_history SET created_at = now() - interval '31 days' WHERE id = $1")
        .bind(&checked[0])
        .execute(env.pool())
        .await
        .unwrap();

    sqlx::query("UPDATE tasks SET created_at = now() - interval '31 days' WHERE id = $1")
        .bind(&old)
        .execute(env.pool())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.status("simple", &old).await.0 != 404 {
        assert!(Instant::now() < deadline, "old task not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM task_row_blocks WHERE task_id = $1) + (SELECT count(*) FROM task_results WHERE task_id = $1)")
        .bind(&old)
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    assert!(env.app().blob.get(&key).await.is_err(), "result file kept");
    // Its old link no longer gives the file.
    let url = old_view["result_url"].as_str().unwrap();
    let status = env.http.get(url).send().await.unwrap().status().as_u16();
    assert_eq!(status, 404, "{url}");
    // The old history entry goes in the same sweep; the young one stays.
    loop {
        let kept: Vec<String> = sqlx::query_scalar("SELECT id FROM check_history ORDER BY id")
            .fetch_all(env.pool())
            .await
            .unwrap();
        if kept.len() == 1 {
            assert_eq!(kept, vec![checked[1].clone()]);
            break;
        }
        assert!(Instant::now() < deadline, "old history kept: {kept:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The young task stays.
    assert_eq!(env.status("simple", &young).await.0, 200);
    assert!(
        env.app()
            .blob
            .get(&format!("results/{young}.xlsx"))
            .await
            .is_ok()
    );
    env.stop().await;
}

#[tokio::test]
async fn retention_local_store() {
    retention_removes_old_tasks_and_files(Store::Local).await;
}

#[tokio::test]
async fn retention_s3_store() {
    retention_removes_old_tasks_and_files(Store::S3).await;
}

/// Keys and bytes this deployment holds in Redis.
async fn redis_footprint(env: &TestEnv) -> (usize, u64) {
    let mut conn = env.app().queue.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", env.config.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut bytes = 0u64;
    for k in &keys {
        let n: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        bytes += n.unwrap_or(0);
    }
    (keys.len(), bytes)
}

async fn run_tasks(env: &TestEnv, n: usize, seed: u64) {
    let mut ids = Vec::new();
    for i in 0..n {
        let raws = messy_numbers(20, seed + i as u64);
        let body = env
            .upload(
                "simple",
                "n.txt",
                raws.join("\n").into_bytes(),
                &[("result_format", "csv")],
            )
            .await;
        ids.push(body["task_id"].as_str().unwrap().to_owned());
    }
    for id in ids {
        env.wait_exported("simple", &id, Duration::from_secs(60))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stays_flat_after_200_finished_tasks() {
    let env = TestEnv::start_with(Store::Local, |c| c.pipeline.chunk_size = 10).await;
    run_tasks(&env, 20, 1_000).await;
    env.app().queue.clean_finished().await.unwrap();
    let (keys_20, bytes_20) = redis_footprint(&env).await;
    run_tasks(&env, 180, 2_000).await;
    env.app().queue.clean_finished().await.unwrap();
    let (keys_200, bytes_200) = redis_footprint(&env).await;
    eprintln!(
        "redis footprint: after 20 tasks {keys_20} keys / {bytes_20} B; \
         after 200 tasks {keys_200} keys / {bytes_200} B"
    );
    assert!(keys_200 <= keys_20 + 2, "{keys_20} -> {keys_200} keys");
    assert!(
        bytes_200 <= bytes_20 + 16 * 1024,
        "{bytes_20} -> {bytes_200} bytes"
    );
    env.stop().await;
}
