//! `Clock`: the one source of "now" for cache semantics (ages, freshness,
//! purge times, hit-for-pass windows). The proxy, the store's users, the
//! fills and the purger all get the same `Clock`, so that tests can age
//! every stored object at once with [`Clock::advance`] instead of sleeping.
//!
//! Timeouts (connect, read, idle, fill waits) are not cache semantics: they
//! stay on tokio's monotonic clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Wall-clock time as the cache sees it. Cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: the system clock plus this many
    /// nanoseconds, which only grow. Time keeps flowing between advances,
    /// so events keep their real order (a fetch after a purge is still
    /// later than the purge).
    offset: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { offset: None }
    }

    /// The system clock, moved forward by every [`advance`](Self::advance)
    /// of this clock or of any of its clones: for tests.
    pub fn adjustable() -> Self {
        Clock {
            offset: Some(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        // The one place in the cache's semantics that reads the system clock.
        let now = SystemTime::now();
        match &self.offset {
            None => now,
            Some(offset) => now + Duration::from_nanos(offset.load(Ordering::Relaxed)),
        }
    }

    /// Moves this clock (and its clones) forward by `by`. Returns false,
    /// and does nothing, on the system clock.
    pub fn advance(&self, by: Duration) -> bool {
        let Some(offset) = &self.offset else {
            return false;
        };
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = offset.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
            Some(o.saturating_add(nanos))
        });
        true
    }

    /// Whether this clock can be advanced.
    pub fn is_adjustable(&self) -> bool {
        self.offset.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_cannot_be_moved() {
        let clock = Clock::system();
        assert!(!clock.advance(Duration::from_secs(10)));
        let drift = clock
            .now()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        assert!(drift < Duration::from_secs(1));
    }

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::adjustable();
        let other = clock.clone();
        let before = other.now();
        assert!(clock.advance(Duration::from_secs(3600)));
        let after = other.now();
        let moved = after.duration_since(before).expect("forward");
        assert!(moved >= Duration::from_secs(3600));
        assert!(moved < Duration::from_secs(3601));
    }
}
