//! What a result row must say, worked out from the documentation alone: docs/api.md
//! ("Normalisation", "Formula neutralisation (csv)") and README ("The simulated backend").
//! Nothing here calls the product, so a mistake in it cannot hide in the expectation too.
//!
//! Numbers are parsed with the `phonenumber` crate, not the product's `rlibphonenumber`. Each
//! crate carries its own copy of the numbering-plan metadata and they can disagree where a
//! range changed between the two copies; the tests keep to long-standing ranges (see
//! `messy_numbers`).

use chrono::{Days, NaiveDate};
use phonenumber::{Mode, country};

/// The registered share of the test services (README, `WACHECK_SIM__REGISTERED_PERCENT`).
pub const REGISTERED_PERCENT: u8 = 70;

/// `raw` in E.164 form, or `None` for an invalid row (docs/api.md, "Normalisation").
/// `region` is a `default_region` as uploaded (any case).
pub fn normalize(raw: &str, region: Option<&str>) -> Option<String> {
    let region = region.map(str::trim).filter(|r| !r.is_empty()).map(|r| {
        r.to_ascii_uppercase()
            .parse::<country::Id>()
            .unwrap_or_else(|_| panic!("not a region: {r:?}"))
    });
    // 1. Trimmed; empty or over 64 bytes is invalid.
    let cell = raw.trim();
    if cell.is_empty() || cell.len() > 64 {
        return None;
    }
    // 2. Separators go; anything else but digits and a `+` in first position is invalid. (ASCII
    // digits: the tests write no others.)
    let mut kept = String::new();
    for (i, c) in cell.chars().enumerate() {
        match c {
            ' ' | '\t' | '\u{a0}' | '-' | '(' | ')' | '.' | '/' => {}
            '+' if i == 0 => kept.push(c),
            c if c.is_ascii_digit() => kept.push(c),
            _ => return None,
        }
    }
    // 3. A leading `00` means `+`; 4 to 17 digits.
    let (international, digits) = match kept.strip_prefix('+') {
        Some(d) => (true, d),
        None => match kept.strip_prefix("00") {
            Some(d) => (true, d),
            None => (false, kept.as_str()),
        },
    };
    if !(4..=17).contains(&digits.len()) {
        return None;
    }
    // 4. Without `+`: a national number of the region first, then international without its `+`.
    let national = match (international, region) {
        (false, Some(region)) => valid_e164(Some(region), digits),
        _ => None,
    };
    national.or_else(|| valid_e164(None, &format!("+{digits}")))
}

/// Step 5: the number must be valid for its country, not only possible. A `+` text is parsed
/// without a region: phonenumber 0.3 strips the given region's national prefix even from a
/// number that carries its own country code.
fn valid_e164(region: Option<country::Id>, text: &str) -> Option<String> {
    let number = phonenumber::parse(region, text).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    let e164 = number.format().mode(Mode::E164).to_string();
    // E.164 itself: at most 15 digits.
    (e164.len() <= 16).then_some(e164)
}

/// The about texts, in README's order.
pub const SIGNATURES: [&str; 5] = [
    "Hey there! I am using WhatsApp.",
    "Available",
    "Busy",
    "At work",
    "Urgent calls only",
];

/// README's rule for one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    pub registered: bool,
    pub signature: &'static str,
    /// As result files write it, `YYYY-MM-DD`.
    pub status_update: String,
    pub business: bool,
    pub picture: bool,
    pub about_hidden: bool,
}

/// FNV-1a, 64 bits: the standard offset basis and prime (README names only the algorithm).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// README, "The simulated backend", for `e164` written with its `+`.
pub fn simulated(e164: &str, registered_percent: u8, hidden_percent: u8) -> Simulated {
    let h = fnv1a64(e164.as_bytes());
    let first = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    Simulated {
        registered: h % 100 < u64::from(registered_percent),
        signature: SIGNATURES[((h >> 32) % 5) as usize],
        status_update: (first + Days::new((h >> 40) % 1800))
            .format("%Y-%m-%d")
            .to_string(),
        // `(h >> 20) % 10 == 0`
        business: (h >> 20).is_multiple_of(10),
        picture: (h >> 56) % 10 < 8,
        about_hidden: (h >> 48) % 100 < u64::from(hidden_percent),
    }
}

