//! A user's quotas: numbers a UTC day (task rows and single checks together) and tasks being
//! checked at once. Refusals answer 429 with when to try again; what a use case saw of them
//! is reported on the caller.

use std::sync::{Arc, Mutex};

use wacheck_store::tasks::{Quota, QuotaExceeded};
use wacheck_store::users::{self, QuotaUse};

use crate::{Caller, Code, Error, Limits, Services};

/// The quotas a request touched, as its use cases found them. Shared by the clones of one
/// request's caller.
#[derive(Debug, Clone, Default)]
pub struct QuotaReport(Arc<Mutex<QuotaSeen>>);

/// What a request saw of its quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaSeen {
    /// `numbers_per_day` and today's count.
    pub numbers: Option<(u64, u64)>,
    /// `max_concurrent_tasks` and how many are being checked.
    pub tasks: Option<(u64, u64)>,
}

impl QuotaReport {
    /// Today's numbers: the limit (0: none, nothing reported) and the count so far.
    pub fn numbers(&self, limit: u64, used: u64) {
        if limit > 0 {
            self.0.lock().expect("quota report").numbers = Some((limit, used));
        }
    }

    /// Tasks at once: the limit (0: none, nothing reported) and how many run.
    pub fn tasks(&self, limit: u64, running: u64) {
        if limit > 0 {
            self.0.lock().expect("quota report").tasks = Some((limit, running));
        }
    }

    pub fn seen(&self) -> QuotaSeen {
        *self.0.lock().expect("quota report")
    }
}

/// The quotas of limits (0: unlimited).
pub fn of(limits: &Limits) -> Quota {
    Quota {
        numbers_per_day: limits.numbers_per_day,
        max_concurrent_tasks: u64::from(limits.max_concurrent_tasks),
    }
}

/// What a refused quota answers: 429 with when to try again.
pub fn exceeded(q: QuotaExceeded) -> Error {
    let now = chrono::Utc::now();
    let midnight = wacheck_core::day::next_utc_midnight(now);
    match q {
        QuotaExceeded::NumbersPerDay { limit, used, asked } => Error::new(
            Code::QuotaExceeded,
            format!(
                "{asked} more numbers would take today's count to {} of at most {limit} \
                 (rows of tasks and numbers checked one by one; it starts again at 00:00 UTC)",
                used + asked
            ),
        )
        .retry_after((midnight - now).num_seconds().max(1) as u64),
        QuotaExceeded::ConcurrentTasks { limit } => Error::new(
            Code::TooManyTasks,
            format!(
                "{limit} of your tasks are being checked already, the most at once; \
                 wait for one to finish (or cancel one)"
            ),
        )
        .retry_after(30),
    }
}

/// Reads what `user` has used of `quota` and reports it on the caller.
pub async fn report(
    s: &Services,
    caller: &Caller,
    user: &str,
    quota: Quota,
) -> Result<QuotaUse, Error> {
    let used = users::quota_use(&s.pool, user).await?;
    caller
        .quota
        .numbers(quota.numbers_per_day, used.numbers_today);
    caller
        .quota
        .tasks(quota.max_concurrent_tasks, used.running_tasks);
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_would_happen_and_when_to_come_back() {
        let e = exceeded(QuotaExceeded::NumbersPerDay {
            limit: 1000,
            used: 990,
            asked: 20,
        });
        assert_eq!(e.code(), Code::QuotaExceeded);
        assert!(
            e.message()
                .starts_with("20 more numbers would take today's count to 1010 of at most 1000")
        );
        let wait = e.retry_after_secs().unwrap();
        assert!((1..=86_400).contains(&wait), "{wait}");
        let e = exceeded(QuotaExceeded::ConcurrentTasks { limit: 2 });
        assert_eq!(
            (e.code(), e.retry_after_secs()),
            (Code::TooManyTasks, Some(30))
        );
    }

    #[test]
    fn only_limited_quotas_are_reported() {
        let r = QuotaReport::default();
        r.numbers(0, 5);
        r.tasks(3, 1);
        assert_eq!(
            r.seen(),
            QuotaSeen {
                numbers: None,
                tasks: Some((3, 1))
            }
        );
    }
}
