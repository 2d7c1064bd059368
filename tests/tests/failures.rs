//! Broken origins and broken clients get clear statuses, and the server
//! keeps serving.

use std::time::Duration;

use edge_tests::client::{self, get, raw, send};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, free_port};
use http_body_util::BodyExt;

#[tokio::test]
async fn origin_down_gives_502() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let edge = TestEdge::start(&dead).await;
    let resp = get(&edge.url("/x")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(&resp.body()[..], b"502 Bad Gateway\n");
    // Errors say what the cache did, like every other response.
    assert_eq!(resp.x_cache(), "MISS");
    assert_eq!(resp.cache_status(), "edge; fwd=uri-miss; detail=connect");
    assert_eq!(resp.headers()["via"], "1.1 edge");
}

#[tokio::test]
async fn an_error_before_the_upload_is_read_says_the_connection_closes() {
    // Found by the soak test: the 502 to a POST whose body was never read
    // came without `Connection: close`, the connection was then closed,
    // and the client's next request on it got no answer at all.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let edge = TestEdge::start(&dead).await;
    let body = "x".repeat(200_000);
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(edge.addr(), request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer:.200}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:.400}"
    );
    // The same for the origin's own error, passed on before it read the
    // upload (the soak test's second find).
    let origin = MockOrigin::start().await;
    origin.route("/busy", Reply::ok("busy").status(503));
    let proxied = TestEdge::start(&origin.url()).await;
    let request = format!(
        "POST /busy HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(proxied.addr(), request.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:.200}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:.400}"
    );
    // Without a body nothing is left unread: the connection may stay.
    let answer = raw(
        edge.addr(),
        b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer:.200}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
}

#[tokio::test]
async fn origin_too_slow_gives_504() {
    let origin = MockOrigin::start().await;
    origin.route("/slow", Reply::ok("late").delay(Duration::from_secs(5)));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.upstream.header_timeout = Duration::from_millis(300);
    })
    .await;
    let resp = get(&edge.url("/slow")).await;
    assert_eq!(resp.status(), 504);
    // The origin is still up; another path answers.
    assert_eq!(get(&edge.url("/fast")).await.status(), 200);
}

#[tokio::test]
async fn origin_stalling_mid_body_aborts_the_response() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/stall",
        Reply::chunked(&["start", "never"], Duration::from_secs(30)),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.upstream.read_timeout = Duration::from_millis(300);
    })
    .await;
    let resp = send(&client::http1(), client::get_request(&edge.url("/stall"))).await;
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the edge gives up within its read timeout");
    assert!(body.is_err(), "a stalled body must not look complete");
}

#[tokio::test]
async fn origin_failing_mid_body_truncates_the_response() {
    let origin = MockOrigin::start().await;
    origin.route("/broken", Reply::truncated(1000, "only part"));
    let edge = TestEdge::start(&origin.url()).await;
    let resp = send(&client::http1(), client::get_request(&edge.url("/broken"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "1000");
    let body = resp.into_body().collect().await;
    assert!(body.is_err(), "the client must see the body end abnormally");
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let wait = Duration::from_secs(5);

    let garbage = raw(edge.addr(), b"THIS IS NOT HTTP\r\n\r\n", wait).await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");

    let no_host = raw(edge.addr(), b"GET / HTTP/1.1\r\n\r\n", wait).await;
    assert!(no_host.starts_with("HTTP/1.1 400"), "{no_host:?}");
    assert!(no_host.contains("missing Host"), "{no_host:?}");

    let two_hosts = raw(
        edge.addr(),
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        wait,
    )
    .await;
    assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts:?}");

    let bad_host = raw(edge.addr(), b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", wait).await;
    assert!(bad_host.starts_with("HTTP/1.1 400"), "{bad_host:?}");

    // Framed two ways: read as chunked (RFC 9112 §6.3), sent on framed one
    // way only, and the connection closed after the response (read to EOF
    // within the wait, not held open for a smuggled second request).
    let both = raw(
        edge.addr(),
        b"POST /both HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        wait,
    )
    .await;
    assert!(
        both.to_ascii_lowercase().contains("connection: close"),
        "{both:?}"
    );
    let seen = origin.last_request("/both").expect("forwarded");
    assert!(
        seen.headers.get("content-length").is_none(),
        "{:?}",
        seen.headers
    );
    assert!(seen.body.is_empty());
    assert_eq!(
        origin.hits("/smuggled"),
        0,
        "nothing after the close is read"
    );
    // Transfer codings other than chunked cannot be forwarded faithfully.
    let gzip = raw(
        edge.addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        wait,
    )
    .await;
    assert!(gzip.starts_with("HTTP/1.1 501"), "{gzip:?}");

    assert_eq!(origin.hits("/"), 0, "nothing malformed reached the origin");
    assert_eq!(get(&edge.url("/after")).await.status(), 200);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.max_headers = 20;
        c.server.max_header_bytes = "16KiB".parse().unwrap();
    })
    .await;
    let wait = Duration::from_secs(5);

    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..50 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw(edge.addr(), many.as_bytes(), wait).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:?}");

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let resp = raw(edge.addr(), big.as_bytes(), wait).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:?}");

    assert_eq!(origin.hits("/"), 0);
    assert_eq!(get(&edge.url("/after")).await.status(), 200);
}

#[tokio::test]
async fn origin_connect_timeout_gives_504() {
    // A listener that never accepts, with its one-slot accept queue filled:
    // the kernel drops further SYNs, so connecting hangs until our timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let edge = TestEdge::start_with(&format!("http://{addr}"), |c| {
        c.upstream.connect_timeout = Duration::from_millis(300);
    })
    .await;
    let resp = get(&edge.url("/x")).await;
    assert_eq!(resp.status(), 504);
    drop(listener);
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_not_504() {
    let origin = MockOrigin::start().await;
    origin.route("/upload", Reply::echo());
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.client_body_timeout = Duration::from_millis(300);
    })
    .await;
    let resp = raw(
        edge.addr(),
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp:?}");
}
