//! `wacheck-bench`: the benchmark suite behind `just bench`.
//!
//! `wacheck-bench run` generates input files, measures every stage of the pipeline (each
//! isolated measurement in a child process of its own, the service as real `wacheck serve`
//! processes), takes the median of several runs, and writes the results table into
//! docs/benchmarks.md. `wacheck-bench case ...` is one isolated measurement.

mod cases;
mod data;
mod report;
mod service;
mod suite;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "wacheck's benchmark suite")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the whole suite and writes its table into a markdown file.
    Run {
        /// Runs of each measurement; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Sizes divided by 100 and one run each: checks that the suite works, in a minute.
        #[arg(long)]
        quick: bool,
        /// The markdown file whose bench section is replaced.
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Where generated files go (default: a temporary directory).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Postgres server for the bench database (trust or password in the URL).
        #[arg(
            long,
            env = "WACHECK_BENCH_DATABASE_URL",
            default_value = "postgres://postgres:postgres@127.0.0.1:5432"
        )]
        database: String,
        /// A `wacheck` binary of another build (say, the previous commit's): its 1M-number end
        /// to end runs alternate with this build's, and both are reported side by side.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// One measurement in this process; prints it as JSON.
    Case {
        #[command(subcommand)]
        case: cases::Case,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Case { case } => {
            let m = cases::run(case)?;
            println!("{}", serde_json::to_string(&m)?);
        }
        Cmd::Run {
            runs,
            quick,
            out,
            work,
            database,
            baseline,
        } => {
            let tmp;
            let work = match work {
                Some(w) => {
                    std::fs::create_dir_all(&w)?;
                    w
                }
                None => {
                    tmp = std::env::temp_dir()
                        .join(format!("wacheck-bench-{}", ulid::Ulid::generate()));
                    std::fs::create_dir_all(&tmp)?;
                    tmp
                }
            };
            let runs = if quick { 1 } else { runs.max(1) };
            let suite = suite::Suite::new(runs, quick, work, database, baseline)?;
            let results = suite.run()?;
            let section = report::render(&results, &suite);
            report::write_section(&out, &section)?;
            println!("{section}");
            eprintln!("written to {}", out.display());
        }
    }
    Ok(())
}
