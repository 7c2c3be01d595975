//! Test harness: every test gets its own Postgres database, Redis key prefix and result
//! store, and runs the real service (API and worker) in-process on a free port.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;
use wacheck::app::{App, Role};
use wacheck::config::Config;
use wacheck_blob::S3Config;

pub const USER: &str = "alice";
pub const OTHER: &str = "bob";

pub mod oracle;
pub mod procs;

/// Where a test's Postgres and Redis are: the machine's own, or private servers of a fault
/// test.
#[derive(Debug, Clone)]
pub struct Infra {
    /// Postgres URL without a database (`postgres://user@host:port`).
    pub admin_url: String,
    pub redis_url: String,
}

impl Default for Infra {
    fn default() -> Self {
        Infra {
            admin_url: admin_url(),
            redis_url: redis_url(),
        }
    }
}

fn admin_url() -> String {
    std::env::var("WACHECK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn redis_url() -> String {
    std::env::var("WACHECK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A running s3s-fs server on a free port, killed on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    _root: tempfile::TempDir,
}

pub const S3_KEY: &str = "wacheck-test";
pub const S3_SECRET: &str = "wacheck-test-secret";

/// Reads `what` with `get` every 50 ms until `pred` holds for it; returns it. Fails the test
/// after `limit`, showing the last reading.
pub async fn poll<F, Fut>(
    what: &str,
    limit: Duration,
    mut get: F,
    pred: impl Fn(&Value) -> bool,
) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + limit;
    loop {
        let v = get().await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} never got there: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s3s_binary() -> PathBuf {
    if let Ok(p) = std::env::var("WACHECK_TEST_S3S_FS") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = PathBuf::from(home).join(".cargo/bin/s3s-fs");
    if cargo_bin.exists() {
        return cargo_bin;
    }
    "s3s-fs".into()
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(s3s_binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("s3s-fs must be installed: run `just test-deps`");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        _root: root,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start");
    }

    pub fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key: S3_KEY.into(),
            secret_key: SecretString::from(S3_SECRET),
            path_style: true,
        }
    }
}

impl S3Server {
    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Stops the server: the endpoint refuses connections until `restart`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and directory (the stored objects survive).
    pub fn restart(&mut self) {
        let port = self.port();
        self.child = Command::new(s3s_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_KEY, "--secret-key", S3_SECRET])
            .arg(self._root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Local,
    S3,
}

/// One test's private service.
pub struct TestEnv {
    pub app: Option<App>,
    pub base: String,
    pub key: String,
    pub other_key: String,
    /// A key of user `root` with the `admin` scope.
    pub admin_key: String,
    pub db_name: String,
    pub config: Config,
    pub http: reqwest::Client,
    pub s3: Option<S3Server>,
    pub infra: Infra,
    pub local_dir: tempfile::TempDir,
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        ulid::Ulid::generate().to_string().to_ascii_lowercase()
    )
}

/// Settings that make the pipeline react within a test's patience.
pub fn test_config(db_url: String, prefix: String, local_dir: PathBuf) -> Config {
    let mut c = Config::load(None).expect("default config");
    c.database_url = db_url;
    c.redis_url = redis_url();
    c.redis_prefix = prefix;
    c.bind = "127.0.0.1:0".into();
    c.public_url = None;
    c.accounts.native_dir = local_dir.with_file_name("native");
    c.local_dir = local_dir;
    c.s3 = None;
    c.db_max_connections = 8;
    c.pipeline.chunk_size = 50;
    c.pipeline.window = 2;
    c.pipeline.concurrency = 4;
    c.pipeline.reconcile_ms = 300;
    c.pipeline.poll_ms = 50;
    c.pipeline.requeue_after_secs = 3;
    c.pipeline.lease_secs = 5;
    c.pipeline.retry_base_ms = 5;
    c.pipeline.retry_max_ms = 50;
    c.pipeline.shutdown_grace_secs = 5;
    c.accounts.refresh_ms = 200;
    c.accounts.probe_secs = 1;
    c.accounts.cooldown_base_ms = 500;
    c.accounts.cooldown_max_ms = 5_000;
    c.accounts.handoff_secs = 2;
    c.accounts.park_secs = 1;
    c
}

impl TestEnv {
    pub async fn start(store: Store) -> TestEnv {
        Self::start_with(store, |_| {}).await
    }

    pub async fn start_with(store: Store, tweak: impl FnOnce(&mut Config)) -> TestEnv {
        Self::start_role(store, Role::All, tweak).await
    }

