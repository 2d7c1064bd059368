//! The two tiers: memory hits, disk hits and inserts.

use std::time::Duration;

use bytes::Bytes;
use cache::CacheKey;
use cache::meta::ObjectMeta;
use cache::object;
use cache::store::{Placement, Store, StoreConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};

fn meta(body: Bytes) -> ObjectMeta {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("cache-control", HeaderValue::from_static("max-age=3600"));
    ObjectMeta::fresh(headers, body, Duration::from_secs(3600))
}

fn key(i: usize) -> CacheKey {
    CacheKey::for_request(&Method::GET, "http", "bench", &format!("/obj/{i}")).expect("key")
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // foyer spawns its disk writes on the current runtime.
    let _enter = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path().to_owned(), 64 << 20, 512 << 20);
    let store = rt.block_on(Store::open(&config, None)).expect("store");
    let body = Bytes::from(vec![7u8; 1024]);
    for i in 0..1000 {
        store.put_object(&key(i), meta(body.clone()));
    }
    let req = HeaderMap::new();
    let mut i = 0;
    c.bench_function("store/memory_hit_1k", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % 1000;
            let k = key(i);
            let store = store.clone();
            let req = req.clone();
            async move {
                object::lookup(&store, &k, &req)
                    .await
                    .expect("lookup")
                    .is_some()
            }
        })
    });
    let mut n = 10_000;
    c.bench_function("store/insert_1k", |b| {
        b.iter(|| {
            n += 1;
            store.put_object(&key(n), meta(body.clone()));
        })
    });

    // A store whose memory holds a small fraction, so most reads go to disk.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path().to_owned(), 1 << 20, 512 << 20);
    let cold = rt.block_on(Store::open(&config, None)).expect("store");
    let chunk = Bytes::from(vec![1u8; 64 << 10]);
    for i in 0..2000 {
        cold.put_chunk(&key(i), 1, 0, chunk.clone(), Placement::BothTiers);
        if i % 50 == 0 {
            rt.block_on(tokio::time::sleep(Duration::from_millis(20)));
        }
    }
    rt.block_on(tokio::time::sleep(Duration::from_millis(500)));
    let mut j = 0;
    c.bench_function("store/disk_read_64k", |b| {
        b.to_async(&rt).iter(|| {
            j = (j + 7) % 1500;
            let k = key(j);
            let cold = cold.clone();
            async move { cold.get_chunk(&k, 1, 0).await.expect("read").is_some() }
        })
    });
    rt.block_on(store.close()).expect("close");
    rt.block_on(cold.close()).expect("close");
}

criterion_group!(benches, store);
criterion_main!(benches);
