//! Whether a peer should get traffic: active probes (rise/fall), passive
//! failure counting with ejection and backoff, and a cap on concurrent
//! requests (circuit breaker). All state is atomics: the request path reads
//! it without locks.
//!
//! The probes themselves are sent by `edge` (this crate knows no sockets);
//! they report here through [`PeerHealth::probe`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Thresholds, the same for every peer of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// Consecutive failures (connect errors, timeouts, 5xx) that eject a
    /// peer; 0 never ejects. nginx's `max_fails`.
    pub max_fails: u32,
    /// How long the first ejection lasts; each further ejection in a row
    /// doubles it up to `max_ejection`. nginx's `fail_timeout`.
    pub fail_timeout: Duration,
    pub max_ejection: Duration,
    /// Concurrent requests a peer may hold; 0 is unlimited.
    pub max_conns: u32,
    /// Consecutive successful probes that bring a down peer back.
    pub rise: u32,
    /// Consecutive failed probes that take a peer down.
    pub fall: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            max_fails: 3,
            fail_timeout: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_conns: 0,
            rise: 2,
            fall: 3,
        }
    }
}

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The health of one peer.
#[derive(Debug)]
pub struct PeerHealth {
    policy: HealthPolicy,
    /// What the active probes say (up until they say otherwise).
    probed_up: AtomicBool,
    /// Probe results in a row: positive successes, negative failures.
    probe_streak: AtomicI32,
    /// Request failures in a row.
    failures_in_row: AtomicU32,
    /// Ejections in a row (reset by a success), for the backoff.
    ejections_in_row: AtomicU32,
    /// `now_ms()` until which the peer is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    /// Requests in flight.
    active: AtomicU32,
    failures_total: AtomicU64,
    ejections_total: AtomicU64,
}

/// What `/peers` shows about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub up: bool,
    pub probed_up: bool,
    /// Remaining ejection.
    pub ejected_for: Option<Duration>,
    pub active: u32,
    pub failures_in_row: u32,
    pub failures_total: u64,
    pub ejections_total: u64,
}

impl PeerHealth {
    pub fn new(policy: HealthPolicy) -> Self {
        PeerHealth {
            policy,
            probed_up: AtomicBool::new(true),
            probe_streak: AtomicI32::new(0),
            failures_in_row: AtomicU32::new(0),
            ejections_in_row: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active: AtomicU32::new(0),
            failures_total: AtomicU64::new(0),
            ejections_total: AtomicU64::new(0),
        }
    }

    /// This peer's state under new thresholds (a config reload changed
    /// them): what the probes and failures said so far carries over. The
    /// requests in flight stay counted on `self`, where their guards
    /// return them, so under a new `max_conns` they briefly go uncounted.
    pub fn carried_to(&self, policy: HealthPolicy) -> PeerHealth {
        let copy = |a: &AtomicU64| AtomicU64::new(a.load(Ordering::Relaxed));
        PeerHealth {
            policy,
            probed_up: AtomicBool::new(self.probed_up.load(Ordering::Relaxed)),
            probe_streak: AtomicI32::new(self.probe_streak.load(Ordering::Relaxed)),
            failures_in_row: AtomicU32::new(self.failures_in_row.load(Ordering::Relaxed)),
            ejections_in_row: AtomicU32::new(self.ejections_in_row.load(Ordering::Relaxed)),
            ejected_until: copy(&self.ejected_until),
            active: AtomicU32::new(0),
            failures_total: copy(&self.failures_total),
            ejections_total: copy(&self.ejections_total),
        }
    }

    /// The thresholds this peer is judged by.
    pub fn policy(&self) -> &HealthPolicy {
        &self.policy
    }

    /// Whether the peer should get new requests: probes say up and it is
    /// not ejected. (The concurrency cap is checked by [`try_acquire`].)
    ///
    /// [`try_acquire`]: PeerHealth::try_acquire
    pub fn is_up(&self) -> bool {
        self.probed_up.load(Ordering::Relaxed) && !self.is_ejected()
    }

    fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms()
    }

    /// Requests in flight.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops, unless the peer
    /// already holds `max_conns`.
    pub fn try_acquire(self: &std::sync::Arc<Self>) -> Option<ActiveGuard> {
        let max = self.policy.max_conns;
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| ActiveGuard {
            health: self.clone(),
        })
    }

    /// An exchange went well: the failure streak and backoff end.
    pub fn record_success(&self) {
        self.failures_in_row.store(0, Ordering::Relaxed);
        self.ejections_in_row.store(0, Ordering::Relaxed);
    }

    /// An exchange failed. Returns true if this failure ejected the peer.
    pub fn record_failure(&self) -> bool {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let in_row = self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
        if self.policy.max_fails == 0 || in_row < self.policy.max_fails {
            return false;
        }
        let now = now_ms();
        let current = self.ejected_until.load(Ordering::Relaxed);
        if current > now {
            return false;
        }
        let ejections = self.ejections_in_row.load(Ordering::Relaxed);
        let backoff = self
            .policy
            .fail_timeout
            .saturating_mul(1u32 << ejections.min(16))
            .min(self.policy.max_ejection);
        let until = now.saturating_add(u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX));
        // One ejection per streak even when failures arrive together: only
        // the failure that moves `ejected_until` counts.
        if self
            .ejected_until
            .compare_exchange(current, until, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.ejections_in_row.fetch_add(1, Ordering::Relaxed);
        // Once the ejection ends, one more failure in a row re-ejects the
        // peer with a longer backoff; a success resets everything.
        self.failures_in_row
            .store(self.policy.max_fails.saturating_sub(1), Ordering::Relaxed);
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// An active probe's result. Returns `Some(up)` when it changed the
    /// probed state.
    pub fn probe(&self, ok: bool) -> Option<bool> {
        let old = self
            .probe_streak
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(next_streak(ok, s))
            })
            .unwrap_or(0);
        let streak = next_streak(ok, old);
        let was_up = self.probed_up.load(Ordering::Relaxed);
        if !was_up && ok && streak >= self.policy.rise.max(1) as i32 {
            self.probed_up.store(true, Ordering::Relaxed);
            // A peer that answers its probes again is given traffic at
            // once, whatever the passive backoff said.
            self.ejected_until.store(0, Ordering::Relaxed);
            self.record_success();
            return Some(true);
        }
        if was_up && !ok && -streak >= self.policy.fall.max(1) as i32 {
            self.probed_up.store(false, Ordering::Relaxed);
            return Some(false);
        }
        None
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = now_ms();
        HealthSnapshot {
            up: self.is_up(),
            probed_up: self.probed_up.load(Ordering::Relaxed),
            ejected_for: (until > now).then(|| Duration::from_millis(until - now)),
            active: self.active(),
            failures_in_row: self.failures_in_row.load(Ordering::Relaxed),
            failures_total: self.failures_total.load(Ordering::Relaxed),
            ejections_total: self.ejections_total.load(Ordering::Relaxed),
        }
    }
}

/// A probe streak after one more result: successes count up, failures
/// down, and a change of result starts over.
fn next_streak(ok: bool, streak: i32) -> i32 {
    match (ok, streak) {
        (true, s) if s > 0 => s.saturating_add(1),
        (true, _) => 1,
        (false, s) if s < 0 => s.saturating_sub(1),
        (false, _) => -1,
    }
}

/// A request in flight on a peer; dropping it ends the count.
#[derive(Debug)]
pub struct ActiveGuard {
    health: std::sync::Arc<PeerHealth>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.health.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Retries allowed as a fraction of recent requests, so that a dying origin
/// is not hit by every request twice: each request deposits `ratio` tokens,
/// each retry spends one, and the balance is capped (a burst of at most
/// `cap` retries after a calm period).
#[derive(Debug)]
pub struct RetryBudget {
    /// Tokens in thousandths.
    milli_tokens: AtomicU64,
    per_request: u64,
    cap: u64,
}

impl RetryBudget {
    pub fn new(ratio: f64, cap: u32) -> Self {
        let cap = u64::from(cap) * 1000;
        RetryBudget {
            milli_tokens: AtomicU64::new(cap),
            per_request: (ratio.clamp(0.0, 1.0) * 1000.0) as u64,
            cap,
        }
    }

    /// A request was sent.
    pub fn deposit(&self) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(self.per_request).min(self.cap))
            });
    }

    /// Spends a retry if the budget has one.
    pub fn try_spend(&self) -> bool {
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            max_fails: 2,
            fail_timeout: Duration::from_millis(50),
            max_ejection: Duration::from_millis(150),
            max_conns: 2,
            rise: 2,
            fall: 2,
        }
    }

    #[test]
    fn consecutive_failures_eject_with_growing_backoff() {
        let h = PeerHealth::new(policy());
        assert!(!h.record_failure());
        assert!(h.is_up());
        assert!(h.record_failure(), "second failure in a row ejects");
        assert!(!h.is_up());
        let first = h.snapshot().ejected_for.unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.is_up(), "back after fail_timeout");
        assert!(h.record_failure(), "one more failure re-ejects");
        let second = h.snapshot().ejected_for.unwrap();
        assert!(second > first, "{second:?} after {first:?}");
        std::thread::sleep(Duration::from_millis(110));
        h.record_success();
        assert!(h.is_up());
        assert!(!h.record_failure(), "a success resets the streak");
    }

    #[test]
    fn a_success_between_failures_keeps_the_peer_in() {
        let h = PeerHealth::new(policy());
        for _ in 0..10 {
            assert!(!h.record_failure());
            h.record_success();
        }
        assert!(h.is_up());
    }

    #[test]
    fn probes_take_a_peer_down_and_bring_it_back() {
        let h = PeerHealth::new(policy());
        assert_eq!(h.probe(false), None);
        assert_eq!(h.probe(false), Some(false));
        assert!(!h.is_up());
        assert_eq!(h.probe(true), None);
        assert_eq!(h.probe(false), None, "the rise streak restarts");
        assert_eq!(h.probe(true), None);
        assert_eq!(h.probe(true), Some(true));
        assert!(h.is_up());
    }

    #[test]
    fn the_circuit_breaker_caps_requests_in_flight() {
        let h = Arc::new(PeerHealth::new(policy()));
        let a = h.try_acquire().unwrap();
        let _b = h.try_acquire().unwrap();
        assert!(h.try_acquire().is_none());
        assert_eq!(h.active(), 2);
        drop(a);
        assert!(h.try_acquire().is_some());
    }

    #[test]
    fn the_retry_budget_follows_the_request_rate() {
        let budget = RetryBudget::new(0.1, 2);
        assert!(budget.try_spend());
        assert!(budget.try_spend());
        assert!(!budget.try_spend(), "burst spent");
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.try_spend(), "one retry per ten requests");
        assert!(!budget.try_spend());
    }
}
