//! Real processes for fault tests: `wacheck serve` as a child process, private Redis and
//! Postgres servers that a test may flush, stop and restart, and a TCP proxy that cuts
//! connections half-way. Everything listens on 127.0.0.1 only.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wacheck::config::Config;

use super::free_port;

fn wait_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid}");
}

/// `wacheck serve` in its own process, configured like the test's in-process service.
pub struct ServiceProc {
    child: Option<Child>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServiceProc {
    /// Starts `wacheck serve --role <role>` with `config` (its `bind` should be port 0 or free).
    pub fn spawn(config: &Config, role: &str) -> ServiceProc {
        Self::spawn_with_log_level(config, role, "info,sqlx=warn")
    }

    /// Like `spawn`, logging at `level` (a `RUST_LOG` filter).
    pub fn spawn_with_log_level(config: &Config, role: &str, level: &str) -> ServiceProc {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wacheck.toml");
        std::fs::write(&file, config.to_toml()).unwrap();
        let log = dir.path().join("wacheck.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wacheck"))
            .args(["--config", file.to_str().unwrap(), "serve", "--role", role])
            .env("RUST_LOG", level)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("the wacheck binary runs");
        ServiceProc {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to tidy anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for the exit (at most `limit`).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(c.id(), "TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("no exit within {limit:?} of SIGTERM:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the process's log (shown when a test fails).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ServiceProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private Redis (keeps nothing on disk), which a test may flush or restart.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services)");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(10)),
            "redis-server did not start"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn flushall(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    }

    /// Stops the server (everything in it is lost) and starts it again on the same port.
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        std::thread::sleep(down_for);
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private Postgres cluster (initdb into a temporary directory), which a test may restart.
pub struct PgServer {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    ids: Option<(u32, u32)>,
    _dir: tempfile::TempDir,
}

fn pg_bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (scripts/services installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("an initdb under /usr/lib/postgresql")
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "a `postgres` system user exists");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgServer {
    pub fn start() -> PgServer {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        // Postgres refuses to run as root: run it as the `postgres` user then.
        let ids = is_root().then(|| (id_of("-u"), id_of("-g")));
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let bin = pg_bindir();
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-N",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = ids {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = PgServer {
            child: None,
            port: free_port(),
            bin,
            data,
            ids,
            _dir: dir,
        };
        pg.launch();
        pg
    }

    fn launch(&mut self) {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.args(["-D", self.data.to_str().unwrap()])
            .args(["-p", &self.port.to_string()])
            .args(["-k", self.data.to_str().unwrap()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn().unwrap());
        assert!(
            wait_port(self.port, Duration::from_secs(20)),
            "postgres did not start"
        );
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// A fast shutdown (every connection drops), a pause, and a start on the same port.
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "INT");
            c.wait().unwrap();
        }
        std::thread::sleep(down_for);
        self.launch();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP proxy to `127.0.0.1:upstream` that cuts the next `cuts` connections once a client has
/// sent more than `after` bytes on them (an upload interrupted half-way).
pub struct CutProxy {
    pub port: u16,
    pub cuts: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: u16, cuts: u32, after: usize) -> CutProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let left = Arc::new(AtomicU32::new(cuts));
        let counter = left.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let left = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 8192];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        sent += n;
                        if sent > after
                            && left
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                                    c.checked_sub(1)
                                })
                                .is_ok()
                        {
                            // Forward part of it, then drop both sides mid-body.
                            let _ = sw.write_all(&buf[..n / 2]).await;
                            down.abort();
                            return;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                    let _ = down.await;
                });
            }
        });
        CutProxy {
            port,
            cuts: left,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cuts_left(&self) -> u32 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How often each number was answered by the simulated backends writing to `ledger`.
pub fn ledger_counts(ledger: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
    {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Appends a note to the test's output (shown with `--nocapture` or on failure).
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "[chaos] {msg}");
}
