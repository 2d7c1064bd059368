//! RFC 9111 policy: deciding storability when a response arrives, and
//! evaluating reuse on every hit.

use std::time::{Duration, SystemTime};

use cache::CacheControl;
use cache::policy::{self, Exchange, PolicyOptions};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::hint::black_box;

fn policy(c: &mut Criterion) {
    let now = SystemTime::now();
    let mut resp = HeaderMap::new();
    resp.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600, stale-while-revalidate=60"),
    );
    resp.insert(
        "date",
        HeaderValue::from_str(&httpdate::fmt_http_date(now)).expect("date"),
    );
    resp.insert("etag", HeaderValue::from_static("\"abc\""));
    resp.insert("content-type", HeaderValue::from_static("text/html"));
    let req = HeaderMap::new();
    let exchange = Exchange {
        request_time: now,
        response_time: now,
    };
    let opts = PolicyOptions::default();
    c.bench_function("policy/storable", |b| {
        b.iter(|| {
            policy::storable(
                &Method::GET,
                black_box(&req),
                StatusCode::OK,
                black_box(&resp),
                exchange,
                &opts,
            )
        })
    });
    let stored = policy::storable(&Method::GET, &req, StatusCode::OK, &resp, exchange, &opts)
        .expect("storable");
    let later = now + Duration::from_secs(30);
    c.bench_function("policy/evaluate_hit", |b| {
        let req_cc = policy::request_directives(&req);
        b.iter(|| policy::evaluate(black_box(&stored), now, black_box(&req_cc), later))
    });
    let mut with_cc = HeaderMap::new();
    with_cc.insert(
        "cache-control",
        HeaderValue::from_static("max-age=0, max-stale=10"),
    );
    c.bench_function("policy/request_directives_and_evaluate", |b| {
        b.iter(|| {
            let req_cc = policy::request_directives(black_box(&with_cc));
            policy::evaluate(&stored, now, &req_cc, later)
        })
    });
    c.bench_function("policy/parse_cache_control", |b| {
        b.iter(|| CacheControl::parse(black_box("public, max-age=3600, s-maxage=60, no-transform")))
    });
}

criterion_group!(benches, policy);
criterion_main!(benches);
