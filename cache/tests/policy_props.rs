//! Properties of the RFC 9111 policy, checked on generated responses,
//! clocks and requests (proptest). The example-based tests beside each
//! module pin single cases; these pin the rules that must hold for all:
//!
//! - a response judged fresh is younger than its freshness lifetime, and
//!   only then (absent request directives);
//! - age never runs backwards as the clock moves on, and never drops
//!   below the age the response arrived with;
//! - `s-maxage` beats `max-age` beats `Expires`; `CDN-Cache-Control`
//!   replaces `Cache-Control`; duplicated delta-seconds take the smallest;
//! - nothing marked must-revalidate is served stale;
//! - a 304 refreshes headers but never the stored body or its framing;
//! - byte ranges answered never leave the representation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cache::CacheControl;
use cache::meta::{BodyLayout, ObjectMeta};
use cache::policy::{
    self, Exchange, FreshnessSource, PolicyOptions, Reuse, StoredPolicy, current_age,
};
use cache::range::{self, MAX_RANGES, RangeAnswer};
use cache::validation;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use proptest::prelude::*;

/// 2023-11-14T22:13:20Z: every generated clock is an offset from it.
const T0: u64 = 1_700_000_000;
/// RFC 9111 §1.2.2: larger delta-seconds are read as this.
const CAP: u64 = 1 << 31;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("generated values are visible ASCII")
}

fn exchange(request_secs: u64, response_secs: u64) -> Exchange {
    Exchange {
        request_time: at(request_secs),
        response_time: at(response_secs),
    }
}

/// Stores a 200 to a plain GET received at `T0`.
fn store(resp: &HeaderMap) -> Result<StoredPolicy, policy::NoCacheReason> {
    policy::storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        resp,
        exchange(T0, T0),
        &PolicyOptions::default(),
    )
}

fn stored_policy() -> impl Strategy<Value = StoredPolicy> {
    let window = proptest::option::of(0u64..100_000).prop_map(|w| w.map(Duration::from_secs));
    (
        0u64..1_000_000,
        0u64..1_000_000,
        any::<bool>(),
        any::<bool>(),
        window.clone(),
        window,
    )
        .prop_map(
            |(lifetime, initial, no_cache, must, swr, sie)| StoredPolicy {
                lifetime: Duration::from_millis(lifetime),
                source: FreshnessSource::MaxAge,
                corrected_initial_age: Duration::from_millis(initial),
                no_cache,
                must_revalidate: must,
                stale_while_revalidate: swr,
                stale_if_error: sie,
            },
        )
}

/// Request directives, valid and not.
fn request_directives() -> impl Strategy<Value = CacheControl> {
    let directive = prop_oneof![
        Just("no-cache".to_owned()),
        Just("max-stale".to_owned()),
        Just("max-age=x".to_owned()),
        (0u64..2_000).prop_map(|s| format!("max-age={s}")),
        (0u64..2_000).prop_map(|s| format!("max-stale={s}")),
        (0u64..2_000).prop_map(|s| format!("min-fresh={s}")),
        (0u64..2_000).prop_map(|s| format!("stale-if-error={s}")),
    ];
    proptest::collection::vec(directive, 0..4).prop_map(|d| CacheControl::parse(&d.join(", ")))
}

