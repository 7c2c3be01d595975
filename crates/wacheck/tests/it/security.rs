//! Who may do what: API keys and JWTs (and every way a credential can be wrong), one user
//! against another on every route, request rates across API processes, quotas, and secrets
//! that must never reach a log.

use std::time::{Duration, Instant};

use crate::common::procs::ServiceProc;
use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use wacheck::app::Role;
use wacheck::config::Config;

const SECRET: &str = "a-test-signing-secret-of-forty-bytes-long";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn with_tokens(c: &mut Config) {
    c.auth.jwt_secret = Some(SecretString::from(SECRET));
    c.auth.jwt_public_keys = vec![
        format!("{FIXTURES}/test_rsa_public.pem").into(),
        format!("{FIXTURES}/test_ec_public.pem").into(),
    ];
    c.auth.jwt_leeway_secs = 5;
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn token(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn hs(claims: Value) -> String {
    token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        claims,
    )
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// GET /v1/me with the given headers: (status, body, headers).
async fn me(env: &TestEnv, headers: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = env.http.get(format!("{}/v1/me", env.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), h)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tokens_of_every_kind_and_every_wrong_one() {
    let env = TestEnv::start_role(Store::Local, Role::Api, with_tokens).await;
    let claims = |sub: &str| json!({"sub": sub, "exp": now() + 300, "iat": now()});
    // Right: a key in either header, and tokens of each algorithm.
    let rsa = EncodingKey::from_rsa_pem(&fixture("test_rsa_private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&fixture("test_ec_private.pem")).unwrap();
    let good = [
        ("X-API-Key", env.key.clone()),
        ("Authorization", bearer(&env.key)),
        ("Authorization", bearer(&hs(claims(USER)))),
        (
            "Authorization",
            bearer(&token(Algorithm::RS256, &rsa, claims(USER))),
        ),
        (
            "Authorization",
            bearer(&token(Algorithm::ES256, &ec, claims(USER))),
        ),
    ];
    for (h, v) in &good {
        let (code, body, _) = me(&env, &[(h, v)]).await;
        assert_eq!(
            (code, body["user_id"].as_str()),
            (200, Some(USER)),
            "{h}: {body}"
        );
    }
    let (_, body, _) = me(&env, &[("Authorization", &bearer(&hs(claims(USER))))]).await;
    assert_eq!(
        body["scopes"],
        json!(["check", "tasks"]),
        "a token without `scope`"
    );
    assert!(body.get("key_id").is_none());

    // Wrong, each refused with the same 401 shape.
    let other_rsa = EncodingKey::from_rsa_pem(&fixture("test_rsa_other_private.pem")).unwrap();
    let header_none = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body_none = b64url(claims(USER).to_string().as_bytes());
    let revoked_key = wacheck_store::keys::create(env.pool(), USER).await.unwrap();
    let revoked_id = wacheck_store::keys::list(env.pool(), Some(USER))
        .await
        .unwrap()[0]
        .id
        .clone();
    assert!(
        wacheck_store::keys::revoke(env.pool(), &revoked_id)
            .await
            .unwrap()
    );
    wacheck_store::users::create(env.pool(), "carol")
        .await
        .unwrap();
    let carol_key = wacheck_store::keys::create(env.pool(), "carol")
        .await
        .unwrap();
    wacheck_store::users::set_disabled(env.pool(), "carol", true)
        .await
        .unwrap();
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "X-API-Key",
            "wck_0123456789abcdef0123456789abcdef01234567".into(),
            "unknown key",
        ),
        ("X-API-Key", revoked_key, "revoked key"),
        ("X-API-Key", carol_key, "key of a disabled user"),
        (
            "Authorization",
            bearer(&hs(claims("carol"))),
            "token of a disabled user",
        ),
        (
            "Authorization",
            bearer(&hs(claims("nobody"))),
            "token of no user",
        ),
        (
            "Authorization",
            bearer(&hs(json!({"sub": USER, "exp": now() - 60}))),
            "expired",
        ),
        ("Authorization", bearer(&hs(json!({"sub": USER}))), "no exp"),
        (
            "Authorization",
            bearer(&hs(json!({"exp": now() + 300}))),
            "no sub",
        ),
        (
            "Authorization",
            bearer(&token(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-of-forty-bytes-or-so-long").unwrap(),
                claims(USER),
            )),
            "wrong secret",
        ),
        (
            "Authorization",
            bearer(&token(Algorithm::RS256, &other_rsa, claims(USER))),
            "unknown RSA key",
        ),
        (
            "Authorization",
            bearer(&format!("{header_none}.{body_none}.")),
            "alg none",
        ),
        (
            "Authorization",
            bearer(&token(
                Algorithm::HS384,
                &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
                claims(USER),
            )),
            "an algorithm not accepted",
        ),
        ("Authorization", bearer("not.a.token"), "garbage"),
        (
            "Authorization",
            "Basic YWxpY2U6cHc=".into(),
            "another scheme",
        ),
        ("X-API-Key", " ".into(), "an empty key"),
    ];
    for (h, v, why) in &bad {
        let (code, body, headers) = me(&env, &[(h, v)]).await;
        assert_eq!(
            (code, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{why}: {body}"
        );
        assert!(body["message"].is_string(), "{why}");
        assert!(headers.contains_key("www-authenticate"), "{why}");
    }
    let (code, _, _) = me(&env, &[]).await;
    assert_eq!(code, 401, "no credentials");

    // Scopes: a token for checks only may not upload; an admin token reads anyone's task.
    let check_only = hs(json!({"sub": USER, "exp": now() + 300, "scope": "check"}));
    let (code, body) = env.call(Method::GET, "/v1/accounts", "", None).await;
    assert_eq!(code, 401, "{body}");
    let resp = env
        .http
        .post(format!("{}/wa/api/simple/tasks", env.base))
        .header("Authorization", bearer(&check_only))
        .multipart(reqwest::multipart::Form::new().text("user_id", USER))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let task = env
        .upload("simple", "n.txt", b"+41798284651".to_vec(), &[])
        .await;
    let id = task["task_id"].as_str().unwrap();
    wacheck_store::users::create(env.pool(), "root")
        .await
        .unwrap();
    let admin = hs(json!({"sub": "root", "exp": now() + 300, "scope": "check tasks admin"}));
    let resp = env
        .http
        .get(format!(
            "{}/wa/api/simple/tasks/{id}?user_id={USER}",
            env.base
        ))
        .header("Authorization", bearer(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "admins act for anyone");
    env.stop().await;
}

/// The admin API end to end: users, their keys, disabling and revoking, and the two things an
/// admin may not do to themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_users_and_keys_over_the_api() {
    let env = TestEnv::start_role(Store::Local, Role::Api, |_| {}).await;
    let admin = env.admin_key.clone();
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/admin/users",
            &admin,
            Some(json!({"id": "dave", "limits": {"numbers_per_day": 100}})),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["limits"]["numbers_per_day"], 100, "{v}");
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/admin/users",
            &admin,
            Some(json!({"id": "dave"})),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/admin/users",
            &admin,
            Some(json!({"id": "a b"})),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{v}"
    );
    // A key for dave, shown once; the listing never shows it.
    let (code, created) = env
        .call(
            Method::POST,
            "/v1/admin/users/dave/keys",
            &admin,
            Some(json!({"scopes": ["check"], "name": "crm"})),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let dave = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    let (code, me) = env.call(Method::GET, "/v1/me", &dave, None).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(
        (me["user_id"].as_str(), &me["scopes"]),
        (Some("dave"), &json!(["check"]))
    );
    let (code, listed) = env
        .call(Method::GET, "/v1/admin/users/dave/keys", &admin, None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(listed[0]["id"], key_id.as_str());
    assert!(dave.starts_with(listed[0]["prefix"].as_str().unwrap()));
    assert!(
        !listed.to_string().contains(&dave),
        "the listing shows the key"
    );
    // Disabled, the key stops working; enabled, it works again.
    for (disabled, want) in [(true, 401), (false, 200)] {
        let (code, v) = env
            .call(
                Method::PATCH,
                "/v1/admin/users/dave",
                &admin,
                Some(json!({ "disabled": disabled })),
            )
            .await;
        assert_eq!(
            (code, v["disabled"].as_bool()),
            (200, Some(disabled)),
            "{v}"
        );
        assert_eq!(env.call(Method::GET, "/v1/me", &dave, None).await.0, want);
    }
    // Revoked, it stops for good.
    let path = format!("/v1/admin/keys/{key_id}");
    assert_eq!(env.call(Method::DELETE, &path, &admin, None).await.0, 204);
    assert_eq!(env.call(Method::GET, "/v1/me", &dave, None).await.0, 401);
    assert_eq!(env.call(Method::DELETE, &path, &admin, None).await.0, 404);
    // Limits that do not fit are refused, and nothing changes.
    let (code, v) = env
        .call(
            Method::PATCH,
            "/v1/admin/users/dave",
            &admin,
            Some(json!({"limits": {"requests_per_minute": 3_000_000_000_u64}})),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("invalid_parameter")),
        "{v}"
    );
    // An admin cannot lock themselves out, and a refused change writes nothing.
    let (_, me) = env.call(Method::GET, "/v1/me", &admin, None).await;
    let own = format!("/v1/admin/users/{}", me["user_id"].as_str().unwrap());
    let (code, v) = env
        .call(
            Method::PATCH,
            &own,
            &admin,
            Some(json!({"disabled": true, "limits": {"numbers_per_day": 5}})),
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (409, Some("cannot_disable_self")),
        "{v}"
    );
    let (_, mine) = env.call(Method::GET, &own, &admin, None).await;
    assert_eq!(mine["own_limits"]["numbers_per_day"], Value::Null, "{mine}");
    let own_key = format!("/v1/admin/keys/{}", me["key_id"].as_str().unwrap());
    let (code, v) = env.call(Method::DELETE, &own_key, &admin, None).await;
    assert_eq!((code, v["code"].as_str()), (409, Some("key_in_use")), "{v}");
    assert_eq!(env.call(Method::GET, "/v1/me", &admin, None).await.0, 200);
    env.stop().await;
}

/// Everything of Alice's that Bob's requests could touch, as stored: her task and its
/// answers, her account and its alias, her user and keys (but when a key was last used), her
/// check history.
async fn alices_data(env: &TestEnv, task: &str) -> Value {
    sqlx::query_scalar(
        "SELECT jsonb_build_object( \
           'task', (SELECT to_jsonb(t) FROM tasks t WHERE id = $1), \
           'answers', (SELECT jsonb_agg(to_jsonb(r) ORDER BY number) FROM task_results r \
                       WHERE task_id = $1), \
           'account', (SELECT to_jsonb(a) FROM accounts a WHERE id = 'alice-sim'), \
           'aliases', (SELECT jsonb_agg(to_jsonb(x) ORDER BY alias) FROM account_aliases x \
                       WHERE account_id = 'alice-sim'), \
           'user', (SELECT to_jsonb(u) FROM users u WHERE id = $2), \
           'keys', (SELECT jsonb_agg(to_jsonb(k) - 'last_used_at' ORDER BY id) FROM api_keys k \
                    WHERE user_id = $2), \
           'history', (SELECT jsonb_agg(to_jsonb(h) ORDER BY id) FROM check_history h \
                       WHERE user_id = $2))",
    )
    .bind(task)
    .bind(USER)
    .fetch_one(env.pool())
    .await
    .unwrap()
}

/// Bob's credentials against every one of Alice's resources: the same 404 as for something
/// that does not exist (or 403 where a route is for admins only), never her data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_never_reaches_another_users_resources() {
    let env = TestEnv::start_with(Store::Local, |c| c.accounts.user_accounts = true).await;
    let task = env
        .upload("simple", "n.txt", b"+41798284651\n".to_vec(), &[])
        .await;
    let id = task["task_id"].as_str().unwrap().to_owned();
    let done = env
        .wait_exported("simple", &id, Duration::from_secs(30))
        .await;
    let (code, _) = env
        .call(
            Method::POST,
            "/v1/accounts",
            &env.key,
            Some(json!({"id": "alice-sim", "kind": "simulated"})),
        )
        .await;
    assert_eq!(code, 201);
    let (code, v) = env
        .call(
            Method::POST,
            "/v1/accounts/alice-sim/aliases",
            &env.key,
            Some(json!({"alias": "alice-line"})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = env
        .call(
            Method::POST,
            "/api/verify/alice-line/verify-single",
            &env.key,
            Some(json!({"number": "41798284651"})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let bob = env.other_key.clone();
    let alices_data = || alices_data(&env, &id);
    let before = alices_data().await;
    let t = |s: &str| s.replace("{id}", &id);
    let matrix: Vec<(Method, String, u16)> = vec![
        (
            Method::GET,
            t("/wa/api/simple/tasks/{id}?user_id=alice"),
            404,
        ),
        (Method::GET, t("/wa/api/simple/tasks/{id}?user_id=bob"), 404),
        (Method::GET, t("/wa/api/detail/tasks/{id}?user_id=bob"), 404),
        (
            Method::DELETE,
            t("/wa/api/simple/tasks/{id}?user_id=alice"),
            404,
        ),
        (
            Method::DELETE,
            t("/wa/api/simple/tasks/{id}?user_id=bob"),
            404,
        ),
        (
            Method::POST,
            t("/wa/api/simple/tasks/{id}/cancel?user_id=alice"),
            404,
        ),
        (
            Method::POST,
            t("/wa/api/simple/tasks/{id}/export?user_id=alice"),
            404,
        ),
        (
            Method::POST,
            t("/wa/api/simple/tasks/{id}/export?user_id=bob"),
            404,
        ),
        (Method::GET, t("/v1/tasks/{id}/usage"), 404),
        (Method::GET, "/v1/accounts/alice-sim".into(), 404),
        (Method::PATCH, "/v1/accounts/alice-sim".into(), 404),
        (Method::POST, "/v1/accounts/alice-sim/pause".into(), 404),
        (Method::POST, "/v1/accounts/alice-sim/resume".into(), 404),
        (Method::DELETE, "/v1/accounts/alice-sim".into(), 404),
        (Method::GET, "/v1/accounts/alice-sim/qr.png".into(), 404),
        (Method::POST, "/v1/accounts/alice-sim/aliases".into(), 404),
        (
            Method::DELETE,
            "/v1/accounts/alice-sim/aliases/alice-line".into(),
            404,
        ),
        (
            Method::POST,
            "/api/verify/alice-sim/verify-single".into(),
            404,
        ),
        (
            Method::POST,
            "/api/verify/alice-line/verify-single".into(),
            404,
        ),
        (
            Method::GET,
            "/whatsapp/validatecontact/alice-sim/41798284651".into(),
            404,
        ),
        (
            Method::GET,
            "/whatsapp/validatecontact/alice-line/41798284651".into(),
            404,
        ),
        (
            Method::GET,
            t("/files/results/{id}.xlsx?filename=r.xlsx&expires=9999999999&sig=00"),
            403,
        ),
        (Method::GET, "/v1/admin/users".into(), 403),
        (Method::POST, "/v1/admin/users".into(), 403),
        (Method::GET, "/v1/admin/users/alice".into(), 403),
        (Method::PATCH, "/v1/admin/users/alice".into(), 403),
        (Method::GET, "/v1/admin/users/alice/keys".into(), 403),
        (Method::POST, "/v1/admin/users/alice/keys".into(), 403),
        (Method::DELETE, "/v1/admin/keys/anything".into(), 403),
    ];
    // The same request about something that does not exist must get the same answer, but for
    // the name asked about (which some messages repeat) and the time of the answer.
    let nothing = "01AAAAAAAAAAAAAAAAAAAAAAAA";
    let missing = |s: &str| {
        s.replace(&id, nothing)
            .replace("alice-sim", "nobody-sim")
            .replace("alice-line", "nobody-line")
    };
    let comparable = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("response_time");
        }
        v.to_string()
    };
    for (method, path, want) in matrix {
        let body = if path.ends_with("/verify-single") {
            json!({"number": "41798284651"})
        } else {
            json!({})
        };
        let (code, answer) = env
            .call(method.clone(), &path, &bob, Some(body.clone()))
            .await;
        assert_eq!(code, want, "{method} {path}: {answer}");
        let (code, none) = env
            .call(method.clone(), &missing(&path), &bob, Some(body))
            .await;
        assert_eq!(code, want, "{method} {}: {none}", missing(&path));
        assert_eq!(
            missing(&comparable(answer)),
            comparable(none),
            "{method} {path} answers differently from a missing resource"
        );
    }
    // A file to check under Alice's session name.
    for session in ["alice-sim", "alice-line"] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"number\n41798284651\n".to_vec()).file_name("n.csv"),
        );
        let resp = env
            .http
            .post(format!("{}/api/verify/{session}/bulk-verify", env.base))
            .header("x-api-key", &bob)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{session}");
    }
    // Histories: Bob's hold nothing of Alice's checks.
    for path in ["/v1/history", "/api/verify/history"] {
        let (code, v) = env.call(Method::GET, path, &bob, None).await;
        assert_eq!(code, 200, "{path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("41798284651") && !text.contains("alice"),
            "{path}: {text}"
        );
    }
    // Uploading as Alice with Bob's key.
    let (code, body) = env
        .upload_as(
            &bob,
            "simple",
            Some(("n.txt", b"+41798284651".to_vec())),
            &[("user_id", USER)],
        )
        .await;
    assert_eq!(code, 404, "{body}");
    // Bob's own view and lists hold nothing of Alice's.
    let (_, mine) = env.call(Method::GET, "/v1/me", &bob, None).await;
    assert_eq!(mine["user_id"], OTHER);
    let (_, accounts) = env.call(Method::GET, "/v1/accounts", &bob, None).await;
    assert_eq!(accounts, json!([]));
    // Every refused change left Alice's rows as they were.
    assert_eq!(alices_data().await, before);
    // Alice's result link works without a key and only as signed; Bob cannot make one.
    let url = done["result_url"].as_str().unwrap();
    assert_eq!(
        env.http.get(url).send().await.unwrap().status().as_u16(),
        200
    );
    let forged = url.replace(&id, "01AAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(
        env.http
            .get(&forged)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_rate_holds_across_api_processes_and_says_so_in_headers() {
    let env = TestEnv::start_role(Store::Local, Role::Api, |_| {}).await;
    let (code, _) = env
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{USER}"),
            &env.admin_key,
            Some(json!({"limits": {"requests_per_minute": 6, "request_burst": 3}})),
        )
        .await;
    assert_eq!(code, 200);
    // A second API process on the same Postgres and Redis.
    let mut other = env.config.clone();
    let port = free_port();
    other.bind = format!("127.0.0.1:{port}");
    let proc = ServiceProc::spawn(&other, "api");
    let second = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while env
        .http
        .get(format!("{second}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{}", proc.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Alternating between the two: the burst of 3 is shared, the fourth is refused.
    let mut codes = Vec::new();
    let mut last = None;
    for i in 0..4 {
        let base = if i % 2 == 0 { &env.base } else { &second };
        let resp = env
            .http
            .get(format!("{base}/v1/me"))
            .header("X-API-Key", &env.key)
            .send()
            .await
            .unwrap();
        codes.push(resp.status().as_u16());
        last = Some(resp);
    }
    assert_eq!(codes, [200, 200, 200, 429], "{}", proc.log_tail());
    let refused = last.unwrap();
    let h = refused.headers();
    assert_eq!(h["x-ratelimit-limit"], "6");
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset >= now(), "the reset is a time to come");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // Another user is not affected; and after the wait, Alice may go on.
    let (code, _, headers) = me(&env, &[("X-API-Key", &env.other_key)]).await;
    assert_eq!(code, 200);
    assert!(headers.contains_key("x-ratelimit-remaining"));
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (code, _, _) = me(&env, &[("X-API-Key", &env.key)]).await;
    assert_eq!(code, 200);
    drop(proc);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_what_does_not_fit_and_store_nothing() {
    let env = TestEnv::start_role(Store::Local, Role::Api, |_| {}).await;
    let set = |limits: Value| {
        let env = &env;
        async move {
            let (code, v) = env
                .call(
                    Method::PATCH,
                    &format!("/v1/admin/users/{USER}"),
                    &env.admin_key,
                    Some(json!({ "limits": limits })),
                )
                .await;
            assert_eq!(code, 200, "{v}");
        }
    };
    let numbers = |n: usize, from: u64| -> Vec<u8> {
        (0..n as u64)
            .map(|i| format!("+4179{:07}", from + i))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    };
    let me = [("user_id", USER)];
    // Rows per task.
    set(json!({"max_rows": 10})).await;
    let (code, v) = env
        .upload_as(
            &env.key,
            "simple",
            Some(("n.txt", numbers(11, 1_000_000))),
            &me,
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("too_many_rows")),
        "{v}"
    );
    // Numbers per day: 60 fit, 60 more do not.
    set(json!({"max_rows": null, "numbers_per_day": 100})).await;
    let (code, _) = env
        .upload_as(
            &env.key,
            "simple",
            Some(("n.txt", numbers(60, 2_000_000))),
            &me,
        )
        .await;
    assert_eq!(code, 200);
    let (code, v) = env
        .upload_as(
            &env.key,
            "simple",
            Some(("n.txt", numbers(60, 3_000_000))),
            &me,
        )
        .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{v}"
    );
    assert_eq!(env.count("tasks").await, 1, "the refused task left nothing");
    let (_, mine) = env.call(Method::GET, "/v1/me", &env.key, None).await;
    assert_eq!(mine["used"]["numbers_today"], 60);
    assert_eq!(mine["limits"]["numbers_per_day"], 100);
    // Concurrent tasks: the first is still pending (no worker runs here).
    set(json!({"numbers_per_day": null, "max_concurrent_tasks": 1})).await;
    let resp = env
        .http
        .post(format!("{}/wa/api/simple/tasks", env.base))
        .header("X-API-Key", &env.key)
        .multipart(reqwest::multipart::Form::new().text("user_id", USER).part(
            "file",
            reqwest::multipart::Part::bytes(numbers(5, 4_000_000)).file_name("n.txt"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["x-quota-tasks-limit"], "1");
    assert_eq!(resp.headers()["x-quota-tasks-remaining"], "0");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "too_many_tasks");
    // Two uploads racing for the last place: one wins.
    set(json!({"max_concurrent_tasks": 2})).await;
    let (a, b) = tokio::join!(
        env.upload_as(
            &env.key,
            "simple",
            Some(("a.txt", numbers(500, 5_000_000))),
            &me
        ),
        env.upload_as(
            &env.key,
            "simple",
            Some(("b.txt", numbers(500, 6_000_000))),
            &me
        ),
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 429], "{} {}", a.1, b.1);
    assert_eq!(env.count("tasks").await, 2);
    env.stop().await;
}

/// The secrets a deployment holds never appear in its log, even when they are what fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    let gateway_key = "gw-key-that-must-stay-secret-7d1f";
    let s3_secret = crate::common::S3_SECRET;
    let waha = wacheck_testkit::FakeGateway::waha("the-right-key", "default", 70, 0);
    let mut env = TestEnv::start_role(Store::S3, Role::Api, with_tokens).await;
    env.add_account(json!({"id": "waha-wrong-key", "kind": "waha",
        "settings": {"base_url": waha.base_url(), "session": "default", "api_key": gateway_key}}))
        .await;
    // The service as a process with everything configured, logging at debug level.
    let mut config = env.config.clone();
    let port = free_port();
    config.bind = format!("127.0.0.1:{port}");
    config.public_url = None;
    let service = ServiceProc::spawn_with_log_level(&config, "all", "debug");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "{}", service.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Failing requests with each kind of credential, and a good one.
    let key = env.key.clone();
    let wrong_token = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"some-other-secret-of-forty-bytes-long!!").unwrap(),
        json!({"sub": USER, "exp": now() + 300}),
    );
    for (h, v, want) in [
        ("X-API-Key", format!("{key}x"), 401),
        ("Authorization", bearer(&wrong_token), 401),
        (
            "Authorization",
            bearer(&hs(json!({"sub": USER, "exp": 1}))),
            401,
        ),
        ("X-API-Key", key.clone(), 200),
    ] {
        let resp = env
            .http
            .get(format!("{base}/v1/me"))
            .header(h, &v)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want);
    }
    // The account was found failing when added; the operator insists, so a worker tries it:
    // the gateway refuses the key, and the task waits.
    let (code, _) = env
        .call(
            Method::POST,
            "/v1/accounts/waha-wrong-key/resume",
            &env.admin_key,
            None,
        )
        .await;
    assert_eq!(code, 200);
    let resp = env
        .http
        .post(format!("{base}/wa/api/simple/tasks"))
        .header("X-API-Key", &key)
        .multipart(reqwest::multipart::Form::new().text("user_id", USER).part(
            "file",
            reqwest::multipart::Part::bytes(b"+41798284651".to_vec()).file_name("n.txt"),
        ))
        .send()
        .await
        .unwrap();
    let task: Value = resp.json().await.unwrap();
    let id = task["task_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = env.status("simple", id).await;
        let log = std::fs::read_to_string(&service.log).unwrap();
        if v["waiting"].is_string() && log.contains("refused the API key") {
            break;
        }
        assert!(Instant::now() < deadline, "{v}\n{}", service.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wacheck"))
        .args(["config"])
        .env("WACHECK_AUTH__JWT_SECRET", SECRET)
        .env("WACHECK_S3__ENDPOINT", "http://127.0.0.1:1")
        .env("WACHECK_S3__BUCKET", "b")
        .env("WACHECK_S3__ACCESS_KEY", "ak")
        .env("WACHECK_S3__SECRET_KEY", s3_secret)
        .env("DATABASE_URL", "postgres://u:db-password-9f2@127.0.0.1/x")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("[redacted]"), "{printed}");
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert!(
        log.contains("API key"),
        "the failure itself is logged:\n{log}"
    );
    for secret in [
        gateway_key,
        s3_secret,
        SECRET,
        key.as_str(),
        "db-password-9f2",
    ] {
        assert!(!log.contains(secret), "`{secret}` is in the log");
        assert!(
            !printed.contains(secret),
            "`{secret}` is in `wacheck config`"
        );
    }
    drop(service);
    env.s3.take();
    env.stop().await;
}

