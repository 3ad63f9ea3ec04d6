//! Fault injection: failures and delays for the next requests, for retry tests and
//! benchmarks.

use std::collections::VecDeque;
use std::time::Duration;

/// An injected failure: the HTTP status to answer and, optionally, a `Retry-After`.
///
/// The body is the gateway's generic failure,
/// `{"timestamp": "...", "data": null, "status": "error", "message": "Request failed.", "errors": null}`,
/// whatever the status: with 200 it is the "failure disguised as success" some gateway pages
/// show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFailure {
    status: u16,
    retry_after: Option<Duration>,
}

impl InjectedFailure {
    /// A failure answered with HTTP `status`.
    ///
    /// # Panics
    ///
    /// When `status` is not an HTTP status code (100 to 999): a mistake in the test.
    pub fn status(status: u16) -> Self {
        assert!(
            (100..=999).contains(&status),
            "{status} is not an HTTP status code"
        );
        Self {
            status,
            retry_after: None,
        }
    }

    /// The same failure with a `Retry-After` header of `after`, in whole seconds (rounded
    /// up).
    pub fn retry_after(self, after: Duration) -> Self {
        Self {
            retry_after: Some(after),
            ..self
        }
    }

    /// The HTTP status answered.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The `Retry-After` header's value in seconds, if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|after| after.as_secs() + u64::from(after.subsec_nanos() > 0))
    }
}

/// Faults waiting for the next requests to send endpoints, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    failures: VecDeque<(usize, InjectedFailure)>,
    stalls: VecDeque<(usize, Duration)>,
}

/// What the plan holds for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Faults {
    pub(crate) failure: Option<InjectedFailure>,
    pub(crate) stall: Option<Duration>,
}

impl FaultPlan {
    /// Answers the next `n` requests with `failure` (after failures already planned).
    pub(crate) fn fail_next(&mut self, n: usize, failure: InjectedFailure) {
        if n > 0 {
            self.failures.push_back((n, failure));
        }
    }

    /// Delays the answers to the next `n` requests by `delay` (after stalls already planned).
    pub(crate) fn stall_next(&mut self, n: usize, delay: Duration) {
        if n > 0 {
            self.stalls.push_back((n, delay));
        }
    }

    /// Takes the faults for the request that just arrived.
    pub(crate) fn take(&mut self) -> Faults {
        Faults {
            failure: take_one(&mut self.failures),
            stall: take_one(&mut self.stalls),
        }
    }
}

fn take_one<T: Copy>(queue: &mut VecDeque<(usize, T)>) -> Option<T> {
    let (remaining, item) = queue.front_mut()?;
    let item = *item;
    *remaining -= 1;
    if *remaining == 0 {
        queue.pop_front();
    }
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_in_order_and_run_out() {
        let mut plan = FaultPlan::default();
        plan.fail_next(2, InjectedFailure::status(500));
        plan.fail_next(
            1,
            InjectedFailure::status(429).retry_after(Duration::from_millis(1500)),
        );
        plan.stall_next(1, Duration::from_millis(5));
        plan.fail_next(0, InjectedFailure::status(503));
        let first = plan.take();
        assert_eq!(first.failure.map(|f| f.status_code()), Some(500));
        assert_eq!(first.stall, Some(Duration::from_millis(5)));
        let second = plan.take();
        assert_eq!(second.failure.map(|f| f.status_code()), Some(500));
        assert_eq!(second.stall, None);
        let third = plan.take().failure.unwrap();
        assert_eq!(
            (third.status_code(), third.retry_after_secs()),
            (429, Some(2))
        );
        assert!(plan.failures.is_empty() && plan.stalls.is_empty());
        assert_eq!(plan.take(), Faults::default());
    }

    #[test]
    #[should_panic(expected = "not an HTTP status code")]
    fn nonsense_status_is_a_test_mistake() {
        let _ = InjectedFailure::status(42);
    }
}
