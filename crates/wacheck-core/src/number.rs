//! Phone numbers: parse-don't-validate. An [`E164`] exists only for a valid number.

use std::fmt;
use std::str::FromStr;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberFormat, Region};

/// A valid phone number in E.164 form (`+` and up to 15 digits, no leading zero).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("`{0}` is not an ISO 3166 alpha-2 region code")]
    UnknownRegion(String),
}

impl E164 {
    /// Accepts only a string that already is canonical E.164 (as stored by wacheck itself).
    pub fn from_canonical(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('+')?;
        let ok = (4..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| E164(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without the `+`, as WhatsApp backends want them.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The digits as an integer: the compact, exact key under which wacheck stores and
    /// deduplicates numbers (at most 15 digits fit any integer type from `u64` up).
    pub fn key(&self) -> u64 {
        self.digits().parse().expect("an E164 holds 4 to 15 digits")
    }

    /// The number a stored key stands for; `None` if it cannot be one.
    pub fn from_key(key: u64) -> Option<Self> {
        Self::from_canonical(&format!("+{key}"))
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Turns what people write into E.164, the way a libphonenumber-grade parser does.
///
/// Rules: a leading `+` or `00` makes the number international. Otherwise, with a default
/// region the number is read as a national number of that region first; if that is not valid
/// (or there is no region), the digits are tried as an international number written without
/// its `+` (the common `41791234567` form).
#[derive(Debug, Clone, Copy, Default)]
pub struct Normalizer {
    region: Option<Region>,
}

impl Normalizer {
    pub fn new(default_region: Option<&str>) -> Result<Self, NumberError> {
        let region = match default_region.map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(code) => {
                let upper = code.to_ascii_uppercase();
                if upper.len() != 2 {
                    return Err(NumberError::UnknownRegion(code.to_owned()));
                }
                let region = Region::from_str(&upper)
                    .map_err(|_| NumberError::UnknownRegion(code.to_owned()))?;
                if PHONE_NUMBER_UTIL
                    .get_country_code_for_region(region)
                    .is_none()
                {
                    return Err(NumberError::UnknownRegion(code.to_owned()));
                }
                Some(region)
            }
        };
        Ok(Self { region })
    }

    /// Normalises one raw cell; `None` means "not a valid phone number".
    pub fn normalize(&self, raw: &str) -> Option<E164> {
        let cleaned = clean(raw)?;
        if let Some(intl) = cleaned.strip_prefix('+') {
            return parse_valid(&format!("+{intl}"), None);
        }
        if let Some(region) = self.region
            && let Some(n) = parse_valid(&cleaned, Some(region))
        {
            return Some(n);
        }
        parse_valid(&format!("+{cleaned}"), None)
    }
}

/// Why a cell is not a valid phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Letters, too few or too many digits, or other text.
    NotANumber,
    /// Written without a country code, and no `default_region` says which country it is in.
    NoCountryCode,
    /// Digits that no numbering plan has (for the default region, nor as international).
    NotValid,
}

impl Invalid {
    /// The reason in the user's words, as result files and single checks give it.
    pub fn reason(self) -> &'static str {
        match self {
            Invalid::NotANumber => "not a phone number",
            Invalid::NoCountryCode => {
                "no country code: write the number with + and its country code, or set \
                 default_region"
            }
            Invalid::NotValid => "not a valid phone number",
        }
    }
}

impl Normalizer {
    /// Why [`Normalizer::normalize`] refused `raw` (asked only of refused cells).
    pub fn why_invalid(&self, raw: &str) -> Invalid {
        match clean(raw) {
            None => Invalid::NotANumber,
            Some(c) if self.region.is_none() && !c.starts_with('+') => Invalid::NoCountryCode,
            Some(_) => Invalid::NotValid,
        }
    }
}

/// Keeps digits and one leading `+`; maps a leading `00` to `+`. Rejects letters and anything
/// that is not punctuation people put into phone numbers. (The first step of
/// [`Normalizer::normalize`]; public so that other libraries can be compared after it.)
pub fn clean(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push('+'),
            ' ' | '-' | '(' | ')' | '.' | '/' | '\u{a0}' | '\t' => {}
            _ => return None,
        }
    }
    if let Some(rest) = out.strip_prefix("00") {
        out = format!("+{rest}");
    }
    let digits = out.trim_start_matches('+').len();
    (4..=17).contains(&digits).then_some(out)
}

fn parse_valid(s: &str, region: Option<Region>) -> Option<E164> {
    let n = PhoneNumber::parse(s, region).ok()?;
    if !n.is_valid() {
        return None;
    }
    let e164 = n.format_as(PhoneNumberFormat::E164).into_owned();
    // E.164 allows 15 digits at most, and no country has subscriber numbers of fewer than 7
    // digits with its code; the metadata accepts a few beyond both (found by fuzzing:
    // "49.7-9485161454160" came out as +4979485161454160, "9 80.9 640." in CC as +989640).
    (MIN_E164_LEN..=MAX_E164_LEN)
        .contains(&e164.len())
        .then_some(E164(e164))
}