/// How a result file of `format` shows a cell of outside text (docs/api.md, "Formula
/// neutralisation (csv)"): csv puts an apostrophe before text that starts with `=`, `+`, `-`,
/// `@`, a tab or a carriage return; xlsx keeps the text as it was.
pub fn as_written(text: &str, format: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if format == "csv" && formula {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// The rule above as literal cases: (text, format, as written).
pub const WRITTEN: &[(&str, &str, &str)] = &[
    ("=1+2", "csv", "'=1+2"),
    (
        "=HYPERLINK(\"http://x\")",
        "csv",
        "'=HYPERLINK(\"http://x\")",
    ),
    ("+41 79 abc", "csv", "'+41 79 abc"),
    ("+++", "csv", "'+++"),
    ("-1", "csv", "'-1"),
    ("-Zug", "csv", "'-Zug"),
    ("@cmd", "csv", "'@cmd"),
    ("\tx", "csv", "'\tx"),
    ("\rx", "csv", "'\rx"),
    ("hello", "csv", "hello"),
    ("n/a", "csv", "n/a"),
    ("12", "csv", "12"),
    (" =1", "csv", " =1"),
    ("a=1", "csv", "a=1"),
    ("", "csv", ""),
    ("=1+2", "xlsx", "=1+2"),
    ("+++", "xlsx", "+++"),
    ("-Zug", "xlsx", "-Zug"),
    ("@cmd", "xlsx", "@cmd"),
];

#[cfg(test)]
mod tests {
    use super::super::expected_row;
    use super::*;

    #[test]
    fn oracle_normalises_as_the_docs_say() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            // docs/api.md's table.
            ("+41 79 828 46 51", None, Some("+41798284651")),
            ("0041 (79) 828-46-51", None, Some("+41798284651")),
            ("41798284651", None, Some("+41798284651")),
            ("+1 (415) 555-2671", None, Some("+14155552671")),
            ("079 828 46 51", Some("CH"), Some("+41798284651")),
            ("079 828 46 51", None, None),
            ("+41 79 abc", Some("CH"), None),
            ("=1+2", Some("CH"), None),
            ("12", Some("CH"), None),
            // The fixtures' spellings.
            ("(079) 828 46 53", Some("ch"), Some("+41798284653")),
            ("079.828.46.54", Some("CH"), Some("+41798284654")),
            ("0041-79-828-46-52", Some("CH"), Some("+41798284652")),
            ("41798284655", Some("CH"), Some("+41798284655")),
            ("004915112345678", None, Some("+4915112345678")),
            // Numeric xlsx cells: the `0` or `+` is lost.
            ("798284652", Some("CH"), Some("+41798284652")),
            ("14155552671", Some("CH"), Some("+14155552671")),
            // Step 5: the right length, but no plan has these.
            ("+41 00 000 00 00", None, None),
            ("+44 7700 900123", None, None),
            ("+++", None, None),
            ("-1", None, None),
            ("@cmd", None, None),
            ("n/a", None, None),
            ("call me", None, None),
        ];
        for &(cell, region, want) in cases {
            assert_eq!(
                normalize(cell, region).as_deref(),
                want,
                "{cell:?} with {region:?}"
            );
        }
    }

    #[test]
    fn oracle_simulates_as_the_readme_says() {
        // FNV-1a 64's published test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // Worked out independently from README's formula.
        let cases = [
            (
                "+41798284651",
                false,
                "Available",
                "2020-01-16",
                false,
                true,
            ),
            ("+41798284652", true, "At work", "2020-01-13", false, true),
            (
                "+14155552671",
                true,
                "Hey there! I am using WhatsApp.",
                "2020-07-31",
                false,
                false,
            ),
            (
                "+41791000054",
                true,
                "Urgent calls only",
                "2022-10-16",
                true,
                true,
            ),
        ];
        for (number, registered, signature, date, business, picture) in cases {
            let r = simulated(number, REGISTERED_PERCENT, 0);
            assert_eq!(
                (r.registered, r.signature, r.status_update.as_str()),
                (registered, signature, date),
                "{number}"
            );
            assert_eq!((r.business, r.picture), (business, picture), "{number}");
            assert!(!r.about_hidden, "{number}: nothing is hidden by default");
        }
        // (h >> 48) % 100 is 30 for the first, 51 for the second.
        assert!(simulated("+14155552671", 70, 50).about_hidden);
        assert!(!simulated("+41798284652", 70, 50).about_hidden);
    }

    #[test]
    fn oracle_defuses_formulas_as_the_docs_say() {
        for &(text, format, want) in WRITTEN {
            assert_eq!(as_written(text, format), want, "{text:?} in {format}");
        }
    }

    #[test]
    fn expected_rows_follow_the_oracle() {
        assert_eq!(
            expected_row("+41 79 828 46 52", None, true, "csv"),
            ["+41798284652", "yes", "At work", "2020-01-13", "no"]
        );
        assert_eq!(
            expected_row("079 828 46 51", Some("CH"), true, "csv"),
            ["+41798284651", "no", "", "", ""]
        );
        assert_eq!(
            expected_row("+41798284651", None, false, "csv"),
            ["+41798284651", "no"]
        );
        assert_eq!(
            expected_row("=1+2", Some("CH"), true, "csv"),
            ["'=1+2", "invalid", "", "", ""]
        );
        assert_eq!(
            expected_row("=1+2", None, false, "xlsx"),
            ["=1+2", "invalid"]
        );
        assert_eq!(
            expected_row("079 828 46 51", None, false, "csv"),
            ["079 828 46 51", "invalid"]
        );
    }
}
