//! The results as markdown: a targets table, then each area's figures. The section between
//! the bench markers of docs/benchmarks.md is replaced; the rest of the file is kept.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::suite::{Results, Stat, Suite};

const BEGIN: &str = "<!-- bench:begin (written by `just bench`; edits here are overwritten) -->";
const END: &str = "<!-- bench:end -->";

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "{cores} cores ({cpu}), {mem_gib:.0} GiB RAM, Linux {}, {}; {}; Redis {}",
        first_line("uname", &["-r"]),
        first_line("rustc", &["--version"]),
        first_line("psql", &["--version"]),
        first_line("redis-server", &["--version"])
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .unwrap_or("unknown"),
    )
}

/// A count as people read it; the figures reported are never negative.
fn thousands(v: f64) -> String {
    wacheck_core::text::thousands(v.max(0.0).round() as u64)
}

fn secs(v: f64) -> String {
    if v < 1.0 {
        format!("{:.1} ms", v * 1e3)
    } else {
        format!("{v:.2} s")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn area(out: &mut String, title: &str, unit: &str, rows: &[(&'static str, Stat)]) {
    let _ = writeln!(out, "\n### {title}\n");
    let _ = writeln!(
        out,
        "| Case | Rows | Time (median) | {unit} | Peak RSS | Runs | Note |\n|---|---|---|---|---|---|---|"
    );
    for (name, s) in rows {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {:.0} MiB | {} | {} |",
            thousands(s.rows as f64),
            secs(s.secs),
            thousands(s.rate()),
            s.rss_mib,
            s.runs,
            s.note
        );
    }
}

fn end_to_end_table(o: &mut String, rows: &[crate::suite::EndToEnd]) {
    let _ = writeln!(
        o,
        "| Numbers | Workers | Upload → exported | Numbers/s | Upload answered | Checking | Export | Worker CPU/number | API peak RSS | Worker peak RSS | Runs |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for e in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} µs | {:.0} MiB | {:.0} MiB | {} |",
            thousands(e.numbers as f64),
            e.workers,
            secs(e.secs),
            thousands(e.numbers as f64 / e.secs),
            secs(e.upload_secs),
            secs(e.check_secs),
            secs(e.export_secs),
            e.worker_us_per_number,
            e.api_rss_mib,
            e.worker_rss_mib,
            e.runs
        );
    }
}

/// The 1M-number end to end against the sum of its parts measured in the same run (reading
/// the csv, normalising, storing the rows, writing the xlsx with the upload's columns), and
/// against the baseline build when one was given.
fn runtime_cost(o: &mut String, r: &Results, million: u64) {
    let part = |rows: &[(&'static str, Stat)], name: &str| {
        rows.iter()
            .find(|(n, _)| n.contains(name))
            .map_or(0.0, |(_, s)| s.secs)
    };
    let parts = [
        ("read the csv", part(&r.read, "csv")),
        ("normalise", part(&r.normalize, "rlibphonenumber")),
        ("store the rows", part(&r.store, "(wacheck)")),
        (
            "xlsx with the upload's columns",
            part(&r.export, "xlsx with"),
        ),
    ];
    let sum: f64 = parts.iter().map(|(_, s)| s).sum();
    let shown: Vec<String> = parts
        .iter()
        .map(|(n, s)| format!("{n} {}", secs(*s)))
        .collect();
    let _ = writeln!(
        o,
        "\n### The job runtime's cost ({} numbers)\n\nSum of the parts measured above: {} ({}). \
         What the end to end adds is the checking (queue, leases, a store per backend call) \
         and the hand-offs between the stages.\n",
        thousands(million as f64),
        secs(sum),
        shown.join(" + ")
    );
    let _ = writeln!(
        o,
        "| Build | Workers | Upload → exported | Upload answered | Checking | Export | ÷ sum of parts |\n|---|---|---|---|---|---|---|"
    );
    let builds = [("this build", &r.end_to_end), ("baseline", &r.baseline)];
    for (build, rows) in builds {
        for e in rows.iter().filter(|e| e.numbers == million) {
            let _ = writeln!(
                o,
                "| {build} | {} | {} | {} | {} | {} | {:.1}× |",
                e.workers,
                secs(e.secs),
                secs(e.upload_secs),
                secs(e.check_secs),
                secs(e.export_secs),
                e.secs / sum.max(f64::EPSILON)
            );
        }
    }
}

pub fn render(r: &Results, suite: &Suite) -> String {
    let mut o = String::new();
    let million = suite.n(1_000_000);
    let _ = writeln!(o, "{BEGIN}\n");
    let _ = writeln!(
        o,
        "## Benchmark suite\n\nRun {} on {}. {} Every figure is the median of {} runs; the suite took {:.0} s.\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        machine(),
        if suite.quick {
            "**Quick mode: sizes divided by 100, not comparable with the targets.**"
        } else {
            ""
        },
        suite.runs,
        r.took.as_secs_f64()
    );
    let e2e = |workers: usize, n: u64| {
        r.end_to_end
            .iter()
            .find(|e| e.workers == workers && e.numbers == n)
    };
    let one = e2e(1, million).cloned().unwrap_or_default();
    let two = e2e(2, million).cloned().unwrap_or_default();
    let xlsx = r
        .export
        .iter()
        .find(|(n, _)| n.contains("constant"))
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let max_rss = r
        .end_to_end
        .iter()
        .flat_map(|e| [e.api_rss_mib, e.worker_rss_mib])
        .fold(0.0, f64::max)
        .max(r.ingest_big.rss_mib);
    // Memory by file size (2 workers). Not growing: doubling the file from the second-largest
    // size to the largest adds at most 15% (buffers fill up to their bound on the way).
    let mut by_size: Vec<_> = r.end_to_end.iter().filter(|e| e.workers == 2).collect();
    by_size.sort_by_key(|e| e.numbers);
    let series = |f: fn(&crate::suite::EndToEnd) -> f64| {
        let v: Vec<f64> = by_size.iter().map(|e| f(e)).collect();
        let flat = match v.as_slice() {
            [.., a, b] => *b <= 1.15 * a,
            _ => true,
        };
        let shown: Vec<String> = v.iter().map(|m| format!("{m:.0}")).collect();
        (shown.join(" / "), flat)
    };
    let (api_series, api_flat) = series(|e| e.api_rss_mib);
    let (worker_series, worker_flat) = series(|e| e.worker_rss_mib);
    let sizes: Vec<String> = by_size
        .iter()
        .map(|e| thousands(e.numbers as f64))
        .collect();
    let cpu = one.worker_us_per_number;
    let _ = writeln!(o, "| Target | Measured | |\n|---|---|---|");
    let rows = [
        (
            "1M-number upload answered within 3 s of its last byte".to_owned(),
            secs(r.ingest_big.secs),
            r.ingest_big.secs <= 3.0,
        ),
        (
            "1k-number upload answered within 50 ms of its last byte".to_owned(),
            secs(r.ingest_small.secs),
            r.ingest_small.secs <= 0.05,
        ),
        (
            "1M-number task uploaded → `exported` within 30 s".into(),
            format!(
                "{} (1 worker), {} (2 workers)",
                secs(one.secs),
                secs(two.secs)
            ),
            one.secs.min(two.secs) <= 30.0,
        ),
        (
            "1M-row xlsx export within 4 s and 50 MB".into(),
            format!("{} and {:.0} MiB", secs(xlsx.secs), xlsx.rss_mib),
            xlsx.secs <= 4.0 && xlsx.rss_mib <= 50.0,
        ),
        (
            "Peak RSS of every process under 300 MB, not growing with file size (1M → 2M)".into(),
            format!(
                "{max_rss:.0} MiB at most; API {api_series} MiB, workers {worker_series} MiB at {} numbers",
                sizes.join(" / ")
            ),
            max_rss < 286.0 && api_flat && worker_flat, // 300 MB = 286 MiB
        ),
        (
            "Worker CPU under 20 µs per checked number".into(),
            format!(
                "{cpu:.1} µs → one core drives {} accounts at 1 check/s",
                thousands(1e6 / cpu)
            ),
            cpu < 20.0,
        ),
        {
            // The service's default: every request's key is checked against its limit.
            let p = r.polling.iter().find(|p| p.rate_limited);
            let p = p.or(r.polling.first()).cloned().unwrap_or_default();
            (
                "Status GET p99 under 10 ms at 2,000 requests/s".into(),
                format!("p99 {:.2} ms at {} requests/s", p.p99_ms, thousands(p.rps)),
                p.p99_ms < 10.0 && p.rps >= 1_900.0 && p.errors == 0,
            )
        },
    ];
    for (target, measured, ok) in rows {
        let _ = writeln!(o, "| {target} | {measured} | {} |", verdict(ok));
    }

    area(
        &mut o,
        "Reading (upload reader, no normalisation)",
        "Rows/s",
        &r.read,
    );
    area(
        &mut o,
        "Normalisation (default region CH; the same cleaning before both libraries)",
        "Rows/s",
        &r.normalize,
    );
    area(
        &mut o,
        "Storing an upload's rows in Postgres (one transaction)",
        "Rows/s",
        &r.store,
    );
    area(
        &mut o,
        "Export of a detail task's result rows",
        "Rows/s",
        &r.export,
    );

    let _ = writeln!(o, "\n### Upload (multipart POST to the API process)\n");
    let _ = writeln!(
        o,
        "| Numbers | Last byte → answer (median) | API peak RSS | Runs |\n|---|---|---|---|"
    );
    for s in [&r.ingest_big, &r.ingest_small] {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} MiB | {} |",
            thousands(s.rows as f64),
            secs(s.secs),
            s.rss_mib,
            s.runs
        );
    }

    let _ = writeln!(
        o,
        "\n### End to end (simulated backend, unlimited rate, xlsx result)\n"
    );
    end_to_end_table(&mut o, &r.end_to_end);
    runtime_cost(&mut o, r, million);

    let connections = r.polling.first().map_or(0, |p| p.connections);
    let _ = writeln!(o, "\n### Status polling (wrk, {connections} connections)\n");
    let _ = writeln!(
        o,
        "| Request limit | Load | Requests/s | p50 | p99 | Errors | Runs |\n|---|---|---|---|---|---|---|"
    );
    for p in &r.polling {
        let limit = if p.rate_limited {
            "checked in Redis"
        } else {
            "none"
        };
        let _ = writeln!(
            o,
            "| {limit} | paced to {} requests/s | {} | {:.2} ms | {:.2} ms | {} | {} |",
            thousands(p.target_rps as f64),
            thousands(p.rps),
            p.p50_ms,
            p.p99_ms,
            p.errors,
            p.runs
        );
        let _ = writeln!(
            o,
            "| {limit} | as fast as it goes | {} | | {:.2} ms | | {} |",
            thousands(p.max_rps),
            p.max_p99_ms,
            p.runs
        );
    }
    let _ = writeln!(o, "\n{END}");
    o
}

/// Replaces the bench section of `path` (or appends it when the file has none).
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if b > a => {
            format!(
                "{}{}{}",
                &old[..a],
                section.trim_end(),
                &old[b + END.len()..]
            )
        }
        _ => format!("{}\n{}", old.trim_end(), section),
    };
    std::fs::write(path, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_is_replaced_in_place() {
        let dir =
            std::env::temp_dir().join(format!("wacheck-bench-test-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("b.md");
        std::fs::write(&f, "# B\n\nintro\n").unwrap();
        write_section(&f, &format!("{BEGIN}\none\n{END}\n")).unwrap();
        std::fs::write(&f, std::fs::read_to_string(&f).unwrap() + "\n## After\n").unwrap();
        write_section(&f, &format!("{BEGIN}\ntwo\n{END}\n")).unwrap();
        let s = std::fs::read_to_string(&f).unwrap();
        assert!(s.starts_with("# B\n\nintro\n"), "{s}");
        assert!(s.contains("two") && !s.contains("one"), "{s}");
        assert!(s.ends_with("## After\n"), "{s}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
