//! The service under measurement: `wacheck serve` processes (release build, next to this
//! binary) on a bench database, a client that times uploads from their last byte, and readings
//! of each process's peak memory and CPU time from /proc.

use sqlx::AssertSqlSafe;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wacheck::config::Config;

use crate::cases::peak_rss_mib;

pub const USER: &str = "bench";

/// One database and configuration for every process of the run.
pub struct Service {
    pub config: Config,
    pub key: String,
    pub admin_url: String,
    pub db_name: String,
    bin: PathBuf,
    dir: PathBuf,
}

/// A running `wacheck serve` process.
pub struct Proc {
    child: Child,
    pub port: Option<u16>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Clock ticks per second of /proc/<pid>/stat times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

impl Proc {
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        peak_rss_mib(&self.pid())
    }

    /// User + system CPU time used so far, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        if f.len() < 13 {
            return 0.0;
        }
        (f[11] + f[12]) / clock_ticks()
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// A fresh database `wacheck_bench_<ulid>`, migrated, with a key for user `bench`.
    pub fn create(bin_dir: &Path, dir: &Path, admin_url: &str) -> anyhow::Result<Service> {
        let bin = bin_dir.join("wacheck");
        anyhow::ensure!(
            bin.exists(),
            "{} not found: build it first (cargo build --release --bins)",
            bin.display()
        );
        let db_name = format!(
            "wacheck_bench_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&format!("{admin_url}/postgres")).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
                .execute(&mut c)
                .await?;
            anyhow::Ok(())
        })?;
        let mut config = Config::load(None)?;
        config.database_url = format!("{admin_url}/{db_name}");
        config.redis_prefix = format!("wacheck-bench-{}", ulid::Ulid::generate());
        config.local_dir = dir.join("results");
        config.db_max_connections = 16;
        config.pipeline = Default::default();
        config.rate = Default::default(); // no rate limit: the pipeline alone is measured
        config.sim = Default::default();
        config.api = Default::default();
        config.limits = Default::default();
        config.limits.requests_per_minute = 0; // no request limit unless a case sets one
        let mut s = Service {
            config,
            key: String::new(),
            admin_url: admin_url.to_owned(),
            db_name,
            bin,
            dir: dir.to_owned(),
        };
        s.write_config()?;
        s.cli(&["migrate"])?;
        s.key = s
            .cli(&["keys", "create", "--create-user", "--user", USER])?
            .trim()
            .to_owned();
        Ok(s)
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("wacheck.toml")
    }

    fn write_config(&self) -> anyhow::Result<()> {
        std::fs::write(self.config_file(), self.config.to_toml())?;
        Ok(())
    }

    /// Runs `bin` for the processes spawned from now on (another build of wacheck, on the
    /// same database and configuration); returns the binary used until now.
    pub fn use_binary(&mut self, bin: PathBuf) -> PathBuf {
        std::mem::replace(&mut self.bin, bin)
    }

    /// `wacheck` reading only the bench's file: the environment's `DATABASE_URL`, `REDIS_URL`
    /// and `WACHECK_*` would override it.
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k == "DATABASE_URL" || k == "REDIS_URL" || k.starts_with("WACHECK_") {
                c.env_remove(k.as_ref());
            }
        }
        c
    }

    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .arg("--config")
            .arg(self.config_file())
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "wacheck {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Starts `wacheck serve --role <role>`; an `api` or `all` process gets its own port.
    pub fn spawn(&mut self, role: &str) -> anyhow::Result<Proc> {
        let port = (role != "worker").then(free_port);
        if let Some(port) = port {
            self.config.bind = format!("127.0.0.1:{port}");
            self.config.public_url = Some(format!("http://127.0.0.1:{port}"));
        }
        self.write_config()?;
        let log = std::fs::File::create(
            self.dir
                .join(format!("{role}-{}.log", ulid::Ulid::generate())),
        )?;
        let child = self
            .command()
            .arg("--config")
            .arg(self.config_file())
            .args(["serve", "--role", role])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let proc = Proc { child, port };
        if let Some(port) = port {
            let deadline = Instant::now() + Duration::from_secs(30);
            while get(port, "/health").is_err() {
                anyhow::ensure!(Instant::now() < deadline, "wacheck {role} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(proc)
    }

    /// Runs SQL on the bench database.
    pub fn query_f64(&self, sql: &str) -> anyhow::Result<f64> {
        let url = self.config.database_url.clone();
        let sql = sql.to_owned();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await?;
                let v: Option<f64> = sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await?;
                anyhow::Ok(v.unwrap_or(f64::NAN))
            })
    }

    pub fn drop_database(&self) -> anyhow::Result<()> {
        let admin = format!("{}/postgres", self.admin_url);
        let name = self.db_name.clone();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&admin).await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await?;
                anyhow::Ok(())
            })
    }
}

/// A plain HTTP/1.1 exchange on a new connection; returns status and body.
fn exchange(port: u16, head: &[u8], body: &[u8]) -> anyhow::Result<(u16, Vec<u8>, Instant)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let last_byte = Instant::now();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header in the answer")?;
    let status: u16 = std::str::from_utf8(&resp[..split])?
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((status, resp[split + 4..].to_vec(), last_byte))
}

pub fn get(port: u16, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    exchange(port, head.as_bytes(), b"").map(|(s, b, _)| (s, b))
}

/// What an upload took.
pub struct Uploaded {
    pub task_id: String,
    /// From the last byte sent to the complete answer.
    pub after_last_byte: Duration,
    pub total: Duration,
}

/// Uploads `file` as a simple task (default region CH) and times it.
pub fn upload(port: u16, key: &str, file: &Path, result_format: &str) -> anyhow::Result<Uploaded> {
    let content = std::fs::read(file)?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("numbers.txt");
    let boundary = format!("bench{}", ulid::Ulid::generate());
    let mut body = Vec::with_capacity(content.len() + 1024);
    for (field, value) in [
        ("user_id", USER),
        ("default_region", "CH"),
        ("result_format", result_format),
    ] {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
        )?;
    }
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )?;
    body.extend_from_slice(&content);
    write!(body, "\r\n--{boundary}--\r\n")?;
    let head = format!(
        "POST /wa/api/simple/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         X-API-Key: {key}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    let (status, answer, last_byte) = exchange(port, head.as_bytes(), &body)?;
    let done = Instant::now();
    if status != 200 {
        bail!(
            "upload answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&answer)?;
    Ok(Uploaded {
        task_id: v["task_id"].as_str().context("no task_id")?.to_owned(),
        after_last_byte: done - last_byte,
        total: done - started,
    })
}

/// The task's view.
pub fn status(port: u16, key: &str, task: &str) -> anyhow::Result<serde_json::Value> {
    let head = format!(
        "GET /wa/api/simple/tasks/{task}?user_id={USER} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Connection: close\r\nX-API-Key: {key}\r\n\r\n"
    );
    let (code, body, _) = exchange(port, head.as_bytes(), b"")?;
    anyhow::ensure!(code == 200, "status answered {code}");
    Ok(serde_json::from_slice(&body)?)
}
