//! The account pool end to end: real gateways' shapes (local WAHA and Evolution servers),
//! simulated accounts, worker processes, the result cache, cool-downs, logouts, pauses and
//! daily caps, and the accounts API with its isolation between users.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::procs::{ServiceProc, ledger_counts, note};
use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wacheck::app::Role;
use wacheck_testkit::{FakeGateway, Fault, Session, whatsapp_user};

const KEY: &str = "gateway-key";
const HIDDEN: u8 = 20;

fn fast(extra: Value) -> Value {
    let mut v = json!({"per_minute": 600_000, "burst": 100, "daily_cap": 0, "jitter_ms": 0});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn waha_account(id: &str, gw: &FakeGateway) -> Value {
    fast(json!({"id": id, "kind": "waha",
        "settings": {"base_url": gw.base_url(), "session": "default", "api_key": KEY, "timeout_ms": 2000}}))
}

fn evolution_account(id: &str, gw: &FakeGateway) -> Value {
    fast(json!({"id": id, "kind": "evolution",
        "settings": {"base_url": gw.base_url(), "session": "main", "api_key": KEY, "batch": 50, "timeout_ms": 2000}}))
}

fn sim_account(id: &str, ledger: &std::path::Path, latency_ms: u64) -> Value {
    fast(json!({"id": id, "kind": "simulated",
        "settings": {"registered_percent": 70, "hidden_percent": HIDDEN, "batch": 50,
                     "latency_ms": latency_ms, "ledger": ledger}}))
}

/// The account that gave each number's shown answer, from the task's stored results.
async fn answered_by(env: &TestEnv, task: &str) -> HashMap<String, (String, bool)> {
    let rows: Vec<(i64, Option<String>, bool)> =
        sqlx::query_as("SELECT number, account_id, cached FROM task_results WHERE task_id = $1")
            .bind(task)
            .fetch_all(env.pool())
            .await
            .unwrap();
    rows.into_iter()
        .map(|(n, a, c)| (format!("+{n}"), (a.unwrap_or_default(), c)))
        .collect()
}

/// Checks a detail result file row by row: every answer by the rule, and every detail as the
/// answering account's kind can know it (WAHA gives no date and no business flag, and its
/// chat ids end in `@c.us`). Returns how many rows were answered from the cache.
fn assert_detail_rows(
    rows: &[Vec<String>],
    raws: &[String],
    by: &HashMap<String, (String, bool)>,
    kinds: &HashMap<&str, &str>,
) -> usize {
    assert_eq!(
        rows[0][..9],
        [
            "Number",
            "whatsapp",
            "signature",
            "status_update",
            "business",
            "picture",
            "privacy",
            "jid",
            "cached"
        ]
    );
    // Then the reason and the upload's own column (its header: `phone`).
    assert_eq!(rows[0][9..], ["reason", "phone"]);
    assert_eq!(rows.len() - 1, raws.len());
    let mut cached = 0;
    for (i, (row, raw)) in rows[1..].iter().zip(raws).enumerate() {
        // The files are csv: outside text that starts like a formula has its apostrophe.
        assert_eq!(
            row[10],
            as_written(raw, "csv"),
            "row {}: the upload's own cell",
            i + 1
        );
        let mut row = row.clone();
        row.resize(9, String::new());
        let Some(e) = oracle::normalize(raw, Some("CH")) else {
            assert_eq!(row[1], "invalid", "row {}", i + 1);
            continue;
        };
        let r = oracle::simulated(&e, 70, HIDDEN);
        let digits = &e[1..];
        let (account, was_cached) = by
            .get(e.as_str())
            .unwrap_or_else(|| panic!("no answer for {e}"));
        let kind = kinds[account.as_str()];
        let yn = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let mut want = vec![e.to_string(), yn(r.registered)];
        if r.registered {
            let shown = !r.about_hidden;
            want.push(if shown {
                r.signature.to_owned()
            } else {
                String::new()
            });
            want.push(if shown && kind != "waha" {
                r.status_update.clone()
            } else {
                String::new()
            });
            want.push(if kind == "waha" {
                String::new()
            } else {
                yn(r.business)
            });
            want.push(yn(r.picture));
            want.push(if shown {
                String::new()
            } else {
                "about hidden by privacy settings".into()
            });
            let user = match kind {
                "simulated" => digits.to_owned(),
                _ => whatsapp_user(digits),
            };
            want.push(if kind == "waha" {
                format!("{user}@c.us")
            } else {
                format!("{user}@s.whatsapp.net")
            });
        } else {
            want.extend(std::iter::repeat_n(String::new(), 6));
        }
        want.push(yn(*was_cached));
        assert_eq!(row, want, "row {} ({raw:?}, answered by {account})", i + 1);
        cached += usize::from(*was_cached);
    }
    cached
}

fn csv_of(raws: &[String]) -> Vec<u8> {
    let mut s = String::from("phone\n");
    for r in raws {
        s.push('"');
        s.push_str(&r.replace('"', "\"\""));
        s.push_str("\"\n");
    }
    s.into_bytes()
}

/// Swiss mobile numbers in several spellings, Brazilian mobiles, duplicates and junk rows.
fn mixed_numbers(n: usize, seed: u64) -> Vec<String> {
    let mut x = seed;
    let mut out: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let d = 1_000_000 + (x >> 33) % 8_000_000;
        out.push(match i % 7 {
            0 => format!(
                "079 {:03} {:02} {:02}",
                d / 10_000,
                (d / 100) % 100,
                d % 100
            ),
            1 => format!("+4179{d:07}"),
            2 => format!("004179{d:07}"),
            3 if i > 10 => out[i / 2].clone(),
            4 if i % 97 == 0 => "n/a".to_owned(),
            // Brazilian mobiles: WhatsApp answers most with a JID without the ninth digit.
            5 if i % 3 == 0 => format!("+55 11 9{}", 80_000_000 + d),
            _ => format!("+41 79 {d:07}"),
        });
    }
    out
}