    pub async fn start_role(store: Store, role: Role, tweak: impl FnOnce(&mut Config)) -> TestEnv {
        Self::start_on(&Infra::default(), store, role, tweak).await
    }

    /// A service on the given Postgres and Redis.
    pub async fn start_on(
        infra: &Infra,
        store: Store,
        role: Role,
        tweak: impl FnOnce(&mut Config),
    ) -> TestEnv {
        if std::env::var_os("RUST_LOG").is_some() {
            // Logs of the in-process service, when asked for (RUST_LOG=info).
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let db_name = unique("wacheck_test_");
        let admin = sqlx::PgPool::connect(&format!("{}/postgres", infra.admin_url))
            .await
            .expect("postgres is running");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let local_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(
            format!("{}/{db_name}", infra.admin_url),
            unique("wt"),
            local_dir.path().join("results"),
        );
        config.redis_url = infra.redis_url.clone();
        let s3 = (store == Store::S3).then(S3Server::start);
        if let Some(s3) = &s3 {
            config.s3 = Some(s3.config(&unique("b")));
        }
        tweak(&mut config);
        let app = App::start(config.clone(), role)
            .await
            .expect("service starts");
        let key = wacheck_store::keys::create(&app.pool, USER).await.unwrap();
        let other_key = wacheck_store::keys::create(&app.pool, OTHER).await.unwrap();
        let admin_key = wacheck_store::keys::create_with_scopes(
            &app.pool,
            "root",
            &["check", "tasks", "admin"],
        )
        .await
        .unwrap();
        let base = format!("http://{}", app.addr.unwrap());
        TestEnv {
            app: Some(app),
            base,
            key,
            other_key,
            admin_key,
            db_name,
            config,
            http: reqwest::Client::new(),
            s3,
            infra: infra.clone(),
            local_dir,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.app().pool
    }

    /// Numbers the simulated accounts of the test's own process were asked about so far.
    pub fn backend_numbers(&self) -> u64 {
        self.app().accounts.simulated_numbers_checked()
    }

    /// A request with a key, answering (status, JSON body or null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Adds an account to the shared pool (as admin); panics unless it is created.
    pub async fn add_account(&self, body: Value) -> Value {
        let (code, v) = self
            .call(
                reqwest::Method::POST,
                "/v1/accounts",
                &self.admin_key,
                Some(body),
            )
            .await;
        assert_eq!(code, 201, "account not created: {v}");
        v
    }

    /// An account as the API shows it to the admin.
    pub async fn account(&self, id: &str) -> Value {
        let (code, v) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/accounts/{id}"),
                &self.admin_key,
                None,
            )
            .await;
        assert_eq!(code, 200, "{v}");
        v
    }

    pub async fn upload_as(
        &self,
        key: &str,
        kind: &str,
        file: Option<(&str, Vec<u8>)>,
        fields: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        if let Some((name, bytes)) = file {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
            );
        }
        let resp = self
            .http
            .post(format!("{}/wa/api/{kind}/tasks", self.base))
            .header("X-API-Key", key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Uploads as alice; extra form fields may follow.
    pub async fn upload(
        &self,
        kind: &str,
        name: &str,
        bytes: Vec<u8>,
        fields: &[(&str, &str)],
    ) -> Value {
        let mut all = vec![("user_id", USER)];
        all.extend_from_slice(fields);
        let (status, body) = self
            .upload_as(&self.key, kind, Some((name, bytes)), &all)
            .await;
        assert_eq!(status, 200, "upload failed: {body}");
        body
    }

    pub async fn status(&self, kind: &str, task_id: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/wa/api/{kind}/tasks/{task_id}", self.base))
            .query(&[("user_id", USER)])
            .header("X-API-Key", &self.key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls the task until `pred` holds for its status; returns it.
    pub async fn wait_task(
        &self,
        kind: &str,
        id: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        poll(
            "the task",
            limit,
            || async { self.status(kind, id).await.1 },
            pred,
        )
        .await
    }

    /// Polls until the task is exported; checks that status only moves forward.
    pub async fn wait_exported(&self, kind: &str, task_id: &str, limit: Duration) -> Value {
        let order = ["pending", "processing", "completed", "exported"];
        let deadline = Instant::now() + limit;
        let mut last = 0;
        loop {
            let (code, body) = self.status(kind, task_id).await;
            assert_eq!(code, 200, "{body}");
            let s = order
                .iter()
                .position(|s| *s == body["status"])
                .expect("known status");
            assert!(s >= last, "status went back: {body}");
            last = s;
            if body["status"] == "exported" {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "task not exported in time: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until the task is exported, riding out a database or network outage (503s and
    /// refused connections count as "not yet").
    pub async fn wait_exported_through_faults(
        &self,
        kind: &str,
        task_id: &str,
        limit: Duration,
    ) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let resp = self
                .http
                .get(format!("{}/wa/api/{kind}/tasks/{task_id}", self.base))
                .query(&[("user_id", USER)])
                .header("X-API-Key", &self.key)
                .timeout(Duration::from_secs(15))
                .send()
                .await;
            if let Ok(resp) = resp
                && resp.status().as_u16() == 200
            {
                last = resp.json().await.unwrap_or(Value::Null);
                if last["status"] == "exported" {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("task not exported in time: {last}");
    }

    pub async fn download(&self, url: &str) -> Vec<u8> {
        let resp = self.http.get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "download of {url}");
        resp.bytes().await.unwrap().to_vec()
    }

    /// Waits for the task `created` (an upload's answer) to be exported; its final view and
    /// its result file's rows (`format`: `csv` or `xlsx`).
    pub async fn exported_rows(
        &self,
        kind: &str,
        created: &Value,
        format: &str,
    ) -> (Value, Vec<Vec<String>>) {
        let id = created["task_id"].as_str().expect("a task");
        let done = self.wait_exported(kind, id, Duration::from_secs(60)).await;
        let url = done["result_url"]
            .as_str()
            .expect("result_url once exported");
        let rows = parse_result(&self.download(url).await, format);
        (done, rows)
    }

    /// Runs the `wacheck` command line on this service's configuration (a file, as an
    /// operator would have), with extra environment variables.
    pub fn cli(&self, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wacheck.toml");
        std::fs::write(&file, self.config.to_toml()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wacheck"));
        cmd.arg("--config")
            .arg(&file)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().expect("the wacheck binary runs")
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            let queue = app.queue.clone();
            app.stop().await;
            let _ = queue.purge().await;
        }
        if let Ok(admin) =
            sqlx::PgPool::connect(&format!("{}/postgres", self.infra.admin_url)).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )))
            .execute(&admin)
            .await;
        }
    }
}

/// Rows of a result file (header first), from xlsx (all sheets in order) or csv.
pub fn parse_result(bytes: &[u8], format: &str) -> Vec<Vec<String>> {
    match format {
        "csv" => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(bytes);
            r.records()
                .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
                .collect()
        }
        _ => {
            use calamine::{Data, Reader, Xlsx};
            let mut book: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
            let mut rows = Vec::new();
            for (i, name) in book.sheet_names().into_iter().enumerate() {
                let range = book.worksheet_range(&name).unwrap();
                for (j, row) in range.rows().enumerate() {
                    if i > 0 && j == 0 {
                        continue; // repeated header of a continuation sheet
                    }
                    let width = row.len().max(2);
                    let mut cells: Vec<String> = row
                        .iter()
                        .map(|c| match c {
                            Data::Empty => String::new(),
                            Data::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    cells.resize(width, String::new());
                    rows.push(cells);
                }
            }
            rows
        }
    }
}

/// How a result file of `format` shows a cell of outside text (see `oracle::as_written`).
pub fn as_written(text: &str, format: &str) -> String {
    oracle::as_written(text, format)
}

/// What the result file (of `format`) must say for `raw` under the simulated rule, as the
/// documentation has it (see `oracle`).
pub fn expected_row(raw: &str, region: Option<&str>, detail: bool, format: &str) -> Vec<String> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut row = match oracle::normalize(raw, region) {
        None => vec![as_written(raw, format), "invalid".into()],
        Some(e164) => {
            let r = oracle::simulated(&e164, oracle::REGISTERED_PERCENT, 0);
            let mut row = vec![e164, yes_no(r.registered)];
            if detail && r.registered {
                row.extend([r.signature.to_owned(), r.status_update, yes_no(r.business)]);
            }
            row
        }
    };
    if detail {
        // signature, status_update, business: empty but for `yes` rows.
        row.resize(5, String::new());
    }
    row
}

/// Rows of a result file all checked by the independent normaliser (see `assert_rows`).
const FULLY_CHECKED_ROWS: usize = 5_000;

/// The row the documented rule gives for the number `row` carries; the number must end with the
/// last seven digits of the input (an invalid row repeats the input as written).
fn expected_from_answer(row: &[String], raw: &str, detail: bool, format: &str) -> Vec<String> {
    let e164 = &row[0];
    if row[1] == "invalid" {
        let mut want = vec![as_written(raw, format), "invalid".into()];
        if detail {
            want.resize(5, String::new());
        }
        return want;
    }
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (given, answered) = (digits(raw), digits(e164));
    let tail = &answered[answered.len().saturating_sub(7)..];
    assert!(given.ends_with(tail), "{e164} is not the number of {raw:?}");
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let r = oracle::simulated(e164, oracle::REGISTERED_PERCENT, 0);
    let mut want = vec![e164.clone(), yes_no(r.registered)];
    if detail && r.registered {
        want.extend([r.signature.to_owned(), r.status_update, yes_no(r.business)]);
    }
    if detail {
        want.resize(5, String::new());
    }
    want
}

/// README's rule at the default share: `yes` (registered) or `no`.
pub fn by_readme_rule(e164: &str) -> &'static str {
    if oracle::simulated(e164, oracle::REGISTERED_PERCENT, 0).registered {
        "yes"
    } else {
        "no"
    }
}

/// Compares a result file with the rule, row by row; returns (success, failure).
pub fn assert_rows(
    rows: &[Vec<String>],
    raws: &[String],
    region: Option<&str>,
    detail: bool,
    format: &str,
) -> (i64, i64) {
    let header: Vec<&str> = if detail {
        vec![
            "Number",
            "whatsapp",
            "signature",
            "status_update",
            "business",
        ]
    } else {
        vec!["Number", "whatsapp"]
    };
    assert_eq!(rows[0][..header.len()], header[..], "header");
    assert_eq!(rows.len() - 1, raws.len(), "one result row per input row");
    let (mut ok, mut bad) = (0, 0);
    // A full file of a text upload ends with the line as it was (trimmed), in its own column.
    let input = rows[0].iter().position(|h| h == "input");
    for (i, (row, raw)) in rows[1..].iter().zip(raws).enumerate() {
        if let Some(at) = input {
            assert_eq!(
                row[at],
                as_written(raw.trim(), format),
                "row {} (input {raw:?}): the upload's own column",
                i + 1
            );
        }
        // The independent normaliser takes about a millisecond a number: it checks every row
        // of the first 5,000 and one in 50 after; the other rows are checked against the
        // documented rule from the number the file gives, which must carry the input's digits.
        let want = if i < FULLY_CHECKED_ROWS || i % 50 == 0 {
            expected_row(raw, region, detail, format)
        } else {
            expected_from_answer(row, raw, detail, format)
        };
        let mut got = row.clone();
        got.resize(want.len(), String::new());
        assert_eq!(got, want, "row {} (input {raw:?})", i + 1);
        if want[1] == "yes" || want[1] == "no" {
            ok += 1
        } else {
            bad += 1
        }
    }
    (ok, bad)
}

/// A deterministic mix of number spellings from several countries, with duplicates and junk.
pub fn messy_numbers(n: usize, seed: u64) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(n);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    for i in 0..n {
        let r = next();
        let v = match r % 12 {
            0 => format!(
                "+41 79 {:03} {:02} {:02}",
                r % 1000,
                (r >> 10) % 100,
                (r >> 17) % 100
            ),
            1 => format!("0041{}", 790_000_000 + r % 9_999_999),
            2 => format!("+1 (415) 555-{:04}", r % 10_000),
            3 => format!("+49 151 {:08}", r % 100_000_000),
            // Invalid: no numbering-plan range holds these.
            4 => format!("+44 7700 9{:05}", r % 100_000),
            // 600 to 629, long-standing mobile ranges: a few above are not valid, and there the
            // two number libraries' metadata could differ.
            5 => format!(
                "+33 6 {:02} {:02} {:02} {:02}",
                r % 30,
                (r >> 7) % 100,
                (r >> 14) % 100,
                (r >> 21) % 100
            ),
            6 => format!("+55 11 9{:04}-{:04}", r % 10_000, (r >> 14) % 10_000),
            7 => format!("+91 98{:08}", r % 100_000_000),
            8 => format!(
                "+7 916 {:03}-{:02}-{:02}",
                r % 1000,
                (r >> 10) % 100,
                (r >> 17) % 100
            ),
            9 => format!("+62 812 {:04} {:04}", r % 10_000, (r >> 14) % 10_000),
            10 if i > 0 => out[(r as usize) % out.len()].clone(), // duplicate of an earlier row
            _ => format!(
                "+34 6{:02} {:03} {:03}",
                r % 100,
                (r >> 7) % 1000,
                (r >> 17) % 1000
            ),
        };
        out.push(v);
        if next() % 33 == 0 {
            out.push(
                ["hello", "n/a", "12", "=1+2", "+++", "call me"][(next() % 6) as usize].to_owned(),
            );
        }
    }
    out.truncate(n);
    out
}
