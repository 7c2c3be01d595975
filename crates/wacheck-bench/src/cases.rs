//! Measurements that run inside one child process each (`wacheck-bench case ...`), so that the
//! peak memory reported is that case's own. Each prints one JSON line: a [`Measured`].

use sqlx::AssertSqlSafe;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use wacheck_core::input;
use wacheck_core::{Normalizer, ResultFormat, TaskKind};
use wacheck_worker::export;

/// What one case measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measured {
    pub secs: f64,
    pub rows: u64,
    /// Peak resident memory of the process (VmHWM), in MiB.
    pub rss_mib: f64,
    /// Case-specific detail (valid numbers found, file size, ...).
    pub note: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lib {
    /// wacheck's normaliser (rlibphonenumber).
    Rlibphonenumber,
    /// The `phonenumber` crate, after the same cleaning.
    Phonenumber,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportHow {
    Csv,
    /// Constant-memory xlsx, as wacheck writes it.
    Xlsx,
    /// csv with a reason and the upload's own columns (a contact list read again beside the
    /// answers), as wacheck writes a full file.
    CsvFull,
    /// The same as constant-memory xlsx.
    XlsxFull,
    /// rust_xlsxwriter's normal mode, which keeps the sheet in memory.
    XlsxNormal,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StoreHow {
    /// wacheck's way: 1,024 rows per block as arrays, INSERT ... UNNEST of 64 blocks at a time.
    InsertBlocks,
    /// The same blocks, one COPY.
    CopyBlocks,
    /// One table row per input row, one COPY.
    CopyRows,
    /// One table row per input row, INSERT ... UNNEST in batches of 10,000.
    InsertRows,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Case {
    /// Reads a file with the upload reader (format by content), without normalising.
    Read { file: PathBuf },
    /// Normalises the first `rows` lines of a txt file (default region CH).
    Normalize {
        lib: Lib,
        file: PathBuf,
        #[arg(long)]
        rows: usize,
    },
    /// Writes `rows` result rows of a detail task.
    Export {
        how: ExportHow,
        rows: u64,
        out: PathBuf,
    },
    /// Stores `rows` input rows in a scratch table of `database_url`.
    Store {
        how: StoreHow,
        rows: u64,
        database_url: String,
    },
}

/// Peak resident memory of a process, in MiB (`self` or a pid).
pub fn peak_rss_mib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(case: Case) -> anyhow::Result<Measured> {
    let mut m = match case {
        Case::Read { file } => read(file)?,
        Case::Normalize { lib, file, rows } => normalize(lib, file, rows)?,
        Case::Export { how, rows, out } => export(how, rows, out)?,
        Case::Store {
            how,
            rows,
            database_url,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(store(how, rows, &database_url))?,
    };
    m.rss_mib = peak_rss_mib("self");
    Ok(m)
}

fn read(file: PathBuf) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut f = std::fs::File::open(&file)?;
    let mut head = Vec::new();
    (&mut f).take(8192).read_to_end(&mut head)?;
    let format = input::detect(&head, file.to_str())?;
    let mut bytes = 0u64;
    let summary = input::read_rows(
        std::io::BufReader::new(std::fs::File::open(&file)?),
        format,
        u64::MAX,
        |raw| {
            bytes += raw.len() as u64;
            Ok(())
        },
    )?;
    Ok(Measured {
        secs: started.elapsed().as_secs_f64(),
        rows: summary.rows,
        note: format!("{} ({bytes} bytes of cells)", format.name()),
        ..Default::default()
    })
}

fn normalize(lib: Lib, file: PathBuf, rows: usize) -> anyhow::Result<Measured> {
    let lines: Vec<String> = std::io::BufReader::new(std::fs::File::open(file)?)
        .lines()
        .take(rows)
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let valid = match lib {
        Lib::Rlibphonenumber => {
            let n = Normalizer::new(Some("CH"))?;
            lines.iter().filter_map(|l| n.normalize(l)).count()
        }
        Lib::Phonenumber => {
            let ch: phonenumber::country::Id = "CH".parse()?;
            lines
                .iter()
                .filter_map(|l| {
                    let cleaned = wacheck_core::number::clean(l)?;
                    let n = phonenumber::parse(Some(ch), &cleaned).ok()?;
                    phonenumber::is_valid(&n)
                        .then(|| n.format().mode(phonenumber::Mode::E164).to_string())
                })
                .count()
        }
    };
    Ok(Measured {
        secs: started.elapsed().as_secs_f64(),
        rows: lines.len() as u64,
        note: format!("{valid} valid"),
        ..Default::default()
    })
}

/// A detail task's result row: a mix of yes (with about text), no, and invalid rows.
fn result_row(i: u64) -> wacheck_store::chunks::ResultRow {
    let invalid = i.is_multiple_of(33);
    let yes = i % 10 < 7;
    wacheck_store::chunks::ResultRow {
        raw: invalid.then(|| "n/a".to_owned()),
        e164: (!invalid).then(|| format!("+4179{:07}", i % 10_000_000)),
        outcome: (!invalid).then(|| if yes { "yes" } else { "no" }.to_owned()),
        signature: yes.then(|| "Hey there! I am using WhatsApp.".to_owned()),
        status_update: yes.then(|| chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
        business: Some(i.is_multiple_of(5)),
        has_picture: yes.then_some(i % 10 < 5),
        privacy: None,
        jid: (!invalid && yes).then(|| format!("4179{:07}@s.whatsapp.net", i % 10_000_000)),
        cached: false,
        reason: None,
    }
}

/// A contact list of `rows` rows (name, phone, city) whose phone cells match [`result_row`]'s
/// rows, written before the clock starts.
fn contact_list(rows: u64, path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "name,phone,city")?;
    for i in 0..rows {
        match result_row(i).raw {
            Some(raw) => writeln!(w, "Person {i},{raw},Bern")?,
            None => writeln!(w, "Person {i},+41 79 {:07},Bern", i % 10_000_000)?,
        }
    }
    Ok(w.flush()?)
}

fn export(how: ExportHow, rows: u64, out: PathBuf) -> anyhow::Result<Measured> {
    let kind = TaskKind::Detail;
    let input = out.with_extension("input.csv");
    let full = matches!(how, ExportHow::CsvFull | ExportHow::XlsxFull);
    if full {
        contact_list(rows, &input)?;
    }
    let started = Instant::now();
    match how {
        ExportHow::Csv | ExportHow::Xlsx | ExportHow::CsvFull | ExportHow::XlsxFull => {
            let format = match how {
                ExportHow::Csv | ExportHow::CsvFull => ResultFormat::Csv,
                _ => ResultFormat::Xlsx,
            };
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let path = out.clone();
            let mut shape = export::Shape::bare(kind, format);
            let feed = full.then(|| {
                shape.full = Some(Vec::new());
                export::InputFeed::spawn(input.clone(), input::InputFormat::Csv { delimiter: b',' })
            });
            let writer =
                std::thread::spawn(move || export::write_file(&path, format, shape, rx, feed));
            let mut i = 0;
            while i < rows {
                let batch: Vec<_> = (i..(i + 2000).min(rows)).map(result_row).collect();
                i += batch.len() as u64;
                tx.blocking_send(batch)?;
            }
            drop(tx);
            writer.join().expect("writer thread")?;
        }
        ExportHow::XlsxNormal => {
            let mut book = rust_xlsxwriter::Workbook::new();
            let sheet = book.add_worksheet();
            for (c, h) in export::header(kind).iter().enumerate() {
                sheet.write_string(0, c as u16, *h)?;
            }
            for i in 0..rows {
                for (c, v) in export::cells(kind, ResultFormat::Xlsx, &result_row(i))
                    .iter()
                    .enumerate()
                {
                    if !v.is_empty() {
                        sheet.write_string(i as u32 + 1, c as u16, v)?;
                    }
                }
            }
            book.save(&out)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&input);
    let size = std::fs::metadata(&out)?.len();
    Ok(Measured {
        secs,
        rows,
        note: format!("{:.1} MB file", size as f64 / 1e6),
        ..Default::default()
    })
}

/// Ways of storing an upload's rows, each in its own scratch table, timed from the first byte
/// sent to the commit (the rows are generated before the clock starts).
async fn store(how: StoreHow, rows: u64, url: &str) -> anyhow::Result<Measured> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let table = format!(
        "bench_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    );
    let task = "01KBENCHBENCHBENCHBENCHBEN";
    let mut rng = crate::data::Rng::new(11);
    let numbers: Vec<Option<i64>> = (0..rows)
        .map(|_| (rng.below(33) != 0).then(|| 41_790_000_000 + rng.below(10_000_000) as i64))
        .collect();
    let ddl = match how {
        StoreHow::InsertBlocks | StoreHow::CopyBlocks => format!(
            "CREATE TABLE {table} (task_id TEXT, block_no INT, numbers BIGINT[], raw TEXT[], \
             PRIMARY KEY (task_id, block_no)); \
             ALTER TABLE {table} ALTER COLUMN numbers SET STORAGE EXTERNAL, \
             ALTER COLUMN raw SET STORAGE EXTERNAL"
        ),
        StoreHow::CopyRows | StoreHow::InsertRows => format!(
            "CREATE TABLE {table} (task_id TEXT, row_no INT, raw TEXT, number BIGINT, \
             PRIMARY KEY (task_id, row_no))"
        ),
    };
    sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut conn).await?;
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    match how {
        StoreHow::InsertBlocks => {
            let mut encoder = wacheck_store::tasks::BlockEncoder::new();
            let mut blocks: Vec<_> = numbers
                .iter()
                .filter_map(|n| encoder.row(n.map(|n| n as u64), n.is_none().then_some("n/a")))
                .collect();
            blocks.extend(encoder.finish());
            let sql = format!(
                "INSERT INTO {table} SELECT $1, b, n::bigint[], r::text[] \
                 FROM UNNEST($2::int[], $3::text[], $4::text[]) AS u(b, n, r)"
            );
            for batch in blocks.chunks(64) {
                let nos: Vec<i32> = batch.iter().map(|b| b.block_no).collect();
                let nums: Vec<&str> = batch.iter().map(|b| b.numbers.as_str()).collect();
                let raw: Vec<Option<&str>> = batch.iter().map(|b| b.raw.as_deref()).collect();
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(task)
                    .bind(&nos)
                    .bind(&nums)
                    .bind(&raw)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        StoreHow::CopyBlocks => {
            let mut copy = tx.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
            for (b, block) in numbers.chunks(1024).enumerate() {
                let mut line = format!("{task}\t{b}\t{{");
                let mut raw = String::from("{");
                for (i, n) in block.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                        raw.push(',');
                    }
                    match n {
                        Some(n) => {
                            line += &n.to_string();
                            raw += "NULL";
                        }
                        None => {
                            line += "NULL";
                            raw += "\"n/a\"";
                        }
                    }
                }
                line += "}\t";
                line += &raw;
                line += "}\n";
                copy.send(line.into_bytes()).await?;
            }
            copy.finish().await?;
        }
        StoreHow::CopyRows => {
            let mut copy = tx.copy_in_raw(&format!("COPY {table} FROM STDIN")).await?;
            let mut buf = String::new();
            for (i, n) in numbers.iter().enumerate() {
                match n {
                    Some(n) => buf += &format!("{task}\t{i}\t\\N\t{n}\n"),
                    None => buf += &format!("{task}\t{i}\tn/a\t\\N\n"),
                }
                if buf.len() > 1 << 18 {
                    copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                }
            }
            copy.send(buf.into_bytes()).await?;
            copy.finish().await?;
        }
        StoreHow::InsertRows => {
            let sql = format!(
                "INSERT INTO {table} SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::bigint[])"
            );
            for (b, batch) in numbers.chunks(10_000).enumerate() {
                let row_no: Vec<i32> = (0..batch.len()).map(|i| (b * 10_000 + i) as i32).collect();
                let raw: Vec<Option<&str>> =
                    batch.iter().map(|n| n.is_none().then_some("n/a")).collect();
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(task)
                    .bind(&row_no)
                    .bind(&raw)
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    let secs = started.elapsed().as_secs_f64();
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&mut conn)
        .await?;
    Ok(Measured {
        secs,
        rows,
        ..Default::default()
    })
}
