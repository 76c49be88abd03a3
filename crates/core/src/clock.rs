//! Where gbdfl learns the time: one [`Clock`], made once by the binary and
//! handed to the store, the service and the reports, so that deadlines, the
//! 3-hour request window, staleness, retention and backoff are tested by
//! setting a clock, never by sleeping.
//!
//! [`SystemClock`] is the product's. [`TestClock`] stands still until told
//! to move ([`TestClock::set`], [`TestClock::advance`]), and a wait on it
//! ([`Clock::sleep`]) moves it on at once instead of sleeping, so a loop
//! that waits for a time on it ends. [`StartedClock`] starts at a given
//! time and then runs like the real one: for a whole process whose "now"
//! a test fixes, where workers still wait real time for each other.
//!
//! Days are local days: [`Clock::today`] is the local date of
//! [`Clock::now`], through the time zone's rules, not a second reading.
//! Only the elapsed time of an operation shown to people (progress lines,
//! benchmark timings, lock-hold budgets) is measured with
//! [`std::time::Instant`], which no test needs to set.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, NaiveDate, TimeDelta, Utc};

/// The time, as gbdfl sees it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Waits until `d` has passed on this clock. The system clock sleeps;
    /// the test clock moves on by `d` and returns at once.
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    /// The local date of [`Clock::now`].
    fn today(&self) -> NaiveDate {
        local_day(self.now())
    }

    /// [`Clock::now`] in the local time zone.
    fn local_now(&self) -> DateTime<Local> {
        self.now().with_timezone(&Local)
    }
}

/// The local date of `t` (the day a person here would write down).
pub fn local_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Local).date_naive()
}

/// The operating system's clock: the product's only source of the time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

/// A clock that starts at a given time and then runs at the real pace
/// (measured with [`Instant`]): a process's "now" fixed by a test, while
/// its waits (backoff, Retry-After, other workers) still pass in real time.
#[derive(Debug, Clone, Copy)]
pub struct StartedClock {
    at: DateTime<Utc>,
    since: Instant,
}

impl StartedClock {
    /// A clock that says `at` now.
    pub fn at(at: DateTime<Utc>) -> StartedClock {
        StartedClock {
            at,
            since: Instant::now(),
        }
    }
}

impl Clock for StartedClock {
    fn now(&self) -> DateTime<Utc> {
        TimeDelta::from_std(self.since.elapsed())
            .ok()
            .and_then(|d| self.at.checked_add_signed(d))
            .unwrap_or(self.at)
    }
}

/// A clock for tests: it says the time it was given until it is set or
/// advanced; a [`Clock::sleep`] on it advances it instead of sleeping.
#[derive(Debug)]
pub struct TestClock {
    now: Mutex<DateTime<Utc>>,
}

impl TestClock {
    /// A clock standing at `at`.
    pub fn at(at: DateTime<Utc>) -> TestClock {
        TestClock {
            now: Mutex::new(at),
        }
    }

    /// A clock standing at `at`, shared (to hand to a store or options,
    /// keeping a handle to move it).
    pub fn shared(at: DateTime<Utc>) -> Arc<TestClock> {
        Arc::new(TestClock::at(at))
    }

    /// Sets the time.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves the time on by `d` (back, if negative).
    pub fn advance(&self, d: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.checked_add_signed(d).unwrap_or(*now);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sleep(&self, d: Duration) {
        self.advance(TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_test_clock_stands_still_until_moved() {
        let c = TestClock::at(t("2030-06-01T10:00:00Z"));
        assert_eq!(c.now(), c.now());
        c.advance(TimeDelta::hours(3));
        assert_eq!(c.now(), t("2030-06-01T13:00:00Z"));
        c.set(t("2031-01-01T00:00:00Z"));
        assert_eq!(c.now(), t("2031-01-01T00:00:00Z"));
    }

    #[test]
    fn a_wait_on_the_test_clock_moves_it_and_returns_at_once() {
        let c = TestClock::at(t("2030-06-01T10:00:00Z"));
        c.sleep(Duration::from_secs(3600));
        assert_eq!(c.now(), t("2030-06-01T11:00:00Z"));
    }

    #[test]
    fn a_started_clock_starts_where_it_is_told_and_never_goes_back() {
        let c = StartedClock::at(t("2030-06-01T10:00:00Z"));
        let a = c.now();
        assert!(a >= t("2030-06-01T10:00:00Z"));
        assert!(c.now() >= a);
    }

    #[test]
    fn today_is_the_local_day_of_now() {
        let c = TestClock::at(t("2030-06-01T12:00:00Z"));
        assert_eq!(c.today(), local_day(t("2030-06-01T12:00:00Z")));
    }

    #[test]
    fn clocks_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<SystemClock>();
        shared::<TestClock>();
        shared::<StartedClock>();
        shared::<Arc<dyn Clock>>();
    }
}
