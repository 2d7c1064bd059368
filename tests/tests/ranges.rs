//! Byte ranges from cached objects (RFC 9110 §14).

use edge_tests::client::{get, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, poll_until};

/// 0, 1, 2 … 255, 0, 1 … : every offset is recognisable.
fn numbered(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

async fn cached_edge(path: &str, body: Vec<u8>) -> (MockOrigin, TestEdge) {
    let origin = MockOrigin::start().await;
    origin.route(
        path,
        Reply::ok(body)
            .header("cache-control", "max-age=600")
            .header("etag", "\"r1\"")
            .header("content-type", "application/octet-stream"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let warm = get(&edge.url(path)).await;
    assert_eq!(warm.status(), 200);
    (origin, edge)
}

#[tokio::test]
async fn single_and_suffix_ranges_from_a_cached_object() {
    let body = numbered(1000);
    let (origin, edge) = cached_edge("/r", body.clone()).await;
    let resp = get_with(&edge.url("/r"), &[("range", "bytes=10-19")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], "bytes 10-19/1000");
    assert_eq!(resp.headers()["content-length"], "10");
    assert_eq!(resp.x_cache(), "HIT");
    assert_eq!(&resp.body()[..], &body[10..20]);

    let suffix = get_with(&edge.url("/r"), &[("range", "bytes=-100")]).await;
    assert_eq!(suffix.headers()["content-range"], "bytes 900-999/1000");
    assert_eq!(&suffix.body()[..], &body[900..]);
    assert_eq!(origin.hits("/r"), 1);
}

#[tokio::test]
async fn several_ranges_come_as_multipart_byteranges() {
    let body = numbered(1000);
    let (_origin, edge) = cached_edge("/m", body.clone()).await;
    let resp = get_with(&edge.url("/m"), &[("range", "bytes=0-4, 100-104")]).await;
    assert_eq!(resp.status(), 206);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart content type");
    assert_eq!(
        resp.headers()["content-length"],
        resp.body().len().to_string()
    );
    let mut expected = Vec::new();
    for (start, end) in [(0usize, 4usize), (100, 104)] {
        expected.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{end}/1000\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&body[start..=end]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(&resp.body()[..], &expected[..]);
}

#[tokio::test]
async fn unsatisfiable_ranges_get_416_and_if_range_is_honoured() {
    let body = numbered(1000);
    let (_origin, edge) = cached_edge("/u", body.clone()).await;
    let resp = get_with(&edge.url("/u"), &[("range", "bytes=5000-")]).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], "bytes */1000");

    let matching = get_with(
        &edge.url("/u"),
        &[("range", "bytes=0-1"), ("if-range", "\"r1\"")],
    )
    .await;
    assert_eq!(matching.status(), 206);
    let stale = get_with(
        &edge.url("/u"),
        &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!(
        stale.status(),
        200,
        "a changed representation is sent whole"
    );
    assert_eq!(stale.body().len(), 1000);
}

#[tokio::test]
async fn ranges_across_chunk_boundaries_of_a_large_object() {
    let body = numbered(3 * 1024 * 1024 + 500);
    let (_origin, edge) = cached_edge("/big", body.clone()).await;
    let start = 1024 * 1024 - 10;
    let end = 2 * 1024 * 1024 + 10;
    let resp = get_with(
        &edge.url("/big"),
        &[("range", &format!("bytes={start}-{end}"))],
    )
    .await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.x_cache(), "HIT");
    assert_eq!(resp.body().len(), end - start + 1);
    assert!(
        resp.body() == &body[start..=end],
        "wrong bytes across chunks"
    );
    let tail = get_with(&edge.url("/big"), &[("range", "bytes=-3")]).await;
    assert_eq!(&tail.body()[..], &body[body.len() - 3..]);
}

#[tokio::test]
async fn a_range_on_a_miss_fetches_the_object_once_and_stores_it() {
    let origin = MockOrigin::start().await;
    let body = numbered(200_000);
    origin.route(
        "/cold",
        Reply::ok(body.clone()).header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let resp = get_with(&edge.url("/cold"), &[("range", "bytes=1000-1999")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.x_cache(), "MISS");
    assert_eq!(&resp.body()[..], &body[1000..2000]);
    // The origin is asked for the first slice, never the client's range;
    // an origin that ignores ranges sends it all, which is stored whole.
    let seen = origin.last_request("/cold").unwrap();
    assert_eq!(seen.headers["range"], "bytes=0-4194303");
    // The whole object was stored by that one fetch.
    let full = poll_until(
        "the object to be stored",
        std::time::Duration::from_secs(5),
        async || {
            let full = get(&edge.url("/cold")).await;
            if full.x_cache() == "HIT" {
                Ok(full)
            } else {
                Err(full.x_cache().to_owned())
            }
        },
    )
    .await;
    assert!(full.body() == &body[..]);
    assert_eq!(origin.hits("/cold"), 1);
}
