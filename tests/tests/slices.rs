//! Large objects cached in slices fetched with Range requests: a range costs
//! the origin only the slices it touches, a full GET streams slice after
//! slice, and slices of different versions never mix.

use bytes::Bytes;
use edge_tests::client::{get, get_request, get_with, http1, send};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, poll_until};
use http_body_util::BodyExt;

const MIB: usize = 1 << 20;
const SLICE: usize = 4 * MIB;

/// Bytes whose every 4-byte word is its own offset: any misplaced byte
/// shows.
fn numbered(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len);
    let mut i: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&i.to_le_bytes());
        i += 4;
    }
    out.truncate(len);
    Bytes::from(out)
}

fn file(body: Bytes, etag: &str) -> Reply {
    Reply::file(body)
        .header("cache-control", "max-age=600")
        .header("etag", etag)
        .header("content-type", "video/mp4")
}

async fn big_edge(origin: &MockOrigin) -> TestEdge {
    TestEdge::start_with(&origin.url(), |c| {
        c.cache.memory = "128MiB".parse().expect("size");
        c.cache.disk = "256MiB".parse().expect("size");
    })
    .await
}

fn range(start: usize, end_inclusive: usize) -> String {
    format!("bytes={start}-{end_inclusive}")
}

#[tokio::test]
async fn a_range_of_a_large_object_fetches_only_its_slices() {
    let body = numbered(64 * MIB);
    let origin = MockOrigin::start().await;
    origin.route("/movie.mp4", file(body.clone(), "\"v1\""));
    let edge = big_edge(&origin).await;
    let url = edge.url("/movie.mp4");

    // 1 MiB inside slice 2: one slice from the origin.
    let (a, b) = (9 * MIB, 10 * MIB - 1);
    let resp = get_with(&url, &[("range", &range(a, b))]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes {a}-{b}/{}", body.len())
    );
    assert_eq!(resp.x_cache(), "MISS");
    assert_eq!(resp.body(), &body[a..=b]);
    let sent = origin.body_bytes_sent();
    assert!(sent <= 2 * SLICE as u64, "origin sent {sent} bytes");
    assert!(
        origin
            .requests("/movie.mp4")
            .iter()
            .all(|r| r.headers.contains_key("range")),
        "every origin request asks for a slice"
    );

    // 1 MiB across the boundary of slices 2 and 3: only slice 3 is new.
    let (a, b) = (12 * MIB - MIB / 2, 12 * MIB + MIB / 2 - 1);
    let resp = get_with(&url, &[("range", &range(a, b))]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.body(), &body[a..=b]);
    let sent_after = origin.body_bytes_sent();
    assert!(
        sent_after - sent <= SLICE as u64,
        "a second range fetched {} more bytes",
        sent_after - sent
    );

    // The whole object: the slices already stored, the rest fetched as the
    // client reads, complete and in order.
    let full = get(&url).await;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-length"], body.len().to_string());
    assert_eq!(
        blake3::hash(full.body()),
        blake3::hash(&body),
        "full body differs"
    );
    // Every slice left the origin once, no more.
    assert_eq!(origin.body_bytes_sent(), body.len() as u64);

    // Now all of it is cached.
    let again = get(&url).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(blake3::hash(again.body()), blake3::hash(&body));
    let tail = get_with(&url, &[("range", "bytes=-100")]).await;
    assert_eq!(tail.body(), &body[body.len() - 100..]);
    assert_eq!(origin.body_bytes_sent(), body.len() as u64);

    // Responses that had to fetch slices count as misses, whatever their
    // head said: the hit ratio is not overstated.
    let text = edge.metrics().await;
    for (status, n) in [("MISS", 3), ("HIT", 2)] {
        let line = format!(
            "edge_requests_total{{body_end=\"complete\",cache_status=\"{status}\",site=\"default\",status_class=\"2xx\"}} {n}"
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
}

#[tokio::test]
async fn slices_of_a_changed_object_are_never_mixed() {
    let v1 = numbered(16 * MIB);
    let origin = MockOrigin::start().await;
    origin.route("/changing", file(v1.clone(), "\"v1\""));
    let edge = big_edge(&origin).await;
    let url = edge.url("/changing");
    let first = get_with(&url, &[("range", "bytes=0-99")]).await;
    assert_eq!(first.body(), &v1[..100]);

    // Same length, different bytes and ETag, while the head is still fresh.
    let v2: Bytes = v1.iter().map(|b| b ^ 0xff).collect::<Vec<u8>>().into();
    origin.route("/changing", file(v2.clone(), "\"v2\""));
    let resp = send(&http1(), get_request(&url)).await;
    assert_eq!(resp.status(), 200);
    let (_, body) = resp.into_parts();
    let cut = body.collect().await;
    assert!(
        cut.is_err(),
        "a response that would mix versions must end abnormally"
    );

    // The stale head was dropped: the next request starts over, with v2.
    let next = get(&url).await;
    assert_eq!(next.x_cache(), "MISS");
    assert_eq!(blake3::hash(next.body()), blake3::hash(&v2));
}

#[tokio::test]
async fn a_response_too_large_to_store_whole_is_kept_in_slices() {
    let body = numbered(18 * MIB);
    let origin = MockOrigin::start().await;
    origin.route("/huge.iso", file(body.clone(), "\"iso\""));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.cache.memory = "128MiB".parse().expect("size");
        c.cache.max_object_size = "8MiB".parse().expect("size");
    })
    .await;
    let url = edge.url("/huge.iso");
    let first = get(&url).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(blake3::hash(first.body()), blake3::hash(&body));
    assert_eq!(origin.hits("/huge.iso"), 1);

    // Cut into slices on the way through: no further origin traffic.
    let second = get(&url).await;
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(blake3::hash(second.body()), blake3::hash(&body));
    let part = get_with(&url, &[("range", &range(17 * MIB, 17 * MIB + 9))]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.body(), &body[17 * MIB..17 * MIB + 10]);
    assert_eq!(origin.hits("/huge.iso"), 1);
    assert_eq!(origin.body_bytes_sent(), body.len() as u64);
}

