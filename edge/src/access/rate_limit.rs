//! `rate_limit`: a token bucket per key, kept as GCRA (one "theoretical
//! arrival time" per key, 16 bytes a key) so that a check is one map
//! lookup and a few integer operations under a sharded lock.
//!
//! A bucket holds `requests + burst` tokens refilled at `requests` per
//! `per`: with `requests = 5, per = 10s, burst = 0` the sixth request
//! within 10 s is refused. A key whose bucket is full again is idle and
//! may be dropped (it would be recreated full): shards sweep those when
//! they reach their share of `max_keys`, at most once per refill interval;
//! keys that still find no room share one overflow bucket, counted.
//!
//! Time is nanoseconds since the Unix epoch from the injected `Clock`.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{LimitKey, LimitScope, RateLimitConfig};

const SHARDS: usize = 16;

/// How a request's key is found.
#[derive(Debug)]
enum KeyBy {
    ClientIp,
    Header(HeaderName),
    Site,
}

/// One rule's (or site's) limiter.
#[derive(Debug)]
pub struct RateLimiter {
    key: KeyBy,
    pub(crate) scope: LimitScope,
    /// Nanoseconds per token.
    interval: u64,
    /// Nanoseconds of credit a full bucket holds: capacity × interval.
    tolerance: u64,
    requests: u32,
    per: Duration,
    shards: Box<[Mutex<Shard>]>,
    shard_cap: usize,
    overflow_tat: Mutex<u64>,
    overflowed: AtomicU64,
    hasher: foldhash::quality::RandomState,
    /// `RateLimit-Policy`, computed once.
    policy_header: HeaderValue,
    /// What it was made from, and where (`None`: the site's, else the
    /// rule's index): a reload keeps the buckets of a limiter whose both
    /// are unchanged.
    pub(crate) made_from: (Option<usize>, RateLimitConfig),
}

