//! Every refusal has its status and stable code, and a refused request creates nothing.

use crate::common::{OTHER, Store, TestEnv, USER};
use serde_json::Value;
use std::time::Duration;

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

/// A valid workbook holding one number whose sheet part is padded with `size` spaces (legal
/// XML between elements): every part reads, yet the sheet would inflate about a thousand-fold.
fn zip_bomb(size: usize) -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    book.add_worksheet()
        .write_string(0, 0, "+41798284651")
        .unwrap();
    let plain = book.save_to_buffer().unwrap();
    let mut source = zip::ZipArchive::new(std::io::Cursor::new(plain)).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..source.len() {
        let mut part = source.by_index(i).unwrap();
        let name = part.name().unwrap().into_owned();
        let mut xml = String::new();
        std::io::Read::read_to_string(&mut part, &mut xml).unwrap();
        if name == "xl/worksheets/sheet1.xml" {
            let end = xml.rfind("</worksheet>").unwrap();
            xml.insert_str(end, &" ".repeat(size));
        }
        w.start_file(name, opts).unwrap();
        std::io::Write::write_all(&mut w, xml.as_bytes()).unwrap();
    }
    w.finish().unwrap();
    out.into_inner()
}

/// The start of an OpenDocument spreadsheet: a zip whose first part, `mimetype`, names it.
fn ods() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = zip::ZipWriter::new(&mut out);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("mimetype", stored).unwrap();
    std::io::Write::write_all(&mut w, b"application/vnd.oasis.opendocument.spreadsheet").unwrap();
    w.start_file("content.xml", stored).unwrap();
    std::io::Write::write_all(&mut w, b"<office:document-content/>").unwrap();
    w.finish().unwrap();
    out.into_inner()
}

