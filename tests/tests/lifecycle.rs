//! Connection lifetime: idle and slow clients, the connection limit, graceful
//! shutdown and the admin listener.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_tests::client::{self, get, send};
use edge_tests::{MockOrigin, Reply, TestEdge};
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

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
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(edge.addr()).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed by the edge");
    assert_eq!(n.unwrap_or(0), 0);
    assert!(started.elapsed() >= Duration::from_millis(250));
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
        c.server.idle_timeout = Duration::from_millis(500);
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
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = get(&edge.admin_url("/metrics")).await;
        let text = String::from_utf8_lossy(metrics.body()).into_owned();
        if text.contains("edge_requests_total{body_end=\"complete\",status_class=\"2xx\"} 1") {
            assert!(text.contains("edge_request_duration_seconds_bucket"));
            assert!(text.contains("edge_origin_requests_total{status_class=\"2xx\"} 1"));
            break;
        }
        assert!(Instant::now() < deadline, "request never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&edge.admin_url("/nope")).await.status(), 404);
}
