//! gRPC-style calls through the edge (docs/protocols.md): an h2c client to
//! the edge, the edge to an `http2 = true` origin written with the `h2`
//! crate. Unary, server-streaming and bidi calls whose messages arrive
//! before their streams end, trailers both ways, a non-zero `grpc-status`,
//! and never a cache hit.

// A test binary: helpers unwrap like the tests (a panic fails the test).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_tests::TestEdge;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Request, Response};
use origin_shield::{Peer, Transport};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A gRPC-ish echo origin over HTTP/2 (prior knowledge). Paths:
/// `Unary` echoes the whole request after it ends; `ServerStream` sends
/// `one`, waits for the test's [`Notify`], then `two`; `Bidi` echoes each
/// piece as it comes and returns the request's `x-client-trailer` as a
/// trailer; `Fail` answers `grpc-status: 5`.
struct GrpcOrigin {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    release: Arc<Notify>,
}

impl GrpcOrigin {
    async fn start() -> GrpcOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let (seen, gate) = (heads.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (seen, gate) = (seen.clone(), gate.clone());
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        tokio::spawn(call(req, respond, seen.clone(), gate.clone()));
                    }
                });
            }
        });
        GrpcOrigin {
            addr,
            heads,
            release,
        }
    }

    fn calls(&self, path: &str) -> Vec<HeaderMap> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .collect()
    }
}

fn grpc_head() -> Response<()> {
    Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

fn status_trailers(status: &'static str, message: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(status));
    t.insert("grpc-message", HeaderValue::from_static(message));
    t
}

/// The next data piece of `body`, its flow-control capacity given back.
async fn piece(body: &mut RecvStream) -> Option<Bytes> {
    let data = body.data().await?.ok()?;
    let _ = body.flow_control().release_capacity(data.len());
    Some(data)
}

async fn call(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    gate: Arc<Notify>,
) {
    let path = req.uri().path().to_owned();
    seen.lock()
        .unwrap()
        .push((path.clone(), req.headers().clone()));
    let mut body = req.into_body();
    match path.as_str() {
        "/echo.Echo/Unary" => {
            let mut all = Vec::new();
            while let Some(data) = piece(&mut body).await {
                all.extend_from_slice(&data);
            }
            // Storable, were it an ordinary response: only the edge's gRPC
            // rule keeps a GET of it from being a hit.
            let mut head = grpc_head();
            head.headers_mut()
                .insert("cache-control", HeaderValue::from_static("max-age=600"));
            let mut send = respond.send_response(head, false).unwrap();
            send.send_data(Bytes::from(all), false).unwrap();
            send.send_trailers(status_trailers("0", "")).unwrap();
        }
        "/echo.Echo/ServerStream" => {
            while piece(&mut body).await.is_some() {}
            let mut send = respond.send_response(grpc_head(), false).unwrap();
            send.send_data(Bytes::from_static(b"one"), false).unwrap();
            // Held until the client has seen `one`: a buffering proxy
            // would never let it.
            gate.notified().await;
            send.send_data(Bytes::from_static(b"two"), false).unwrap();
            send.send_trailers(status_trailers("0", "")).unwrap();
        }
        "/echo.Echo/Bidi" => {
            let mut send = respond.send_response(grpc_head(), false).unwrap();
            while let Some(data) = piece(&mut body).await {
                send.send_data(data, false).unwrap();
            }
            let mut trailers = status_trailers("0", "");
            if let Ok(Some(theirs)) = body.trailers().await
                && let Some(v) = theirs.get("x-client-trailer")
            {
                trailers.insert("x-client-trailer", v.clone());
            }
            send.send_trailers(trailers).unwrap();
        }
        _ => {
            while piece(&mut body).await.is_some() {}
            let mut send = respond.send_response(grpc_head(), false).unwrap();
            send.send_trailers(status_trailers("5", "no such thing"))
                .unwrap();
        }
    }
}

/// An edge in front of `origin`, which it reaches over HTTP/2.
async fn edge_for(origin: &GrpcOrigin) -> TestEdge {
    let url = format!("http://{}", origin.addr);
    let peer: Peer = url.parse::<Peer>().unwrap().with_transport(Transport {
        http2: true,
        ..Transport::default()
    });
    TestEdge::start_with(&url, move |c| c.origins = vec![peer]).await
}

/// An h2c (prior knowledge) client connection to the edge.
async fn h2_client(edge: &TestEdge) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(edge.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client.ready().await.unwrap()
}

fn grpc_request(edge: &TestEdge, method: &str, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", edge.addr()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// Bounded, so that a buffering edge fails the test instead of hanging it.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} within 10s"))
}

