//! The rules engine's time source: the wall clock in production, a
//! [`ManualClock`] that a test sets and advances.
//!
//! Every decision of the engine (`for` timers, cooldowns, approval expiry,
//! the evaluation grid) reads time through [`Clock`], so a test that drives
//! a [`ManualClock`] controls all of them without sleeping.
//!
//! ```
//! use std::time::Duration;
//! use fleetlake_rules::clock::{Clock, ManualClock};
//! let clock = ManualClock::new(1_000);
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(clock.now_ns(), 30_000_001_000);
//! ```

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The time source: the wall clock, or a test's.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> i64;
}

#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
    }
}

/// A clock that stands still until told otherwise.
///
/// # Invariants
/// Time only changes through [`ManualClock::set`] and
/// [`ManualClock::advance`]; it may be set backwards (to test a clock step).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ns: i64) -> Self {
        Self {
            now: AtomicI64::new(now_ns),
        }
    }

    pub fn set(&self, now_ns: i64) {
        self.now.store(now_ns, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by` (saturating) and returns the new time.
    pub fn advance(&self, by: Duration) -> i64 {
        let by = by.as_nanos().min(i64::MAX as u128) as i64;
        let before = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            })
            .expect("the update never declines");
        before.saturating_add(by)
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_stands_still_until_set_or_advanced() {
        let c = ManualClock::new(5);
        assert_eq!((c.now_ns(), c.now_ns()), (5, 5));
        assert_eq!(c.advance(Duration::from_millis(2)), 2_000_005);
        assert_eq!(c.now_ns(), 2_000_005);
        c.set(-7);
        assert_eq!(c.now_ns(), -7);
        c.set(i64::MAX - 1);
        assert_eq!(c.advance(Duration::from_secs(1)), i64::MAX);
    }

    #[test]
    fn system_clock_is_the_wall_clock() {
        let before = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let t = SystemClock.now_ns();
        let after = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        assert!(before <= t && t <= after);
    }

    #[test]
    fn a_clock_is_shared_behind_an_arc_dyn() {
        let c = std::sync::Arc::new(ManualClock::new(0));
        let shared: std::sync::Arc<dyn Clock> = c.clone();
        c.advance(Duration::from_secs(1));
        assert_eq!(shared.now_ns(), 1_000_000_000);
    }
}