/// A delta-seconds argument: small, large, past the cap, or not a number.
fn delta() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..100_000).prop_map(|s| s.to_string()),
        1 => (CAP - 2..CAP + 2).prop_map(|s| s.to_string()),
        1 => Just("99999999999999999999999".to_owned()),
        1 => Just("-1".to_owned()),
        1 => Just("1.5".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Fresh means younger than the lifetime; and with no request
    /// directives, younger than the lifetime means fresh (unless
    /// `no-cache`).
    #[test]
    fn fresh_only_while_younger_than_lifetime(
        stored in stored_policy(),
        req in request_directives(),
        later in 0u64..2_000_000,
    ) {
        let response_time = at(T0);
        let now = response_time + Duration::from_millis(later);
        let age = current_age(&stored, response_time, now);
        let reuse = policy::evaluate(&stored, response_time, &req, now);
        if reuse == Reuse::Fresh {
            prop_assert!(age < stored.lifetime, "fresh at {age:?} of {:?}", stored.lifetime);
            prop_assert!(!stored.no_cache && !req.has("no-cache"));
        }
        let plain = policy::evaluate(&stored, response_time, &CacheControl::default(), now);
        prop_assert_eq!(
            plain == Reuse::Fresh,
            !stored.no_cache && age < stored.lifetime
        );
        if stored.must_revalidate && age >= stored.lifetime {
            prop_assert_eq!(reuse, Reuse::Revalidate, "served stale despite must-revalidate");
            prop_assert!(!policy::stale_if_error_allows(&stored, response_time, &req, now));
        }
    }

    /// Age grows exactly with the clock, and a clock that reads before the
    /// response time (a step backwards) gives the initial age, not less.
    #[test]
    fn age_is_monotonic_and_never_negative(
        stored in stored_policy(),
        response_offset in 0u64..1_000_000,
        a in 0u64..2_000_000,
        b in 0u64..2_000_000,
    ) {
        let response_time = at(T0) + Duration::from_millis(response_offset);
        let (early, late) = (a.min(b), a.max(b));
        let age_at = |ms: u64| current_age(&stored, response_time, at(T0) + Duration::from_millis(ms));
        prop_assert!(age_at(early) <= age_at(late));
        prop_assert!(age_at(early) >= stored.corrected_initial_age);
        if early >= response_offset {
            prop_assert_eq!(age_at(late) - age_at(early), Duration::from_millis(late - early));
        } else {
            prop_assert_eq!(age_at(early), stored.corrected_initial_age);
        }
    }

    /// `corrected_initial_age` (§4.2.3) covers both the apparent age and
    /// the upstream `Age` plus the time in flight, whatever the clocks say.
    #[test]
    fn corrected_initial_age_covers_age_and_date(
        date_offset in -100_000i64..100_000,
        age in proptest::option::of(0u64..u64::MAX),
        delay in 0u64..100,
        skew in 0u64..100,
    ) {
        let response = T0 + skew;
        let mut h = HeaderMap::new();
        let date = T0.checked_add_signed(date_offset).expect("in range");
        h.insert(header::DATE, value(&httpdate::fmt_http_date(at(date))));
        if let Some(age) = age {
            h.insert(header::AGE, HeaderValue::from(age));
        }
        let corrected = policy::corrected_initial_age(&h, exchange(response - delay, response));
        let apparent = Duration::from_secs(response.saturating_sub(date));
        let upstream = Duration::from_secs(age.unwrap_or(0).min(CAP) + delay);
        prop_assert_eq!(corrected, apparent.max(upstream));
    }

    /// `s-maxage` > `max-age` > `Expires`, duplicates take the smallest,
    /// an invalid value means stale (zero), and nothing exceeds 2^31 s.
    #[test]
    fn explicit_freshness_precedence(
        max_age in proptest::collection::vec(delta(), 0..3),
        s_maxage in proptest::collection::vec(delta(), 0..3),
        expires_in in proptest::option::of(0u64..1_000_000),
        extra in proptest::sample::select(vec!["", "public", "no-cache", "must-revalidate"]),
    ) {
        let mut directives: Vec<String> = max_age.iter().map(|v| format!("max-age={v}")).collect();
        directives.extend(s_maxage.iter().map(|v| format!("s-maxage={v}")));
        directives.push(extra.to_owned());
        let mut resp = HeaderMap::new();
        resp.insert(header::CACHE_CONTROL, value(&directives.join(", ")));
        resp.insert(header::DATE, value(&httpdate::fmt_http_date(at(T0))));
        if let Some(secs) = expires_in {
            resp.insert(header::EXPIRES, value(&httpdate::fmt_http_date(at(T0 + secs))));
        }
        // The reading the RFC asks for: any invalid makes it stale; else
        // the smallest, capped.
        let expected = |values: &[String]| -> Option<Duration> {
            if values.is_empty() {
                return None;
            }
            let secs = values.iter().map(|v| {
                v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse::<u64>().unwrap_or(CAP).min(CAP))
            });
            Some(Duration::from_secs(secs.collect::<Option<Vec<_>>>().map_or(0, |s| s.into_iter().min().unwrap_or(0))))
        };
        let stored = store(&resp);
        let stored = match stored {
            Ok(p) => p,
            Err(reason) => {
                // Only a response without any freshness information.
                prop_assert!(max_age.is_empty() && s_maxage.is_empty() && expires_in.is_none());
                prop_assert_eq!(reason, policy::NoCacheReason::NoFreshness);
                return Ok(());
            }
        };
        let (lifetime, source) = if let Some(l) = expected(&s_maxage) {
            (l, FreshnessSource::SMaxAge)
        } else if let Some(l) = expected(&max_age) {
            (l, FreshnessSource::MaxAge)
        } else if let Some(secs) = expires_in {
            (Duration::from_secs(secs), FreshnessSource::Expires)
        } else {
            return Err(TestCaseError::fail("stored without freshness information"));
        };
        prop_assert_eq!((stored.lifetime, stored.source), (lifetime, source));
        prop_assert!(stored.lifetime <= Duration::from_secs(CAP));
        prop_assert_eq!(
            stored.must_revalidate,
            !s_maxage.is_empty() || extra == "must-revalidate"
        );
        prop_assert_eq!(stored.no_cache, extra == "no-cache");
    }

    /// `CDN-Cache-Control` (RFC 9213) replaces `Cache-Control` entirely
    /// when honoured, and is ignored when not.
    #[test]
    fn cdn_cache_control_replaces_cache_control(
        cdn in 0u64..100_000,
        general in 0u64..100_000,
        honour in any::<bool>(),
    ) {
        let mut resp = HeaderMap::new();
        resp.insert(header::CACHE_CONTROL, value(&format!("s-maxage={general}, max-age={general}")));
        resp.insert(HeaderName::from_static("cdn-cache-control"), value(&format!("max-age={cdn}")));
        let opts = PolicyOptions { honor_cdn_cache_control: honour, ..PolicyOptions::default() };
        let stored = policy::storable(
            &Method::GET, &HeaderMap::new(), StatusCode::OK, &resp, exchange(T0, T0), &opts,
        ).expect("storable");
        if honour {
            prop_assert_eq!((stored.lifetime, stored.source), (Duration::from_secs(cdn), FreshnessSource::MaxAge));
            prop_assert!(!stored.must_revalidate, "the general s-maxage no longer applies");
        } else {
            prop_assert_eq!((stored.lifetime, stored.source), (Duration::from_secs(general), FreshnessSource::SMaxAge));
        }
    }

    /// A stored response is fresh from its arrival until its lifetime (less
    /// the age it arrived with) has passed, and not a second longer.
    #[test]
    fn stored_response_expires_on_time(
        max_age in 0u64..100_000,
        upstream_age in 0u64..200_000,
        later in 0u64..300_000,
    ) {
        let mut resp = HeaderMap::new();
        resp.insert(header::CACHE_CONTROL, value(&format!("max-age={max_age}")));
        resp.insert(header::AGE, HeaderValue::from(upstream_age));
        let stored = store(&resp).expect("storable");
        let reuse = policy::evaluate(&stored, at(T0), &CacheControl::default(), at(T0 + later));
        prop_assert_eq!(reuse == Reuse::Fresh, upstream_age + later < max_age);
    }

    /// A 304 that matches refreshes the headers it carries but never the
    /// stored body, its length or its framing; one that does not match is
    /// refused.
    #[test]
    fn not_modified_keeps_the_body(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        lied_length in 0u64..10_000,
        max_age in 0u64..100_000,
        extra in proptest::collection::vec(("x-[a-z]{1,8}", "[ -~]{0,16}"), 0..4),
        other_etag in any::<bool>(),
    ) {
        let body = Bytes::from(body);
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, value("\"v1\""));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.insert(header::CACHE_CONTROL, value("max-age=1"));
        let mut meta = ObjectMeta::fresh(headers, body.clone(), Duration::from_secs(1));

        let mut not_modified = HeaderMap::new();
        not_modified.insert(header::ETAG, value(if other_etag { "\"v2\"" } else { "\"v1\"" }));
        not_modified.insert(header::CONTENT_LENGTH, HeaderValue::from(lied_length));
        not_modified.insert(header::CONTENT_RANGE, value("bytes 0-0/1"));
        not_modified.insert(header::CACHE_CONTROL, value(&format!("max-age={max_age}")));
        for (name, v) in &extra {
            not_modified.append(HeaderName::from_bytes(name.as_bytes()).expect("name"), value(v));
        }
        prop_assert_eq!(validation::validators_match(&meta.headers, &not_modified), !other_etag);
        if other_etag {
            return Ok(());
        }
        validation::merge_not_modified(&mut meta.headers, &not_modified);
        prop_assert_eq!(&meta.body, &BodyLayout::Inline(body.clone()));
        prop_assert_eq!(&meta.headers[header::CONTENT_LENGTH], &HeaderValue::from(body.len()));
        prop_assert!(!meta.headers.contains_key(header::CONTENT_RANGE));
        prop_assert_eq!(&meta.headers[header::CACHE_CONTROL], &value(&format!("max-age={max_age}")));
        for (name, v) in &extra {
            let got: Vec<_> = meta.headers.get_all(name.as_str()).iter().collect();
            prop_assert!(got.contains(&&value(v)));
        }
        // Refreshed, stored and read back: still the same body.
        meta.policy = store(&meta.headers).expect("storable");
        let mut encoded = Vec::new();
        meta.encode(&mut encoded);
        let read = ObjectMeta::decode(&encoded).expect("decodes");
        prop_assert_eq!(read.body, BodyLayout::Inline(body));
        prop_assert_eq!(read.policy.lifetime, Duration::from_secs(max_age));
    }

    /// Whatever ranges are asked for, an answer stays within the
    /// representation: sorted, disjoint, at most `MAX_RANGES`, and never
    /// more bytes than it has.
    #[test]
    fn ranges_never_exceed_the_length(
        len in prop_oneof![0u64..2_000, Just(u64::MAX), any::<u64>()],
        specs in proptest::collection::vec(
            (proptest::option::of(0u64..3_000), proptest::option::of(0u64..3_000)),
            1..24,
        ),
    ) {
        let text: Vec<String> = specs
            .iter()
            .map(|(first, last)| match (first, last) {
                (Some(f), Some(l)) => format!("{f}-{}", f.max(l)),
                (Some(f), None) => format!("{f}-"),
                (None, Some(l)) => format!("-{l}"),
                (None, None) => "0-0".to_owned(),
            })
            .collect();
        let mut req = HeaderMap::new();
        req.insert(header::RANGE, value(&format!("bytes={}", text.join(", "))));
        match range::evaluate(&req, &HeaderMap::new(), len) {
            RangeAnswer::Partial(ranges) => {
                prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
                let mut total = 0u64;
                for (i, r) in ranges.iter().enumerate() {
                    prop_assert!(r.start <= r.end && r.end < len, "{r:?} of {len}");
                    if i > 0 {
                        prop_assert!(ranges[i - 1].end + 1 < r.start, "not merged: {ranges:?}");
                    }
                    total += r.len();
                }
                prop_assert!(total <= len);
            }
            RangeAnswer::Unsatisfiable => {
                // No spec starts inside the representation.
                for (first, last) in &specs {
                    match (first, last) {
                        (Some(f), _) => prop_assert!(*f >= len),
                        (None, Some(l)) => prop_assert!(*l == 0 || len == 0),
                        (None, None) => prop_assert!(len == 0),
                    }
                }
            }
            RangeAnswer::Full => {
                // Only when merging left more than MAX_RANGES pieces.
                prop_assert!(specs.len() > MAX_RANGES, "{text:?} of {len}");
            }
        }
    }
}
