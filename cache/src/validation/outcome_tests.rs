//! What a revalidation's answer comes to, as a table.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::policy::{Defaults, StoredPolicy};

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

/// Stored at T0, fresh for 60 s, with these headers and `stale-if-error`.
fn stored(pairs: &[(&'static str, &'static str)], sie: Option<u64>) -> ObjectMeta {
    let mut meta = ObjectMeta::fresh(headers(pairs), Bytes::from_static(b"x"), Duration::ZERO);
    meta.request_time = at(T0);
    meta.response_time = at(T0);
    meta.policy = StoredPolicy {
        stale_if_error: sie.map(Duration::from_secs),
        ..StoredPolicy::fresh_for(Duration::from_secs(60))
    };
    meta
}

fn outcome(
    stored: &ObjectMeta,
    method: Method,
    sent_validators: bool,
    status: u16,
    answer: &[(&'static str, &'static str)],
    now: u64,
) -> Revalidated {
    let answer_headers = headers(answer);
    let request = HeaderMap::new();
    let directives = CacheControl::default();
    let exchange = Exchange {
        request_time: at(now),
        response_time: at(now),
    };
    revalidated(
        stored,
        Asked {
            method: &method,
            headers: &request,
            directives: &directives,
            sent_validators,
            defaults: Defaults::default(),
        },
        Answer {
            status: StatusCode::from_u16(status).expect("status"),
            headers: &answer_headers,
            exchange,
        },
        &PolicyOptions::default(),
        at(now),
    )
}

fn name(r: &Revalidated) -> String {
    match r {
        Revalidated::Refreshed { kept: Ok(()), .. } => "refreshed".into(),
        Revalidated::Refreshed { kept: Err(why), .. } => format!("refreshed-once/{}", why.as_str()),
        Revalidated::Unusable => "unusable".into(),
        Revalidated::ServerError { serve_stale: true } => "stale-if-error".into(),
        Revalidated::ServerError { serve_stale: false } => "server-error".into(),
        Revalidated::Replaced => "replaced".into(),
    }
}

type Fields = &'static [(&'static str, &'static str)];
/// Stored, method, validators sent, answer status, answer headers, now, outcome.
type Row<'a> = (&'a ObjectMeta, Method, bool, u16, Fields, u64, &'static str);

#[test]
fn outcomes() {
    let etag = stored(&[("etag", "\"v1\""), ("cache-control", "max-age=60")], None);
    let lm = stored(
        &[
            ("last-modified", "Tue, 14 Nov 2023 22:00:00 GMT"),
            ("cache-control", "max-age=60"),
        ],
        None,
    );
    let sie = stored(
        &[("etag", "\"v1\""), ("cache-control", "max-age=60")],
        Some(100),
    );
    let get = || Method::GET;
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        // stored, method, validators sent, answer status, answer headers, now, outcome
        (&etag, get(), true,  304, &[("etag", "\"v1\"")], T0 + 70, "refreshed"),
        // A 304 without validators answers the conditional we sent for
        // this response (RFC 9111 §4.3.3): it refreshes it (issue 25).
        (&etag, get(), true,  304, &[],                   T0 + 70, "refreshed"),
        (&etag, get(), true,  304, &[("cache-control", "max-age=600")], T0 + 70, "refreshed"),
        (&etag, Method::HEAD, true, 304, &[],             T0 + 70, "refreshed"),
        (&etag, get(), false, 304, &[],                   T0 + 70, "unusable"),
        (&etag, get(), true,  304, &[("last-modified", "Wed, 15 Nov 2023 22:00:00 GMT")], T0 + 70, "unusable"),
        (&etag, get(), true,  304, &[("etag", "\"v2\"")], T0 + 70, "unusable"),
        (&etag, get(), false, 304, &[("etag", "\"v1\"")], T0 + 70, "unusable"),
        (&lm,   get(), true,  304, &[],                   T0 + 70, "refreshed"),
        (&lm,   get(), true,  304, &[("last-modified", "Wed, 15 Nov 2023 22:00:00 GMT")], T0 + 70, "unusable"),
        (&etag, get(), true,  304, &[("etag", "\"v1\""), ("cache-control", "no-store")], T0 + 70, "refreshed-once/no-store"),
        (&etag, get(), true,  200, &[("etag", "\"v2\"")], T0 + 70, "replaced"),
        (&etag, get(), true,  200, &[("etag", "\"v1\"")], T0 + 70, "replaced"),
        (&etag, get(), true,  404, &[],                   T0 + 70, "replaced"),
        (&etag, get(), true,  503, &[],                   T0 + 70, "server-error"),
        (&sie,  get(), true,  503, &[],                   T0 + 70, "stale-if-error"),
        (&sie,  get(), true,  500, &[],                   T0 + 200, "server-error"),
        // RFC 9111 §4.3.5: a HEAD answer with the same validator refreshes
        (&etag, Method::HEAD, true, 200, &[("etag", "\"v1\"")], T0 + 70, "refreshed"),
        (&etag, Method::HEAD, true, 200, &[("etag", "\"v2\"")], T0 + 70, "replaced"),
        (&etag, Method::HEAD, true, 404, &[("etag", "\"v1\"")], T0 + 70, "replaced"),
    ];
    for (i, (stored, method, sent, status, answer, now, want)) in table.into_iter().enumerate() {
        let got = name(&outcome(stored, method, sent, status, answer, now));
        assert_eq!(got, want, "row {i}: {status} {answer:?}");
    }
}

#[test]
fn a_refresh_takes_the_new_headers_and_times_but_not_framing() {
    let old = stored(
        &[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
            ("content-length", "1"),
            ("x-old", "kept"),
        ],
        None,
    );
    let Revalidated::Refreshed { meta, kept } = outcome(
        &old,
        Method::GET,
        true,
        304,
        &[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=600"),
            ("content-length", "0"),
        ],
        T0 + 70,
    ) else {
        panic!("a confirming 304 refreshes");
    };
    assert!(kept.is_ok());
    assert_eq!(meta.headers["cache-control"], "max-age=600");
    assert_eq!(
        meta.headers["content-length"], "1",
        "framing is never updated"
    );
    assert_eq!(meta.headers["x-old"], "kept");
    assert!(
        meta.headers.get("date").is_none(),
        "the old Date is dropped"
    );
    assert_eq!(meta.response_time, at(T0 + 70));
    assert_eq!(meta.policy.lifetime, Duration::from_secs(600));
}
