//! End-to-end: upload over HTTP, the real queue and workers, Postgres, the result store, and
//! the downloaded spreadsheet compared row by row with the simulated rule.

use std::time::Duration;

use crate::common::{Store, TestEnv, assert_rows, by_readme_rule, messy_numbers, parse_result};
use chrono::{DateTime, Utc};
use rust_xlsxwriter::Workbook;
use serde_json::Value;

fn txt(lines: &[String]) -> Vec<u8> {
    lines.join("\n").into_bytes()
}

/// Uploads, waits for `exported`, downloads and checks every row and the counters.
async fn round_trip(
    env: &TestEnv,
    kind: &str,
    name: &str,
    bytes: Vec<u8>,
    raws: &[String],
    fields: &[(&str, &str)],
) -> serde_json::Value {
    let created = env.upload(kind, name, bytes, fields).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["total"], raws.len() as i64);
    assert_eq!(created["success"], 0);
    assert_eq!(created["failure"], 0);
    assert_eq!(created["simulated"], true);
    let id = created["task_id"].as_str().unwrap();
    assert_eq!(id.len(), 26, "task ids are ULIDs");
    let done = env.wait_exported(kind, id, Duration::from_secs(120)).await;
    let format = fields
        .iter()
        .find(|(k, _)| *k == "result_format")
        .map_or("xlsx", |(_, v)| *v);
    let region = fields
        .iter()
        .find(|(k, _)| *k == "default_region")
        .map(|(_, v)| *v);
    let url = done["result_url"]
        .as_str()
        .expect("result_url once exported");
    let rows = parse_result(&env.download(url).await, format);
    let (ok, bad) = assert_rows(&rows, raws, region, kind == "detail", format);
    assert_eq!(done["success"], ok, "{done}");
    assert_eq!(done["failure"], bad, "{done}");
    assert_eq!(done["total"], ok + bad);
    done
}

