//! Where "now" comes from: the system clock in production, a manual clock in tests.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// Whether this clock's times are simulated (a [`ManualClock`] in a test or a
    /// simulation) rather than read from real time. A store on a shared server may
    /// replace a real clock's readings with the server's own clock (the Redis messaging
    /// limit count does, [`crate::CountTime`]), so that replicas whose clocks differ or
    /// step count alike; a simulated clock's times are used as they are. `false` unless
    /// a clock says otherwise, so a clock of your own (a wrapper that logs or offsets
    /// the system clock) is taken as real time: the safe side on a shared server.
    fn is_simulated(&self) -> bool {
        false
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn is_simulated(&self) -> bool {
        (**self).is_simulated()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to, with millisecond resolution. Clones share the
/// same time, so a test can hand one to the engine and keep one to move.
///
/// ```
/// use chrono::TimeDelta;
/// use lipachat_session::{Clock, ManualClock};
///
/// let clock = ManualClock::at("2026-11-23T10:00:00Z".parse()?);
/// let engine_side = clock.clone();
/// clock.advance(TimeDelta::hours(25));
/// assert_eq!(engine_side.now().to_rfc3339(), "2026-11-24T11:00:00+00:00");
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `start` (truncated to the millisecond).
    pub fn at(start: DateTime<Utc>) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(start.timestamp_millis())),
        }
    }

    /// Sets the time (truncated to the millisecond).
    pub fn set(&self, now: DateTime<Utc>) {
        self.millis.store(now.timestamp_millis(), Ordering::SeqCst);
    }

    /// Moves the time by `by` (which may be negative), at millisecond resolution.
    pub fn advance(&self, by: TimeDelta) {
        self.millis
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        crate::window::from_millis(self.millis.load(Ordering::SeqCst))
    }

    fn is_simulated(&self) -> bool {
        true
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}
