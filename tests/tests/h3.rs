//! HTTP/3 for clients (issue 26): QUIC on the TLS listener's certificates,
//! the same cache as HTTP/1.1 and h2, streams, uploads, ranges, resets,
//! unknown SNI, stalled handshakes and a graceful shutdown, through the
//! quinn + h3 client of `edge_tests::h3`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::certs::{self, Cert};
use edge_tests::h3::{H3Client, read_response};
use edge_tests::{
    Gate, MockOrigin, Reply, TestEdge, client, eventually, eventually_within, metrics,
};
use http::Request;
use rustls::pki_types::CertificateDer;

const NAME: &str = "edge.test";

async fn h3_edge(origin: &MockOrigin, tweak: impl FnOnce(&mut edge::Config)) -> (TestEdge, Cert) {
    let cert = certs::self_signed(&[NAME]);
    let edge = TestEdge::start_with(&origin.url(), |c| {
        cert.serve_h3_on(c);
        tweak(c);
    })
    .await;
    (edge, cert)
}

async fn client(edge: &TestEdge, cert: &Cert) -> H3Client {
    H3Client::connect(edge.h3_addr().expect("an HTTP/3 listener"), cert, NAME)
        .await
        .expect("HTTP/3 connection")
}

/// One GET over TLS (HTTP/1.1, or h2 when `h2`): status, `X-Cache`,
/// `Alt-Svc` and the body.
async fn get_tls(
    edge: &TestEdge,
    cert: &Cert,
    h2: bool,
    path: &str,
) -> (u16, String, String, Bytes) {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let addr = edge.tls_addr().expect("TLS listener");
    let (protocol, resp) = client::get_tls(addr, cert, NAME, alpn, path).await;
    assert_eq!(protocol.as_deref() == Some(b"h2"), h2, "{protocol:?}");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (cache, alt_svc) = (header("x-cache"), header("alt-svc"));
    (resp.status().as_u16(), cache, alt_svc, resp.into_body())
}

