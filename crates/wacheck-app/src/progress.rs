//! A task's progress and state in words: how fast it moves, when it should be done, and what
//! it does now or why it ended as it did. Every front door shows the same words.

use chrono::{DateTime, Utc};
use wacheck_core::TaskStatus;
use wacheck_store::tasks::TaskRecord;

/// How fast a task moves and when it should be done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Rows answered per minute since work started (cached rows not counted).
    pub per_minute: Option<f64>,
    /// Seconds until every row is answered.
    pub left_secs: Option<f64>,
    /// When the accounts' budgets make the open rows take over a day: the checks a day they
    /// allow, and the days.
    pub slow_budget: Option<(u64, f64)>,
}

impl Pace {
    /// No pace to tell (a task that is not being checked).
    pub const NONE: Pace = Pace {
        per_minute: None,
        left_secs: None,
        slow_budget: None,
    };
}

/// The task's pace: the rate it had since a worker took it, and the accounts' budgets
/// (`checks_per_day`: `None` when unlimited), whichever is slower.
pub fn pace(t: &TaskRecord, now: DateTime<Utc>, checks_per_day: Option<u64>) -> Pace {
    let open = t.total - t.success - t.failure;
    let checked = t.success + t.failure - t.invalid - t.cached;
    let elapsed = t
        .started_at
        .map(|s| (now - s).num_milliseconds() as f64 / 1000.0);
    // A check answers every row of its number: a file with repeated numbers needs fewer.
    let checks_per_row = t.distinct_numbers as f64 / (t.total - t.invalid).max(1) as f64;
    pace_of(open, checked, elapsed, checks_per_day, checks_per_row)
}

/// [`pace`] from the counts: rows still open, rows checked (not cached) in `elapsed` seconds
/// of work, and the account checks a row takes on average.
pub fn pace_of(
    open: i64,
    checked: i64,
    elapsed: Option<f64>,
    checks_per_day: Option<u64>,
    checks_per_row: f64,
) -> Pace {
    let (open, checked) = (open.max(0) as f64, checked.max(0) as f64);
    let elapsed = elapsed.unwrap_or(0.0);
    let per_minute = (elapsed >= 5.0 && checked > 0.0).then(|| checked * 60.0 / elapsed);
    let by_budget = checks_per_day
        .filter(|&c| c > 0)
        .map(|c| open * checks_per_row / c as f64 * 86_400.0);
    let by_rate = per_minute.map(|r| open / r * 60.0);
    let left_secs = match (by_rate, by_budget) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Pace {
        per_minute,
        left_secs: left_secs.filter(|_| open > 0.0),
        slow_budget: checks_per_day
            .zip(by_budget)
            .map(|(c, s)| (c, s / 86_400.0))
            .filter(|&(_, d)| d > 1.0),
    }
}

/// A span of time as people say it: `40 s`, `12 min`, `3 h 20 min`, `2.5 days`.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{:.1} days", secs / 86_400.0),
    }
}

/// No progress for this long while numbers are still open counts as a stall worth saying.
pub const STALL_SECS: i64 = 60;
/// How the worker words a failed export (see `lifecycle::export_failed`).
const EXPORT_FAILED: &str = wacheck_store::lifecycle::EXPORT_FAILED;