/// `+` and 7 to 15 digits.
const MIN_E164_LEN: usize = 8;
const MAX_E164_LEN: usize = 16;

/// Whether a cell looks like a phone number (used to pick a column and to spot a header row).
pub fn looks_like_phone(raw: &str) -> bool {
    let raw = raw.trim();
    let mut digits = 0;
    for (i, c) in raw.chars().enumerate() {
        match c {
            '0'..='9' => digits += 1,
            '+' if i == 0 => {}
            ' ' | '-' | '(' | ')' | '.' | '/' => {}
            _ => return false,
        }
    }
    (6..=17).contains(&digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(region: Option<&str>, raw: &str) -> Option<String> {
        Normalizer::new(region)
            .unwrap()
            .normalize(raw)
            .map(E164::into_string)
    }

    #[test]
    fn numbers_longer_than_e164_allows_are_invalid() {
        assert_eq!(n(None, "49.7-9485161454160"), None, "16 digits");
        assert_eq!(n(Some("CC"), "9 80.9 640."), None, "6 digits");
        assert!(n(None, "+6834002").is_some(), "7 digits (Niue)");
        assert!(n(None, "+4915112345678").is_some());
    }

    #[test]
    fn international_forms_normalise_to_e164() {
        assert_eq!(n(None, "+41 79 828 46 51").as_deref(), Some("+41798284651"));
        assert_eq!(
            n(None, "0041 (79) 828-46-51").as_deref(),
            Some("+41798284651")
        );
        assert_eq!(n(None, "41798284651").as_deref(), Some("+41798284651"));
        assert_eq!(
            n(None, "+1 (415) 555-2671").as_deref(),
            Some("+14155552671")
        );
    }

    #[test]
    fn national_numbers_need_a_region() {
        assert_eq!(
            n(Some("ch"), "079 828 46 51").as_deref(),
            Some("+41798284651")
        );
        assert_eq!(n(Some("CH"), "798284651").as_deref(), Some("+41798284651"));
        assert_eq!(n(None, "079 828 46 51"), None);
        // A region never stops an explicit international number.
        assert_eq!(
            n(Some("DE"), "+41798284651").as_deref(),
            Some("+41798284651")
        );
    }

    #[test]
    fn junk_is_not_a_number() {
        for junk in [
            "",
            "   ",
            "hello",
            "12",
            "+41 79 abc",
            "=1+2",
            "++41798284651",
            "+999999999999",
        ] {
            assert_eq!(n(Some("CH"), junk), None, "{junk:?}");
        }
    }

    #[test]
    fn unknown_region_is_an_error() {
        assert!(Normalizer::new(Some("XX")).is_err());
        assert!(Normalizer::new(Some("CHE")).is_err());
        assert!(Normalizer::new(Some("")).unwrap().region.is_none());
    }

    #[test]
    fn keys_round_trip() {
        let n = E164::from_canonical("+41791234567").unwrap();
        assert_eq!(n.key(), 41_791_234_567);
        assert_eq!(E164::from_key(n.key()), Some(n));
        assert_eq!(E164::from_key(12), None);
    }

    #[test]
    fn canonical_round_trip() {
        let e = n(None, "+41798284651").unwrap();
        assert_eq!(E164::from_canonical(&e).unwrap().as_str(), e);
        assert!(E164::from_canonical("41798284651").is_none());
        assert!(E164::from_canonical("+4179x").is_none());
    }

    #[test]
    fn phone_like_cells() {
        assert!(looks_like_phone("+41 79 828 46 51"));
        assert!(looks_like_phone("(415) 555-2671"));
        assert!(!looks_like_phone("phone"));
        assert!(!looks_like_phone("2024-01-01T00:00"));
        assert!(!looks_like_phone("123"));
    }

    #[test]
    fn refused_cells_say_why() {
        let none = Normalizer::new(None).unwrap();
        let ch = Normalizer::new(Some("CH")).unwrap();
        assert_eq!(none.why_invalid("call me"), Invalid::NotANumber);
        assert_eq!(none.why_invalid("12"), Invalid::NotANumber);
        assert_eq!(none.why_invalid("079 828 46 51"), Invalid::NoCountryCode);
        assert_eq!(ch.why_invalid("079 828 46"), Invalid::NotValid);
        assert_eq!(none.why_invalid("+41 00 000 00 00"), Invalid::NotValid);
        assert!(Invalid::NoCountryCode.reason().contains("default_region"));
    }
}
