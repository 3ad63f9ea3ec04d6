//! When and how long to wait before sending the same request again.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How a send retries connection failures, timeouts, 408, 429 and 5xx.
///
/// The n-th retry (counting from 0) waits a random time between half and all of
/// `initial_backoff * 2^n`, capped at `max_backoff`. When the gateway sends `Retry-After`,
/// that wait is used instead, capped at `max_backoff` too. Every attempt carries the same
/// `messageId`, so the gateway deduplicates them.
///
/// ```
/// use std::time::Duration;
/// use lipachat_api::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.max_retries, 3);
/// assert_eq!(policy.initial_backoff, Duration::from_millis(250));
/// assert_eq!(policy.max_backoff, Duration::from_secs(5));
/// assert_eq!(RetryPolicy::none().max_retries, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` requests).
    pub max_retries: u32,
    /// The wait before the first retry, before jitter.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt only.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0 for the first retry), with jitter, or the
    /// gateway's `Retry-After` when it sent one; never more than `max_backoff`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_backoff);
        }
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=spread))
    }

    /// `initial_backoff * 2^retry`, capped at `max_backoff`.
    fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// Reads a `Retry-After` header: a number of seconds, or an HTTP date (then the time left
/// until it, zero if past). `None` for anything else.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let first = policy.delay(0, None);
            assert!(
                first >= Duration::from_millis(125) && first <= Duration::from_millis(250),
                "{first:?}"
            );
            let third = policy.delay(2, None);
            assert!(
                third >= Duration::from_millis(500) && third <= Duration::from_millis(1000),
                "{third:?}"
            );
            let late = policy.delay(40, None);
            assert!(
                late >= Duration::from_millis(2500) && late <= Duration::from_secs(5),
                "{late:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(120))),
            Duration::from_secs(5)
        );
        assert_eq!(policy.delay(0, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn retry_after_parsing() {
        let now: DateTime<Utc> = "2015-10-21T07:28:00Z".parse().unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
