//! HTTP-dates as the `cache` crate reads them: `Date`, `Expires` and
//! `Last-Modified` for freshness (`policy`), `If-Modified-Since` and
//! `If-Unmodified-Since` (`validation`), the date form of `If-Range`
//! (`range`) and the `Last-Modified` validator of slices (`slice`).
//! They all read through `cache::date::parse`, driven here through the
//! public functions that use it; the oracle is `httpdate` itself, given
//! the text in the canonical case that RFC 9110 §5.6.7 says to accept in
//! any case (issue 25).
//!
//! The input is text lines: a `Date`, an `Expires`/`If-*` date, a
//! `Last-Modified`, and two decimal numbers (seconds since the epoch).
//!
//! Properties:
//! - every reader accepts a value exactly when `httpdate` accepts its
//!   trimmed text in canonical case (never panics on the rest), and falls back as the RFC
//!   says (`Date` to the response time, a bad `Expires` to "expired");
//! - a heuristic lifetime is at most a tenth of the `Last-Modified` age
//!   and at most its cap;
//! - `Age`/`Date` give a corrected initial age no smaller than either;
//! - formatting a time and reading it back through the cache gives it back
//!   (`Expires - Date` is the lifetime to the second).
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache::CacheControl;
use cache::policy::{self, Exchange, FreshnessSource, PolicyOptions};
use cache::range::{self, RangeAnswer};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use libfuzzer_sys::fuzz_target;

/// 9999-12-31T23:59:59Z, the last second an HTTP-date can name.
const MAX_DATE_SECS: u64 = 253_402_300_799;

/// What every date reader of the cache should make of a field value.
fn oracle(v: Option<&HeaderValue>) -> Option<SystemTime> {
    let text = v?.to_str().ok()?.trim();
    // No HTTP-date is longer; the cache does not look further.
    if text.len() > 40 {
        return None;
    }
    httpdate::parse_http_date(&cache::date::canonical_case(text)).ok()
}

fn with(pairs: &[(header::HeaderName, &Option<HeaderValue>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Some(v) = value {
            h.insert(name.clone(), v.clone());
        }
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let mut value = || HeaderValue::from_bytes(lines.next()?).ok();
    let (a, b, c) = (value(), value(), value());
    let numbers: Vec<u64> = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();

    let response_time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let opts = PolicyOptions::default();
    let empty = CacheControl::default();

    // Expires against Date (or the response time when Date is unusable).
    let h = with(&[(header::DATE, &a), (header::EXPIRES, &b)]);
    let lifetime = policy::freshness_lifetime(StatusCode::OK, &h, &empty, response_time, &opts);
    let date = oracle(a.as_ref()).unwrap_or(response_time);
    if b.is_some() {
        let expect = oracle(b.as_ref())
            .and_then(|e| e.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        assert_eq!(lifetime, Some((expect, FreshnessSource::Expires)));
    } else {
        assert_eq!(lifetime, None, "no freshness information, no lifetime");
    }

    // Heuristic freshness from Last-Modified.
    let h = with(&[(header::DATE, &a), (header::LAST_MODIFIED, &c)]);
    let lifetime = policy::freshness_lifetime(StatusCode::OK, &h, &empty, response_time, &opts);
    match oracle(c.as_ref()).map(|lm| date.duration_since(lm)) {
        Some(Ok(since)) => {
            let (l, source) = lifetime.expect("a heuristic lifetime");
            assert_eq!(source, FreshnessSource::Heuristic);
            assert!(l <= opts.heuristic_max && l <= since / 10 + Duration::from_millis(1));
        }
        _ => assert_eq!(lifetime, None),
    }

    // Age and Date: the corrected initial age covers both.
    let age_secs = numbers.first().copied().unwrap_or(0);
    let age = HeaderValue::from(age_secs);
    let mut h = with(&[(header::DATE, &a)]);
    h.insert(header::AGE, age);
    let exchange = Exchange {
        request_time: response_time - Duration::from_secs(2),
        response_time,
    };
    let corrected = policy::corrected_initial_age(&h, exchange);
    let apparent = response_time
        .duration_since(oracle(a.as_ref()).unwrap_or(response_time))
        .unwrap_or(Duration::ZERO);
    let upstream = Duration::from_secs(age_secs.min(1 << 31) + 2);
    assert_eq!(corrected, apparent.max(upstream));

    // Client conditionals against a stored Last-Modified.
    let stored = with(&[(header::LAST_MODIFIED, &c)]);
    let lm = oracle(c.as_ref());
    let since = oracle(b.as_ref());
    let ims = with(&[(header::IF_MODIFIED_SINCE, &b)]);
    let answer = cache::validation::evaluate_client_conditionals(
        &Method::GET,
        &ims,
        StatusCode::OK,
        &stored,
    );
    let not_modified = matches!((lm, since), (Some(lm), Some(s)) if lm <= s);
    assert_eq!(answer, not_modified.then_some(StatusCode::NOT_MODIFIED));
    let ius = with(&[(header::IF_UNMODIFIED_SINCE, &b)]);
    let answer = cache::validation::evaluate_client_conditionals(
        &Method::GET,
        &ius,
        StatusCode::OK,
        &stored,
    );
    let failed = matches!((lm, since), (Some(lm), Some(s)) if lm > s);
    assert_eq!(answer, failed.then_some(StatusCode::PRECONDITION_FAILED));

    // If-Range with a date: only an exact match with Last-Modified.
    if let Some(if_range) = &b {
        let mut req = HeaderMap::new();
        req.insert(header::RANGE, HeaderValue::from_static("bytes=0-0"));
        req.insert(header::IF_RANGE, if_range.clone());
        let partial = range::evaluate(&req, &stored, 10) != RangeAnswer::Full;
        let text = if_range.to_str().map(str::trim).unwrap_or("\"");
        let is_date = !text.starts_with('"') && !text.starts_with("W/");
        let matches = is_date && since.is_some() && since == lm;
        assert_eq!(partial, matches, "If-Range {text:?}");
    }

    // Slices trust a Last-Modified only a minute older than Date.
    let h = with(&[(header::DATE, &a), (header::LAST_MODIFIED, &c)]);
    let strong = match (oracle(a.as_ref()), lm) {
        (Some(served), Some(modified)) => served
            .duration_since(modified)
            .is_ok_and(|gap| gap.as_secs() >= 60),
        _ => false,
    };
    assert_eq!(cache::slice::validator(&h).is_some(), strong);

    // Round trip: format two times, read them back as Date and Expires.
    if let [t0, t1, ..] = numbers[..] {
        let (t0, t1) = (t0 % (MAX_DATE_SECS + 1), t1 % (MAX_DATE_SECS + 1));
        let fmt = |t: u64| {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(t));
            // Surrounding whitespace is not part of the value (RFC 9110 §5.5).
            Some(HeaderValue::from_str(&format!(" {text}\t")).expect("ascii"))
        };
        let h = with(&[(header::DATE, &fmt(t0)), (header::EXPIRES, &fmt(t1))]);
        let lifetime = policy::freshness_lifetime(StatusCode::OK, &h, &empty, response_time, &opts);
        let expect = Duration::from_secs(t1.saturating_sub(t0));
        assert_eq!(lifetime, Some((expect, FreshnessSource::Expires)));
    }
});