/// The command line's own variables share the prefix with the settings but never stop a
/// command; a mistyped setting does, in one line that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_variables_coexist_with_the_settings() {
    let env = TestEnv::start(Store::Local).await;
    let client = [
        ("WACHECK_GATEWAY_KEY", "abc"),
        ("WACHECK_SERVER", "http://127.0.0.1:8080"),
        ("WACHECK_KEY", "wk_123"),
    ];
    for args in [&["accounts", "list"][..], &["config"], &["users", "list"]] {
        let out = env.cli(args, &client);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = env.cli(
        &["accounts", "list"],
        &[("WACHECK_PIPELINE__CHUNK_SIZ", "7")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid configuration: "), "{err}");
    assert!(err.contains("chunk_siz"), "{err}");
    // `wacheck config` prints TOML that reads back as a configuration file.
    let out = env.cli(&["config"], &[]);
    let printed = String::from_utf8(out.stdout).unwrap();
    let parsed: toml::Table = printed.parse().expect("TOML");
    assert_eq!(
        parsed["pipeline"]["chunk_size"].as_integer(),
        Some(i64::from(env.config.pipeline.chunk_size))
    );
    env.stop().await;
}

/// `keys create` refuses a user nobody created (a typo must not make a user); users can be
/// deleted, with their data only when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_and_deleted_on_purpose() {
    let env = TestEnv::start(Store::Local).await;
    let out = env.cli(&["keys", "create", "--user", "alicee"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("no user `alicee`") && err.contains("--create-user"),
        "{err}"
    );
    let list = String::from_utf8(env.cli(&["users", "list"], &[]).stdout).unwrap();
    assert!(!list.contains("alicee"), "{list}");
    let out = env.cli(&["keys", "create", "--create-user", "--user", "carol"], &[]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (code, _) = env.call(Method::GET, "/v1/me", &key, None).await;
    assert_eq!(code, 200);

    // Alice has a task: deleting her is refused unless her data goes too.
    let task = env
        .upload("simple", "n.txt", b"+41798284651\n".to_vec(), &[])
        .await;
    let id = task["task_id"].as_str().unwrap();
    env.wait_exported("simple", id, Duration::from_secs(60))
        .await;
    let files = |dir: &std::path::Path| walk(dir).into_iter().filter(|p| p.is_file()).count();
    assert_eq!(
        files(&env.config.local_dir),
        2,
        "the upload and the result file"
    );
    let out = env.cli(&["users", "delete", USER], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("has 1 tasks") && err.contains("--with-data"),
        "{err}"
    );
    assert_eq!(env.count("tasks").await, 1);
    let out = env.cli(&["users", "delete", USER, "--with-data"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.count("tasks").await, 0);
    assert_eq!(env.count("task_results").await, 0);
    assert_eq!(files(&env.config.local_dir), 0, "no file of hers is left");
    let (code, _) = env.call(Method::GET, "/v1/me", &env.key, None).await;
    assert_eq!(code, 401, "her key went with her");
    env.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// A service bound to every interface warns that its links need a public URL; its log file
/// has no colour codes and shows the address as an address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tells_the_operator_plainly() {
    let env = TestEnv::start(Store::Local).await;
    let mut config = env.config.clone();
    config.bind = format!("0.0.0.0:{}", free_port());
    let service = ServiceProc::spawn(&config, "api");
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(&service.log).unwrap_or_default();
        if log.contains("API listening") {
            break log;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(log.contains("set WACHECK_PUBLIC_URL"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    assert!(!log.contains("addr=Some("), "{log}");
    drop(service);
    env.stop().await;
}

/// An HS256 token the service has no secret for is refused with what to do about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_secret_says_how_to_fix_it() {
    let env = TestEnv::start(Store::Local).await;
    let jwt = token(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        json!({"sub": USER, "exp": now() + 60}),
    );
    let resp = env
        .http
        .get(format!("{}/v1/me", env.base))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["message"].as_str().unwrap().contains(
            "set auth.jwt_secret (WACHECK_AUTH__JWT_SECRET) in the service's environment and \
             restart it"
        ),
        "{v}"
    );
    env.stop().await;
}
