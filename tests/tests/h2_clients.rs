//! HTTP/2 clients over TLS: many streams on one connection, a rapid-reset
//! flood, oversized header lists, and TLS session resumption.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_tests::certs::{self, Cert};
use edge_tests::{MockOrigin, Reply, TestEdge, client};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

async fn tls_edge(origin: &MockOrigin, cert: &Cert) -> TestEdge {
    TestEdge::start_with(&origin.url(), |c| cert.serve_on(c)).await
}

async fn connect(edge: &TestEdge, config: Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(edge.tls_addr().expect("tls listener"))
        .await
        .expect("connect");
    TlsConnector::from(config)
        .connect(ServerName::try_from("edge.test").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// An HTTP/2 connection over TLS (ALPN h2) to the edge.
async fn h2_connection(
    edge: &TestEdge,
    cert: &Cert,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let tls = connect(edge, certs::client_config(&[cert], &[b"h2"])).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("https://edge.test{path}"))
        .body(Empty::new())
        .expect("request")
}

#[tokio::test]
async fn a_hundred_concurrent_streams_on_one_connection() {
    let origin = MockOrigin::start().await;
    for i in 0..100 {
        // Half of them take a while at the origin, so streams overlap.
        let delay = Duration::from_millis(if i % 2 == 0 { 300 } else { 0 });
        origin.route(
            &format!("/s{i}"),
            Reply::ok(format!("stream {i}"))
                .header("cache-control", "max-age=60")
                .delay(delay),
        );
    }
    let cert = certs::self_signed(&["edge.test"]);
    let edge = tls_edge(&origin, &cert).await;
    let sender = h2_connection(&edge, &cert).await;

    let started = Instant::now();
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..100 {
        let mut sender = sender.clone();
        streams.spawn(async move {
            let resp = sender
                .send_request(get(&format!("/s{i}")))
                .await
                .expect("response");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (i, status, body)
        });
    }
    while let Some(done) = streams.join_next().await {
        let (i, status, body) = done.expect("stream task");
        assert_eq!(status, 200);
        assert_eq!(body, format!("stream {i}"));
    }
    // Served side by side: one slow origin answer, not fifty in a row.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_rapid_reset_flood_is_cut_off_and_others_are_served() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/flood",
        Reply::ok("slow").delay(Duration::from_millis(500)),
    );
    let cert = certs::self_signed(&["edge.test"]);
    let edge = tls_edge(&origin, &cert).await;
    let tls = connect(&edge, certs::client_config(&[&cert], &[b"h2"])).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    // Watch what the server sends back for a GOAWAY and its error code.
    let goaway = tokio::spawn(async move { read_goaway(&mut reader).await });

    // What the attack sends: each stream's HEADERS and its RST_STREAM in
    // the same write, 100 streams per write, up to 20 000 streams or 10 s.
    writer
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    writer
        .write_all(&frame(0x4, 0, 0, &[]))
        .await
        .expect("settings");
    let started = Instant::now();
    let mut sent = 0u32;
    'flood: while sent < 20_000 && started.elapsed() < Duration::from_secs(10) {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let stream = 2 * sent + 1;
            batch.extend(frame(0x1, 0x5, stream, &request_block("/flood")));
            batch.extend(frame(0x3, 0, stream, &8u32.to_be_bytes())); // CANCEL
            sent += 1;
        }
        if writer.write_all(&batch).await.is_err() {
            break 'flood; // closed by the server
        }
    }
    let (last_stream, code) = tokio::time::timeout(Duration::from_secs(10), goaway)
        .await
        .expect("the server answers the flood within 10 s")
        .expect("reader task")
        .expect("a GOAWAY before the connection ends");
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM, after {sent} streams written");
    // The kernel takes all 20 000 before the close lands; what counts is
    // how far the server read.
    assert!(
        last_stream < 2 * 1000,
        "cut off only at stream {last_stream}"
    );
    assert!(
        origin.hits("/flood") <= 20,
        "cancelled streams reached the origin {} times",
        origin.hits("/flood")
    );

    // Everyone else is still served, promptly.
    let probe = Instant::now();
    let resp = client::get(&edge.url("/after")).await;
    assert_eq!(resp.status(), 200);
    assert!(probe.elapsed() < Duration::from_secs(2));
    let mut fresh = h2_connection(&edge, &cert).await;
    let resp = fresh.send_request(get("/after")).await.expect("response");
    assert_eq!(resp.status(), 200);
}

/// An HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A GET's header block in HPACK: static-table method and scheme,
/// literal `:authority` and `:path` (not indexed, no Huffman).
fn request_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    for (index, value) in [(0x01u8, "edge.test"), (0x04, path)] {
        block.push(index);
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend(value.as_bytes());
    }
    block
}

/// Reads frames until a GOAWAY (its last stream id and error code) or the
/// end of the stream.
async fn read_goaway(reader: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<(u32, u32)> {
    loop {
        let mut head = [0u8; 9];
        reader.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await.ok()?;
        if head[3] == 0x7 && len >= 8 {
            let word = |at: usize| {
                u32::from_be_bytes([
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                ])
            };
            return Some((word(0) & 0x7fff_ffff, word(4)));
        }
    }
}

#[tokio::test]
async fn an_oversized_header_list_is_refused_and_the_server_keeps_serving() {
    let origin = MockOrigin::start().await;
    let cert = certs::self_signed(&["edge.test"]);
    let edge = tls_edge(&origin, &cert).await;
    let mut sender = h2_connection(&edge, &cert).await;

    let mut big = get("/big");
    let filler = "x".repeat(8 * 1024);
    for i in 0..16 {
        big.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).expect("name"),
            filler.parse().expect("value"),
        );
    }
    // A stream error (431) or, for a block this size, GOAWAY for the
    // CONTINUATION flood it takes to send it; never the origin.
    match sender.send_request(big).await {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(err) => assert!(
            err.is_closed()
                || err.to_string().contains("ENHANCE_YOUR_CALM")
                || format!("{err:?}").contains("ENHANCE_YOUR_CALM"),
            "{err:?}"
        ),
    }
    assert_eq!(origin.hits("/big"), 0);
    let mut fresh = h2_connection(&edge, &cert).await;
    let resp = fresh.send_request(get("/small")).await.expect("response");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_returning_client_resumes_its_tls_session() {
    let origin = MockOrigin::start().await;
    let cert = certs::self_signed(&["edge.test"]);
    let edge = tls_edge(&origin, &cert).await;
    // One client configuration: its session store carries the ticket.
    let config = certs::client_config(&[&cert], &[b"http/1.1"]);
    for round in 0..2 {
        let tls = connect(&edge, config.clone()).await;
        let kind = tls.get_ref().1.handshake_kind();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1 handshake");
        let conn = tokio::spawn(conn);
        // Reading a response also reads the ticket sent after the handshake.
        let resp = sender.send_request(get("/r")).await.expect("response");
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await;
        drop(sender);
        let _ = conn.await;
        let expected = if round == 0 {
            rustls::HandshakeKind::Full
        } else {
            rustls::HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(expected), "round {round}");
    }
}
