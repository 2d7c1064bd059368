//! `Cache-Control` (and its CDN cousins) and `Vary`, as parsed by the
//! `cache` crate. The input is header lines separated by `\n`; each line is
//! used as a `Cache-Control`, a `CDN-Cache-Control` and a `Vary` line.
//!
//! Properties:
//! - no delta-seconds directive ever exceeds 2^31 (RFC 9111 §1.2.2), and no
//!   explicit freshness lifetime either;
//! - directive names are case-insensitive;
//! - several field lines read as one comma-joined line;
//! - `s-maxage` beats `max-age` beats `Expires`; `no-store`/`private` are
//!   never stored; `s-maxage` implies must-revalidate;
//! - `CDN-Cache-Control` replaces `Cache-Control` entirely (RFC 9213);
//! - `Vary: *` is the only way `vary_names` says "never matches", and the
//!   policy refuses to store exactly those responses;
//! - variant keys ignore how a Vary'd request field is split into lines.
#![no_main]

use std::time::{Duration, SystemTime};

use cache::CacheControl;
use cache::cache_control::Seconds;
use cache::policy::{self, Exchange, FreshnessSource, NoCacheReason, PolicyOptions};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use libfuzzer_sys::fuzz_target;

const CAP: u64 = 1 << 31;
const DELTA_DIRECTIVES: [&str; 6] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
    "min-fresh",
    "max-stale",
];
const FLAGS: [&str; 6] = [
    "no-store",
    "no-cache",
    "private",
    "public",
    "must-revalidate",
    "proxy-revalidate",
];

fn check_caps(cc: &CacheControl) {
    for name in DELTA_DIRECTIVES {
        if let Seconds::Valid(v) = cc.seconds(name) {
            assert!(v <= CAP, "{name}={v} exceeds 2^31");
        }
    }
}

fn headers_with(name: &HeaderName, lines: &[HeaderValue]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines {
        h.append(name.clone(), line.clone());
    }
    h
}

fuzz_target!(|data: &[u8]| {
    // Whole input as one field value.
    if let Ok(text) = std::str::from_utf8(data) {
        let cc = CacheControl::parse(text);
        check_caps(&cc);
        // Directive names are case-insensitive; digits do not change case.
        let upper = CacheControl::parse(&text.to_ascii_uppercase());
        for name in DELTA_DIRECTIVES {
            assert_eq!(cc.seconds(name), upper.seconds(name), "{name}");
        }
        for name in FLAGS {
            assert_eq!(cc.has(name), upper.has(name), "{name}");
        }
        for name in ["no-cache", "private"] {
            if let Some(fields) = cc.field_names(name) {
                assert!(cc.has(name));
                for f in fields {
                    assert_eq!(f.as_str(), f.as_str().to_ascii_lowercase());
                }
            }
        }
    }

    // Input as field lines (those that are valid header values).
    let lines: Vec<HeaderValue> = data
        .split(|b| *b == b'\n')
        .filter_map(|l| HeaderValue::from_bytes(l).ok())
        .collect();
    if lines.is_empty() {
        return;
    }
    let cc_headers = headers_with(&header::CACHE_CONTROL, &lines);
    let Some(cc) = CacheControl::from_headers(&cc_headers, header::CACHE_CONTROL) else {
        panic!("field present but from_headers says absent");
    };
    check_caps(&cc);

    // Lines free of quoting read exactly as one comma-joined line.
    let texts: Vec<&str> = lines.iter().filter_map(|l| l.to_str().ok()).collect();
    if texts.len() == lines.len() && texts.iter().all(|t| !t.contains(['"', '\\'])) {
        assert_eq!(cc, CacheControl::parse(&texts.join(",")));
    }

    check_policy(&cc_headers, &cc);
    check_cdn_precedence(&lines, &cc);
    check_vary(&lines);
});

