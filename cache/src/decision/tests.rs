//! The decision as a table: stored state × request directives × purge
//! verdict × time → decision.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::CacheKey;
use crate::policy::StoredPolicy;
use crate::store::Tier;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// An object received at T0, fresh for 60 s, with `swr` / `sie` windows,
/// `must-revalidate` or `no-cache` as asked, and an ETag.
#[derive(Clone, Copy, Default)]
struct Stored {
    swr: Option<u64>,
    must_revalidate: bool,
    no_cache: bool,
}

fn found(s: Stored) -> Found {
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
    let mut meta = ObjectMeta::fresh(headers, Bytes::from_static(b"x"), Duration::from_secs(60));
    meta.request_time = at(T0);
    meta.response_time = at(T0);
    meta.policy = StoredPolicy {
        stale_while_revalidate: s.swr.map(Duration::from_secs),
        must_revalidate: s.must_revalidate,
        no_cache: s.no_cache,
        ..StoredPolicy::fresh_for(Duration::from_secs(60))
    };
    Found {
        meta: Arc::new(meta),
        tier: Tier::Memory,
        object_key: CacheKey::for_request(&Method::GET, "http", "example.com", "/a")
            .expect("a key"),
    }
}

/// The decision's name, and for revalidations the `fwd=` reason.
fn run(stored: Option<Stored>, complete: bool, req: &str, purge: PurgeVerdict, now: u64) -> String {
    let lookup = Lookup {
        found: stored.map(found),
        complete,
    };
    match decide(lookup, &CacheControl::parse(req), purge, at(now)) {
        Decision::Revalidate(_, c) => {
            assert_eq!(c.validators[0].0, IF_NONE_MATCH, "validators sent");
            format!("revalidate/{:?}", c.reason).to_lowercase()
        }
        other => other.as_str().to_owned(),
    }
}

/// Stored, complete, request directives, purge, now (s after T0), decision.
type Row = (
    Option<Stored>,
    bool,
    &'static str,
    PurgeVerdict,
    u64,
    &'static str,
);

#[test]
fn decisions() {
    use PurgeVerdict::{Invalid, Stale, Valid};
    let plain = Some(Stored::default());
    let swr = Some(Stored {
        swr: Some(30),
        ..Stored::default()
    });
    let must = Some(Stored {
        must_revalidate: true,
        ..Stored::default()
    });
    let no_cache = Some(Stored {
        no_cache: true,
        ..Stored::default()
    });
    let soft_at_10 = Stale(at(T0 + 10));
    #[rustfmt::skip]
    let table: &[Row] = &[
        // stored, complete, request directives, purge, now (s after T0), decision
        (None,     true,  "",               Valid,      10,  "fill"),
        (None,     true,  "only-if-cached", Valid,      10,  "unavailable"),
        (plain,    true,  "",               Valid,      10,  "serve"),
        (plain,    true,  "",               Valid,      59,  "serve"),
        (plain,    true,  "",               Valid,      60,  "revalidate/stale"),
        (plain,    true,  "no-cache",       Valid,      10,  "revalidate/request"),
        (plain,    true,  "max-age=5",      Valid,      10,  "revalidate/stale"),
        (plain,    true,  "min-fresh=55",   Valid,      10,  "revalidate/stale"),
        (plain,    true,  "max-stale=30",   Valid,      80,  "serve-stale"),
        (plain,    true,  "max-stale=10",   Valid,      80,  "revalidate/stale"),
        (must,     true,  "max-stale=30",   Valid,      80,  "revalidate/stale"),
        (no_cache, true,  "",               Valid,      10,  "revalidate/stale"),
        (swr,      true,  "",               Valid,      80,  "serve-then-refresh"),
        (swr,      true,  "",               Valid,      91,  "revalidate/stale"),
        // only-if-cached: served when it needs nothing from the origin
        (plain,    true,  "only-if-cached", Valid,      10,  "serve"),
        (plain,    false, "only-if-cached", Valid,      10,  "unavailable"),
        (plain,    false, "",               Valid,      10,  "serve"),
        (plain,    true,  "only-if-cached", Valid,      70,  "unavailable"),
        (swr,      true,  "only-if-cached", Valid,      80,  "serve-then-refresh"),
        // purges: hard is a miss, soft expires the object as of the purge
        (plain,    true,  "",               Invalid,    10,  "fill"),
        (plain,    true,  "only-if-cached", Invalid,    10,  "unavailable"),
        (plain,    true,  "",               soft_at_10, 20,  "revalidate/stale"),
        (plain,    true,  "max-stale=15",   soft_at_10, 20,  "serve-stale"),
        (swr,      true,  "",               soft_at_10, 20,  "serve-then-refresh"),
        (swr,      true,  "",               soft_at_10, 50,  "revalidate/stale"),
    ];
    for (i, (stored, complete, req, purge, now, want)) in table.iter().enumerate() {
        let got = run(*stored, *complete, req, *purge, T0 + now);
        assert_eq!(got, *want, "row {i}: req {req:?}, {purge:?}, t+{now}");
    }
}

#[test]
fn a_soft_purge_shortens_the_lifetime_to_the_age_at_the_purge() {
    let found = found(Stored::default());
    let purged = apply_purge(found.clone(), PurgeVerdict::Stale(at(T0 + 10))).expect("kept");
    assert_eq!(purged.meta.policy.lifetime, Duration::from_secs(10));
    let later = apply_purge(found.clone(), PurgeVerdict::Stale(at(T0 + 600))).expect("kept");
    assert_eq!(
        later.meta.policy.lifetime,
        Duration::from_secs(60),
        "never longer"
    );
    assert!(apply_purge(found.clone(), PurgeVerdict::Invalid).is_none());
    let kept = apply_purge(found.clone(), PurgeVerdict::Valid).expect("kept");
    assert_eq!(kept.meta.policy.lifetime, found.meta.policy.lifetime);
}
