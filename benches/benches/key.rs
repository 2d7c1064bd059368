//! Cache key hashing: the cost every cacheable request pays.

use cache::{CacheKey, KeyRules};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::hint::black_box;

fn keys(c: &mut Criterion) {
    let path = "/assets/js/app.3f9a1c.js?v=42&lang=en";
    c.bench_function("key/for_request", |b| {
        b.iter(|| {
            CacheKey::for_request(
                black_box(&Method::GET),
                "https",
                black_box("static.Example.com"),
                black_box(path),
            )
        })
    });
    let rules = KeyRules {
        ignore_query_params: vec!["utm_source".into(), "utm_medium".into()],
        sort_query: true,
        ignore_scheme: false,
    };
    c.bench_function("key/normalize_query", |b| {
        b.iter(|| {
            rules
                .normalize(black_box("/p?utm_source=x&b=2&a=1&utm_medium=y"))
                .len()
        })
    });
    let primary = CacheKey::for_request(&Method::GET, "https", "x", path).expect("GET has a key");
    let names = [HeaderName::from_static("accept-encoding")];
    let mut req = HeaderMap::new();
    req.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    c.bench_function("key/variant", |b| {
        b.iter(|| primary.variant(black_box(&names), black_box(&req)))
    });
}

criterion_group!(benches, keys);
criterion_main!(benches);
