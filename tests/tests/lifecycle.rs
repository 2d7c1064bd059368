//! Connection lifetime: idle and slow clients, the connection limit, graceful
//! shutdown and the admin listener.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_tests::client::{self, get, send};
use edge_tests::{MockOrigin, Reply, TestEdge, eventually, poll_until};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let origin = MockOrigin::start().await;
    let gate = Arc::new(Notify::new());
    origin.route(
        "/long",
        Reply::gated(&["part one;", "part two"], gate.clone()),
    );
    let mut edge = TestEdge::start(&origin.url()).await;
    let addr = edge.addr();

    let resp = send(&client::http1(), client::get_request(&edge.url("/long"))).await;
    assert_eq!(resp.status(), 200);

    let mut handle = edge.take_handle();
    handle.begin_shutdown();
    // New connections are refused once the listener is closed.
    eventually("the listener to close after shutdown", async || {
        TcpStream::connect(addr).await.is_err()
    })
    .await;

    gate.notify_one();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("in-flight body completes");
    assert_eq!(&body.to_bytes()[..], b"part one;part two");
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("server stops once the request is done")
        .expect("clean exit");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let origin = MockOrigin::start().await;
    origin.route("/a", Reply::ok("0123456789"));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(edge.addr()).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Read the whole response (head and 10-byte body), then expect EOF.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !got.ends_with(b"0123456789") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("response arrives")
            .unwrap();
        assert!(n > 0, "closed before the response was complete");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the edge closes the idle connection");
    assert_eq!(n.unwrap_or(0), 0);
}

#[tokio::test]
async fn h2_connections_without_requests_are_closed() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(edge.addr()).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink))
        .await
        .expect("an h2 connection that never sends a request is closed")
        .ok();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let origin = MockOrigin::start().await;
    origin.route("/big", Reply::ok(vec![7u8; 32 * 1024 * 1024]));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.send_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(edge.addr()).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read: socket buffers fill, the edge's writes stall, and the send
    // timeout must free the connection (visible in the gauge).
    poll_until(
        "the stalled client to be disconnected",
        Duration::from_secs(15),
        async || {
            let text = edge.metrics().await;
            if text.contains("edge_open_connections 0") && text.contains("body_end=\"aborted\"") {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    drop(stream);
}

#[tokio::test]
async fn a_slow_origin_is_not_mistaken_for_an_idle_client() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/slow",
        Reply::ok("worth the wait").delay(Duration::from_millis(800)),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.idle_timeout = Duration::from_millis(200);
    })
    .await;
    let resp = get(&edge.url("/slow")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.body()[..], b"worth the wait");
}

#[tokio::test]
async fn slowloris_headers_are_cut_off() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.header_read_timeout = Duration::from_millis(400);
    })
    .await;
    let mut stream = TcpStream::connect(edge.addr()).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    // One header byte every 100 ms never completes a head in time.
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
        closed = read.is_ok();
    }
    assert!(closed, "the edge kept a trickling client open");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(origin.hits("/"), 0);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.max_connections = 1;
        // A connection that never sends a request is closed after this.
        c.server.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    // The first connection holds the only slot while it is open.
    let first = TcpStream::connect(edge.addr()).await.unwrap();
    let started = Instant::now();
    let resp = get(&edge.url("/second")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the second connection was served before the first released its slot"
    );
    drop(first);
}

#[tokio::test]
async fn admin_serves_health_and_metrics() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let health = get(&edge.admin_url("/healthz")).await;
    assert_eq!(health.status(), 200);
    assert_eq!(&health.body()[..], b"ok\n");

    get(&edge.url("/counted")).await;
    // The request is counted when its body ends, just after the client has it.
    let text = poll_until("the request to be counted", Duration::from_secs(5), async || {
        let text = edge.metrics().await;
        if text.contains("edge_requests_total{body_end=\"complete\",cache_status=\"MISS\",site=\"default\",status_class=\"2xx\"} 1") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(text.contains("edge_request_duration_seconds_bucket"));
    let origin_line = format!(
        "edge_origin_requests_total{{peer=\"{}\",status_class=\"2xx\"}} 1",
        origin.url()
    );
    assert!(text.contains(&origin_line), "{text}");
    assert_eq!(get(&edge.admin_url("/nope")).await.status(), 404);
}

#[tokio::test]
async fn a_data_dir_serves_one_edge_at_a_time() {
    let origin = MockOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let first = TestEdge::start_in(&origin.url(), dir.path(), |_| {}).await;
    let mut config = edge::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        origins: vec![origin.url().parse().unwrap()],
        ..edge::Config::default()
    };
    config.data_dir = dir.path().to_owned();
    config.cache.disk = "64MiB".parse().unwrap();
    let err = edge::Server::bind(config.clone()).await.unwrap_err();
    assert!(
        matches!(
            err,
            edge::ServerError::DataDir(edge::server::DataDirError::InUse { .. })
        ),
        "second edge on one data dir: {err}"
    );
    first.stop().await;
    // Once the first has stopped, the directory is free again.
    let again = edge::Server::bind(config).await.expect("lock released");
    drop(again);
}
