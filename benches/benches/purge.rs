//! Purges: how long a purge takes to be accepted (durable, synced) with
//! 100k objects cached, and what rules cost the lookup path.
//!
//! `cargo bench -p edge-benches --bench purge`; prints a table.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cache::meta::ObjectMeta;
use cache::store::{Store, StoreConfig};
use cache::{CacheKey, KeyRules, object};
use http::{HeaderMap, HeaderValue, Method};
use purge_api::{PurgeConfig, Purger};

const OBJECTS: usize = 100_000;
const TOKEN: &str = "bench-token-123";

fn key(i: usize) -> CacheKey {
    CacheKey::for_request(&Method::GET, "http", "bench", &path(i)).expect("key")
}

fn path(i: usize) -> String {
    format!("/section-{}/item/{i}", i % 100)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn purge_latency(purger: &Arc<Purger>, label: &str, body: impl Fn(usize) -> String) {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("header"),
    );
    let mut times = Vec::new();
    for i in 0..200 {
        let started = Instant::now();
        let resp = purger
            .handle(&Method::POST, "/purge", &headers, Bytes::from(body(i)))
            .await;
        times.push(started.elapsed());
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
    }
    times.sort();
    println!(
        "| {label} | {:.2} ms | {:.2} ms |",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0
    );
}

fn lookups_per_second(rt: &tokio::runtime::Runtime, store: &Store, purger: &Purger) -> f64 {
    let req = HeaderMap::new();
    let n = 200_000;
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            let i = i % OBJECTS;
            let k = key(i);
            let found = object::lookup(store, &k, &req).await.expect("lookup");
            if let Some(found) = found {
                std::hint::black_box(purger.rules().verdict(
                    &k,
                    "bench",
                    &path(i),
                    &found.meta.tags,
                    found.meta.response_time,
                ));
            }
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path().join("cache"), 512 << 20, 512 << 20);
    let store = rt.block_on(Store::open(&config, None)).expect("store");
    for i in 0..OBJECTS {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
        let mut meta =
            ObjectMeta::fresh(headers, Bytes::from_static(b"x"), Duration::from_secs(3600));
        meta.tags = vec![format!("item-{i}"), format!("section-{}", i % 100)];
        meta.response_time = SystemTime::now() - Duration::from_secs(60);
        store.put_object(&key(i), meta);
    }
    let purger = Purger::open(
        &dir.path().join("purge"),
        PurgeConfig {
            token: Some(TOKEN.into()),
            ..PurgeConfig::default()
        },
        store.clone(),
        KeyRules::default(),
        cache::Clock::system(),
    )
    .expect("purger");

    let none = lookups_per_second(&rt, &store, &purger);

    println!("purge latency with {OBJECTS} objects cached (200 purges each, synced to RocksDB):\n");
    println!("| purge | p50 | p99 |\n|---|---|---|");
    rt.block_on(async {
        purge_latency(&purger, "url", |i| {
            format!(r#"{{"urls": ["http://bench{}"]}}"#, path(i))
        })
        .await;
        purge_latency(&purger, "prefix", |i| {
            format!(r#"{{"prefixes": ["bench/section-{}"]}}"#, i % 100)
        })
        .await;
        purge_latency(&purger, "tag", |i| {
            format!(r#"{{"tags": ["item-{}"]}}"#, i + 1000)
        })
        .await;
    });

    // 10k more rules (tags, prefixes and URLs that match nothing here),
    // then the same lookups again.
    rt.block_on(async {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("header"),
        );
        for batch in 0..10 {
            let items: Vec<String> = (0..1000)
                .map(|i| format!("\"{}\"", batch * 1000 + i))
                .collect();
            let body = match batch % 3 {
                0 => format!(
                    r#"{{"tags": [{}]}}"#,
                    items
                        .iter()
                        .map(|i| format!("\"nomatch-{}", &i[1..]))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                1 => format!(
                    r#"{{"prefixes": [{}]}}"#,
                    items
                        .iter()
                        .map(|i| format!("\"other/p{}", &i[1..]))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                _ => format!(
                    r#"{{"urls": [{}]}}"#,
                    items
                        .iter()
                        .map(|i| format!("\"http://other/u{}", &i[1..]))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            let resp = purger
                .handle(&Method::POST, "/purge", &headers, Bytes::from(body))
                .await;
            assert_eq!(resp.status(), 200, "{:?}", resp.body());
        }
    });
    let with_rules = lookups_per_second(&rt, &store, &purger);
    println!(
        "\nlookup + verdict (memory tier): {:.0}/s with no rules, {:.0}/s with 10k+ rules in {} purges ({:.2}x)",
        none,
        with_rules,
        purger.rules().len(),
        with_rules / none
    );
    drop(purger);
    rt.block_on(store.close()).expect("close");
}