/// Precedence of the explicit freshness sources, and what is never stored.
fn check_policy(resp: &HeaderMap, cc: &CacheControl) {
    let opts = PolicyOptions::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut resp = resp.clone();
    // An Expires a day later: must lose to s-maxage and max-age.
    resp.insert(
        header::DATE,
        HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("date"),
    );
    resp.insert(
        header::EXPIRES,
        HeaderValue::from_str(&httpdate::fmt_http_date(now + Duration::from_secs(86_400)))
            .expect("date"),
    );
    let directives = policy::response_directives(&resp, &opts);
    assert_eq!(&directives, cc);
    let found = policy::freshness_lifetime(StatusCode::OK, &resp, cc, now, &opts);
    let (lifetime, source) = found.expect("Expires is present: always a lifetime");
    let expect = |s: Seconds| match s {
        Seconds::Valid(v) => Duration::from_secs(v),
        _ => Duration::ZERO,
    };
    match (cc.seconds("s-maxage"), cc.seconds("max-age")) {
        (s @ (Seconds::Valid(_) | Seconds::Invalid), _) => {
            assert_eq!(source, FreshnessSource::SMaxAge);
            assert_eq!(lifetime, expect(s));
        }
        (Seconds::Absent, m @ (Seconds::Valid(_) | Seconds::Invalid)) => {
            assert_eq!(source, FreshnessSource::MaxAge);
            assert_eq!(lifetime, expect(m));
        }
        (Seconds::Absent, Seconds::Absent) => {
            assert_eq!(source, FreshnessSource::Expires);
            assert_eq!(lifetime, Duration::from_secs(86_400));
        }
    }
    assert!(lifetime <= Duration::from_secs(CAP));

    let exchange = Exchange {
        request_time: now,
        response_time: now,
    };
    let stored = policy::storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        exchange,
        &opts,
    );
    match stored {
        Ok(p) => {
            assert!(!cc.has("no-store") && !cc.has("private"));
            assert_eq!((p.lifetime, p.source), (lifetime, source));
            assert_eq!(p.no_cache, cc.has("no-cache"));
            if cc.seconds("s-maxage") != Seconds::Absent {
                assert!(p.must_revalidate, "s-maxage implies must-revalidate");
            }
            for window in [p.stale_while_revalidate, p.stale_if_error]
                .into_iter()
                .flatten()
            {
                assert!(window <= Duration::from_secs(CAP));
            }
        }
        Err(NoCacheReason::NoStore) => assert!(cc.has("no-store")),
        Err(NoCacheReason::Private) => assert!(cc.has("private") && !cc.has("no-store")),
        Err(other) => panic!("unexpected refusal {other:?}"),
    }
}

/// `CDN-Cache-Control` replaces `Cache-Control` when honoured and well
/// formed (a Structured Dictionary with typed directives, issue 25), and is
/// ignored otherwise.
fn check_cdn_precedence(lines: &[HeaderValue], _cc: &CacheControl) {
    let mut resp = headers_with(&HeaderName::from_static("cdn-cache-control"), lines);
    resp.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
    let honoured = PolicyOptions::default();
    let applied = policy::response_directives(&resp, &honoured);
    match cache::targeted::cdn_cache_control(&resp) {
        Some(targeted) => {
            for name in [
                "max-age",
                "s-maxage",
                "stale-while-revalidate",
                "stale-if-error",
            ] {
                assert!(
                    !matches!(
                        targeted.seconds(name),
                        cache::cache_control::Seconds::Invalid
                    ),
                    "a typed {name} is never invalid"
                );
            }
            assert_eq!(applied, targeted);
        }
        None => assert_eq!(applied, CacheControl::parse("max-age=5")),
    }
    let ignored = PolicyOptions {
        honor_cdn_cache_control: false,
        ..PolicyOptions::default()
    };
    assert_eq!(
        policy::response_directives(&resp, &ignored),
        CacheControl::parse("max-age=5")
    );
}

/// `Vary` as the object layer and the policy read it.
fn check_vary(lines: &[HeaderValue]) {
    let resp = headers_with(&header::VARY, lines);
    let names = cache::object::vary_names(&resp);
    let items: Vec<String> = lines
        .iter()
        .filter_map(|l| l.to_str().ok())
        .flat_map(|t| t.split(','))
        .map(|i| i.trim().to_ascii_lowercase())
        .collect();
    let star = items.iter().any(|i| i == "*");
    assert_eq!(names.is_none(), star, "Vary: * and only it never matches");
    if let Some(names) = &names {
        for (i, n) in names.iter().enumerate() {
            assert!(
                items.iter().any(|item| item == n.as_str()),
                "{n} not listed"
            );
            assert!(!names[..i].contains(n), "{n} listed twice");
        }
    }

    // The policy refuses exactly the `Vary: *` responses.
    let mut stored_resp = resp.clone();
    stored_resp.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let exchange = Exchange {
        request_time: now,
        response_time: now,
    };
    let stored = policy::storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &stored_resp,
        exchange,
        &PolicyOptions::default(),
    );
    assert_eq!(stored.err() == Some(NoCacheReason::VaryStar), star);

    // A variant's key ignores how the request splits a field into lines
    // and the spaces around its commas.
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        return;
    };
    let primary = cache::CacheKey::for_request(&Method::GET, "https", "example.com", "/")
        .expect("GET has a key");
    let first = &names[0];
    let Ok(text) = lines[0].to_str() else { return };
    let mut one = HeaderMap::new();
    one.insert(first.clone(), lines[0].clone());
    let mut split = HeaderMap::new();
    for item in text.split(',') {
        match HeaderValue::from_str(item.trim()) {
            Ok(v) => split.append(first.clone(), v),
            Err(_) => return,
        };
    }
    assert_eq!(
        primary.variant(&names, &one),
        primary.variant(&names, &split)
    );
}