#[derive(Debug, Default)]
struct Shard {
    /// Key → theoretical arrival time (ns).
    tats: std::collections::HashMap<u128, u64, foldhash::fast::RandomState>,
    last_sweep: u64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    Allowed,
    /// Over the limit: the next token comes after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

/// GCRA, pure: `Ok(new tat)` when a token is left at `now`, else the wait
/// until there is one.
pub fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Result<u64, u64> {
    let tat = tat.max(now);
    let after = tat.saturating_add(interval);
    // after - now is the credit the bucket would owe after this request.
    if after - now > tolerance {
        Err(after - now - tolerance)
    } else {
        Ok(after)
    }
}

fn nanos(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> RateLimiter {
        RateLimiter::at(config, None)
    }

    /// A limiter of the site (`rule = None`) or of rule `rule`.
    pub fn at(config: &RateLimitConfig, rule: Option<usize>) -> RateLimiter {
        let requests = config.requests.max(1);
        let per_ns = u64::try_from(config.per.as_nanos()).unwrap_or(u64::MAX);
        let interval = (per_ns / u64::from(requests)).max(1);
        let capacity = u64::from(requests) + u64::from(config.burst);
        let key = match &config.key {
            LimitKey::ClientIp => KeyBy::ClientIp,
            LimitKey::Site => KeyBy::Site,
            // Validated: a header name.
            LimitKey::Header(name) => {
                HeaderName::from_bytes(name.as_bytes()).map_or(KeyBy::ClientIp, KeyBy::Header)
            }
        };
        let policy = format!("\"edge\";q={};w={}", requests, config.per.as_secs().max(1));
        RateLimiter {
            key,
            scope: config.scope,
            interval,
            tolerance: capacity.saturating_mul(interval),
            requests,
            per: config.per,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_cap: config.max_keys.div_ceil(SHARDS).max(1),
            overflow_tat: Mutex::new(0),
            overflowed: AtomicU64::new(0),
            hasher: foldhash::quality::RandomState::default(),
            policy_header: HeaderValue::from_str(&policy)
                .unwrap_or(HeaderValue::from_static("\"edge\"")),
            made_from: (rule, config.clone()),
        }
    }

    /// The key of a request from `client`.
    fn key_of(&self, client: IpAddr, headers: &HeaderMap) -> u128 {
        let ip = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        match &self.key {
            KeyBy::ClientIp => ip(client),
            KeyBy::Site => 0,
            KeyBy::Header(name) => match headers.get(name) {
                // Hashed: the value may be long; 64 bits of a keyed hash
                // make a collision between two clients unlikely and
                // unforgeable.
                Some(v) => u128::from(self.hasher.hash_one(v.as_bytes())) | (1 << 127),
                None => ip(client),
            },
        }
    }

    /// Takes a token for the request, or says how long to wait.
    pub fn check(&self, client: IpAddr, headers: &HeaderMap, now: SystemTime) -> LimitVerdict {
        let key = self.key_of(client, headers);
        self.check_key(key, nanos(now))
    }

    fn check_key(&self, key: u128, now: u64) -> LimitVerdict {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(shard) = self.shards.get(shard) else {
            return LimitVerdict::Allowed;
        };
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let decide = |tat: &mut u64| match gcra(*tat, now, self.interval, self.tolerance) {
            Ok(next) => {
                *tat = next;
                LimitVerdict::Allowed
            }
            Err(wait) => LimitVerdict::Limited {
                retry_after: Duration::from_nanos(wait),
            },
        };
        if let Some(tat) = shard.tats.get_mut(&key) {
            return decide(tat);
        }
        if shard.tats.len() >= self.shard_cap
            && now.saturating_sub(shard.last_sweep) >= self.interval
        {
            shard.last_sweep = now;
            // A bucket that has refilled holds nothing worth keeping.
            shard.tats.retain(|_, tat| *tat > now);
        }
        if shard.tats.len() < self.shard_cap {
            let mut tat = 0;
            let verdict = decide(&mut tat);
            shard.tats.insert(key, tat);
            return verdict;
        }
        drop(shard);
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        let mut tat = self.overflow_tat.lock().unwrap_or_else(|e| e.into_inner());
        decide(&mut tat)
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.tats.len()))
            .sum()
    }

    /// Checks that found no room since the last call (for the counter).
    pub fn take_overflowed(&self) -> u64 {
        self.overflowed.swap(0, Ordering::Relaxed)
    }

    pub fn policy_header(&self) -> &HeaderValue {
        &self.policy_header
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn per(&self) -> Duration {
        self.per
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32, per: u64, burst: u32, max_keys: usize) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests,
            per: Duration::from_secs(per),
            burst,
            key: LimitKey::ClientIp,
            scope: LimitScope::All,
            max_keys,
        })
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn sixth_within_ten_seconds_is_refused_then_refills() {
        let l = limiter(5, 10, 0, 100);
        let t0 = 1_000 * S;
        for i in 0..5 {
            assert_eq!(l.check_key(1, t0 + i), LimitVerdict::Allowed, "{i}");
        }
        let LimitVerdict::Limited { retry_after } = l.check_key(1, t0 + 5) else {
            panic!("sixth allowed");
        };
        assert!(retry_after <= Duration::from_secs(2) && retry_after > Duration::from_millis(1999));
        // another key is unaffected
        assert_eq!(l.check_key(2, t0 + 6), LimitVerdict::Allowed);
        // one token back after 2 s, all five after 10 s
        assert_eq!(l.check_key(1, t0 + 2 * S + 5), LimitVerdict::Allowed);
        assert!(matches!(
            l.check_key(1, t0 + 2 * S + 6),
            LimitVerdict::Limited { .. }
        ));
        for i in 0..5 {
            assert_eq!(
                l.check_key(1, t0 + 13 * S + i),
                LimitVerdict::Allowed,
                "{i}"
            );
        }
    }

    #[test]
    fn burst_adds_to_what_may_come_at_once() {
        let l = limiter(2, 1, 3, 100);
        let allowed = (0..10)
            .filter(|i| l.check_key(7, S + i) == LimitVerdict::Allowed)
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn distinct_keys_stay_within_the_cap() {
        let l = limiter(10, 1, 0, 1_000);
        for k in 0..100_000u128 {
            l.check_key(k, S);
        }
        assert!(l.keys() <= 1_000 + SHARDS, "{}", l.keys());
        assert!(l.take_overflowed() > 90_000);
        // once refilled, the idle keys of the new key's shard are swept
        // and it gets room of its own (other shards sweep on their turn)
        let before = l.keys();
        assert_eq!(l.check_key(1 << 100, 10 * S), LimitVerdict::Allowed);
        assert!(l.keys() < before - 20, "{before} -> {}", l.keys());
        assert_eq!(l.take_overflowed(), 0);
    }

    #[test]
    fn gcra_math() {
        // interval 2, capacity 5 (tolerance 10)
        assert_eq!(gcra(0, 100, 2, 10), Ok(102));
        assert_eq!(gcra(108, 100, 2, 10), Ok(110));
        assert_eq!(gcra(110, 100, 2, 10), Err(2));
        assert_eq!(gcra(u64::MAX, 0, 2, 10), Err(u64::MAX - 10));
    }
}
