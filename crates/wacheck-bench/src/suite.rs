//! The suite: what is measured, in which order, and how runs are combined (medians).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cases::Measured;
use crate::data::{self, Format};
use crate::service::{self, Service};

/// The median of several runs of one measurement (time, rows, peak memory).
#[derive(Debug, Clone, Default)]
pub struct Stat {
    pub secs: f64,
    pub rows: u64,
    pub rss_mib: f64,
    pub note: String,
    pub runs: usize,
}

impl Stat {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.secs
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn combine(ms: Vec<Measured>) -> Stat {
    Stat {
        secs: median(ms.iter().map(|m| m.secs).collect()),
        rows: ms.first().map_or(0, |m| m.rows),
        rss_mib: median(ms.iter().map(|m| m.rss_mib).collect()),
        note: ms.first().map(|m| m.note.clone()).unwrap_or_default(),
        runs: ms.len(),
    }
}

/// A 1M-number (or other size) task from upload to `exported`.
#[derive(Debug, Clone, Default)]
pub struct EndToEnd {
    pub numbers: u64,
    pub workers: usize,
    pub runs: usize,
    pub secs: f64,
    pub upload_secs: f64,
    /// From the first chunk claimed to the last answered.
    pub check_secs: f64,
    pub export_secs: f64,
    pub worker_us_per_number: f64,
    pub api_rss_mib: f64,
    pub worker_rss_mib: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Polling {
    /// Whether each request's key was checked against a request limit in Redis (one far
    /// above the load, so that nothing is refused).
    pub rate_limited: bool,
    pub connections: u64,
    pub target_rps: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_rps: f64,
    pub max_p99_ms: f64,
    pub errors: u64,
    pub runs: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Results {
    pub read: Vec<(&'static str, Stat)>,
    pub normalize: Vec<(&'static str, Stat)>,
    pub store: Vec<(&'static str, Stat)>,
    pub export: Vec<(&'static str, Stat)>,
    pub ingest_big: Stat,
    pub ingest_small: Stat,
    pub end_to_end: Vec<EndToEnd>,
    /// The same 1M-number runs with the baseline build, measured alternately with this one.
    pub baseline: Vec<EndToEnd>,
    pub polling: Vec<Polling>,
    pub took: Duration,
}

/// The median of each figure of `runs` (all of one size and worker count).
fn medians(runs: &[EndToEnd]) -> EndToEnd {
    let med = |f: fn(&EndToEnd) -> f64| median(runs.iter().map(f).collect());
    EndToEnd {
        numbers: runs[0].numbers,
        workers: runs[0].workers,
        runs: runs.len(),
        secs: med(|e| e.secs),
        upload_secs: med(|e| e.upload_secs),
        check_secs: med(|e| e.check_secs),
        export_secs: med(|e| e.export_secs),
        worker_us_per_number: med(|e| e.worker_us_per_number),
        api_rss_mib: med(|e| e.api_rss_mib),
        worker_rss_mib: med(|e| e.worker_rss_mib),
    }
}

pub struct Suite {
    pub runs: usize,
    pub quick: bool,
    pub work: PathBuf,
    pub database: String,
    /// A `wacheck` binary of another build whose end to end is measured beside this one's.
    pub baseline: Option<PathBuf>,
    me: PathBuf,
}

impl Suite {
    pub fn new(
        runs: usize,
        quick: bool,
        work: PathBuf,
        database: String,
        baseline: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        Ok(Suite {
            runs,
            quick,
            work,
            database: database.trim_end_matches('/').to_owned(),
            baseline,
            me: std::env::current_exe()?,
        })
    }

    /// A size of the full suite, scaled down in quick mode.
    pub fn n(&self, full: u64) -> u64 {
        if self.quick {
            (full / 100).max(100)
        } else {
            full
        }
    }

    fn file(&self, rows: u64, format: Format) -> anyhow::Result<PathBuf> {
        let path = self.work.join(format!("numbers-{rows}.{}", format.ext()));
        if !path.exists() {
            eprintln!("generating {}", path.display());
            data::write(&path, format, rows, rows)?;
        }
        Ok(path)
    }

    /// Runs `wacheck-bench case <args>` in a child process `runs` times.
    fn case(&self, args: &[&str], runs: usize) -> anyhow::Result<Stat> {
        let mut ms = Vec::new();
        for _ in 0..runs {
            let out = Command::new(&self.me).arg("case").args(args).output()?;
            if !out.status.success() {
                bail!(
                    "case {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            ms.push(serde_json::from_slice(&out.stdout).context("case output")?);
        }
        Ok(combine(ms))
    }

    pub fn run(&self) -> anyhow::Result<Results> {
        let started = Instant::now();
        let mut r = Results::default();
        let million = self.n(1_000_000);

        eprintln!("reading");
        for (name, format) in [
            ("txt", Format::Txt),
            ("csv", Format::Csv),
            ("xlsx", Format::Xlsx),
        ] {
            let f = self.file(million, format)?;
            r.read
                .push((name, self.case(&["read", path(&f)], self.runs)?));
        }

        eprintln!("normalising");
        let txt = self.file(million, Format::Txt)?;
        let all = million.to_string();
        // The `phonenumber` crate is slow enough that a sample of 20,000 rows takes seconds.
        let sample = self.n(20_000).min(million).to_string();
        r.normalize.push((
            "rlibphonenumber",
            self.case(
                &["normalize", "rlibphonenumber", path(&txt), "--rows", &all],
                self.runs,
            )?,
        ));
        r.normalize.push((
            "phonenumber",
            self.case(
                &["normalize", "phonenumber", path(&txt), "--rows", &sample],
                self.runs,
            )?,
        ));

        eprintln!("storing");
        let scratch = format!("{}/postgres", self.database);
        for (name, how) in [
            (
                "INSERT ... UNNEST, blocks of 1,024 rows (wacheck)",
                "insert-blocks",
            ),
            ("COPY, blocks of 1,024 rows", "copy-blocks"),
            ("COPY, one row per input row", "copy-rows"),
            ("INSERT ... UNNEST, batches of 10,000", "insert-rows"),
        ] {
            r.store
                .push((name, self.case(&["store", how, &all, &scratch], self.runs)?));
        }

        eprintln!("exporting");
        for (name, how, ext) in [
            ("csv", "csv", "csv"),
            ("xlsx, constant memory (wacheck)", "xlsx", "xlsx"),
            ("xlsx, normal mode", "xlsx-normal", "xlsx"),
            (
                "csv with the upload's columns (wacheck's default)",
                "csv-full",
                "csv",
            ),
            (
                "xlsx with the upload's columns (wacheck's default)",
                "xlsx-full",
                "xlsx",
            ),
        ] {
            let out = self.work.join(format!("export.{ext}"));
            r.export.push((
                name,
                self.case(&["export", how, &all, path(&out)], self.runs)?,
            ));
        }

        let bin_dir = self
            .me
            .parent()
            .context("bench binary directory")?
            .to_owned();
        let svc_dir = self.work.join("service");
        std::fs::create_dir_all(&svc_dir)?;
        let mut svc = Service::create(&bin_dir, &svc_dir, &self.database)?;
        let result = self.service_cases(&mut svc, &mut r);
        let _ = svc.drop_database();
        result?;
        r.took = started.elapsed();
        Ok(r)
    }

    fn service_cases(&self, svc: &mut Service, r: &mut Results) -> anyhow::Result<()> {
        let million = self.n(1_000_000);
        eprintln!("ingest");
        {
            let api = svc.spawn("api")?;
            let big = self.file(million, Format::Csv)?;
            r.ingest_big = uploads(&api, &svc.key, &big, million, self.runs)?;
            let small = self.file(1_000, Format::Csv)?;
            r.ingest_small = uploads(
                &api,
                &svc.key,
                &small,
                1_000,
                if self.quick { 3 } else { 21 },
            )?;
            api.stop();
            // The ingest tasks were never checked: remove them so that they do not compete.
            svc.query_f64(
                "WITH d AS (DELETE FROM tasks RETURNING 1) SELECT count(*)::float8 FROM d",
            )?;
        }

        eprintln!("end to end");
        let mut configs = vec![(million, 1), (million, 2)];
        configs.push((self.n(100_000), 2));
        configs.push((self.n(2_000_000), 2));
        for (numbers, workers) in configs {
            let file = self.file(numbers, Format::Csv)?;
            // The baseline build runs the 1M-number cases, each run right after this build's.
            let baseline = self.baseline.clone().filter(|_| numbers == million);
            let (mut runs, mut base_runs) = (Vec::new(), Vec::new());
            for _ in 0..self.runs {
                runs.push(self.end_to_end(svc, &file, numbers, workers)?);
                if let Some(bin) = &baseline {
                    let ours = svc.use_binary(bin.clone());
                    let run = self.end_to_end(svc, &file, numbers, workers);
                    svc.use_binary(ours);
                    base_runs.push(run?);
                }
            }
            r.end_to_end.push(medians(&runs));
            if !base_runs.is_empty() {
                r.baseline.push(medians(&base_runs));
            }
        }

        eprintln!("status polling, no request limit");
        r.polling.push(self.polling(svc, false)?);
        eprintln!("status polling, request limit checked in Redis");
        r.polling.push(self.polling(svc, true)?);
        Ok(())
    }

    /// One task from upload to `exported` with `workers` worker processes and an API process.
    fn end_to_end(
        &self,
        svc: &mut Service,
        file: &Path,
        numbers: u64,
        workers: usize,
    ) -> anyhow::Result<EndToEnd> {
        let api = svc.spawn("api")?;
        let port = api.port.expect("api port");
        let ws = (0..workers)
            .map(|_| svc.spawn("worker"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        std::thread::sleep(Duration::from_millis(500)); // workers connected
        let cpu_before: f64 = ws.iter().map(|w| w.cpu_secs()).sum();
        let started = Instant::now();
        let up = service::upload(port, &svc.key, file, "xlsx")?;
        let limit = Duration::from_secs(60 + numbers / 5_000);
        let mut cpu_checked = None;
        let view = loop {
            let v = service::status(port, &svc.key, &up.task_id)?;
            match v["status"].as_str() {
                Some("completed") | Some("exported") if cpu_checked.is_none() => {
                    cpu_checked = Some(ws.iter().map(|w| w.cpu_secs()).sum::<f64>());
                }
                _ => {}
            }
            if v["status"] == "exported" {
                break v;
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "task {} not exported after {limit:?}: {v}",
                up.task_id
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            view["total"].as_u64() == Some(numbers),
            "task counted {} rows, file has {numbers}",
            view["total"]
        );
        let id = &up.task_id;
        let distinct = svc.query_f64(&format!(
            "SELECT distinct_numbers::float8 FROM tasks WHERE id = '{id}'"
        ))?;
        let export_secs = svc.query_f64(&format!(
            "SELECT extract(epoch FROM exported_at - completed_at)::float8 FROM tasks WHERE id = '{id}'"
        ))?;
        let check_secs = svc.query_f64(&format!(
            "SELECT extract(epoch FROM completed_at - started_at)::float8 FROM tasks WHERE id = '{id}'"
        ))?;
        let cpu = cpu_checked.unwrap_or(0.0) - cpu_before;
        let e = EndToEnd {
            numbers,
            workers,
            runs: 1,
            secs,
            upload_secs: up.total.as_secs_f64(),
            check_secs,
            export_secs,
            worker_us_per_number: cpu / distinct * 1e6,
            api_rss_mib: api.peak_rss_mib(),
            worker_rss_mib: ws.iter().map(|w| w.peak_rss_mib()).fold(0.0, f64::max),
        };
        eprintln!(
            "  {numbers} numbers, {workers} worker(s): {secs:.1} s, {:.1} µs/number",
            e.worker_us_per_number
        );
        for w in ws {
            w.stop();
        }
        api.stop();
        Ok(e)
    }

    /// Status GETs of one task under wrk: paced to 2,000 requests/s, then as fast as it goes;
    /// `rate_limited`: the key has a request limit (100,000/s), checked in Redis per request.
    fn polling(&self, svc: &mut Service, rate_limited: bool) -> anyhow::Result<Polling> {
        let per_minute = if rate_limited { "6000000" } else { "0" };
        svc.cli(&[
            "users",
            "limits",
            service::USER,
            "--requests-per-minute",
            per_minute,
            "--request-burst",
            "100000",
        ])?;
        let api = svc.spawn("api")?;
        let port = api.port.expect("api port");
        let small = self.file(1_000, Format::Csv)?;
        let task = service::upload(port, &svc.key, &small, "csv")?.task_id;
        let url = format!(
            "http://127.0.0.1:{port}/wa/api/simple/tasks/{task}?user_id={}",
            service::USER
        );
        let (connections, target) = (40u64, 2_000u64);
        let secs = if self.quick { 3 } else { 20 };
        let paced = self.work.join("paced.lua");
        let unpaced = self.work.join("unpaced.lua");
        let headers = format!("wrk.headers[\"X-API-Key\"] = \"{}\"\n", svc.key);
        // Each connection waits between requests so that together they ask `target` a second
        // (a millisecond less than the exact pause, for the request's own latency).
        std::fs::write(
            &paced,
            format!(
                "{headers}function delay() return {} end\n",
                1000 * connections / target - 1
            ),
        )?;
        std::fs::write(&unpaced, &headers)?;
        let mut p = Polling {
            rate_limited,
            connections,
            target_rps: target,
            ..Default::default()
        };
        let (mut rps, mut p50, mut p99, mut max_rps, mut max_p99) =
            (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..self.runs {
            let w = wrk(&paced, connections, secs, &url)?;
            p.errors += w.errors;
            rps.push(w.rps);
            p50.push(w.p50_ms);
            p99.push(w.p99_ms);
            let w = wrk(&unpaced, connections, secs.min(10), &url)?;
            p.errors += w.errors;
            max_rps.push(w.rps);
            max_p99.push(w.p99_ms);
        }
        api.stop();
        p.runs = self.runs;
        p.rps = median(rps);
        p.p50_ms = median(p50);
        p.p99_ms = median(p99);
        p.max_rps = median(max_rps);
        p.max_p99_ms = median(max_p99);
        Ok(p)
    }
}

/// `runs` uploads of `file` to the API process: the median time from last byte to answer.
fn uploads(
    api: &service::Proc,
    key: &str,
    file: &Path,
    rows: u64,
    runs: usize,
) -> anyhow::Result<Stat> {
    let port = api.port.expect("api port");
    let mut after = Vec::new();
    for _ in 0..runs {
        after.push(
            service::upload(port, key, file, "csv")?
                .after_last_byte
                .as_secs_f64(),
        );
    }
    Ok(Stat {
        secs: median(after),
        rows,
        rss_mib: api.peak_rss_mib(),
        runs,
        note: String::new(),
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(script: &Path, connections: u64, secs: u64, url: &str) -> anyhow::Result<Wrk> {
    let out = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
        ])
        .args(["--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .context("wrk is installed (scripts/bootstrap)")?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed: {report}");
    parse_wrk(&report).with_context(|| format!("wrk report: {report}"))
}

/// A latency such as `1.23ms`, `850.00us` or `1.02s`, in milliseconds.
fn latency_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

fn parse_wrk(report: &str) -> Option<Wrk> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let non2xx = report
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let socket = u64::from(report.contains("Socket errors"));
    Some(Wrk {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_ms: latency_ms(field("50%")?)?,
        p99_ms: latency_ms(field("99%")?)?,
        errors: non2xx + socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn wrk_report_is_read() {
        let report = "Running 10s test @ http://127.0.0.1:1/x\n  Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n     90%    2.00ms\n     99%    4.50ms\n  20000 requests in 10.00s, 5.00MB read\nRequests/sec:   1999.50\nTransfer/sec:    512.00KB\n";
        let w = parse_wrk(report).unwrap();
        assert_eq!(w.rps, 1999.5);
        assert!((w.p50_ms - 0.812).abs() < 1e-9);
        assert_eq!(w.p99_ms, 4.5);
        assert_eq!(w.errors, 0);
    }
}