fn file(bytes: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    Some(("n.txt", bytes.to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_refusals() {
    let env = TestEnv::start_with(Store::Local, |c| c.api.max_upload_bytes = 100 * 1024).await;
    let ok = file(b"+41798284651\n");
    let me: &[(&str, &str)] = &[("user_id", USER)];
    let key = env.key.as_str();
    let big = "+41798284651\n".repeat(10_000).into_bytes();
    let xlsx = |b: &[u8]| Some(("n.xlsx", b.to_vec()));
    let bomb = zip_bomb(32 << 20);
    assert!(
        bomb.len() < 64 * 1024,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    // It is a workbook an independent reader opens: only the bomb check can refuse it.
    let mut opened: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bomb.clone())).unwrap();
    let sheet = calamine::Reader::worksheet_range_at(&mut opened, 0)
        .unwrap()
        .unwrap();
    assert_eq!(sheet.get((0, 0)).unwrap().to_string(), "+41798284651");
    let mut long_line = b"+41798284651\n".to_vec();
    long_line.extend(std::iter::repeat_n(b'1', 70 * 1024));
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
        (key, "simple", Some(("bomb.xlsx", bomb)), me, 400, "invalid_xlsx"),
        (key, "simple", Some(("n.txt", long_line.clone())), me, 400, "line_too_long"),
        (key, "simple", Some(("n.csv", long_line)), me, 400, "line_too_long"),
        (key, "simple", ok.clone(), &[("user_id", USER), ("default_region", "XX1")], 400, "invalid_default_region"),
        (key, "simple", ok.clone(), &[("user_id", USER), ("result_format", "pdf")], 400, "invalid_result_format"),
        (key, "simple", Some(("n.txt", big.clone())), me, 413, "payload_too_large"),
        (key, "simple", Some(("contacts.ods", ods())), me, 400, "unsupported_file"),
        (key, "simple", ok.clone(), &[("user_id", USER), ("result_columns", "some")], 400, "invalid_parameter"),
        (key, "bulk", ok.clone(), me, 404, "not_found"),
    ];
    for (key, kind, file, fields, status, code) in cases {
        let r = env.upload_as(key, kind, file, fields).await;
        assert_refused(&env, r, status, code).await;
    }
    // Refused uploads leave no kept copy behind either (removed as soon as the copy ends).
    let inputs = env.config.local_dir.join("inputs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = std::fs::read_dir(&inputs).map_or(0, |d| d.count());
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} files left in {}",
            inputs.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The messages speak the user's terms.
    let (_, r) = env
        .upload_as(key, "simple", Some(("bomb.xlsx", zip_bomb(32 << 20))), me)
        .await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("refused as a zip bomb"),
        "{r}"
    );
    let (_, r) = env.upload_as(key, "simple", Some(("n.txt", big)), me).await;
    assert_eq!(
        r["message"],
        "the upload is larger than the limit of 100 KiB: split the file, or ask the operator \
         to raise api.max_upload_bytes"
    );
    let (_, r) = env
        .upload_as(key, "simple", Some(("contacts.ods", ods())), me)
        .await;
    assert_eq!(
        r["message"],
        "OpenDocument files (.ods) are not read: save the sheet as .xlsx or .csv"
    );

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

/// The upload limit is enforced while the body streams in: a chunked upload that passes the
/// limit and then stalls (it never ends) is answered 413 at once. A server that read the whole
/// body before measuring it would wait for the rest forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_limit_is_enforced_while_the_body_streams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::start_with(Store::Local, |c| c.api.max_upload_bytes = 100 * 1024).await;
    let addr = env.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let boundary = "wacheck-test-boundary";
    let head = format!(
        "POST /wa/api/simple/tasks HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        env.key
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = |bytes: &[u8]| {
        let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
        framed.extend_from_slice(bytes);
        framed.extend_from_slice(b"\r\n");
        framed
    };
    let fields = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\n{USER}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    );
    socket.write_all(&chunk(fields.as_bytes())).await.unwrap();
    let lines = "+41798284651\n".repeat(1_000).into_bytes();
    // 200 KiB of numbers, twice the limit; the body's end is never sent.
    for _ in 0..(200 * 1024 / lines.len() + 1) {
        if socket.write_all(&chunk(&lines)).await.is_err() {
            break; // the server answered and closed the connection
        }
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("payload_too_large") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer while the body was still open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");
    assert_eq!(env.count("tasks").await, 0);
    drop(socket);
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
    let env = TestEnv::start_with(Store::Local, |c| c.api.result_url_ttl_secs = 4).await;
    let t = env
        .upload("simple", "n.txt", b"+41798284651\n".to_vec(), &[])
        .await;
    let id = t["task_id"].as_str().unwrap();
    env.wait_exported("simple", id, Duration::from_secs(30))
        .await;
    // A link fresh from the task, used at once, then once its four seconds are over.
    let done = env.status("simple", id).await.1;
    let url = done["result_url"].as_str().unwrap().to_owned();
    assert_eq!(
        env.http.get(&url).send().await.unwrap().status().as_u16(),
        200
    );
    let tampered = url.replace("filename=", "filename=x");
    let resp = env.http.get(&tampered).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "link_invalid");
    tokio::time::sleep(Duration::from_secs(5)).await;
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
            403,
            "link_invalid",
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

/// Hostile but harmless uploads are read for what they are: a file name with path tricks is
/// only a hint (nothing is written where it points), text that is not UTF-8 is read with
/// replacement characters, and a second file part is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_bytes_are_harmless() {
    let env = TestEnv::start(Store::Local).await;
    let escape = env.local_dir.path().join("escaped.csv");
    let trick = format!("../../../../..{}", escape.display());
    let (code, body) = env
        .upload_as(
            &env.key,
            "simple",
            Some((&trick, b"+41798284651\n".to_vec())),
            &[("user_id", USER)],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let done = env
        .wait_exported(
            "simple",
            body["task_id"].as_str().unwrap(),
            Duration::from_secs(30),
        )
        .await;
    assert!(!escape.exists(), "nothing is written where the name points");
    assert!(
        done["result_url"]
            .as_str()
            .unwrap()
            .contains(body["task_id"].as_str().unwrap()),
        "the result is named after the task"
    );
    let (code, body) = env
        .upload_as(
            &env.key,
            "simple",
            Some((
                "n.txt",
                b"\xc3\x28+41 79 828 46 51\n\xe2\x82\n+41798284652\n".to_vec(),
            )),
            &[("user_id", USER)],
        )
        .await;
    assert_eq!((code, body["total"].as_i64()), (200, Some(3)), "{body}");
    // Two file parts.
    let form = reqwest::multipart::Form::new()
        .text("user_id", USER)
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"+41798284651".to_vec()).file_name("a.txt"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"+41798284652".to_vec()).file_name("b.txt"),
        );
    let request = env
        .http
        .post(format!("{}/wa/api/simple/tasks", env.base))
        .header("X-API-Key", &env.key)
        .multipart(form);
    let tasks_before = env.count("tasks").await;
    let resp = request.send().await.unwrap();
    let r: (u16, Value) = (resp.status().as_u16(), resp.json().await.unwrap());
    assert_eq!(
        (r.0, r.1["code"].as_str()),
        (400, Some("duplicate_file")),
        "{}",
        r.1
    );
    assert_eq!(env.count("tasks").await, tasks_before);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_parameter_and_the_mistake() {
    let env = TestEnv::start(Store::Local).await;
    let get = |path: String| {
        let env = &env;
        async move { env.call(reqwest::Method::GET, &path, &env.key, None).await }
    };
    // A query parameter of the wrong kind is named, with what was given.
    let (code, v) = get("/v1/numbers/+41798284651?details=yes".into()).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["code"], "invalid_parameter");
    assert_eq!(
        v["message"],
        "the `details` query parameter must be true or false, not `yes`"
    );
    // A national number without a region is invalid, and says why.
    let (code, v) = get("/v1/numbers/0798284651".into()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["whatsapp"], "invalid");
    assert_eq!(
        v["reason"],
        "no country code: write the number with + and its country code, or set default_region"
    );
    let (_, v) = get("/v1/numbers/hello".into()).await;
    assert_eq!(v["reason"], "not a phone number", "{v}");

    // A detail task read under /simple/ is named as such (to its owner only).
    let task = env
        .upload("detail", "n.txt", b"+41798284651\n".to_vec(), &[])
        .await;
    let id = task["task_id"].as_str().unwrap();
    let (code, v) = env.status("simple", id).await;
    assert_eq!(code, 404);
    assert_eq!(
        v["message"],
        format!("task {id} is a detail task: use /wa/api/detail/tasks/{id}?user_id=alice")
    );
    let (code, v) = env
        .call(
            reqwest::Method::GET,
            &format!("/wa/api/simple/tasks/{id}?user_id=bob"),
            &env.other_key,
            None,
        )
        .await;
    assert_eq!(
        (code, v["message"].as_str()),
        (404, Some("no such task for this user"))
    );

    // A download link cut short says what is missing and what to do.
    let done = env
        .wait_exported("detail", id, Duration::from_secs(60))
        .await;
    let url = done["result_url"].as_str().unwrap();
    let cut = &url[..url.find("&sig=").expect("a signed link")];
    let resp = env.http.get(cut).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "link_invalid");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("this download link is incomplete"),
        "{v}"
    );
    env.stop().await;
}
