//! When and how long to wait before trying a request again.
//!
//! Connection failures, `408`, `429` and `5xx` answers are worth another
//! try; every other status is final. Waits grow exponentially with random
//! jitter (so that parallel downloads do not retry in lockstep), a
//! registry's `Retry-After` is honoured, and both the number of attempts
//! and the total time spent waiting are bounded.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

/// How hard a client tries before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait after the first failure, before jitter.
    pub first_delay: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
    /// The longest time spent waiting over all attempts of one request.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_total_wait: Duration::from_secs(60),
        }
    }
}

/// The retry state of one request.
#[derive(Debug)]
pub(super) struct Attempts<'a> {
    policy: &'a RetryPolicy,
    made: u32,
    waited: Duration,
}

impl<'a> Attempts<'a> {
    pub(super) fn new(policy: &'a RetryPolicy) -> Attempts<'a> {
        Attempts {
            policy,
            made: 1,
            waited: Duration::ZERO,
        }
    }

    /// Returns how many attempts have been made.
    pub(super) fn made(&self) -> u32 {
        self.made
    }

    /// Returns how long to wait before the next attempt, or `None` when
    /// the budget is spent. `retry_after` is what the registry asked for.
    pub(super) fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.made >= self.policy.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(asked) if asked <= self.policy.max_delay => asked,
            // A registry asking for a longer wait than we allow is not
            // retried within our budget: give up now and say why.
            Some(_) => return None,
            None => self.backoff(),
        };
        if self.waited + delay > self.policy.max_total_wait {
            return None;
        }
        self.made += 1;
        self.waited += delay;
        Some(delay)
    }

    fn backoff(&self) -> Duration {
        let exponent = (self.made - 1).min(16);
        let base = self.policy.first_delay.saturating_mul(1 << exponent);
        let jittered = base.mul_f64(0.5 + random_fraction());
        jittered.min(self.policy.max_delay)
    }
}

/// Tells whether an answer with `status` is worth another try.
pub(super) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Tells whether a transport failure is worth another try: anything that
/// went wrong on the wire, as opposed to a request that cannot be made.
pub(super) fn is_retryable_transport(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
    )
}

/// Parses `Retry-After`: seconds, or an HTTP date.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = parse_http_date(value)?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`, the one
/// form RFC 9110 requires senders to use.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let mut parts = value.split_whitespace().skip(1);
    let day: u64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| *m == month_name)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Counts days from 1970-01-01 to a date of the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let year = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

/// Returns a number in `[0, 1)` that differs between threads and calls;
/// jitter needs spread, not cryptographic quality.
fn random_fraction() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// Seeds each thread differently: the standard hasher's keys come from
/// the operating system's randomness.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let cases = [
            (408, true),
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (401, false),
            (404, false),
        ];
        for (status, retryable) in cases {
            assert_eq!(is_retryable_status(status), retryable, "{status}");
        }
    }

    #[test]
    fn parses_retry_after_in_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let cases = [
            ("3", Some(Duration::from_secs(3))),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(Duration::ZERO)),
            (
                "Sun, 06 Nov 1994 08:49:47 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Sun, 06 Nov 1994 08:49:47 PST", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value}");
        }
    }

    #[test]
    fn bounds_attempts_and_total_wait() {
        let policy = RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_total_wait: Duration::from_secs(2),
        };
        let mut attempts = Attempts::new(&policy);
        let delays: Vec<Duration> = std::iter::from_fn(|| attempts.next_delay(None)).collect();
        assert_eq!(delays.len(), 3);
        for (i, delay) in delays.iter().enumerate() {
            let base = Duration::from_millis(100 << i);
            assert!(
                *delay >= base / 2 && *delay < base * 3 / 2,
                "{i}: {delay:?}"
            );
        }

        let mut patient = Attempts::new(&policy);
        assert_eq!(
            patient.next_delay(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            patient.next_delay(Some(Duration::from_secs(5))),
            None,
            "longer than max_delay"
        );
        assert_eq!(
            patient.next_delay(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            patient.next_delay(Some(Duration::from_secs(1))),
            None,
            "over the total"
        );
    }
}
