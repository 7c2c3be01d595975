//! Days are UTC days: daily caps, daily quotas and their resets turn over at 00:00 UTC.

use chrono::{DateTime, Days, Utc};

/// The next 00:00 UTC after `now`.
pub fn next_utc_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    (now.date_naive() + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("00:00 exists on every day")
        .and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_midnight_is_the_start_of_tomorrow() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            next_utc_midnight(at("2026-12-31T23:59:59Z")),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next_utc_midnight(at("2026-03-01T00:00:00Z")),
            at("2026-03-02T00:00:00Z")
        );
        assert_eq!(
            next_utc_midnight(at("2028-02-28T12:00:00+05:00")),
            at("2028-02-29T00:00:00Z")
        );
    }
}