#[tokio::test]
async fn without_a_validator_a_range_is_passed_through_exactly() {
    let body = numbered(12 * MIB);
    let origin = MockOrigin::start().await;
    // No ETag, no Last-Modified: slices could not be tied together.
    origin.route(
        "/anon",
        Reply::file(body.clone()).header("cache-control", "max-age=600"),
    );
    let edge = big_edge(&origin).await;
    let (a, b) = (5 * MIB + 3, 5 * MIB + 1002);
    let resp = get_with(&edge.url("/anon"), &[("range", &range(a, b))]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes {a}-{b}/{}", body.len())
    );
    assert_eq!(resp.body(), &body[a..=b]);
}

#[tokio::test]
async fn a_small_object_asked_by_range_is_stored_whole() {
    let body = numbered(100_000);
    let origin = MockOrigin::start().await;
    origin.route("/small", file(body.clone(), "\"s\""));
    let edge = big_edge(&origin).await;
    let resp = get_with(&edge.url("/small"), &[("range", "bytes=10-19")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.body(), &body[10..20]);
    let full = get(&edge.url("/small")).await;
    assert_eq!(full.x_cache(), "HIT");
    assert_eq!(full.body(), &body);
    assert_eq!(origin.hits("/small"), 1);
}

#[tokio::test]
async fn concurrent_ranges_of_a_cold_object_fetch_each_slice_once() {
    let body = numbered(32 * MIB);
    let origin = MockOrigin::start().await;
    origin.route("/seek.mp4", file(body.clone(), "\"s1\""));
    let edge = big_edge(&origin).await;
    // Twelve players seeking at once, several inside the same slices, plus
    // two plain downloads.
    let starts = [0, 1, 5, 6, 9, 13, 14, 17, 21, 22, 25, 30].map(|m| m * MIB + 12_345);
    let mut tasks = Vec::new();
    for start in starts {
        let url = edge.url("/seek.mp4");
        let expected = body.slice(start..start + MIB);
        tasks.push(tokio::spawn(async move {
            let resp = get_with(&url, &[("range", &range(start, start + MIB - 1))]).await;
            assert_eq!(resp.status(), 206);
            assert!(resp.body() == &expected, "range at {start} differs");
        }));
    }
    for _ in 0..2 {
        let url = edge.url("/seek.mp4");
        let expected = blake3::hash(&body);
        tasks.push(tokio::spawn(async move {
            let resp = get(&url).await;
            assert_eq!(blake3::hash(resp.body()), expected);
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    // Every slice left the origin at most once.
    let sent = origin.body_bytes_sent();
    assert!(
        sent <= body.len() as u64,
        "origin sent {} MiB for a 32 MiB object",
        sent / MIB as u64
    );
}

#[tokio::test]
async fn an_origin_that_ignores_ranges_is_fetched_once_for_concurrent_ranges() {
    let body = numbered(8 * MIB);
    let origin = MockOrigin::start().await;
    // Reply::ok never answers 206.
    origin.route(
        "/plain",
        Reply::ok(body.clone())
            .header("cache-control", "max-age=600")
            .header("etag", "\"p\"")
            .delay(std::time::Duration::from_millis(200)),
    );
    let edge = big_edge(&origin).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = edge.url("/plain");
        let start = i * MIB + 7;
        let expected = body.slice(start..start + 100);
        tasks.push(tokio::spawn(async move {
            let resp = get_with(&url, &[("range", &range(start, start + 99))]).await;
            assert_eq!(resp.status(), 206);
            assert_eq!(resp.body(), &expected);
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    assert_eq!(origin.hits("/plain"), 1);
}

/// `only-if-cached` is answered from stored slices or with a 504, never by
/// fetching the missing slices (RFC 9111 §5.2.1.7). It used to fetch them.
#[tokio::test]
async fn only_if_cached_reads_stored_slices_and_never_fetches_missing_ones() {
    let body = numbered(16 * MIB);
    let origin = MockOrigin::start().await;
    origin.route("/clip.mp4", file(body.clone(), "\"v1\""));
    let edge = big_edge(&origin).await;
    let url = edge.url("/clip.mp4");
    // Slice 1 only (4..8 MiB) is stored.
    let resp = get_with(&url, &[("range", &range(5 * MIB, 5 * MIB + 9))]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(origin.hits("/clip.mp4"), 1);

    let cached_only = ("cache-control", "only-if-cached");
    // The slice is stored as its body ends, just after the client has it.
    let inside = poll_until(
        "the slice to be stored",
        std::time::Duration::from_secs(5),
        async || {
            let resp = get_with(&url, &[cached_only, ("range", &range(4 * MIB, 6 * MIB))]).await;
            if resp.status() != 504 {
                Ok(resp)
            } else {
                Err(resp.status())
            }
        },
    )
    .await;
    assert_eq!(inside.status(), 206, "a range inside the stored slice");
    assert_eq!(inside.body(), &body[4 * MIB..=6 * MIB]);
    let across = get_with(&url, &[cached_only, ("range", &range(7 * MIB, 9 * MIB))]).await;
    assert_eq!(across.status(), 504, "a range reaching a missing slice");
    let whole = get_with(&url, &[cached_only]).await;
    assert_eq!(whole.status(), 504, "the whole object");
    let head = edge_tests::client::fetch(
        &http1(),
        http::Request::head(&url)
            .header("cache-control", "only-if-cached")
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(head.status(), 200, "a HEAD needs no slice");
    assert_eq!(origin.hits("/clip.mp4"), 1, "the origin was asked");
}