/// Reads exactly `n` bytes of response body (pieces may split or merge).
async fn read_n(body: &mut RecvStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let data = within("a response piece", piece(body))
            .await
            .expect("more body");
        got.extend_from_slice(&data);
    }
    got
}

#[tokio::test]
async fn a_unary_call_gets_its_answer_and_grpc_status_0() {
    let origin = GrpcOrigin::start().await;
    let edge = edge_for(&origin).await;
    let mut client = h2_client(&edge).await;
    let req = grpc_request(&edge, "POST", "/echo.Echo/Unary");
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(b"\0\0\0\0\x05hello"), true)
        .unwrap();
    let resp = within("the response head", resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let mut body = resp.into_body();
    assert_eq!(read_n(&mut body, 10).await, b"\0\0\0\0\x05hello");
    let trailers = within("trailers", body.trailers())
        .await
        .unwrap()
        .expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "");
    let seen = origin.calls("/echo.Echo/Unary");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["te"], "trailers");
    assert_eq!(seen[0]["content-type"], "application/grpc");
}

#[tokio::test]
async fn a_server_stream_arrives_message_by_message() {
    let origin = GrpcOrigin::start().await;
    let edge = edge_for(&origin).await;
    let mut client = h2_client(&edge).await;
    let req = grpc_request(&edge, "POST", "/echo.Echo/ServerStream");
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(b"go"), true).unwrap();
    let resp = within("the response head", resp).await.unwrap();
    let mut body = resp.into_body();
    // `two` is only sent after we have seen `one`.
    assert_eq!(read_n(&mut body, 3).await, b"one");
    origin.release.notify_one();
    assert_eq!(read_n(&mut body, 3).await, b"two");
    let trailers = within("trailers", body.trailers())
        .await
        .unwrap()
        .expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn a_bidi_stream_echoes_each_message_and_trailers_go_both_ways() {
    let origin = GrpcOrigin::start().await;
    let edge = edge_for(&origin).await;
    let mut client = h2_client(&edge).await;
    let req = grpc_request(&edge, "POST", "/echo.Echo/Bidi");
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(b"ping-1"), false)
        .unwrap();
    // The head and the first echo come while our request is still open.
    let resp = within("the response head", resp).await.unwrap();
    let mut body = resp.into_body();
    assert_eq!(read_n(&mut body, 6).await, b"ping-1");
    send.send_data(Bytes::from_static(b"ping-2"), false)
        .unwrap();
    assert_eq!(read_n(&mut body, 6).await, b"ping-2");
    let mut ours = HeaderMap::new();
    ours.insert("x-client-trailer", HeaderValue::from_static("checksum-42"));
    send.send_trailers(ours).unwrap();
    let trailers = within("trailers", body.trailers())
        .await
        .unwrap()
        .expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-client-trailer"], "checksum-42");
}

#[tokio::test]
async fn a_failing_call_passes_its_grpc_status_on() {
    let origin = GrpcOrigin::start().await;
    let edge = edge_for(&origin).await;
    let mut client = h2_client(&edge).await;
    let req = grpc_request(&edge, "POST", "/echo.Echo/Fail");
    let (resp, _send) = client.send_request(req, true).unwrap();
    let resp = within("the response head", resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let trailers = within("trailers", body.trailers())
        .await
        .unwrap()
        .expect("trailers");
    assert_eq!(trailers["grpc-status"], "5");
    assert_eq!(trailers["grpc-message"], "no such thing");
}

#[tokio::test]
async fn grpc_is_never_served_from_cache_even_as_a_get() {
    let origin = GrpcOrigin::start().await;
    let edge = edge_for(&origin).await;
    let mut client = h2_client(&edge).await;
    for _ in 0..2 {
        let req = grpc_request(&edge, "GET", "/echo.Echo/Unary");
        let (resp, _send) = client.send_request(req, true).unwrap();
        let resp = within("the response head", resp).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let trailers = within("trailers", body.trailers())
            .await
            .unwrap()
            .expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
    }
    assert_eq!(
        origin.calls("/echo.Echo/Unary").len(),
        2,
        "both reached the origin"
    );
}
