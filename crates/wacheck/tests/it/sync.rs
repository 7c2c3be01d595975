//! Numbers checked within the request: the native API, the Walytic-compatible and the
//! CommBox-compatible routes, each driven the way its reference document shows, with its
//! errors, the caller's history, and the 429 that comes when no account has budget.

use std::time::{Duration, Instant};

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wacheck::config::Config;

/// The session id of the reference document's examples.
const SESSION: &str = "session-919876543210";
/// A CommBox stream id, as the operator maps it.
const STREAM: &str = "Zm9vYmFyLXN0cmVhbS0x";

fn yes_no(e164: &str) -> bool {
    oracle::simulated(e164, 70, 0).registered
}

/// A service whose built-in account answers to the reference documents' session and stream.
async fn env_with(tweak: impl FnOnce(&mut Config)) -> TestEnv {
    let env = TestEnv::start_with(Store::Local, tweak).await;
    for alias in [SESSION, STREAM] {
        let (code, v) = env
            .call(
                Method::POST,
                "/v1/accounts/simulated/aliases",
                &env.admin_key,
                Some(json!({ "alias": alias })),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
    env
}

async fn get(env: &TestEnv, path: &str, key: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = env
        .http
        .get(format!("{}{path}", env.base))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

/// `POST /api/verify/{SESSION}/bulk-verify` with the file as multipart `file`.
async fn bulk_verify(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    file: Vec<u8>,
    name: &'static str,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(file).file_name(name),
    );
    http.post(format!("{base}/verify/{SESSION}/bulk-verify"))
        .header("x-api-key", key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_api_answers_one_or_many_numbers_now() {
    let env = env_with(|_| {}).await;
    let (code, one, _) = get(&env, "/v1/numbers/+41%2079%20828%2046%2051", &env.key).await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(one["input"], "+41 79 828 46 51");
    assert_eq!(one["e164"], "+41798284651");
    let want = if yes_no("+41798284651") { "yes" } else { "no" };
    assert_eq!(one["whatsapp"], want);
    assert_eq!(one["cached"], false);
    assert!(one["checked_at"].is_string());
    let asked = env.backend_numbers();
    // The same number again: from the cache, no backend call.
    let (_, again, _) = get(&env, "/v1/numbers/0798284651?default_region=CH", &env.key).await;
    assert_eq!(
        (again["whatsapp"].as_str(), again["cached"].as_bool()),
        (Some(want), Some(true))
    );
    assert_eq!(env.backend_numbers(), asked);
    // Details of a number on WhatsApp.
    let yes = (0..100)
        .map(|i| format!("+4179{:07}", 3_000_000 + i))
        .find(|n| yes_no(n))
        .unwrap();
    let (_, d, _) = get(
        &env,
        &format!("/v1/numbers/{}?details=true", yes.replace('+', "%2B")),
        &env.key,
    )
    .await;
    let r = oracle::simulated(&yes, 70, 0);
    assert_eq!(d["whatsapp"], "yes", "{d}");
    assert_eq!(d["signature"], r.signature);
    assert_eq!(d["status_update"], r.status_update);
    assert_eq!(d["business"], r.business);
    assert_eq!(d["jid"], format!("{}@s.whatsapp.net", &yes[1..]));
    // Not a number.
    let (code, bad, _) = get(&env, "/v1/numbers/hello", &env.key).await;
    assert_eq!(
        (code, bad["whatsapp"].as_str(), &bad["e164"]),
        (200, Some("invalid"), &Value::Null)
    );

    // Many at once, in order, duplicates and junk included.
    let body = json!({"numbers": ["+41798284651", "hello", "0041798284651", "+4915112345678"]});
    let (code, many) = env
        .call(Method::POST, "/v1/numbers:check", &env.key, Some(body))
        .await;
    assert_eq!(code, 200, "{many}");
    let results = many["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[1]["whatsapp"], "invalid");
    assert_eq!(results[0]["e164"], results[2]["e164"]);
    assert_eq!(results[3]["e164"], "+4915112345678");
    let too_many: Vec<String> = (0..1001).map(|i| format!("+4179{:07}", i)).collect();
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/numbers:check",
            &env.key,
            Some(json!({ "numbers": too_many })),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/numbers:check",
            &env.key,
            Some(json!({"numbers": []})),
        )
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/numbers:check",
            &env.key,
            Some(json!({"nums": ["1"]})),
        )
        .await;
    assert_eq!((code, v["code"].as_str()), (400, Some("invalid_body")));

    // Every check is in the caller's history, newest first; none in the other user's.
    let (code, h, headers) = get(&env, "/v1/history?limit=2", &env.key).await;
    assert_eq!(code, 200);
    assert_eq!(headers["x-total-count"], "8");
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[0]["input"], "+4915112345678");
    assert_eq!(h[0]["source"], "api");
    // An empty filter filters nothing; an unknown source is refused.
    let (_, all, headers) = get(&env, "/v1/history?session=&source=", &env.key).await;
    assert_eq!(headers["x-total-count"], "8", "{all}");
    let (code, v, _) = get(&env, "/v1/history?source=fax", &env.key).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{v}"
    );
    let (_, theirs, headers) = get(&env, "/v1/history", &env.other_key).await;
    assert_eq!(
        (theirs, &headers["x-total-count"]),
        (json!([]), &"0".parse().unwrap())
    );
    // A key without the `check` scope may not.
    let tasks_only = wacheck_store::keys::create_with_scopes(env.pool(), USER, &["tasks"])
        .await
        .unwrap();
    let (code, v, _) = get(&env, "/v1/numbers/+41798284651", &tasks_only).await;
    assert_eq!((code, v["code"].as_str()), (403, Some("missing_scope")));
    env.stop().await;
}

/// A client written from the Walytic document: its requests, unchanged but for the base URL
/// and the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walytic_client_works_unchanged() {
    let secret = "the-walytic-test-secret-of-32-bytes-or-more";
    let env = env_with(|c| {
        c.api.bulk_max_rows = 10;
        c.auth.jwt_secret = Some(secrecy::SecretString::from(secret));
    })
    .await;
    let base = format!("{}/api", env.base);
    let key = env.key.clone();
    let http = &env.http;

    // verifyNumber() from the document (axios.post with x-api-key and Content-Type).
    let res = http
        .post(format!("{base}/verify/{SESSION}/verify-single"))
        .header("x-api-key", &key)
        .header("Content-Type", "application/json")
        .json(&json!({ "number": "919812345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let data: Value = res.json().await.unwrap();
    let want = if yes_no("+919812345678") {
        "Valid"
    } else {
        "Invalid"
    };
    assert_eq!(data, json!({"number": "919812345678", "status": want}));
    // The error response of the document.
    let res = http
        .post(format!("{base}/verify/{SESSION}/verify-single"))
        .header("x-api-key", &key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "Number is required"})
    );
    // A path this API does not have answers in its shape too.
    let res = http
        .get(format!("{base}/verify/{SESSION}/verify-single"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"].is_string() && body.get("code").is_none(),
        "{body}"
    );

    // curl -X POST …/bulk-verify -H "x-api-key: …" -F "file=@numbers.xlsx"
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (i, n) in ["919812345678", "918888888888", "12345"].iter().enumerate() {
        sheet.write_string(i as u32, 0, *n).unwrap();
    }
    let xlsx = book.save_to_buffer().unwrap();
    let res = bulk_verify(http, &base, &key, xlsx, "numbers.xlsx").await;
    assert_eq!(res.status().as_u16(), 200);
    let bulk: Value = res.json().await.unwrap();
    let word = |n: &str| if yes_no(n) { "Valid" } else { "Invalid" };
    assert_eq!(
        bulk,
        json!({"results": [
            {"number": "919812345678", "status": word("+919812345678")},
            {"number": "918888888888", "status": word("+918888888888")},
            {"number": "12345", "status": "Error"},
        ]})
    );

    // GET …/verify/history, newest first, and filtered by session.
    let res = http
        .get(format!("{base}/verify/history"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let history: Vec<Value> = res.json().await.unwrap();
    assert_eq!(history.len(), 4);
    let first = &history[0];
    assert_eq!(first["number"], "12345");
    assert_eq!(first["sessionId"], SESSION);
    assert_eq!(first["status"], "Error");
    assert!(first["_id"].is_string());
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(history[3]["number"], "919812345678");
    let res = http
        .get(format!("{base}/verify/history?session=other&limit=2"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
    let (_, page2, headers) = get(&env, "/api/verify/history?limit=3&page=2", &key).await;
    assert_eq!(headers["x-total-count"], "4");
    assert_eq!(page2.as_array().unwrap().len(), 1);

    // …/verify/export?session=…&format=xlsx, and csv.
    let res = http
        .get(format!(
            "{base}/verify/export?session={SESSION}&format=xlsx"
        ))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("verification-history.xlsx")
    );
    let rows = parse_result(&res.bytes().await.unwrap(), "xlsx");
    assert_eq!(
        rows[0],
        ["_id", "sessionId", "number", "status", "timestamp"]
    );
    assert_eq!(rows.len(), 5);
    let res = http
        .get(format!("{base}/verify/export?format=csv"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    let csv_rows = parse_result(&res.bytes().await.unwrap(), "csv");
    assert_eq!(csv_rows.len(), 5);
    assert_eq!(csv_rows[1][2], "12345");

    // DELETE …/verify/clear?session=…
    let res = http
        .delete(format!("{base}/verify/clear?session={SESSION}"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"success": true, "message": format!("Cleared history for session {SESSION}"), "deletedCount": 4})
    );
    let (_, empty, _) = get(&env, "/api/verify/history", &key).await;
    assert_eq!(empty, json!([]));
    // A bulk file of national numbers, with the country they belong to.
    let form = reqwest::multipart::Form::new()
        .text("default_region", "CH")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"number\n079 828 46 51\n".to_vec()).file_name("n.csv"),
        );
    let res = http
        .post(format!("{base}/verify/{SESSION}/bulk-verify"))
        .header("x-api-key", &key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let want_ch = if yes_no("+41798284651") {
        "Valid"
    } else {
        "Invalid"
    };
    assert_eq!(body["results"][0]["status"], want_ch, "{body}");

    // The document's other credential: a Bearer JWT.
    let claims = json!({"sub": USER, "exp": jsonwebtoken::get_current_timestamp() + 300});
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    let res = http
        .post(format!("{base}/verify/{SESSION}/verify-single"))
        .header("Authorization", format!("Bearer {jwt}"))
        .json(&json!({ "number": "919812345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"number": "919812345678", "status": want})
    );

    // Errors in the document's shape.
    let post = |path: String, key: Option<&str>, body: Value| {
        let mut r = http.post(path).json(&body);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        async move {
            let res = r.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (code, v) = post(
        format!("{base}/verify/nope/verify-single"),
        Some(&key),
        json!({"number": "1"}),
    )
    .await;
    assert_eq!(code, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Session nope not found"),
        "{v}"
    );
    let (code, v) = post(
        format!("{base}/verify/{SESSION}/verify-single"),
        None,
        json!({"number": "1"}),
    )
    .await;
    assert_eq!(code, 401);
    assert!(v["error"].is_string() && v.get("code").is_none(), "{v}");
    let (code, v) = post(
        format!("{base}/verify/{SESSION}/verify-single"),
        Some("wck_wrong"),
        json!({"number": "1"}),
    )
    .await;
    assert_eq!((code, v["error"].is_string()), (401, true));
    let big: String = (0..11).map(|i| format!("+4179{:07}\n", i)).collect();
    let res = bulk_verify(http, &base, &key, big.into_bytes(), "n.csv").await;
    assert_eq!(res.status().as_u16(), 413);
    let v: Value = res.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("task API"), "{v}");
    // A session whose account does not work now.
    env.call(
        Method::POST,
        "/v1/accounts/simulated/pause",
        &env.admin_key,
        None,
    )
    .await;
    let (code, v) = post(
        format!("{base}/verify/{SESSION}/verify-single"),
        Some(&key),
        json!({"number": "919812345678"}),
    )
    .await;
    assert_eq!(code, 409);
    assert!(
        v["error"].as_str().unwrap().contains("not connected"),
        "{v}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walytic_history_is_each_users_own() {
    let env = env_with(|_| {}).await;
    let verify = |key: String, number: &'static str| {
        let env = &env;
        async move {
            env.call(
                Method::POST,
                &format!("/api/verify/{SESSION}/verify-single"),
                &key,
                Some(json!({ "number": number })),
            )
            .await
        }
    };
    assert_eq!(verify(env.key.clone(), "41798284651").await.0, 200);
    assert_eq!(verify(env.key.clone(), "41798284652").await.0, 200);
    assert_eq!(verify(env.other_key.clone(), "41798284653").await.0, 200);
    let (_, mine, _) = get(&env, "/api/verify/history", &env.key).await;
    let (_, theirs, _) = get(&env, "/api/verify/history", &env.other_key).await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    assert_eq!(theirs[0]["number"], "41798284653");
    // Bob clears his; Alice's stay. Bob's export holds only his.
    let (code, v) = env
        .call(Method::DELETE, "/api/verify/clear", &env.other_key, None)
        .await;
    assert_eq!((code, v["deletedCount"].as_u64()), (200, Some(1)), "{v}");
    let (_, mine, _) = get(&env, "/api/verify/history", &env.key).await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
    let res = env
        .http
        .get(format!("{}/api/verify/export", env.base))
        .header("x-api-key", &env.other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        parse_result(&res.bytes().await.unwrap(), "csv").len(),
        1,
        "header only"
    );
    env.stop().await;
}

/// A client written from the CommBox document: `GET /whatsapp/validatecontact/{stream}/{phone}`
/// with a Bearer key, and each error envelope it documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commbox_client_gets_its_envelopes() {
    let env = env_with(|_| {}).await;
    let call = |path: String, auth: Option<String>| {
        let env = &env;
        async move {
            let mut r = env.http.get(format!("{}{path}", env.base));
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            let res = r.send().await.unwrap();
            let retry = res.headers().get("retry-after").is_some();
            (
                res.status().as_u16(),
                res.json::<Value>().await.unwrap(),
                retry,
            )
        }
    };
    let bearer = Some(format!("Bearer {}", env.key));
    let (code, v, _) = call(
        format!("/whatsapp/validatecontact/{STREAM}/41798284651"),
        bearer.clone(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "200");
    assert_eq!(v["description"], "Operation successful");
    assert!(chrono::DateTime::parse_from_rfc3339(v["response_time"].as_str().unwrap()).is_ok());
    assert_eq!(v["data"], json!({"valid": yes_no("+41798284651")}));

    let (code, v, _) = call(
        format!("/whatsapp/validatecontact/{STREAM}/12"),
        bearer.clone(),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(v["status"], "400");
    assert_eq!(v["data"][0]["recipient"], "12");
    assert_eq!(v["data"][0]["status"], 400);
    assert!(v["data"][0]["failed"].is_string());
    let envelope = |v: &Value, status: u16, description: &str| {
        assert_eq!(v["status"], status, "{v}");
        assert_eq!(v["description"], description, "{v}");
        assert!(v["response_time"].is_string(), "{v}");
    };
    let (code, v, _) = call(
        format!("/whatsapp/validatecontact/{STREAM}/41798284651"),
        None,
    )
    .await;
    assert_eq!(code, 401);
    envelope(&v, 401, "Unauthorized");
    let (code, v, _) = call(
        format!("/whatsapp/validatecontact/{STREAM}/41798284651"),
        Some("Bearer wck_0000000000000000000000000000000000000000".into()),
    )
    .await;
    assert_eq!(code, 401);
    envelope(&v, 401, "Unauthorized");
    let (code, v, _) = call(
        "/whatsapp/validatecontact/no-such-stream/41798284651".into(),
        bearer.clone(),
    )
    .await;
    assert_eq!(code, 404);
    envelope(&v, 404, "Not Found");
    // A path this API does not have (no phone) answers in its envelope too.
    let (code, v, _) = call(
        format!("/whatsapp/validatecontact/{STREAM}"),
        bearer.clone(),
    )
    .await;
    assert_eq!(code, 404);
    envelope(&v, 404, "Not Found");
    // The stream's account is logged out: the server cannot answer.
    wacheck_store::accounts::set_state(
        env.pool(),
        "simulated",
        wacheck_core::AccountState::LoggedOut,
        Some("test"),
        None,
    )
    .await
    .unwrap();
    env.app().accounts.refresh().await.unwrap();
    let (code, v, _) = call(
        format!("/whatsapp/validatecontact/{STREAM}/41798284651"),
        bearer,
    )
    .await;
    assert_eq!(code, 500);
    envelope(&v, 500, "Internal Server Error");
    env.stop().await;
}

/// Single-number routes never spend past an account's budget: they wait for budget that comes
/// within `api.check_max_wait_ms`, and otherwise answer 429 with `Retry-After` at once (waiting
/// could not help), each family in its own shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_is_waited_for_briefly_then_every_family_answers_429() {
    let env = env_with(|c| c.api.check_max_wait_ms = 5_000).await;
    // One check a minute: after the first, budget is a minute away.
    let (code, v) = env
        .call(
            Method::PATCH,
            "/v1/accounts/simulated",
            &env.admin_key,
            Some(json!({"per_minute": 1, "burst": 1})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, _, _) = get(&env, "/v1/numbers/+41798000001", &env.key).await;
    assert_eq!(code, 200);
    let started = Instant::now();
    let (code, v, headers) = get(&env, "/v1/numbers/+41798000002", &env.key).await;
    assert_eq!((code, v["code"].as_str()), (429, Some("no_budget")), "{v}");
    // A server that waited as long as it may (5 s) before refusing would take longer.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "budget a minute away is not waited for"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&retry), "Retry-After: {retry}");
    let (code, v) = env
        .call(
            Method::POST,
            &format!("/api/verify/{SESSION}/verify-single"),
            &env.key,
            Some(json!({"number": "41798000003"})),
        )
        .await;
    assert_eq!(code, 429);
    assert!(v["error"].is_string(), "{v}");
    let res = env
        .http
        .get(format!(
            "{}/whatsapp/validatecontact/{STREAM}/41798000004",
            env.base
        ))
        .header("Authorization", format!("Bearer {}", env.key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["description"].as_str()),
        (Some(429), Some("Too Many Requests"))
    );
    // Only the number that was answered is in the history.
    let (_, h, _) = get(&env, "/v1/history", &env.key).await;
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
    // Budget 100 ms away is waited for: an account of ten checks a second takes over (the
    // built-in account leaves the pool when the first account is added).
    let quick = json!({"id": "quick", "kind": "simulated", "per_minute": 600, "burst": 1,
                       "daily_cap": 0, "jitter_ms": 0});
    env.add_account(quick).await;
    for n in ["+41798000005", "+41798000006", "+41798000007"] {
        let (code, v, _) = get(
            &env,
            &format!("/v1/numbers/{}", n.replace('+', "%2B")),
            &env.key,
        )
        .await;
        assert_eq!(code, 200, "{v}");
    }
    env.stop().await;
}

/// Numbers checked one by one count toward the caller's `numbers_per_day` together with task
/// rows; clearing the history gives nothing back, concurrent requests cannot pass the same last
/// place, and numbers that could not be checked are given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_checks_count_toward_the_daily_quota() {
    let env = env_with(|_| {}).await;
    let (code, v) = env
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{USER}"),
            &env.admin_key,
            Some(json!({"limits": {"numbers_per_day": 8}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let verify = |n: u64| {
        let env = &env;
        async move {
            env.call(
                Method::POST,
                &format!("/api/verify/{SESSION}/verify-single"),
                &env.key,
                Some(json!({ "number": format!("4179{:07}", 1_000_000 + n) })),
            )
            .await
        }
    };
    // A task of 3 rows and 2 single checks: 5 of 8.
    let v = env
        .upload(
            "simple",
            "n.txt",
            b"+41798284651\n+41798284652\n+41798284653".to_vec(),
            &[],
        )
        .await;
    assert!(v["task_id"].is_string(), "{v}");
    for n in 0..2 {
        let (code, v) = verify(n).await;
        assert_eq!(code, 200, "{v}");
    }
    let (_, me) = env.call(Method::GET, "/v1/me", &env.key, None).await;
    assert_eq!(me["used"]["numbers_today"], 5, "{me}");
    // Clearing the history gives nothing back.
    let (code, v) = env
        .call(Method::DELETE, "/api/verify/clear", &env.key, None)
        .await;
    assert_eq!((code, v["deletedCount"].as_u64()), (200, Some(2)), "{v}");
    let (_, me) = env.call(Method::GET, "/v1/me", &env.key, None).await;
    assert_eq!(me["used"]["numbers_today"], 5, "{me}");
    // Answers say where the caller stands.
    let (code, v, headers) = get(&env, "/v1/numbers/+41798284658", &env.key).await;
    assert_eq!(code, 200, "{v}");
    let header = |h: &reqwest::header::HeaderMap, name: &str| {
        h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    assert_eq!(
        header(&headers, "x-quota-numbers-limit").as_deref(),
        Some("8")
    );
    assert_eq!(
        header(&headers, "x-quota-numbers-remaining").as_deref(),
        Some("2")
    );
    assert!(header(&headers, "x-quota-numbers-reset").is_some());
    // Six at once for the last 2 places: exactly 2 are checked.
    let answers = futures::future::join_all((10..16).map(verify)).await;
    let mut codes: Vec<u16> = answers.iter().map(|(c, _)| *c).collect();
    codes.sort();
    assert_eq!(codes, [200, 200, 429, 429, 429, 429], "{answers:?}");
    for (code, v) in &answers {
        if *code == 429 {
            assert!(v["error"].as_str().unwrap().contains("of at most 8"), "{v}");
        }
    }
    let (_, me) = env.call(Method::GET, "/v1/me", &env.key, None).await;
    assert_eq!(me["used"]["numbers_today"], 8, "{me}");
    // The native API is refused the same way, and so is a task.
    let (code, v, headers) = get(&env, "/v1/numbers/+41798284659", &env.key).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{v}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        header(&headers, "x-quota-numbers-remaining").as_deref(),
        Some("0")
    );
    let (code, v) = env
        .upload_as(
            &env.key,
            "simple",
            Some(("m.txt", b"+41798284660".to_vec())),
            &[("user_id", USER)],
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{v}"
    );
    env.stop().await;
}
