//! An account's budget and state, driven directly through the pool of a running service (real
//! Postgres and Redis): daily caps that grant what is left, counts seeded back from Postgres,
//! a burst of throttles counted as one strike, answers in flight that do not end a cool-down,
//! and gateways that stop answering.

use crate::common::*;
use serde_json::json;
use wacheck::app::Role;
use wacheck_backends::{AccountDown, BackendError};
use wacheck_engine::pool::NoGrant;
use wacheck_store::accounts::{self, Spent};

async fn env_with_account(account: serde_json::Value) -> TestEnv {
    let env = TestEnv::start_role(Store::Local, Role::Api, |_| {}).await;
    env.add_account(account).await;
    env
}

fn sim(id: &str, per_minute: u32, daily_cap: u32, batch: u32) -> serde_json::Value {
    json!({"id": id, "kind": "simulated", "per_minute": per_minute, "burst": 100,
           "daily_cap": daily_cap, "jitter_ms": 0, "settings": {"batch": batch}})
}

/// Grants for `want` numbers until none comes; returns their sizes and why the last failed.
async fn drain(env: &TestEnv, want: usize) -> (Vec<usize>, NoGrant) {
    let pool = &env.app().accounts;
    let mut sizes = Vec::new();
    loop {
        match pool.try_acquire(None, want, false, None, None).await {
            Ok(g) => sizes.push(g.n),
            Err(e) => return (sizes, e),
        }
        assert!(sizes.len() < 100, "no end to the grants");
    }
}

fn capped(e: &NoGrant) -> bool {
    matches!(e, NoGrant::NoAccount { reason, .. } if reason.contains("daily cap of"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_grants_what_is_left_then_stops() {
    let env = env_with_account(sim("capped", 0, 25, 10)).await;
    let (sizes, why) = drain(&env, 100).await;
    assert_eq!(sizes, [10, 10, 5], "the last grant is what is left");
    assert!(capped(&why), "{why:?}");

    // Raised to 30 (the account is rebuilt): 5 more.
    accounts::set_limits(
        env.pool(),
        "capped",
        accounts::Limits {
            per_minute: 0,
            burst: 100,
            daily_cap: 30,
            jitter_ms: 0,
        },
    )
    .await
    .unwrap();
    env.app().accounts.refresh().await.unwrap();
    let (sizes, why) = drain(&env, 100).await;
    assert_eq!(sizes, [5]);
    assert!(capped(&why));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_daily_count_is_seeded_back_from_postgres() {
    let env = env_with_account(sim("seeded", 0, 40, 10)).await;
    // Postgres knows of 28 numbers spent today (for some task); Redis knows nothing.
    let spent = Spent {
        checks: 20,
        details: 8,
        calls: 3,
    };
    accounts::record_spent(env.pool(), None, Some(USER), "seeded", &spent)
        .await
        .unwrap();
    let (sizes, why) = drain(&env, 100).await;
    assert_eq!(sizes, [10, 2], "40 - 28 = 12 left");
    assert!(capped(&why));
    // Redis loses its count (flushed, restarted): the next account build seeds it again.
    let mut redis = redis::Client::open(env.config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:day:seeded:*", env.config.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
    accounts::set_limits(
        env.pool(),
        "seeded",
        accounts::Limits {
            per_minute: 0,
            burst: 100,
            daily_cap: 45,
            jitter_ms: 0,
        },
    )
    .await
    .unwrap();
    env.app().accounts.refresh().await.unwrap();
    let (sizes, _) = drain(&env, 100).await;
    assert_eq!(
        sizes,
        [10, 7],
        "45 - 28 from Postgres (the 12 booked in Redis were never spent)"
    );
    env.stop().await;
}

async fn state_of(env: &TestEnv, id: &str) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state, strikes, state_reason FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_one(env.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_throttles_is_one_strike_and_late_answers_do_not_end_it() {
    // A cool-down far longer than the test, so that no delay of a loaded machine ends it.
    let env = TestEnv::start_role(Store::Local, Role::Api, |c| {
        c.accounts.cooldown_base_ms = 60_000;
        c.accounts.cooldown_max_ms = 3_600_000;
    })
    .await;
    env.add_account(sim("busy", 0, 0, 10)).await;
    let pool = &env.app().accounts;
    let account = pool.get("busy").unwrap();
    let throttled = BackendError::RateLimited { backoff: None };
    // Five calls were in flight when the server started throttling.
    for _ in 0..5 {
        pool.report_failure(&account, &throttled).await.unwrap();
    }
    let (state, strikes, _) = state_of(&env, "busy").await;
    assert_eq!((state.as_str(), strikes), ("cooling_down", 1));
    let until: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT cool_until FROM accounts WHERE id = 'busy'")
            .fetch_one(env.pool())
            .await
            .unwrap();
    let left = until - chrono::Utc::now();
    assert!(
        left <= chrono::Duration::seconds(60) && left > chrono::Duration::seconds(30),
        "one strike: the base cool-down of 60 s, not 2^4 times it ({left})"
    );
    assert!(matches!(
        pool.try_acquire(None, 10, false, None, None).await,
        Err(NoGrant::NoAccount { .. })
    ));
    // A sixth call, sent before the throttling began, answers: the cool-down stands.
    pool.report_success(&account).await.unwrap();
    assert_eq!(state_of(&env, "busy").await.0, "cooling_down");
    // Once it is over, the first answer puts the account back and forgives the strike.
    sqlx::query("UPDATE accounts SET cool_until = now() - interval '1 second' WHERE id = 'busy'")
        .execute(env.pool())
        .await
        .unwrap();
    pool.refresh().await.unwrap();
    assert!(pool.try_acquire(None, 10, false, None, None).await.is_ok());
    pool.report_success(&account).await.unwrap();
    let (state, strikes, reason) = state_of(&env, "busy").await;
    assert_eq!((state.as_str(), strikes), ("connected", 0));
    assert_eq!(reason.as_deref(), Some("answering again"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_does_not_revive_a_logged_out_account() {
    let env = env_with_account(sim("gone", 0, 0, 10)).await;
    let pool = &env.app().accounts;
    let account = pool.get("gone").unwrap();
    pool.report_failure(&account, &BackendError::RateLimited { backoff: None })
        .await
        .unwrap();
    let logged_out = BackendError::Account {
        down: AccountDown::LoggedOut,
        reason: "the phone unlinked the device".into(),
    };
    pool.report_failure(&account, &logged_out).await.unwrap();
    pool.report_success(&account).await.unwrap();
    let (state, _, reason) = state_of(&env, "gone").await;
    assert_eq!(state, "logged_out");
    assert_eq!(reason.as_deref(), Some("the phone unlinked the device"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_answering_cools_down() {
    let env = env_with_account(sim("silent", 0, 0, 10)).await;
    let pool = &env.app().accounts;
    let account = pool.get("silent").unwrap();
    let timeout = BackendError::Transient("no answer within 30000 ms".into());
    pool.report_failure(&account, &timeout).await.unwrap();
    pool.report_failure(&account, &timeout).await.unwrap();
    assert_eq!(
        state_of(&env, "silent").await.0,
        "connected",
        "two may be bad luck"
    );
    pool.report_failure(&account, &timeout).await.unwrap();
    let (state, _, reason) = state_of(&env, "silent").await;
    assert_eq!(state, "cooling_down");
    assert!(
        reason
            .unwrap()
            .starts_with("3 calls in a row got no answer"),
        "the reason says why"
    );
    env.stop().await;
}
