//! Time as a dependency. Everything that decides by the clock (schedules, quota windows,
//! retries, reconciliation grace) takes a [`Clock`], so tests drive time by hand instead
//! of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// A source of the current time, in Unix milliseconds (UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;

    /// For a clock moved by hand: a receiver that sees every move, so that actors waiting on
    /// timers computed from this clock look again (their timers run on real time). `None` for
    /// a clock that moves by itself.
    fn moves(&self) -> Option<watch::Receiver<()>> {
        None
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<ManualTime>);

#[derive(Debug)]
struct ManualTime {
    now_ms: AtomicI64,
    moved: watch::Sender<()>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock(Arc::new(ManualTime {
            now_ms: AtomicI64::new(now_ms),
            moved: watch::Sender::new(()),
        }))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.now_ms.store(now_ms, Ordering::SeqCst);
        self.0.moved.send_replace(());
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.now_ms.fetch_add(ms, Ordering::SeqCst);
        self.0.moved.send_replace(());
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.now_ms.load(Ordering::SeqCst)
    }

    fn moves(&self) -> Option<watch::Receiver<()>> {
        Some(self.0.moved.subscribe())
    }
}

/// The shared clock handle passed around the daemon.
pub type SharedClock = Arc<dyn Clock>;

/// Formats Unix milliseconds the way the API shows time: ISO 8601 UTC, second precision,
/// with `Z` (`2025-11-16T21:30:00Z`).
pub fn format_api_time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => String::from("1970-01-01T00:00:00Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_ms(500);
        assert_eq!(clock.now_ms(), 1_500);
        clock.set(42);
        assert_eq!(clock.now_ms(), 42);
    }

    #[test]
    fn a_manual_clock_tells_its_watchers_when_it_moves() {
        let clock = ManualClock::new(1_000);
        let mut moves = clock.moves().expect("a manual clock can be watched");
        assert!(!moves.has_changed().unwrap());
        clock.advance_ms(1);
        assert!(moves.has_changed().unwrap());
        moves.mark_unchanged();
        clock.set(5);
        assert!(moves.has_changed().unwrap());
        assert!(SystemClock.moves().is_none());
    }

    #[test]
    fn api_time_is_second_precision_utc_with_z() {
        assert_eq!(format_api_time(1_763_328_600_123), "2025-11-16T21:30:00Z");
        assert_eq!(format_api_time(0), "1970-01-01T00:00:00Z");
    }
}