fn messy_fixture() -> Vec<String> {
    let mut raws: Vec<String> = [
        "+41 79 828 46 51",
        "0041-79-828-46-52",
        "(079) 828 46 53",
        "079.828.46.54",
        "41798284655",
        "+41798284651",
        "not a number",
        "=HYPERLINK(\"http://x\")",
        "-1",
        "@cmd",
        "+1 (415) 555-2671",
        "004915112345678",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    raws.extend(messy_numbers(300, 7));
    raws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messy_txt_round_trip_with_local_store_as_xlsx() {
    let env = TestEnv::start(Store::Local).await;
    let raws = messy_fixture();
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend(raws.join("\r\n\r\n").into_bytes());
    let done = round_trip(
        &env,
        "simple",
        "numbers.txt",
        body,
        &raws,
        &[("default_region", "CH")],
    )
    .await;
    assert!(
        done["result_url"]
            .as_str()
            .unwrap()
            .contains("/files/results/")
    );
    // Duplicates were checked once: the backend saw each distinct number exactly once.
    let distinct: i64 = sqlx::query_scalar("SELECT sum(distinct_numbers)::bigint FROM tasks")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(env.backend_numbers() as i64, distinct);
    assert!(distinct < raws.len() as i64);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_csv_round_trip_with_s3_store_as_csv() {
    let env = TestEnv::start(Store::S3).await;
    let raws = messy_fixture();
    let mut csv = String::from("name;Phone Number;note\r\n");
    for (i, r) in raws.iter().enumerate() {
        csv.push_str(&format!(
            "\"Person {i}; Jr\";\"{}\";x\r\n",
            r.replace('"', "\"\"")
        ));
    }
    let done = round_trip(
        &env,
        "detail",
        "contacts.csv",
        csv.into_bytes(),
        &raws,
        &[("default_region", "ch"), ("result_format", "csv")],
    )
    .await;
    let url = done["result_url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Signature="), "presigned S3 URL: {url}");
    // Signed afresh on each read.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, again) = env
        .status("detail", done["task_id"].as_str().unwrap())
        .await;
    assert_ne!(again["result_url"], done["result_url"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_with_numeric_cells_and_header_round_trip_with_s3_store() {
    let env = TestEnv::start(Store::S3).await;
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "Name").unwrap();
    sheet.write_string(0, 1, "Mobile").unwrap();
    // What the normaliser must turn each cell into: numeric cells lost their + or leading 0.
    let cells: Vec<(Option<f64>, &str)> = vec![
        (Some(41798284651.0), "41798284651"),
        (Some(798284652.0), "798284652"),
        (None, "+41 79 828 46 53"),
        (None, "junk"),
        (Some(14155552671.0), "14155552671"),
    ];
    let mut raws = Vec::new();
    for (i, (num, text)) in cells.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, format!("P{i}")).unwrap();
        match num {
            Some(v) => sheet.write_number(r, 1, *v).unwrap(),
            None => sheet.write_string(r, 1, *text).unwrap(),
        };
        raws.push(text.to_string());
    }
    let bytes = book.save_to_buffer().unwrap();
    // The name says .bin: the format is recognised by content.
    round_trip(
        &env,
        "detail",
        "upload.bin",
        bytes,
        &raws,
        &[("default_region", "CH")],
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_grow_while_processing() {
    // 30 calls of 200 ms one after the other: six seconds in which to see a part done.
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.latency_ms = 200;
        c.sim.batch = 10;
        c.pipeline.chunk_size = 20;
        c.pipeline.concurrency = 1;
    })
    .await;
    let raws: Vec<String> = (0..300)
        .map(|i| format!("+4179{:07}", 1_000_000 + i))
        .collect();
    let created = env.upload("simple", "a.txt", txt(&raws), &[]).await;
    let id = created["task_id"].as_str().unwrap().to_owned();
    // A poller sees success grow during processing.
    env.wait_task("simple", &id, Duration::from_secs(30), |s| {
        let ok = s["success"].as_i64().unwrap_or(0);
        assert_ne!(s["status"], "exported", "no partial count was seen: {s}");
        s["status"] == "processing" && ok > 0 && ok < 300
    })
    .await;
    env.wait_exported("simple", &id, Duration::from_secs(60))
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_backend_failures_are_retried_and_never_become_no() {
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.fail_percent = 40;
        c.pipeline.max_attempts = 30;
    })
    .await;
    let raws = messy_numbers(500, 3);
    round_trip(&env, "simple", "a.txt", txt(&raws), &raws, &[]).await;
    env.stop().await;

    // A backend that always fails: every valid row is `unknown`, none is `no`.
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.fail_percent = 100;
        c.pipeline.max_attempts = 2;
    })
    .await;
    let raws = vec![
        "+41798284651".to_string(),
        "+41798284652".into(),
        "junk".into(),
    ];
    let created = env
        .upload("simple", "a.txt", txt(&raws), &[("result_format", "csv")])
        .await;
    let done = env
        .wait_exported(
            "simple",
            created["task_id"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done["success"], 0);
    assert_eq!(done["failure"], 3);
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "csv",
    );
    let col: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(col, ["unknown", "unknown", "invalid"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_processed_twice_change_nothing() {
    let env = TestEnv::start_with(Store::Local, |c| c.sim.latency_ms = 5).await;
    let raws = messy_numbers(400, 11);
    let created = env.upload("detail", "a.txt", txt(&raws), &[]).await;
    let id: wacheck_core::TaskId = created["task_id"].as_str().unwrap().parse().unwrap();
    // Every chunk delivered three more times while the task runs.
    let chunks: i32 = sqlx::query_scalar("SELECT chunk_count FROM tasks")
        .fetch_one(env.pool())
        .await
        .unwrap();
    let mut pushes = wacheck_store::chunks::Pushes::default();
    for _ in 0..3 {
        pushes.chunks.extend((0..chunks).map(|c| (id, c)));
    }
    env.app().queue.push_all(&pushes).await.unwrap();
    let done = env
        .wait_exported("detail", &id.to_string(), Duration::from_secs(60))
        .await;
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "xlsx",
    );
    let (ok, bad) = assert_rows(&rows, &raws, None, true, "xlsx");
    assert_eq!(
        (
            done["success"].as_i64().unwrap(),
            done["failure"].as_i64().unwrap()
        ),
        (ok, bad)
    );
    let distinct: i64 = sqlx::query_scalar("SELECT distinct_numbers FROM tasks")
        .fetch_one(env.pool())
        .await
        .unwrap();
    assert_eq!(
        env.backend_numbers() as i64,
        distinct,
        "no number checked twice"
    );

    // And again after the export, plus a repeated export: nothing moves.
    let before = env.backend_numbers();
    pushes.exports.push(id);
    env.app().queue.push_all(&pushes).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, after) = env.status("detail", &id.to_string()).await;
    assert_eq!(
        (after["success"].clone(), after["failure"].clone()),
        (done["success"].clone(), done["failure"].clone())
    );
    assert_eq!(after["status"], "exported");
    assert_eq!(env.backend_numbers(), before);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_queue_is_rebuilt_by_the_reconciler() {
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.latency_ms = 100;
        c.sim.batch = 10;
        c.pipeline.chunk_size = 20;
    })
    .await;
    let raws = messy_numbers(400, 5);
    let created = env.upload("simple", "a.txt", txt(&raws), &[]).await;
    let id = created["task_id"].as_str().unwrap().to_owned();
    let started = |s: &Value| s["success"].as_i64().unwrap_or(0) > 0;
    env.wait_task("simple", &id, Duration::from_secs(30), started)
        .await;
    // Every key of this deployment vanishes, as in a Redis flush or restart.
    env.app().queue.purge().await.unwrap();
    let (_, mid) = env.status("simple", &id).await;
    let answered = mid["success"].as_i64().unwrap() + mid["failure"].as_i64().unwrap();
    assert!(
        mid["status"] == "processing" && answered < mid["total"].as_i64().unwrap(),
        "the flush happens mid-task: {mid}"
    );
    let done = env
        .wait_exported("simple", &id, Duration::from_secs(60))
        .await;
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "xlsx",
    );
    assert_rows(&rows, &raws, None, false, "xlsx");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_task_is_not_stuck_behind_a_big_one() {
    // The big task takes 15 s of backend calls at the least; the small one a fraction of one.
    let env = TestEnv::start_with(Store::Local, |c| {
        c.sim.latency_ms = 100;
        c.sim.batch = 10;
        c.pipeline.chunk_size = 20;
        c.pipeline.concurrency = 2;
    })
    .await;
    let big: Vec<String> = (0..3000)
        .map(|i| format!("+4179{:07}", 2_000_000 + i))
        .collect();
    let small: Vec<String> = (0..10)
        .map(|i| format!("+4179{:07}", 3_000_000 + i))
        .collect();
    let big_task = env.upload("simple", "big.txt", txt(&big), &[]).await;
    let big_id = big_task["task_id"].as_str().unwrap();
    let started = |s: &Value| s["success"].as_i64().unwrap_or(0) > 0;
    env.wait_task("simple", big_id, Duration::from_secs(30), started)
        .await;
    let small_task = env.upload("simple", "small.txt", txt(&small), &[]).await;
    let small_id = small_task["task_id"].as_str().unwrap();
    env.wait_exported("simple", small_id, Duration::from_secs(30))
        .await;
    // The small task was exported before the big one was done checking.
    let (small_exported, big_completed): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as(
            "SELECT (SELECT exported_at FROM tasks WHERE id = $1), \
                    (SELECT completed_at FROM tasks WHERE id = $2)",
        )
        .bind(small_id)
        .bind(big_id)
        .fetch_one(env.pool())
        .await
        .unwrap();
    let small_exported = small_exported.unwrap();
    assert!(
        big_completed.is_none_or(|big| small_exported < big),
        "the small task waited for the big one: {small_exported} vs {big_completed:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_numbers_local_store() {
    // Deduplication in runs of 10,000 numbers: nine go to temporary files and are merged.
    let env = TestEnv::start_with(Store::Local, |c| {
        c.pipeline.chunk_size = 2000;
        c.api.dedupe_run = 10_000;
    })
    .await;
    let raws = messy_numbers(100_000, 42);
    round_trip(&env, "simple", "big.txt", txt(&raws), &raws, &[]).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_numbers_s3_store() {
    let env = TestEnv::start_with(Store::S3, |c| c.pipeline.chunk_size = 2000).await;
    let raws = messy_numbers(100_000, 43);
    let mut csv = String::from("id,msisdn\n");
    for (i, r) in raws.iter().enumerate() {
        csv.push_str(&format!("{i},\"{r}\"\n"));
    }
    round_trip(
        &env,
        "simple",
        "big.csv",
        csv.into_bytes(),
        &raws,
        &[("result_format", "csv")],
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_api_and_worker_processes_share_the_work() {
    use wacheck::app::{App, Role};
    // An API-only service and two worker-only services on the same database, queue and bucket;
    // each worker takes one job at a time, so both must take part.
    let env = TestEnv::start_role(Store::S3, Role::Api, |c| {
        c.sim.latency_ms = 20;
        c.sim.batch = 25;
        c.pipeline.window = 4;
        c.pipeline.concurrency = 1;
    })
    .await;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut c = env.config.clone();
        c.bind = "127.0.0.1:0".into();
        workers.push(App::start(c, Role::Worker).await.unwrap());
    }
    assert!(
        workers.iter().all(|w| w.addr.is_none()),
        "worker role serves no HTTP"
    );
    let raws = messy_numbers(2_000, 21);
    round_trip(&env, "simple", "a.txt", txt(&raws), &raws, &[]).await;
    let owners: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT split_part(lease_owner, '/', 1)) FROM task_chunks WHERE done_at IS NOT NULL",
    )
    .fetch_one(env.pool())
    .await
    .unwrap();
    assert!(
        owners >= 2,
        "chunks were spread over the worker processes ({owners} owners)"
    );
    for w in workers {
        w.stop().await;
    }
    env.stop().await;
}

/// A contact list comes back with its own columns after the answers, named after the upload,
/// for csv and xlsx, from the local store and from S3; `result_columns=ekycpro` gives the
/// answer columns alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_files_keep_the_users_columns() {
    for store in [Store::Local, Store::S3] {
        let env = TestEnv::start(store).await;
        let contacts = "name;phone;city\n\
                        Anna;+41 79 828 46 51;Bern\n\
                        Ben;+++;-Zug\n\
                        Cleo;079 828 46 52;=Chur\n\
                        Dan;+41 79 828 46 51;Sion\n";
        for format in ["csv", "xlsx"] {
            let task = env
                .upload(
                    "simple",
                    "Kunden 2026.csv",
                    contacts.as_bytes().to_vec(),
                    &[("result_format", format)],
                )
                .await;
            let id = task["task_id"].as_str().unwrap();
            let done = env
                .wait_exported("simple", id, Duration::from_secs(60))
                .await;
            let url = done["result_url"].as_str().unwrap();
            let resp = env.http.get(url).send().await.unwrap();
            // The file downloads under the upload's name: the local store's link says so in
            // its answer, an S3 link asks the store to (in the presigned URL).
            let named = match store {
                Store::Local => resp
                    .headers()
                    .get("content-disposition")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
                    .contains(&format!("filename=\"Kunden 2026-result.{format}\"")),
                Store::S3 => url.contains(&format!("Kunden%202026-result.{format}")),
            };
            assert!(named, "{url}");
            let rows = parse_result(&resp.bytes().await.unwrap(), format);
            // Outside text is written as it was in xlsx; csv defuses formula starters.
            let defused = |t: &str| {
                if format == "csv" {
                    format!("'{t}")
                } else {
                    t.to_owned()
                }
            };
            let anna = by_readme_rule("+41798284651");
            let no_code = "no country code: write the number with + and its country code, \
                           or set default_region";
            let want: Vec<Vec<String>> = vec![
                vec![
                    "Number", "whatsapp", "cached", "reason", "name", "phone", "city",
                ]
                .into_iter()
                .map(String::from)
                .collect(),
                vec![
                    "+41798284651".into(),
                    anna.into(),
                    "no".into(),
                    "".into(),
                    "Anna".into(),
                    defused("+41 79 828 46 51"),
                    "Bern".into(),
                ],
                vec![
                    defused("+++"),
                    "invalid".into(),
                    "".into(),
                    "not a phone number".into(),
                    "Ben".into(),
                    defused("+++"),
                    defused("-Zug"),
                ],
                vec![
                    "079 828 46 52".into(),
                    "invalid".into(),
                    "".into(),
                    no_code.into(),
                    "Cleo".into(),
                    "079 828 46 52".into(),
                    defused("=Chur"),
                ],
                vec![
                    "+41798284651".into(),
                    anna.into(),
                    "no".into(),
                    "".into(),
                    "Dan".into(),
                    defused("+41 79 828 46 51"),
                    "Sion".into(),
                ],
            ];
            let mut got = rows.clone();
            // A second task of the same numbers takes them from the cache.
            for r in got.iter_mut().skip(1) {
                if r[2] == "yes" {
                    r[2] = "no".into();
                }
            }
            assert_eq!(got, want, "{format} from {store:?}");
            assert!(
                done["message"]
                    .as_str()
                    .unwrap()
                    .contains("no country code"),
                "{done}"
            );
        }
        // The answer columns alone, on request.
        let task = env
            .upload(
                "simple",
                "c.csv",
                contacts.as_bytes().to_vec(),
                &[("result_format", "csv"), ("result_columns", "ekycpro")],
            )
            .await;
        let (_, rows) = env.exported_rows("simple", &task, "csv").await;
        assert_eq!(rows[0], ["Number", "whatsapp", "cached"]);
        assert_eq!(rows[2], ["'+++", "invalid", ""]);
        env.stop().await;
    }
}

