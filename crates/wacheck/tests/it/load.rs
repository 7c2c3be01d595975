//! The load run (`just load`, not part of `just test`): one `wacheck serve --role api` and two
//! `--role worker` processes; 50 concurrent uploads of 10,000 numbers while wrk polls a task's
//! status 500 times a second for 60 s. Every task must end exported and correct, with zero
//! errors. Prints the figures that docs/benchmarks.md records.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::procs::ServiceProc;
use crate::common::{
    Infra, Store, TestEnv, USER, assert_rows, free_port, messy_numbers, parse_result,
};
use wacheck::app::Role;

const UPLOADS: usize = 50;
const NUMBERS: usize = 10_000;
const POLL_SECS: u64 = 60;
/// wrk connections; each pauses between requests so that together they ask `RATE` times a
/// second. The pause is sized for 25% more, since each request's own latency adds to it.
const CONNECTIONS: u64 = 20;
const RATE: u64 = 500;
const DELAY_MS: u64 = 1000 * CONNECTIONS * 4 / (RATE * 5);

/// One figure out of wrk's report, e.g. the line starting with `99%`.
fn wrk_field<'a>(report: &'a str, prefix: &str) -> Option<&'a str> {
    report
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().nth(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load run: `just load`"]
async fn fifty_uploads_under_500_status_polls_per_second() {
    let mut env = TestEnv::start_on(&Infra::default(), Store::Local, Role::Api, |c| {
        c.pipeline = Default::default();
        c.db_max_connections = 16;
    })
    .await;
    let mut config = env.config.clone();
    let port = free_port();
    config.bind = format!("127.0.0.1:{port}");
    config.public_url = Some(format!("http://127.0.0.1:{port}"));
    let api = ServiceProc::spawn(&config, "api");
    let workers = [
        ServiceProc::spawn(&config, "worker"),
        ServiceProc::spawn(&config, "worker"),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "API process did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let files: Vec<Vec<String>> = (0..UPLOADS)
        .map(|i| messy_numbers(NUMBERS, 500 + i as u64))
        .collect();
    let upload = |raws: &Vec<String>| {
        let form = reqwest::multipart::Form::new()
            .text("user_id", USER)
            .text("result_format", "csv")
            .part(
                "file",
                reqwest::multipart::Part::bytes(raws.join("\n").into_bytes()).file_name("n.txt"),
            );
        http.post(format!("{base}/wa/api/simple/tasks"))
            .header("X-API-Key", &env.key)
            .multipart(form)
            .send()
    };

    // The polled task: the first upload.
    let first: serde_json::Value = upload(&files[0]).await.unwrap().json().await.unwrap();
    let polled = first["task_id"].as_str().unwrap().to_owned();
    let script = env.local_dir.path().join("poll.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.headers[\"X-API-Key\"] = \"{}\"\nfunction delay() return {} end\n",
            env.key, DELAY_MS
        ),
    )
    .unwrap();
    let url = format!("{base}/wa/api/simple/tasks/{polled}?user_id={USER}");
    let wrk = std::thread::spawn(move || {
        Command::new("wrk")
            .args(["-t", "2", "-c", &CONNECTIONS.to_string()])
            .args(["-d", &format!("{POLL_SECS}s"), "--latency", "-s"])
            .arg(&script)
            .arg(&url)
            .output()
            .expect("wrk is installed (scripts/bootstrap)")
    });

    // The other 49 uploads at once, while the polls run.
    let started = Instant::now();
    let answers = futures::future::join_all(files[1..].iter().map(upload)).await;
    let uploaded_in = started.elapsed();
    let mut ids = vec![polled.clone()];
    for a in answers {
        let a = a.unwrap();
        assert_eq!(a.status().as_u16(), 200);
        let body: serde_json::Value = a.json().await.unwrap();
        ids.push(body["task_id"].as_str().unwrap().to_owned());
    }
    // From here on the test's helpers talk to the API process.
    env.base = base.clone();
    let mut exported_in = Duration::ZERO;
    for (id, raws) in ids.iter().zip(&files) {
        let done = env
            .wait_exported("simple", id, Duration::from_secs(600))
            .await;
        exported_in = exported_in.max(started.elapsed());
        let bytes = env.download(done["result_url"].as_str().unwrap()).await;
        let rows = parse_result(&bytes, "csv");
        let (ok, bad) = assert_rows(&rows, raws, None, false, "csv");
        assert_eq!(done["success"], ok);
        assert_eq!(done["failure"], bad);
    }
    let out = wrk.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {report}");
    assert!(
        !report.contains("Non-2xx"),
        "status polls failed:\n{report}"
    );
    assert!(
        !report.contains("Socket errors"),
        "socket errors:\n{report}"
    );
    let numbers = UPLOADS * NUMBERS;
    println!("{report}");
    println!(
        "| uploads | numbers | uploads answered | all exported | numbers/s | polls/s | poll p50 | poll p99 |"
    );
    println!(
        "| {UPLOADS} x {NUMBERS} | {numbers} | {:.1} s | {:.1} s | {:.0} | {} | {} | {} |",
        uploaded_in.as_secs_f64(),
        exported_in.as_secs_f64(),
        numbers as f64 / exported_in.as_secs_f64(),
        wrk_field(&report, "Requests/sec:").unwrap_or("?"),
        wrk_field(&report, "50%").unwrap_or("?"),
        wrk_field(&report, "99%").unwrap_or("?"),
    );
    drop(workers);
    drop(api);
    env.stop().await;
}
