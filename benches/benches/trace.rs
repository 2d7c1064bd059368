//! What a request pays for `[tracing]` on its own path (issue 24): the
//! server span (reading `traceparent`, ids, sampling), one upstream span
//! with its `traceparent` written, and the end (attributes, the queue's
//! `try_send`), at sampling 0 and 1. The export task's encoding and
//! posting run off the request path (benches/callgrind.sh with
//! benches/tracing-*.toml counts the whole process).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge::config::TracingConfig;
use edge::observe::trace::{RequestEnd, RequestStart, TraceCounts, Tracing};
use http::HeaderMap;
use prometheus::{IntCounter, IntCounterVec, Opts};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn tracing(
    rt: &tokio::runtime::Runtime,
    sampling: f64,
    collector: &str,
) -> std::sync::Arc<Tracing> {
    let config = TracingConfig {
        otlp_endpoint: Some(collector.to_owned()),
        sampling,
        export_interval: Duration::from_millis(50),
        ..TracingConfig::default()
    };
    let counts = TraceCounts {
        exported: IntCounter::new("exported", "x").expect("counter"),
        dropped: IntCounterVec::new(Opts::new("dropped", "x"), &["reason"]).expect("counter"),
    };
    let _guard = rt.enter();
    Tracing::start(&config, "bench", counts)
        .expect("tracing starts")
        .expect("an endpoint")
}

fn one_request(tracing: &std::sync::Arc<Tracing>, client: &HeaderMap, miss: bool) {
    let mut trace = tracing.request(client, "GET");
    if trace.is_recording() {
        trace.describe(RequestStart {
            method: "GET",
            path: "/static/app.js",
            host: "shop.example",
            scheme: "https",
            protocol: "1.1",
        });
    }
    if miss {
        let mut upstream = client.clone();
        let span = trace.upstream("GET", "origin.example:443", 0, &mut upstream);
        black_box(&upstream);
        drop(span);
    }
    trace.finish(RequestEnd {
        client: IpAddr::from([203, 0, 113, 7]),
        status: 200,
        body_bytes: 1024,
        site: "shop",
        cache_status: if miss { "MISS" } else { "HIT" },
        cache_tier: (!miss).then_some("memory"),
        peer: miss.then_some("origin.example:443"),
        upstream_status: miss.then_some(200),
        error: None,
        body_end: "complete",
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // Nothing listens on port 9: each batch fails at connect, on the
    // runtime's own thread, so the spans are encoded and dropped off the
    // measured path and memory stays bounded.
    let collector = "http://127.0.0.1:9";
    let mut sampled = HeaderMap::new();
    sampled.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .expect("value"),
    );
    let none = HeaderMap::new();
    let off = tracing(&rt, 0.0, collector);
    let all = tracing(&rt, 1.0, collector);
    let mut g = c.benchmark_group("trace");
    g.bench_function("sampling 0, hit", |b| {
        b.iter(|| one_request(&off, &none, false))
    });
    g.bench_function("sampling 0, hit, client traceparent", |b| {
        b.iter(|| one_request(&off, &sampled, false))
    });
    g.bench_function("sampling 0, miss (upstream traceparent)", |b| {
        b.iter(|| one_request(&off, &sampled, true))
    });
    g.bench_function("sampling 1, hit", |b| {
        b.iter(|| one_request(&all, &none, false))
    });
    g.bench_function("sampling 1, miss (two spans)", |b| {
        b.iter(|| one_request(&all, &sampled, true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
