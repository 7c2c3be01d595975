//! Every refusal has its status and stable code, and a refused request creates nothing.

mod common;

use common::{OTHER, Store, TestEnv, USER};
use serde_json::Value;

async fn assert_refused(env: &TestEnv, got: (u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
    assert_eq!(
        env.count("tasks").await,
        0,
        "a refused request creates nothing"
    );
    assert_eq!(env.count("task_row_blocks").await, 0);
}

/// key, task kind, file part, form fields, expected status and code.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<(&'a str, Vec<u8>)>,
    &'a [(&'a str, &'a str)],
    u16,
    &'a str,
);

fn file(bytes: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    Some(("n.txt", bytes.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_refusals() {
    let env = TestEnv::start_with(Store::Local, |c| c.api.max_upload_bytes = 64 * 1024).await;
    let ok = file(b"+41798284651\n");
    let me: &[(&str, &str)] = &[("user_id", USER)];
    let key = env.key.as_str();
    let big = "+41798284651\n".repeat(10_000).into_bytes();
    let xlsx = |b: &[u8]| Some(("n.xlsx", b.to_vec()));
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("", "simple", ok.clone(), me, 401, "unauthorized"),
        ("wck_0000", "simple", ok.clone(), me, 401, "unauthorized"),
        (key, "simple", ok.clone(), &[], 400, "missing_parameter"),
        (key, "simple", ok.clone(), &[("user_id", OTHER)], 404, "not_found"),
        (key, "simple", None, me, 400, "missing_file"),
        (key, "simple", file(b""), me, 400, "no_numbers"),
        (key, "simple", file(b"hello\nworld\n"), me, 400, "no_numbers"),
        (key, "simple", file(b"\x00\x01\x02\x03binary\xff\xfe"), me, 400, "unsupported_file"),
        (key, "simple", xlsx(b"+41798284651\n"), me, 400, "invalid_xlsx"),
        (key, "simple", xlsx(b"PK\x03\x04broken zip"), me, 400, "invalid_xlsx"),
        (key, "simple", ok.clone(), &[("user_id", USER), ("default_region", "XX1")], 400, "invalid_default_region"),
        (key, "simple", ok.clone(), &[("user_id", USER), ("result_format", "pdf")], 400, "invalid_result_format"),
        (key, "simple", Some(("n.txt", big)), me, 413, "payload_too_large"),
        (key, "bulk", ok.clone(), me, 404, "not_found"),
    ];
    for (key, kind, file, fields, status, code) in cases {
        let r = env.upload_as(key, kind, file, fields).await;
        assert_refused(&env, r, status, code).await;
    }

    // Not multipart at all.
    let resp = env
        .http
        .post(format!("{}/wa/api/simple/tasks", env.base))
        .header("X-API-Key", &env.key)
        .json(&serde_json::json!({"user_id": USER}))
        .send()
        .await
        .unwrap();
    let r = (resp.status().as_u16(), resp.json().await.unwrap());
    assert_refused(&env, r, 400, "invalid_content_type").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_refusals_never_leak_other_users_tasks() {
    let env = TestEnv::start(Store::Local).await;
    let t = env
        .upload("simple", "n.txt", b"+41798284651\n".to_vec(), &[])
        .await;
    let id = t["task_id"].as_str().unwrap();
    let get = |key: String, kind: &'static str, id: String, user: &'static str| {
        let req = env
            .http
            .get(format!("{}/wa/api/{kind}/tasks/{id}", env.base))
            .query(&[("user_id", user)])
            .header("X-API-Key", key);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, _) = get(env.key.clone(), "simple", id.into(), USER).await;
    assert_eq!(s, 200);
    let (me, other) = (env.key.clone(), env.other_key.clone());
    let unknown = "01J00000000000000000000000".to_string();
    #[rustfmt::skip]
    let cases = [
        (other.clone(), "simple", id.to_string(), OTHER, 404, "not_found"),
        (other.clone(), "simple", id.to_string(), USER, 404, "not_found"),
        (me.clone(), "simple", id.to_string(), OTHER, 404, "not_found"),
        (me.clone(), "detail", id.to_string(), USER, 404, "not_found"),
        (me.clone(), "simple", unknown, USER, 404, "not_found"),
        (me.clone(), "simple", "not-a-ulid".into(), USER, 404, "not_found"),
        ("nope".into(), "simple", id.to_string(), USER, 401, "unauthorized"),
    ];
    for (key, kind, id, user, status, code) in cases {
        let (s, body) = get(key, kind, id, user).await;
        assert_eq!(
            (s, body["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
    }
    let resp = env
        .http
        .get(format!("{}/wa/api/simple/tasks/{id}", env.base))
        .header("X-API-Key", &env.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "user_id is required");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_links_refuse_tampering_and_expire() {
    let env = TestEnv::start_with(Store::Local, |c| c.api.result_url_ttl_secs = 1).await;
    let t = env
        .upload("simple", "n.txt", b"+41798284651\n".to_vec(), &[])
        .await;
    let done = env
        .wait_exported(
            "simple",
            t["task_id"].as_str().unwrap(),
            std::time::Duration::from_secs(30),
        )
        .await;
    let url = done["result_url"].as_str().unwrap().to_owned();
    assert_eq!(
        env.http.get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    let tampered = url.replace("filename=", "filename=x");
    let resp = env.http.get(&tampered).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "link_invalid");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "link_expired");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_bad_query_strings_get_the_json_error_shape() {
    let env = TestEnv::start(Store::Local).await;
    for (url, status, code) in [
        (format!("{}/nope", env.base), 404, "not_found"),
        (
            format!("{}/wa/api/simple/tasks", env.base),
            404,
            "not_found",
        ),
        (
            format!("{}/files/results/x.xlsx", env.base),
            400,
            "invalid_parameter",
        ),
        (
            format!(
                "{}/files/results/x.xlsx?filename=x&expires=soon&sig=00",
                env.base
            ),
            400,
            "invalid_parameter",
        ),
    ] {
        let resp = env.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{url}");
        let body: Value = resp.json().await.expect("a JSON body");
        assert_eq!(body["code"], code, "{url}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_results_are_simulated() {
    let env = TestEnv::start(Store::Local).await;
    let h: Value = env
        .http
        .get(format!("{}/health", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["simulated"], true);
    assert_eq!(h["database"], true);
    assert!(h["warning"].as_str().unwrap().contains("SIMULATED"));
    env.stop().await;
}

/// A key's last use is recorded, but at most once a minute: polling does not turn every status
/// read into a write of the same row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_last_use_is_written_at_most_once_a_minute() {
    let env = TestEnv::start(Store::Local).await;
    let last_used = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_used_at FROM api_keys WHERE user_id = $1",
        )
        .bind(USER)
        .fetch_one(env.pool())
        .await
        .unwrap()
    };
    let missing = wacheck_core::TaskId::new().to_string();
    assert_eq!(env.status("simple", &missing).await.0, 404);
    let first = last_used().await.expect("first use recorded");
    assert_eq!(env.status("simple", &missing).await.0, 404);
    assert_eq!(
        last_used().await,
        Some(first),
        "written again within a minute"
    );
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE user_id = $1",
    )
    .bind(USER)
    .execute(env.pool())
    .await
    .unwrap();
    assert_eq!(env.status("simple", &missing).await.0, 404);
    let later = last_used().await.unwrap();
    assert!(later > first, "a use after a minute is recorded");
    env.stop().await;
}