/// The task's state in words: what it does now, what it waits for, or why it ended so.
pub fn message(t: &TaskRecord, now: DateTime<Utc>, working: bool, pace: Pace) -> String {
    let answered = t.success + t.failure;
    let recent_error = t.last_error.as_deref().filter(|_| {
        t.last_error_at
            .is_some_and(|at| (now - at).num_seconds() < STALL_SECS)
    });
    let idle = (now - t.updated_at).num_seconds();
    match t.status {
        TaskStatus::Pending | TaskStatus::Processing => {
            let mut m = if t.status == TaskStatus::Pending {
                "queued: waiting for a worker".to_owned()
            } else {
                format!("checking: {answered} of {} rows answered", t.total)
            };
            if let Some(r) = pace.per_minute {
                m.push_str(&format!(", {r:.0} a minute"));
            }
            if let Some(left) = pace.left_secs {
                m.push_str(&format!(", about {} left", human_duration(left)));
            }
            if let Some((per_day, days)) = pace.slow_budget {
                m.push_str(&format!(
                    "; the accounts' budgets allow at most {} checks a day, so the open rows \
                     take {days:.1} days: add accounts or raise their limits (docs/backends.md)",
                    wacheck_core::text::thousands(per_day)
                ));
            }
            if let Some(w) = &t.waiting {
                m.push_str(&format!("; waiting: {w}"));
            } else if let Some(e) = recent_error {
                m.push_str(&format!("; the backend is failing, retrying: {e}"));
            } else if idle >= STALL_SECS && working {
                m.push_str("; a worker holds its next numbers (waiting for account budget)");
            } else if idle >= STALL_SECS {
                m.push_str(&format!(
                    "; no progress for {idle} s: no worker is taking this task's work \
                     (are workers running, and can they reach Redis and Postgres?)"
                ));
            }
            m
        }
        TaskStatus::Completed => match recent_error.filter(|e| e.starts_with(EXPORT_FAILED)) {
            Some(e) => format!("all rows answered; writing the result file, retrying: {e}"),
            None => "all rows answered; writing the result file".to_owned(),
        },
        TaskStatus::Exported if t.unknown > 0 => format!(
            "done; {} of {} rows are unknown because the backend gave no answer{}",
            t.unknown,
            t.total,
            t.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ),
        TaskStatus::Exported if t.invalid_national > 0 && t.default_region.is_none() => {
            format!(
                "done; {} of {} rows are invalid because they have no country code: upload \
                 the file again with default_region (for example CH) to read them as national \
                 numbers",
                t.invalid_national, t.total
            )
        }
        TaskStatus::Exported => "done".to_owned(),
        TaskStatus::Cancelled => {
            let file = if t.result_key.is_some() {
                "the result file holds them, the rest `unchecked`"
            } else if t.export_enqueued_at.is_some() {
                "their result file is being written"
            } else {
                "POST .../export to get them as a result file"
            };
            format!(
                "cancelled; {answered} of {} rows were answered: {file}",
                t.total
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_is_the_slower_of_the_rate_and_the_budgets() {
        // 120 rows checked in 60 s, 240 open: 120 a minute, 2 minutes left.
        let p = pace_of(240, 120, Some(60.0), None, 1.0);
        assert_eq!(
            (p.per_minute, p.left_secs, p.slow_budget),
            (Some(120.0), Some(120.0), None)
        );
        // Budgets of 5,000 a day for 200,000 open rows: 40 days, whatever the rate so far.
        let p = pace_of(200_000, 300, Some(60.0), Some(5_000), 1.0);
        assert_eq!(p.left_secs, Some(40.0 * 86_400.0));
        assert_eq!(p.slow_budget, Some((5_000, 40.0)));
        // Each number twice in the file: half the checks, half the days.
        let p = pace_of(200_000, 300, Some(60.0), Some(5_000), 0.5);
        assert_eq!(p.slow_budget, Some((5_000, 20.0)));
        // Too early to say a rate (under 5 s), nothing checked yet, or nothing open.
        assert_eq!(pace_of(10, 5, Some(4.0), None, 1.0).per_minute, None);
        assert_eq!(pace_of(10, 0, Some(30.0), None, 1.0).left_secs, None);
        assert_eq!(pace_of(0, 10, Some(30.0), Some(10), 1.0).left_secs, None);
        // Within a day: no word about the budgets.
        assert_eq!(pace_of(100, 0, None, Some(5_000), 1.0).slow_budget, None);
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(human_duration(40.2), "40 s");
        assert_eq!(human_duration(725.0), "12 min");
        assert_eq!(human_duration(12_000.0), "3 h 20 min");
        assert_eq!(human_duration(216_000.0), "2.5 days");
    }
}