/// Uploads `raws` as a detail task (Swiss default region, csv result) and waits for its
/// export; returns its id and final view.
async fn detail_task(env: &TestEnv, raws: &[String], limit: Duration) -> (String, Value) {
    let task = env
        .upload(
            "detail",
            "numbers.csv",
            csv_of(raws),
            &[("default_region", "CH"), ("result_format", "csv")],
        )
        .await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let done = env.wait_exported("detail", &id, limit).await;
    (id, done)
}

/// The "done when" of the account pool: three accounts of three kinds, three worker
/// processes, a 10,000-row detail task with every row right, then the same numbers again
/// answered from the cache without a single backend call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_detail_rows_over_three_accounts_and_three_workers_then_from_cache() {
    let waha = FakeGateway::waha(KEY, "default", 70, HIDDEN);
    let evolution = FakeGateway::evolution(KEY, "main", 70, HIDDEN);
    let env = TestEnv::start_role(Store::Local, Role::Api, |c| {
        c.pipeline.chunk_size = 100;
        c.pipeline.window = 6;
    })
    .await;
    let ledger = env.local_dir.path().join("sim-ledger");
    env.add_account(sim_account("sim-1", &ledger, 5)).await;
    env.add_account(waha_account("waha-1", &waha)).await;
    env.add_account(evolution_account("evo-1", &evolution))
        .await;
    let kinds: HashMap<&str, &str> = [
        ("sim-1", "simulated"),
        ("waha-1", "waha"),
        ("evo-1", "evolution"),
    ]
    .into();
    let workers: Vec<ServiceProc> = (0..3)
        .map(|_| ServiceProc::spawn(&env.config, "worker"))
        .collect();

    let raws = mixed_numbers(10_000, 11);
    let started = Instant::now();
    let (id, done) = detail_task(&env, &raws, Duration::from_secs(400)).await;
    note(&format!(
        "10,000 detail rows over 3 accounts and 3 workers in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(done["unknown"], 0, "{done}");
    assert_eq!(
        done["simulated"], true,
        "one account is simulated, and the task says so"
    );
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "csv",
    );
    let by = answered_by(&env, &id).await;
    assert_eq!(
        assert_detail_rows(&rows, &raws, &by, &kinds),
        0,
        "nothing cached yet"
    );

    // Every account took part, and the per-task accounting adds up to the numbers checked.
    let (code, usage) = env
        .call(
            Method::GET,
            &format!("/v1/tasks/{id}/usage"),
            &env.admin_key,
            None,
        )
        .await;
    assert_eq!(code, 200, "{usage}");
    let usage = usage["accounts"].as_array().unwrap().clone();
    assert_eq!(usage.len(), 3, "{usage:?}");
    let checks: i64 = usage.iter().map(|u| u["checks"].as_i64().unwrap()).sum();
    assert_eq!(
        checks as usize,
        by.len(),
        "each distinct number checked once: {usage:?}"
    );
    let sim_checked: usize = ledger_counts(&ledger).values().sum();
    let waha_checked = waha.state.numbers_checked.load(Ordering::Relaxed) as usize;
    let evo_checked = evolution.state.numbers_checked.load(Ordering::Relaxed) as usize;
    assert_eq!(sim_checked + waha_checked + evo_checked, by.len());
    for u in &usage {
        assert!(u["checks"].as_i64().unwrap() > 0, "{u}");
    }

    // The same numbers again: all from the cache, not one call to any backend.
    let calls_before = (
        waha.state.check_calls.load(Ordering::Relaxed)
            + waha.state.detail_calls.load(Ordering::Relaxed),
        evolution.state.check_calls.load(Ordering::Relaxed)
            + evolution.state.detail_calls.load(Ordering::Relaxed),
        sim_checked,
    );
    let (id2, done2) = detail_task(&env, &raws, Duration::from_secs(120)).await;
    let calls_after = (
        waha.state.check_calls.load(Ordering::Relaxed)
            + waha.state.detail_calls.load(Ordering::Relaxed),
        evolution.state.check_calls.load(Ordering::Relaxed)
            + evolution.state.detail_calls.load(Ordering::Relaxed),
        ledger_counts(&ledger).values().sum::<usize>(),
    );
    assert_eq!(
        calls_after, calls_before,
        "the second task cost no backend call"
    );
    assert_eq!(done2["cached"], done2["success"], "{done2}");
    let rows2 = parse_result(
        &env.download(done2["result_url"].as_str().unwrap()).await,
        "csv",
    );
    let by2 = answered_by(&env, &id2).await;
    let valid = rows2.len() - 1 - rows2[1..].iter().filter(|r| r[1] == "invalid").count();
    assert_eq!(
        assert_detail_rows(&rows2, &raws, &by2, &kinds),
        valid,
        "every answer marked cached"
    );
    let (_, usage2) = env
        .call(
            Method::GET,
            &format!("/v1/tasks/{id2}/usage"),
            &env.admin_key,
            None,
        )
        .await;
    assert_eq!(
        usage2["accounts"],
        json!([]),
        "no account spent anything on it"
    );
    drop(workers);
    env.stop().await;
}

