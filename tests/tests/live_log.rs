//! The live request log (`GET /log` on the admin listener, issue 24): a
//! request made after the log was opened shows, filters choose what
//! shows, the purge token guards it, and a watcher that goes away stops
//! costing the node. A real edge and origin; the watcher reads the raw
//! event stream from a socket, as `curl -N` would.

use std::time::Duration;

use edge::config::Secret;
use edge_tests::client::{get, get_with};
use edge_tests::{MockOrigin, Reply, TestEdge, metrics, poll_until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const TOKEN: &str = "live-log-token-0123";

async fn edge() -> (MockOrigin, TestEdge) {
    let origin = MockOrigin::start().await;
    origin.fallback(|_| Reply::ok("object").header("cache-control", "max-age=600"));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
    })
    .await;
    (origin, edge)
}

/// Opens `/log?QUERY` and waits for the stream's opening comment (the
/// watcher is subscribed from then on).
async fn open(edge: &TestEdge, query: &str, token: &str) -> (TcpStream, String) {
    let mut socket = TcpStream::connect(edge.admin_addr()).await.expect("admin");
    let head = format!(
        "GET /log?{query} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("request");
    let seen = read_until(&mut socket, String::new(), "\r\n\r\n").await;
    (socket, seen)
}

/// Reads until `needle` has been seen (bounded at 5 s).
async fn read_until(socket: &mut TcpStream, mut seen: String, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    while !seen.contains(needle) {
        let n = tokio::time::timeout_at(deadline, socket.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{needle:?} not seen in: {seen}"))
            .expect("read");
        assert!(n > 0, "closed before {needle:?}: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

#[tokio::test]
async fn requests_after_opening_show_and_filters_choose_them() {
    let (origin, edge) = edge().await;
    let (mut socket, head) = open(&edge, "filter=cache:MISS,path:/v/", TOKEN).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    let seen = read_until(&mut socket, head, ": edge live log").await;
    get(&edge.url("/v/a")).await; // MISS: shown
    get(&edge.url("/v/a")).await; // HIT: filtered out
    get(&edge.url("/other")).await; // another path: filtered out
    get_with(&edge.url("/v/b"), &[("user-agent", "t")]).await; // MISS: shown
    let seen = read_until(&mut socket, seen, "\"/v/b\"").await;
    let records: Vec<serde_json::Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|j| serde_json::from_str(j).expect("a JSON record"))
        .collect();
    let paths: Vec<&str> = records.iter().filter_map(|r| r["path"].as_str()).collect();
    assert_eq!(paths, ["/v/a", "/v/b"], "{seen}");
    assert!(
        records
            .iter()
            .all(|r| r["cache"] == "MISS" && r["status"] == 200)
    );
    assert_eq!(records[0]["client"], "127.0.0.1");
    assert_eq!(origin.hits("/v/a"), 1);
}

#[tokio::test]
async fn the_token_guards_it_and_a_bad_filter_is_a_400() {
    let (_origin, edge) = edge().await;
    let (_, head) = open(&edge, "", "wrong-token-0000000").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (_, head) = open(&edge, "filter=size:9", TOKEN).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[tokio::test]
async fn a_watcher_that_goes_away_is_dropped() {
    let (_origin, edge) = edge().await;
    let watchers =
        async || metrics::value(&edge.metrics().await, "edge_live_log_watchers ").unwrap_or(-1.0);
    assert_eq!(watchers().await, 0.0);
    let (socket, head) = open(&edge, "", TOKEN).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(watchers().await, 1.0);
    drop(socket);
    // The next events' writes fail and end the stream: the node stops
    // building records for it.
    poll_until("the watcher dropped", Duration::from_secs(5), async || {
        get(&edge.url("/any")).await;
        let now = watchers().await;
        if now == 0.0 { Ok(()) } else { Err(now) }
    })
    .await;
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_dropped_and_serving_goes_on() {
    let (_origin, edge) = edge().await;
    let watchers =
        async || metrics::value(&edge.metrics().await, "edge_live_log_watchers ").unwrap_or(-1.0);
    // A small receive window, so that the node's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut socket = socket.connect(edge.admin_addr()).await.expect("admin");
    let head = format!("GET /log HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    socket.write_all(head.as_bytes()).await.expect("request");
    let seen = read_until(&mut socket, String::new(), ": edge live log").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert_eq!(watchers().await, 1.0);

    // The watcher reads nothing more. Requests keep succeeding, and once
    // the socket buffers and the watcher's queue are full it is dropped
    // (bounded: 20 000 requests).
    let client = edge_tests::client::http1();
    // Long paths make long records: fewer requests fill the buffers.
    let path = format!("/stuck/{}", "x".repeat(4000));
    let mut sent = 0;
    while sent < 20_000 {
        for _ in 0..250 {
            let req = http::Request::get(edge.url(&path))
                .body(http_body_util::Full::<bytes::Bytes>::default())
                .expect("request");
            assert_eq!(edge_tests::client::fetch(&client, req).await.status(), 200);
        }
        sent += 250;
        if watchers().await == 0.0 {
            break;
        }
    }
    assert_eq!(
        watchers().await,
        0.0,
        "still watching after {sent} requests"
    );

    // Reading again, the watcher gets what was queued, then the notice.
    let mut rest = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let notice = b": dropped:";
    while !rest[rest.len().saturating_sub(1 << 17)..]
        .windows(notice.len())
        .any(|w| w == notice)
    {
        let n = tokio::time::timeout_at(deadline, socket.read(&mut buf))
            .await
            .expect("the notice within 10 s")
            .expect("read");
        assert!(n > 0, "closed before the notice");
        rest.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.matches("data: ").count() > 100,
        "records before the notice"
    );
}
