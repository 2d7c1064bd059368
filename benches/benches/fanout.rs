//! One cold 64 MiB object streamed to 100 concurrent readers through a
//! release-built edge: what the origin sends, time to first byte, and
//! throughput. `cargo bench -p edge-benches --bench fanout`.
//!
//! The origin is the in-process mock of the end-to-end tests, sending the
//! object in 1 MiB pieces as fast as the edge reads them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_tests::client::{self, get_request, send};
use edge_tests::{MockOrigin, Reply, TestEdge};
use http_body_util::BodyExt;

const READERS: usize = 100;
const OBJECT: usize = 64 << 20;
const PIECE: usize = 1 << 20;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let origin = MockOrigin::start().await;
    let pieces: Vec<Bytes> = (0..OBJECT / PIECE)
        .map(|i| Bytes::from(vec![i as u8; PIECE]))
        .collect();
    origin.route(
        "/big",
        Reply::streamed(pieces, Duration::ZERO, None).header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.cache.memory = "512MiB".parse().expect("size");
        c.cache.disk = "1GiB".parse().expect("size");
        c.cache.max_object_size = "128MiB".parse().expect("size");
    })
    .await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let url = edge.url("/big");
        tasks.push(tokio::spawn(async move {
            let client = client::http1();
            let sent = Instant::now();
            let resp = send(&client, get_request(&url)).await;
            let mut body = resp.into_body();
            let mut first = None;
            let mut bytes = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.expect("complete body");
                if let Some(data) = frame.data_ref() {
                    first.get_or_insert_with(|| sent.elapsed());
                    bytes += data.len();
                }
            }
            (first.unwrap_or_default(), sent.elapsed(), bytes)
        }));
    }
    let mut ttfb = Vec::new();
    let mut done = Vec::new();
    for task in tasks {
        let (first, total, bytes) = task.await.expect("reader");
        assert_eq!(bytes, OBJECT, "a reader got a short body");
        ttfb.push(first);
        done.push(total);
    }
    let wall = started.elapsed();
    ttfb.sort();
    done.sort();
    let origin_bytes = origin.hits("/big") * OBJECT;
    let delivered = (READERS * OBJECT) as f64;
    println!(
        "fanout: {READERS} readers x {} MiB, cold object",
        OBJECT >> 20
    );
    println!(
        "  origin requests {}, origin bytes {} MiB",
        origin.hits("/big"),
        origin_bytes >> 20
    );
    println!(
        "  time to first byte: min {:?}, median {:?}, max {:?}",
        ttfb[0],
        ttfb[READERS / 2],
        ttfb[READERS - 1]
    );
    println!(
        "  completion: median {:?}, max {:?}; aggregate {:.0} MiB/s",
        done[READERS / 2],
        done[READERS - 1],
        delivered / wall.as_secs_f64() / (1 << 20) as f64
    );
}