/// Uploads `n` Swiss numbers from `from` on as a simple task; returns them and the task id.
async fn upload_range(env: &TestEnv, from: u64, n: u64) -> (Vec<String>, String) {
    let raws: Vec<String> = (0..n).map(|i| format!("+4179{:07}", from + i)).collect();
    let task = env
        .upload("simple", "n.txt", raws.join("\n").into_bytes(), &[])
        .await;
    (raws, task["task_id"].as_str().unwrap().to_owned())
}

/// Polls an account until `pred` holds for it; returns it.
async fn wait_account(
    env: &TestEnv,
    id: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    poll("the account", limit, || env.account(id), pred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_account_cools_down_and_recovers() {
    let waha = FakeGateway::waha(KEY, "default", 70, 0);
    // Cool-downs long enough to be seen however slowly this test's polls come round.
    let env = TestEnv::start_with(Store::Local, |c| {
        c.accounts.cooldown_base_ms = 4_000;
        c.accounts.cooldown_max_ms = 10_000;
    })
    .await;
    env.add_account(waha_account("waha-1", &waha)).await;
    // Throttled twice in a row: 4 s, then 8 s of cool-down (no backoff from WAHA).
    waha.state.fail_next(Fault::RateLimited, 2);
    let (raws, id) = upload_range(&env, 2_000_000, 60).await;
    let id = id.as_str();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (cooling, waiting) = loop {
        let a = env.account("waha-1").await;
        let (_, t) = env.status("simple", id).await;
        if a["state"] == "cooling_down" && t["waiting"].is_string() {
            break (a, t);
        }
        assert!(Instant::now() < deadline, "no cool-down seen: {a} {t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        cooling["state_reason"], "rate limited by the server",
        "{cooling}"
    );
    assert!(
        waiting["waiting"]
            .as_str()
            .unwrap()
            .contains("waha-1 cooling_down until"),
        "the task says what it waits for: {waiting}"
    );
    let done = env
        .wait_exported("simple", id, Duration::from_secs(60))
        .await;
    assert_eq!(
        done["unknown"], 0,
        "a rate limit makes no row unknown: {done}"
    );
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "xlsx",
    );
    assert_rows(&rows, &raws, None, false, "xlsx");
    // Its first good answer after the cool-down put it back: connected, strikes forgiven.
    let back = env.account("waha-1").await;
    assert_eq!(back["state"], "connected", "{back}");
    assert_eq!(back["state_reason"], "answering again");
    assert_eq!(
        waha.state.answered_numbers().len(),
        60,
        "each number answered once"
    );
    assert_eq!(
        back["checks_today"], 62,
        "the throttled calls count against the budget too"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_account_leaves_rotation_without_losing_rows() {
    let evolution = FakeGateway::evolution(KEY, "main", 70, 0);
    let env = TestEnv::start(Store::Local).await;
    let ledger = env.local_dir.path().join("sim-ledger");
    env.add_account(evolution_account("evo-1", &evolution))
        .await;
    env.add_account(sim_account("sim-1", &ledger, 40)).await;
    let (raws, id) = upload_range(&env, 3_000_000, 1500).await;
    let id = id.as_str();
    // Some work done, then the phone logs the gateway's session out.
    let deadline = Instant::now() + Duration::from_secs(30);
    while evolution.state.answered_numbers().len() < 100 {
        assert!(Instant::now() < deadline, "evolution got no work");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    evolution.state.set_session(Session::Stopped);
    let out = wait_account(&env, "evo-1", Duration::from_secs(30), |a| {
        a["state"] == "logged_out"
    })
    .await;
    assert!(
        out["state_reason"].as_str().unwrap().contains("closed"),
        "{out}"
    );
    assert_eq!(out["healthy"], false);
    let answered_when_out = evolution.state.answered_numbers().len();
    let done = env
        .wait_exported("simple", id, Duration::from_secs(120))
        .await;
    assert_eq!(done["unknown"], 0, "no row lost: {done}");
    assert_eq!(done["success"], 1500);
    let rows = parse_result(
        &env.download(done["result_url"].as_str().unwrap()).await,
        "xlsx",
    );
    assert_rows(&rows, &raws, None, false, "xlsx");
    assert_eq!(
        evolution.state.answered_numbers().len(),
        answered_when_out,
        "a logged-out account gets no work"
    );
    // The session works again: a worker's probe puts the account back.
    evolution.state.set_session(Session::Working);
    wait_account(&env, "evo-1", Duration::from_secs(30), |a| {
        a["state"] == "connected"
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_healthy_account_tasks_wait_and_say_why() {
    let env = TestEnv::start(Store::Local).await;
    let ledger = env.local_dir.path().join("sim-ledger");
    env.add_account(sim_account("sim-1", &ledger, 0)).await;
    let (code, _) = env
        .call(
            Method::POST,
            "/v1/accounts/sim-1/pause",
            &env.admin_key,
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (_, id) = upload_range(&env, 4_000_000, 120).await;
    let id = id.as_str();
    let waiting = env
        .wait_task("simple", id, Duration::from_secs(20), |v| {
            v["waiting"].is_string()
        })
        .await;
    assert!(["pending", "processing"].contains(&waiting["status"].as_str().unwrap()));
    assert!(
        waiting["waiting"]
            .as_str()
            .unwrap()
            .contains("sim-1 paused"),
        "{waiting}"
    );
    assert!(
        waiting["message"].as_str().unwrap().contains("waiting"),
        "{waiting}"
    );
    assert_eq!(waiting["failure"], 0, "nothing failed while waiting");
    assert!(ledger_counts(&ledger).is_empty());
    // A job does not hold its worker slot for ever: after `handoff_secs` its chunk is parked
    // (given back to rest), so other work can run; the task still says why it waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let parked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM task_chunks WHERE lease_owner = 'parked'")
                .fetch_one(env.pool())
                .await
                .unwrap();
        if parked > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no chunk was parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, still) = env.status("simple", id).await;
    assert!(still["waiting"].is_string(), "{still}");
    env.call(
        Method::POST,
        "/v1/accounts/sim-1/resume",
        &env.admin_key,
        None,
    )
    .await;
    let done = env
        .wait_exported("simple", id, Duration::from_secs(60))
        .await;
    assert!(done.get("waiting").is_none(), "{done}");
    assert_eq!(done["success"], 120);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_stops_an_account_for_the_day() {
    let env = TestEnv::start(Store::Local).await;
    let ledger = env.local_dir.path().join("sim-ledger");
    let mut account = sim_account("sim-1", &ledger, 0);
    account["daily_cap"] = json!(30);
    account["settings"]["batch"] = json!(10);
    env.add_account(account).await;
    let (_, id) = upload_range(&env, 5_000_000, 100).await;
    let id = id.as_str();
    // The cap is reached as the last batch is granted: another chunk may say so while that
    // batch is still being checked, so wait for its answers too.
    env.wait_task("simple", id, Duration::from_secs(20), |v| {
        v["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("daily cap"))
            && v["success"].as_u64() >= Some(30)
    })
    .await;
    // And nothing more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = env.status("simple", id).await;
    assert_eq!(v["success"], 30, "{v}");
    assert_eq!(ledger_counts(&ledger).values().sum::<usize>(), 30);
    let a = env.account("sim-1").await;
    assert_eq!(a["checks_today"], 30, "{a}");
    // Raising the cap lets it go on today.
    let (code, _) = env
        .call(
            Method::PATCH,
            "/v1/accounts/sim-1",
            &env.admin_key,
            Some(json!({"daily_cap": 1000})),
        )
        .await;
    assert_eq!(code, 200);
    let done = env
        .wait_exported("simple", id, Duration::from_secs(60))
        .await;
    assert_eq!(done["success"], 100);
    assert_eq!(
        ledger_counts(&ledger).values().sum::<usize>(),
        100,
        "no number checked twice"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_may_bypass_the_cache() {
    let env = TestEnv::start(Store::Local).await;
    let raws: Vec<String> = (0..60)
        .map(|i| format!("+4179{:07}", 6_000_000 + i))
        .collect();
    let body = raws.join("\n").into_bytes();
    let first = env.upload("simple", "n.txt", body.clone(), &[]).await;
    env.wait_exported(
        "simple",
        first["task_id"].as_str().unwrap(),
        Duration::from_secs(30),
    )
    .await;
    let asked = env.backend_numbers();
    let fresh = env
        .upload("simple", "n.txt", body.clone(), &[("cache", "false")])
        .await;
    let done = env
        .wait_exported(
            "simple",
            fresh["task_id"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done["cached"], 0);
    assert_eq!(
        env.backend_numbers(),
        asked + 60,
        "every number asked again"
    );
    let cached = env.upload("simple", "n.txt", body, &[]).await;
    let done = env
        .wait_exported(
            "simple",
            cached["task_id"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done["cached"], 60);
    assert_eq!(env.backend_numbers(), asked + 60, "none asked a third time");
    let (code, bad) = env
        .upload_as(
            &env.key,
            "simple",
            Some(("n.txt", b"+41791234567".to_vec())),
            &[("user_id", USER), ("cache", "maybe")],
        )
        .await;
    assert_eq!(
        (code, bad["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    env.stop().await;
}

/// With the cache turned off every task asks again; on or off, answers older than the cache's
/// time are swept away and asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_turned_off_or_past_its_time_is_not_used() {
    for enabled in [false, true] {
        let env = TestEnv::start_with(Store::Local, |c| {
            c.cache.enabled = enabled;
            c.cache.ttl_secs = 600;
            c.pipeline.purge_interval_secs = 1;
        })
        .await;
        let body = (0..40)
            .map(|i| format!("+4179{:07}", 7_000_000 + i))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
        let run = || async {
            let task = env.upload("simple", "n.txt", body.clone(), &[]).await;
            env.wait_exported(
                "simple",
                task["task_id"].as_str().unwrap(),
                Duration::from_secs(30),
            )
            .await
        };
        assert_eq!(run().await["cached"], 0);
        assert_eq!(env.backend_numbers(), 40);
        let again = run().await;
        if enabled {
            assert_eq!(again["cached"], 40, "{again}");
            assert_eq!(env.backend_numbers(), 40, "none asked twice");
        } else {
            assert_eq!(again["cached"], 0, "{again}");
            assert_eq!(env.backend_numbers(), 80, "every number asked again");
        }
        let asked = env.backend_numbers();
        // The answers grow older than the cache's time: the next sweep deletes them.
        sqlx::query("UPDATE number_cache SET checked_at = now() - interval '1 hour'")
            .execute(env.pool())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while env.count("number_cache").await > 0 {
            assert!(
                Instant::now() < deadline,
                "cached answers kept past their time"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(run().await["cached"], 0);
        assert_eq!(env.backend_numbers(), asked + 40, "cache on: {enabled}");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_api_keeps_users_apart_and_keys_secret() {
    let waha = FakeGateway::waha(KEY, "default", 70, 0);
    let env = TestEnv::start_with(Store::Local, |c| c.accounts.user_accounts = true).await;
    // An admin adds a shared gateway account; it is asked at once whether it works.
    let shared = env.add_account(waha_account("shared-1", &waha)).await;
    assert_eq!(shared["state"], "connected", "{shared}");
    assert_eq!(shared["owner"], Value::Null);
    assert_eq!(shared["settings"]["api_key"], "[redacted]");
    assert!(
        !shared.to_string().contains(KEY),
        "the gateway key never comes back"
    );
    // A user adds an account of their own; another user cannot see or touch it.
    let (code, own) = env
        .call(
            Method::POST,
            "/v1/accounts",
            &env.key,
            Some(json!({"id": "alice-sim", "kind": "simulated"})),
        )
        .await;
    assert_eq!(code, 201, "{own}");
    assert_eq!(own["owner"], USER);
    assert_eq!(own["simulated"], true);
    for (method, path) in [
        (Method::GET, "/v1/accounts/alice-sim"),
        (Method::POST, "/v1/accounts/alice-sim/pause"),
        (Method::PATCH, "/v1/accounts/alice-sim"),
        (Method::DELETE, "/v1/accounts/alice-sim"),
        (Method::GET, "/v1/accounts/alice-sim/qr.png"),
        (Method::GET, "/v1/accounts/shared-1"),
    ] {
        let (code, v) = env
            .call(method.clone(), path, &env.other_key, Some(json!({})))
            .await;
        assert_eq!(
            (code, v["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {v}"
        );
    }
    let (_, list) = env
        .call(Method::GET, "/v1/accounts", &env.other_key, None)
        .await;
    assert_eq!(list, json!([]));
    let (_, list) = env.call(Method::GET, "/v1/accounts", &env.key, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, list) = env
        .call(Method::GET, "/v1/accounts", &env.admin_key, None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    // Only admins add accounts for someone else.
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/accounts",
            &env.key,
            Some(json!({"id": "x", "kind": "simulated", "owner": OTHER})),
        )
        .await;
    assert_eq!((code, v["code"].as_str()), (403, Some("missing_scope")));
    // Bad input: clear codes, nothing created.
    for (body, code) in [
        (
            json!({"id": "shared-1", "kind": "simulated"}),
            "account_exists",
        ),
        (
            json!({"id": "bad name!", "kind": "simulated"}),
            "invalid_account",
        ),
        (
            json!({"id": "w", "kind": "waha", "settings": {"session": "default"}}),
            "invalid_account",
        ),
        (
            json!({"id": "w", "kind": "waha", "settings": {"base_url": "ftp://x", "session": "s"}}),
            "invalid_account",
        ),
        (json!({"id": "w", "kind": "telegram"}), "invalid_body"),
        (
            json!({"id": "w", "kind": "simulated", "burst": 0}),
            "invalid_parameter",
        ),
    ] {
        let (status, v) = env
            .call(
                Method::POST,
                "/v1/accounts",
                &env.admin_key,
                Some(body.clone()),
            )
            .await;
        assert_eq!(v["code"], code, "{body} -> {status} {v}");
        assert!(status == 400 || status == 409, "{body} -> {status}");
    }
    let (_, list) = env
        .call(Method::GET, "/v1/accounts", &env.admin_key, None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 2, "nothing half-created");
    // A wrong gateway key shows up as a failed account with the reason.
    let mut bad = waha_account("bad-key", &waha);
    bad["settings"]["api_key"] = json!("wrong");
    let bad = env.add_account(bad).await;
    assert_eq!(bad["state"], "failed");
    assert!(
        bad["state_reason"].as_str().unwrap().contains("API key"),
        "{bad}"
    );
    // Limits, pause, resume, remove.
    let (code, v) = env
        .call(
            Method::PATCH,
            "/v1/accounts/alice-sim",
            &env.key,
            Some(json!({"per_minute": 30, "jitter_ms": 250})),
        )
        .await;
    assert_eq!(
        (code, v["per_minute"].as_u64(), v["jitter_ms"].as_u64()),
        (200, Some(30), Some(250))
    );
    let (_, v) = env
        .call(Method::POST, "/v1/accounts/alice-sim/pause", &env.key, None)
        .await;
    assert_eq!(
        (v["paused"].as_bool(), v["healthy"].as_bool()),
        (Some(true), Some(false))
    );
    let (_, v) = env
        .call(
            Method::POST,
            "/v1/accounts/alice-sim/resume",
            &env.key,
            None,
        )
        .await;
    assert_eq!(v["healthy"], true);
    let (code, _) = env
        .call(Method::DELETE, "/v1/accounts/alice-sim", &env.key, None)
        .await;
    assert_eq!(code, 204);
    let (code, _) = env
        .call(Method::GET, "/v1/accounts/alice-sim", &env.key, None)
        .await;
    assert_eq!(code, 404);
    env.stop().await;
}

/// A native account: what can run here without WhatsApp's servers. The account is created
/// `pairing`, a worker takes its session (the lease and the session file appear), and a QR
/// code the session records is served as a PNG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_account_is_hosted_by_a_worker_and_shows_its_qr_code() {
    let env = TestEnv::start(Store::Local).await;
    let (code, a) = env
        .call(
            Method::POST,
            "/v1/accounts",
            &env.admin_key,
            Some(json!({"id": "phone-1", "kind": "native"})),
        )
        .await;
    assert_eq!(code, 201, "{a}");
    assert_eq!(a["state"], "pairing");
    assert_eq!(a["healthy"], false);
    let (code, v) = env
        .call(
            Method::GET,
            "/v1/accounts/phone-1/qr.png",
            &env.admin_key,
            None,
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (404, Some("not_found")),
        "no QR code yet"
    );
    // A worker of this process takes the session.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let host: Option<String> =
            sqlx::query_scalar("SELECT host FROM accounts WHERE id = 'phone-1'")
                .fetch_one(env.pool())
                .await
                .unwrap();
        if host.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no worker took the session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let file = env.config.accounts.native_dir.join("phone-1.db");
    assert!(file.exists(), "the session store {} exists", file.display());
    // The session records a QR code as the pairing flow does; the API draws it.
    let until = chrono::Utc::now() + chrono::Duration::seconds(60);
    wacheck_store::accounts::set_pairing(
        env.pool(),
        "phone-1",
        Some(("2@abc,def,ghi", until)),
        None,
    )
    .await
    .unwrap();
    let resp = env
        .http
        .get(format!("{}/v1/accounts/phone-1/qr.png", env.base))
        .header("X-API-Key", &env.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(&resp.bytes().await.unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let a = env.account("phone-1").await;
    assert_eq!(a["qr_url"], "/v1/accounts/phone-1/qr.png");
    // Tasks meanwhile wait: a pairing account does no work.
    let task = env
        .upload("simple", "n.txt", b"+41791234567".to_vec(), &[])
        .await;
    let id = task["task_id"].as_str().unwrap();
    let pairing = |v: &Value| {
        v["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("phone-1 pairing"))
    };
    let v = env
        .wait_task("simple", id, Duration::from_secs(20), pairing)
        .await;
    assert_eq!(v["success"], 0, "{v}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_cli_adds_lists_and_pauses() {
    let env = TestEnv::start_role(Store::Local, Role::Api, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wacheck.toml");
    std::fs::write(&file, env.config.to_toml()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wacheck"))
            .args(["--config", file.to_str().unwrap()])
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = run(&[
        "accounts",
        "add",
        "--simulated",
        "cli-sim",
        "--per-minute",
        "120",
        "--daily-cap",
        "900",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["accounts", "list"]);
    assert!(
        ok && out.contains("cli-sim") && out.contains("connected") && out.contains("900"),
        "{out}"
    );
    assert!(
        !out.contains("simulated  connected           0"),
        "the built-in account left: {out}"
    );
    let (ok, _) = run(&["accounts", "pause", "cli-sim"]);
    assert!(ok);
    assert_eq!(env.account("cli-sim").await["paused"], true);
    let (ok, out) = run(&["accounts", "pause", "nobody"]);
    assert!(!ok && out.contains("no account `nobody`"), "{out}");
    let (ok, out) = run(&["accounts", "add", "--waha", "w", "--session", "default"]);
    assert!(!ok && out.contains("--url"), "{out}");
    env.stop().await;
}

/// Users' own accounts (when the operator allows them) work only for their owners, never
/// feed the shared cache, and leave the shared pool as it is; by default only admins add
/// accounts, and keys without the `tasks` scope see none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_own_accounts_work_only_for_them_and_feed_no_shared_cache() {
    let closed = TestEnv::start(Store::Local).await;
    let (code, v) = closed
        .call(
            Method::POST,
            "/v1/accounts",
            &closed.key,
            Some(json!({"id": "mine", "kind": "simulated"})),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("missing_scope")),
        "{v}"
    );
    let check_only = wacheck_store::keys::create_with_scopes(closed.pool(), USER, &["check"])
        .await
        .unwrap();
    let (code, v) = closed
        .call(Method::GET, "/v1/accounts", &check_only, None)
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("missing_scope")),
        "{v}"
    );
    closed.stop().await;

    let env = TestEnv::start_with(Store::Local, |c| c.accounts.user_accounts = true).await;
    let ledger = env.local_dir.path().join("alice-ledger");
    // Alice's own account says every number is on WhatsApp: easy to spot wherever it answers.
    let (code, own) = env
        .call(
            Method::POST,
            "/v1/accounts",
            &env.key,
            Some(fast(json!({"id": "alice-sim", "kind": "simulated",
                "settings": {"registered_percent": 100, "batch": 20, "ledger": ledger}}))),
        )
        .await;
    assert_eq!(code, 201, "{own}");
    let (_, all) = env
        .call(Method::GET, "/v1/accounts", &env.admin_key, None)
        .await;
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice-sim", "simulated"], "the shared built-in stays");

    // Alice's task may use both; Bob's only the shared pool.
    let (_, alice_task) = upload_range(&env, 7_000_000, 300).await;
    let alice_done = env
        .wait_exported("simple", &alice_task, Duration::from_secs(60))
        .await;
    assert_eq!(alice_done["success"], 300);
    assert!(
        !ledger_counts(&ledger).is_empty(),
        "alice's account worked for her"
    );
    let asked_for_alice = ledger_counts(&ledger).values().sum::<usize>();
    // Bob checks the same numbers: the rule's answers, none of alice's account's, and not
    // one number asked of her account.
    let raws: Vec<String> = (0..300)
        .map(|i| format!("+4179{:07}", 7_000_000 + i))
        .collect();
    let (code, bob_task) = env
        .upload_as(
            &env.other_key,
            "simple",
            Some(("n.txt", raws.join("\n").into_bytes())),
            &[("user_id", OTHER)],
        )
        .await;
    assert_eq!(code, 200, "{bob_task}");
    let bob_id = bob_task["task_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let bob_done = loop {
        let (_, v) = env
            .call(
                Method::GET,
                &format!("/wa/api/simple/tasks/{bob_id}?user_id={OTHER}"),
                &env.other_key,
                None,
            )
            .await;
        if v["status"] == "exported" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = parse_result(
        &env.download(bob_done["result_url"].as_str().unwrap()).await,
        "xlsx",
    );
    assert_rows(&rows, &raws, None, false, "xlsx");
    assert_eq!(
        ledger_counts(&ledger).values().sum::<usize>(),
        asked_for_alice,
        "alice's account did nothing for bob"
    );
    // Bob cannot see what alice's task cost, nor her account.
    let (code, _) = env
        .call(
            Method::GET,
            &format!("/v1/tasks/{alice_task}/usage"),
            &env.other_key,
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (code, usage) = env
        .call(
            Method::GET,
            &format!("/v1/tasks/{alice_task}/usage"),
            &env.key,
            None,
        )
        .await;
    assert_eq!(code, 200, "{usage}");
    env.stop().await;
}

/// A gateway nobody answers at is `unreachable` with a reason that says what to look at, not
/// `pairing`; it comes back by itself once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_says_so() {
    let env = TestEnv::start(Store::Local).await;
    let port = free_port();
    let v = env
        .add_account(fast(json!({"id": "far", "kind": "waha",
            "settings": {"base_url": format!("http://127.0.0.1:{port}"), "session": "default",
                         "api_key": KEY, "timeout_ms": 500}})))
        .await;
    assert_eq!(v["state"], "unreachable", "{v}");
    let reason = v["state_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("the gateway cannot be reached"), "{v}");
    // The gateway starts on that port: the probe puts the account back into rotation.
    let gw = FakeGateway::waha_on(port, KEY, "default", 70, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = env.account("far").await;
        if a["state"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "{a}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(gw);
    env.stop().await;
}

/// The command line says what adding a rate-limited account changes, and lists accounts with
/// their aliases in columns that line up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_says_what_an_account_changes() {
    let env = TestEnv::start(Store::Local).await;
    let out = env.cli(&["accounts", "add", "--simulated", "demo"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // 60 a minute, 5,000 a day (the defaults): 200,000 rows take 40 days.
    assert!(
        err.contains(
            "checks at most 60 numbers a minute (bursts of 5) and 5000 a day, so a \
                      200,000-row file takes about 40 days"
        ),
        "{err}"
    );
    // A second account: nothing was unlimited before it, so nothing to say.
    let out = env.cli(
        &["accounts", "add", "--simulated", "demo-2-with-a-long-name"],
        &[],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note:"));
    assert!(
        env.cli(&["accounts", "alias", "demo", "crm-session"], &[])
            .status
            .success()
    );
    let out = env.cli(&["accounts", "list"], &[]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    let demo = lines.iter().find(|l| l.starts_with("demo ")).expect(&list);
    assert!(demo.contains("crm-session"), "{list}");
    // Every column starts where its header does, whatever the width of the names before it.
    let at = |column: &str| lines[0].find(column).unwrap();
    for l in &lines[1..] {
        assert_eq!(l.find("simulated"), Some(at("kind")), "{list}");
        assert_eq!(l.find("connected"), Some(at("state")), "{list}");
        assert_eq!(l.find("the session works"), Some(at("reason")), "{list}");
    }
    assert_eq!(demo.find("crm-session"), Some(at("aliases")), "{list}");
    env.stop().await;
}