/// A file of national numbers uploaded without default_region says what went wrong; with it,
/// they are read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_numbers_without_a_region_are_explained() {
    let env = TestEnv::start(Store::Local).await;
    let file = b"079 828 46 51\n079 828 46 52\n+41 79 828 46 53\n".to_vec();
    let task = env.upload("simple", "n.txt", file.clone(), &[]).await;
    let (done, _) = env.exported_rows("simple", &task, "xlsx").await;
    assert_eq!(
        done["message"],
        "done; 2 of 3 rows are invalid because they have no country code: upload the file \
         again with default_region (for example CH) to read them as national numbers"
    );
    let task = env
        .upload("simple", "n.txt", file, &[("default_region", "CH")])
        .await;
    let (done, _) = env.exported_rows("simple", &task, "xlsx").await;
    assert_eq!(done["message"], "done");
    env.stop().await;
}

/// While a task is checked its view gives the rate and when it should end; when the accounts'
/// budgets make it take days, the message says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_says_how_fast_and_when() {
    let env = TestEnv::start_with(Store::Local, |c| c.accounts.builtin_simulated = false).await;
    // One account: 60 a minute (one a second), at most 12 a day.
    env.add_account(serde_json::json!({
        "id": "slow", "kind": "simulated",
        "per_minute": 60, "burst": 1, "daily_cap": 12, "jitter_ms": 0
    }))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while env.app().accounts.get("slow").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never saw the account"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let numbers: Vec<String> = (0..40).map(|i| format!("+4179828{i:04}")).collect();
    let task = env.upload("simple", "n.txt", txt(&numbers), &[]).await;
    let id = task["task_id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let view = loop {
        let (_, v) = env.status("simple", id).await;
        if v["rate_per_minute"].is_number() && v["estimated_finish_at"].is_string() {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "no pace: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rate = view["rate_per_minute"].as_f64().unwrap();
    // One check a second, whatever the machine's speed: never more than 60 a minute (plus
    // the burst of one at the start).
    assert!(rate > 0.0 && rate <= 75.0, "{view}");
    let msg = view["message"].as_str().unwrap();
    // 12 a day with 28 or more rows open: over two days.
    assert!(
        msg.contains("the accounts' budgets allow at most 12 checks a day, so the open rows take"),
        "{msg}"
    );
    let finish: chrono::DateTime<chrono::Utc> = view["estimated_finish_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        finish > chrono::Utc::now() + chrono::Duration::days(2),
        "{view}"
    );
    env.stop().await;
}
