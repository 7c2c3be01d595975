//! Generated input: numbers of several countries written in the ways people write them, with
//! about 3% junk. Deterministic for a seed, so every run reads the same files.

use std::io::Write;
use std::path::Path;

/// splitmix64: a small, fast, seedable generator (the suite needs repeatable data, not
/// cryptographic randomness).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn digits(&mut self, n: u32) -> String {
        format!("{:0width$}", self.below(10u64.pow(n)), width = n as usize)
    }
}

const JUNK: &[&str] = &[
    "n/a",
    "call me",
    "12345",
    "+999 123 456",
    "info@example.com",
    "-",
    "=HYPERLINK(\"x\")",
    "0000",
];

/// One input cell. Numbers without `+` or `00` are Swiss (the suite uploads with
/// `default_region=CH`).
pub fn raw_number(rng: &mut Rng) -> String {
    let pick = rng.below(1000);
    match pick {
        0..=29 => JUNK[rng.below(JUNK.len() as u64) as usize].to_owned(),
        30..=379 => {
            let d = rng.digits(7);
            format!(
                "+41 7{} {} {} {}",
                5 + rng.below(5),
                &d[..3],
                &d[3..5],
                &d[5..]
            )
        }
        380..=529 => {
            let d = rng.digits(7);
            format!(
                "07{} {} {} {}",
                5 + rng.below(5),
                &d[..3],
                &d[3..5],
                &d[5..]
            )
        }
        530..=629 => format!("00417{}{}", 5 + rng.below(5), rng.digits(7)),
        630..=729 => format!("+49 15{} {}", 1 + rng.below(2), rng.digits(8)),
        730..=829 => {
            let d = rng.digits(4);
            format!("+1 (415) {}{}-{d}", 2 + rng.below(8), rng.digits(2))
        }
        830..=899 => {
            // UK mobiles (76xx are pagers).
            let second = [4, 5, 7, 8, 9][rng.below(5) as usize];
            format!("+44 7{second}{} {}", rng.digits(2), rng.digits(6))
        }
        900..=949 => {
            let d = rng.digits(8);
            format!("+55 11 9{}-{}", &d[..4], &d[4..])
        }
        _ => format!("+91 9{} {}", rng.digits(4), rng.digits(5)),
    }
}

/// Formats of generated files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Txt,
    Csv,
    Xlsx,
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }
}

/// Writes `rows` generated numbers to `path` (csv: with a header and two more columns).
pub fn write(path: &Path, format: Format, rows: u64, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    match format {
        Format::Txt | Format::Csv => {
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            if format == Format::Csv {
                writeln!(out, "name,phone,city")?;
            }
            for i in 0..rows {
                let n = raw_number(&mut rng);
                if format == Format::Csv {
                    writeln!(out, "Contact {i},\"{}\",Zurich", n.replace('"', "\"\""))?;
                } else {
                    writeln!(out, "{n}")?;
                }
            }
            out.flush()?;
        }
        Format::Xlsx => {
            let mut book = rust_xlsxwriter::Workbook::new();
            let sheet = book.add_worksheet_with_constant_memory()?;
            sheet.write_string(0, 0, "phone")?;
            for i in 0..rows as u32 {
                sheet.write_string(i + 1, 0, raw_number(&mut rng))?;
            }
            book.save(path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wacheck_core::Normalizer;

    #[test]
    fn about_three_percent_is_junk() {
        let n = Normalizer::new(Some("CH")).unwrap();
        let mut rng = Rng::new(7);
        let invalid = (0..20_000)
            .filter(|_| n.normalize(&raw_number(&mut rng)).is_none())
            .count();
        // 3% junk by construction; every generated number form must be valid.
        let mut rng = Rng::new(7);
        let bad: Vec<String> = (0..20_000)
            .map(|_| raw_number(&mut rng))
            .filter(|r| n.normalize(r).is_none() && !JUNK.contains(&r.as_str()))
            .take(30)
            .collect();
        assert!(
            (500..=700).contains(&invalid),
            "{invalid} invalid of 20,000: {bad:?}"
        );
    }
}