#[tokio::test]
async fn an_object_cached_over_h3_is_a_hit_over_h1_and_h2_and_the_other_way_round() {
    let origin = MockOrigin::start().await;
    for path in ["/via-h3", "/via-h1"] {
        origin.route(path, Reply::ok(path).header("cache-control", "max-age=600"));
    }
    let (edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;

    let first = h3.get("/via-h3").await.expect("h3 GET");
    assert_eq!((first.status.as_u16(), first.x_cache()), (200, "MISS"));
    assert_eq!(&first.body[..], b"/via-h3");
    let (status, cache, alt_svc, body) = get_tls(&edge, &cert, false, "/via-h3").await;
    assert_eq!(
        (status, cache.as_str(), &body[..]),
        (200, "HIT", &b"/via-h3"[..])
    );
    let port = edge.h3_addr().expect("h3").port();
    assert_eq!(
        alt_svc,
        format!("h3=\":{port}\"; ma=86400"),
        "TLS answers advertise h3"
    );
    let (_, cache, _, _) = get_tls(&edge, &cert, true, "/via-h3").await;
    assert_eq!(cache, "HIT", "and over h2");
    assert_eq!(origin.hits("/via-h3"), 1);

    let (_, cache, _, _) = get_tls(&edge, &cert, false, "/via-h1").await;
    assert_eq!(cache, "MISS");
    let second = h3.get("/via-h1").await.expect("h3 GET");
    assert_eq!((second.status.as_u16(), second.x_cache()), (200, "HIT"));
    assert_eq!(&second.body[..], b"/via-h1");
    assert_eq!(origin.hits("/via-h1"), 1);
    // HTTP/3 answers do not advertise what the client already uses.
    assert!(second.headers.get("alt-svc").is_none());

    let text = edge.metrics().await;
    let h3_requests =
        metrics::value(&text, "edge_requests_by_protocol_total{protocol=\"h3\"}").unwrap_or(0.0);
    assert_eq!(h3_requests, 2.0, "{text}");
    let accepted = metrics::value(&text, "edge_h3_connections_total{result=\"accepted\"}");
    assert_eq!(accepted, Some(1.0));
}

#[tokio::test]
async fn a_hundred_concurrent_streams_share_one_connection() {
    let origin = MockOrigin::start().await;
    origin.fallback(|path| Reply::ok(path.to_owned()).header("cache-control", "max-age=600"));
    let (edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;
    let requests = (0..100).map(|i| {
        let h3 = h3.clone();
        tokio::spawn(async move { (i, h3.get(&format!("/stream/{i}")).await) })
    });
    for task in requests {
        let (i, resp) = task.await.expect("task");
        let resp = resp.expect("response");
        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(resp.body, format!("/stream/{i}").into_bytes());
    }
    assert_eq!(origin.total_hits(), 100);
    let text = edge.metrics().await;
    let accepted = metrics::value(&text, "edge_h3_connections_total{result=\"accepted\"}");
    assert_eq!(accepted, Some(1.0), "all on one connection");
}

#[tokio::test]
async fn uploads_stream_to_the_origin_with_or_without_a_length() {
    let origin = MockOrigin::start().await;
    origin.route("/upload", Reply::echo());
    let (edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;
    let body: Bytes = (0..5 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let req = Request::post(h3.url("/upload"))
        .header("content-length", body.len().to_string())
        .body(())
        .expect("request");
    let resp = h3
        .send_whole(req, Some(body.clone()))
        .await
        .expect("upload");
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body == body, "the echo is the upload");
    let seen = origin.last_request("/upload").expect("forwarded");
    assert_eq!(seen.headers["content-length"], body.len().to_string());

    // No length: forwarded chunked, as an HTTP/2 upload without one is.
    let small = body.slice(..300_000);
    let req = Request::put(h3.url("/upload")).body(()).expect("request");
    let resp = h3
        .send_whole(req, Some(small.clone()))
        .await
        .expect("upload");
    assert_eq!(resp.status.as_u16(), 200);
    assert!(resp.body == small);
    let seen = origin.last_request("/upload").expect("forwarded");
    assert_eq!(seen.headers["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn a_range_request_over_h3_gets_its_bytes() {
    let origin = MockOrigin::start().await;
    let file: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    origin.route(
        "/file",
        Reply::file(file.clone()).header("cache-control", "max-age=600"),
    );
    let (edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;
    let resp = h3
        .get_with("/file", &[("range", "bytes=100-199")])
        .await
        .expect("range");
    assert_eq!(resp.status.as_u16(), 206);
    assert_eq!(&resp.body[..], &file[100..200]);
    assert_eq!(resp.headers["content-range"], "bytes 100-199/1000");
    // The whole object is cached: a second range is a hit.
    let again = h3
        .get_with("/file", &[("range", "bytes=-10")])
        .await
        .expect("range");
    assert_eq!((again.status.as_u16(), again.x_cache()), (206, "HIT"));
    assert_eq!(&again.body[..], &file[990..]);
}

#[tokio::test]
async fn a_stream_reset_mid_body_leaves_the_fill_to_finish_for_others() {
    let origin = MockOrigin::start().await;
    let gate = Arc::new(tokio::sync::Notify::new());
    origin.route(
        "/slow",
        Reply::gated(&["first-", "rest"], gate.clone()).header("cache-control", "max-age=600"),
    );
    let (edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;
    let mut stream = h3
        .open(Request::get(h3.url("/slow")).body(()).expect("request"))
        .await
        .expect("stream");
    stream.finish().await.expect("finish");
    let head = stream.recv_response().await.expect("head");
    assert_eq!(head.status().as_u16(), 200);
    let first = stream
        .recv_data()
        .await
        .expect("data")
        .expect("a first chunk");
    assert!(bytes::Buf::remaining(&first) > 0);
    // The client gives up mid-body: dropping the stream sends STOP_SENDING
    // (h3-quinn's own stop_sending panics while a read is pending).
    drop(stream);
    gate.notify_one();

    let other = client(&edge, &cert).await;
    let whole = other.get("/slow").await.expect("GET");
    assert_eq!(
        (whole.status.as_u16(), &whole.body[..]),
        (200, &b"first-rest"[..])
    );
    eventually("the fill to be stored", async || {
        other.get("/slow").await.is_ok_and(|r| r.x_cache() == "HIT")
    })
    .await;
    assert_eq!(
        origin.hits("/slow"),
        1,
        "one fill, finished despite the reset"
    );
}

/// The leaf certificate the edge presents over QUIC for SNI `name`.
async fn presented(edge: &TestEdge, roots: &[&Cert], name: &str) -> CertificateDer<'static> {
    let endpoint = edge_tests::h3::endpoint(roots).expect("endpoint");
    let conn = endpoint
        .connect(edge.h3_addr().expect("h3"), name)
        .expect("connect")
        .await
        .expect("handshake");
    let chain = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .expect("a certificate chain");
    chain[0].clone()
}

#[tokio::test]
async fn sni_picks_the_certificate_as_on_the_tls_listener_unknown_names_get_the_default() {
    let origin = MockOrigin::start().await;
    let default = certs::self_signed(&["default.test", "unknown.test"]);
    let named = certs::self_signed(&["named.test"]);
    let edge = TestEdge::start_with(&origin.url(), |c| {
        default.serve_h3_on(c);
        c.tls.certs = vec![edge::config::SniCert {
            names: vec!["named.test".into()],
            cert: named.cert_path.clone(),
            key: named.key_path.clone(),
        }];
    })
    .await;
    let all = [&default, &named];
    assert_eq!(presented(&edge, &all, "named.test").await, named.der);
    assert_eq!(presented(&edge, &all, "unknown.test").await, default.der);
    // A client that checks the name refuses the default for a name it
    // does not cover, as with TLS over TCP.
    let endpoint = edge_tests::h3::endpoint(&all).expect("endpoint");
    let refused = endpoint
        .connect(edge.h3_addr().expect("h3"), "other.test")
        .expect("connect")
        .await;
    assert!(
        refused.is_err(),
        "the default certificate does not name other.test"
    );
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_timed_out() {
    let origin = MockOrigin::start().await;
    let (edge, cert) = h3_edge(&origin, |c| {
        c.server.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    // Between client and edge: datagrams go to the edge, never back, so
    // the handshake stalls after the client's first flight.
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let edge_udp = edge.h3_addr().expect("h3");
    let front_addr = front.local_addr().expect("addr");
    let relay = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = front.recv_from(&mut buf).await {
            let _ = back.send_to(&buf[..n], edge_udp).await;
        }
    });
    let endpoint = edge_tests::h3::endpoint(&[&cert]).expect("endpoint");
    let connecting = endpoint.connect(front_addr, NAME).expect("connect");
    let stalled = tokio::spawn(tokio::time::timeout(Duration::from_secs(10), connecting));
    eventually_within(
        "the stalled handshake to time out",
        Duration::from_secs(5),
        async || {
            let text = edge.metrics().await;
            metrics::value(
                &text,
                "edge_h3_connections_total{result=\"handshake_timeout\"}",
            ) == Some(1.0)
        },
    )
    .await;
    eventually("the stalled connection's slot to be freed", async || {
        metrics::value(&edge.metrics().await, "edge_open_connections") == Some(0.0)
    })
    .await;
    let text = edge.metrics().await;
    assert_eq!(
        metrics::value(&text, "edge_h3_connections_total{result=\"accepted\"}"),
        None
    );
    relay.abort();
    stalled.abort();
}

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_the_open_stream_finish() {
    let origin = MockOrigin::start().await;
    let gate = Gate::new();
    origin.route("/held", Reply::ok("finished anyway").held(&gate));
    origin.route("/probe", Reply::ok("probe"));
    let (mut edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;
    let in_flight = {
        let h3 = h3.clone();
        tokio::spawn(async move {
            let mut stream = h3
                .open(Request::get(h3.url("/held")).body(()).expect("request"))
                .await?;
            stream.finish().await?;
            read_response(&mut stream).await
        })
    };
    origin.wait_for_hits("/held", 1).await;
    let mut handle = edge.take_handle();
    handle.begin_shutdown();
    // GOAWAY reaches the client: new requests are refused on its side.
    let mut refused = false;
    for _ in 0..200 {
        if h3.get("/probe").await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "no GOAWAY: new requests still accepted");
    assert!(!in_flight.is_finished(), "the held request is still open");
    gate.open();
    let resp = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("in time")
        .expect("task")
        .expect("the open stream completes");
    assert_eq!(
        (resp.status.as_u16(), &resp.body[..]),
        (200, &b"finished anyway"[..])
    );
    tokio::time::timeout(Duration::from_secs(10), handle.wait())
        .await
        .expect("the edge stops once drained")
        .expect("clean stop");
}

#[tokio::test]
async fn past_the_retry_threshold_clients_prove_their_address_first() {
    let origin = MockOrigin::start().await;
    origin.route("/r", Reply::ok("validated"));
    // 0: every client is asked for a Retry token.
    let (edge, cert) = h3_edge(&origin, |c| c.tls.h3_retry_threshold = 0).await;
    let h3 = client(&edge, &cert).await;
    let resp = h3.get("/r").await.expect("GET after a Retry");
    assert_eq!(&resp.body[..], b"validated");
    let text = edge.metrics().await;
    assert_eq!(
        metrics::value(&text, "edge_h3_connections_total{result=\"retry\"}"),
        Some(1.0)
    );
    assert_eq!(
        metrics::value(&text, "edge_h3_connections_total{result=\"accepted\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn h3_connections_count_against_max_connections() {
    let origin = MockOrigin::start().await;
    origin.route("/c", Reply::ok("one"));
    // 2: the TCP accept loop holds one place while it waits for a client.
    let (edge, cert) = h3_edge(&origin, |c| c.server.max_connections = 2).await;
    let first = client(&edge, &cert).await;
    assert_eq!(&first.get("/c").await.expect("GET").body[..], b"one");
    let second = H3Client::connect(edge.h3_addr().expect("h3"), &cert, NAME).await;
    assert!(second.is_err(), "over the cap: refused");
    let text = edge.metrics().await;
    assert_eq!(
        metrics::value(&text, "edge_h3_connections_total{result=\"refused\"}"),
        Some(1.0)
    );
    drop(first);
}

/// Between a client and the edge: passes datagrams both ways, but holds
/// the client's for `hold` once the edge has answered, so its handshake
/// completes late while what it sent first (0-RTT) arrives at once.
async fn slow_finish_relay(edge: std::net::SocketAddr, hold: Duration) -> std::net::SocketAddr {
    let front = Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    );
    let back = Arc::new(
        tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    );
    let addr = front.local_addr().expect("addr");
    let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = Arc::new(std::sync::Mutex::new(None));
    {
        let (front, back, answered, client) = (
            front.clone(),
            back.clone(),
            answered.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().expect("lock") = Some(from);
                let datagram = buf[..n].to_vec();
                if answered.load(std::sync::atomic::Ordering::Acquire) {
                    let back = back.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(hold).await;
                        let _ = back.send_to(&datagram, edge).await;
                    });
                } else {
                    let _ = back.send_to(&datagram, edge).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = back.recv_from(&mut buf).await {
            answered.store(true, std::sync::atomic::Ordering::Release);
            let to = *client.lock().expect("lock");
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn zero_rtt_when_enabled_serves_safe_methods_only() {
    let origin = MockOrigin::start().await;
    origin.route("/early", Reply::echo_header("early-data"));
    origin.route("/write", Reply::ok("written"));
    let (edge, cert) = h3_edge(&origin, |c| c.tls.h3_zero_rtt = true).await;
    let relay = slow_finish_relay(edge.h3_addr().expect("h3"), Duration::from_millis(500)).await;
    let mut tls = (*certs::client_config(&[&cert], &[b"h3"])).clone();
    tls.enable_early_data = true;
    let endpoint = edge_tests::h3::endpoint_with(Arc::new(tls)).expect("endpoint");
    // A first connection leaves a ticket that allows early data.
    let conn = endpoint
        .connect(relay, NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let first = H3Client::over(endpoint.clone(), conn.clone(), NAME)
        .await
        .expect("h3");
    assert_eq!(first.get("/early").await.expect("GET").status.as_u16(), 200);
    conn.close(0u32.into(), b"");
    drop(first);

    let connecting = endpoint.connect(relay, NAME).expect("connect");
    let Ok((conn, _accepted)) = connecting.into_0rtt() else {
        panic!("no 0-RTT on the second connection");
    };
    let early = H3Client::over(endpoint.clone(), conn, NAME)
        .await
        .expect("h3");
    let (write, read) = tokio::join!(
        early.send_whole(
            Request::post(early.url("/write"))
                .header("content-length", "1")
                .body(())
                .expect("request"),
            Some(Bytes::from_static(b"x")),
        ),
        early.get("/early"),
    );
    let write = write.expect("POST answered");
    assert_eq!(
        write.status.as_u16(),
        425,
        "unsafe methods wait for the handshake"
    );
    assert_eq!(origin.hits("/write"), 0);
    let read = read.expect("GET answered");
    assert_eq!(read.status.as_u16(), 200);
    assert_eq!(
        &read.body[..],
        b"1",
        "the origin is told the request was early"
    );
    // After the handshake the same request goes through.
    eventually("the POST to pass once the handshake is done", async || {
        let req = Request::post(early.url("/write"))
            .header("content-length", "1")
            .body(())
            .expect("request");
        early
            .send_whole(req, Some(Bytes::from_static(b"x")))
            .await
            .is_ok_and(|r| r.status.as_u16() == 200)
    })
    .await;
}

#[tokio::test]
async fn conditionals_over_h3_are_answered_from_the_cache() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/tagged",
        Reply::ok("tagged body")
            .header("cache-control", "max-age=600")
            .header("etag", "\"v1\""),
    );
    let (edge, cert) = h3_edge(&origin, |_| {}).await;
    let h3 = client(&edge, &cert).await;
    let first = h3.get("/tagged").await.expect("GET");
    assert_eq!((first.status.as_u16(), first.x_cache()), (200, "MISS"));
    let revalidated = h3
        .get_with("/tagged", &[("if-none-match", "\"v1\"")])
        .await
        .expect("conditional GET");
    assert_eq!(revalidated.status.as_u16(), 304);
    assert!(revalidated.body.is_empty());
    let changed = h3
        .get_with("/tagged", &[("if-none-match", "\"v0\"")])
        .await
        .expect("conditional GET");
    assert_eq!(
        (changed.status.as_u16(), &changed.body[..]),
        (200, &b"tagged body"[..])
    );
    assert_eq!(origin.hits("/tagged"), 1);
}
