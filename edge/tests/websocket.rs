//! WebSocket through the edge (docs/protocols.md): an echo origin written
//! with tokio-tungstenite, a tungstenite client talking to the edge; frames
//! both ways, closes from each side, an origin that declines, a protocol
//! the config does not allow, and the tunnel's idle timeout, connection
//! slot and shutdown; then the same echo reached by HTTP/2 clients with
//! the extended CONNECT of RFC 8441, which the edge translates.
// A test binary: helpers unwrap like the tests (a panic fails the test).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_tests::{MockOrigin, Reply, TestEdge, client, eventually, metrics};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as WsRequest};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A text message that makes the origin close the WebSocket itself.
const CLOSE_PLEASE: &str = "close, please";

/// A WebSocket echo server: every text and binary message comes back;
/// `/refuse` is answered 400 instead of 101. Keeps the request heads it saw.
struct WsOrigin {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<HeaderMap>>>,
}

impl WsOrigin {
    async fn start() -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(echo(stream, seen.clone()));
            }
        });
        WsOrigin { addr, heads }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn last_head(&self) -> HeaderMap {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

// tungstenite's callback type, not ours, has the large error.
#[allow(clippy::result_large_err)]
async fn echo(stream: TcpStream, seen: Arc<Mutex<Vec<HeaderMap>>>) {
    let check = |req: &WsRequest, resp| {
        seen.lock().unwrap().push(req.headers().clone());
        if req.uri().path() == "/refuse" {
            let refusal: ErrorResponse = http::Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Some("no WebSocket here".to_owned()))
                .unwrap();
            return Err(refusal);
        }
        if req.uri().path() == "/forbidden" {
            let refusal: ErrorResponse = http::Response::builder()
                .status(StatusCode::FORBIDDEN)
                .body(Some("not for you".to_owned()))
                .unwrap();
            return Err(refusal);
        }
        let mut resp: http::Response<()> = resp;
        // Picks the first subprotocol offered, as a chat server would.
        let first = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| http::HeaderValue::from_str(v.trim()).unwrap());
        if let Some(chosen) = first {
            resp.headers_mut().insert("sec-websocket-protocol", chosen);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    // Pings are answered and closes completed by tungstenite itself.
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() && msg.to_text().is_ok_and(|t| t == CLOSE_PLEASE) {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            };
            let _ = ws.close(Some(frame)).await;
        } else if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}

type Client = WebSocketStream<TcpStream>;

/// A WebSocket to `path` through the edge.
async fn connect(edge: &TestEdge, path: &str) -> Result<Client, WsError> {
    let tcp = TcpStream::connect(edge.addr()).await.unwrap();
    let url = format!("ws://{}{path}", edge.addr());
    let (ws, resp) = tokio_tungstenite::client_async(url, tcp).await?;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(resp.headers().contains_key("via"), "{:?}", resp.headers());
    Ok(ws)
}

/// The next message, within a bound so that a broken tunnel fails the
/// test instead of hanging it.
async fn next<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message or the end within 10s")
}

async fn echoed<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    msg: Message,
) -> Message {
    ws.send(msg).await.unwrap();
    next(ws).await.expect("a message").unwrap()
}

/// Closes `ws` from the client: the origin's answer to the close, the end
/// of the stream, and the tunnel counted as closed once both directions
/// have ended.
async fn close_from_the_client<S: AsyncRead + AsyncWrite + Unpin>(
    edge: &TestEdge,
    mut ws: WebSocketStream<S>,
) {
    ws.close(None).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Close(_))) | None => {}
        other => panic!("expected the close handshake, got {other:?}"),
    }
    assert!(matches!(
        next(&mut ws).await,
        None | Some(Err(WsError::ConnectionClosed))
    ));
    drop(ws);
    eventually("the tunnel counted as closed", async || {
        closed_for(edge, "closed").await
    })
    .await;
}

/// One echo on `ws`, then quiet: the edge ends the tunnel no sooner than
/// `idle` after it relayed the echo, and counts it as idle.
async fn closed_when_quiet<S: AsyncRead + AsyncWrite + Unpin>(
    edge: &TestEdge,
    mut ws: WebSocketStream<S>,
    idle: Duration,
) {
    // A monotonic measure of a real timeout, not cache time, started
    // before the echo: the edge's idle timer starts when it relays the
    // echo, which is before this client sees it.
    let quiet_since = Instant::now();
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    let end = next(&mut ws).await;
    assert!(
        matches!(end, None | Some(Err(_))),
        "the edge ends the tunnel: {end:?}"
    );
    assert!(quiet_since.elapsed() >= idle, "{:?}", quiet_since.elapsed());
    eventually("the tunnel counted as idle", async || {
        closed_for(edge, "idle").await
    })
    .await;
}

fn upgrades(text: &str, protocol: &str, result: &str) -> f64 {
    metrics::value(
        text,
        &format!("edge_upgrades_total{{protocol=\"{protocol}\",result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn closed_for(edge: &TestEdge, reason: &str) -> bool {
    let text = edge.metrics().await;
    let prefix = format!("edge_tunnels_closed_total{{reason=\"{reason}\"}}");
    metrics::value(&text, &prefix) == Some(1.0)
        && metrics::value(&text, "edge_open_tunnels") == Some(0.0)
}

#[tokio::test]
async fn text_and_binary_frames_echo_through_the_edge() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let mut ws = connect(&edge, "/chat").await.unwrap();

    let text = echoed(&mut ws, Message::text("hello, edge")).await;
    assert_eq!(text, Message::text("hello, edge"));
    let bytes = vec![0u8, 1, 2, 254, 255];
    let binary = echoed(&mut ws, Message::binary(bytes.clone())).await;
    assert_eq!(binary, Message::binary(bytes));

    // The origin was asked to switch, by the edge, for this client.
    let head = origin.last_head();
    assert_eq!(head["upgrade"], "websocket");
    assert!(
        head["connection"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("upgrade")
    );
    assert_eq!(head["x-forwarded-for"], "127.0.0.1");
    assert!(head.contains_key("sec-websocket-key"));

    let text = edge.metrics().await;
    assert_eq!(upgrades(&text, "websocket", "tunnel"), 1.0);
    assert_eq!(metrics::value(&text, "edge_open_tunnels"), Some(1.0));
    assert!(
        metrics::value(&text, "edge_tunnel_bytes_total{direction=\"to_origin\"}").unwrap() > 0.0
    );
}

#[tokio::test]
async fn a_one_mebibyte_message_arrives_whole() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let mut ws = connect(&edge, "/big").await.unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back = echoed(&mut ws, Message::binary(big.clone())).await;
    assert_eq!(back.into_data().as_ref(), big.as_slice());
    // And the tunnel still carries small messages after it.
    let after = echoed(&mut ws, Message::text("after")).await;
    assert_eq!(after, Message::text("after"));
}

#[tokio::test]
async fn the_client_closes() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let mut ws = connect(&edge, "/chat").await.unwrap();
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    close_from_the_client(&edge, ws).await;
}

#[tokio::test]
async fn the_origin_closes() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let mut ws = connect(&edge, "/chat").await.unwrap();
    ws.send(Message::text(CLOSE_PLEASE)).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the origin's close frame, got {other:?}"),
    }
    // tungstenite answered the close; the origin then ends the stream.
    assert!(matches!(
        next(&mut ws).await,
        None | Some(Err(WsError::ConnectionClosed))
    ));
    // The client's socket closes too: both directions have ended.
    drop(ws);
    eventually("the tunnel counted as closed", async || {
        closed_for(&edge, "closed").await
    })
    .await;
}

#[tokio::test]
async fn an_upgrade_the_origin_declines_is_its_answer() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    match connect(&edge, "/refuse").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            assert!(resp.headers().contains_key("via"));
        }
        Err(other) => panic!("expected the origin's 400, got {other:?}"),
        Ok(_) => panic!("expected the origin's 400, got a WebSocket"),
    }
    let text = edge.metrics().await;
    assert_eq!(upgrades(&text, "websocket", "declined"), 1.0);
    assert_eq!(metrics::value(&text, "edge_open_tunnels"), Some(0.0));
    // The edge still serves on.
    let mut ws = connect(&edge, "/chat").await.unwrap();
    assert_eq!(
        echoed(&mut ws, Message::text("x")).await,
        Message::text("x")
    );
}

#[tokio::test]
async fn a_protocol_the_config_does_not_list_goes_as_a_plain_request() {
    let origin = MockOrigin::start().await;
    origin.route("/plain", Reply::ok("plain answer"));
    let edge = TestEdge::start(&origin.url()).await;
    let req = Request::get(edge.url("/plain"))
        .header("connection", "upgrade")
        .header("upgrade", "x-custom/1")
        .body(Full::default())
        .unwrap();
    let resp = client::fetch(&client::http1(), req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().as_ref(), b"plain answer");
    let seen = origin.last_request("/plain").expect("forwarded");
    assert!(!seen.headers.contains_key("upgrade"), "{:?}", seen.headers);
    assert!(
        !seen.headers.contains_key("connection"),
        "{:?}",
        seen.headers
    );
    let text = edge.metrics().await;
    assert_eq!(upgrades(&text, "other", "not_allowed"), 1.0);

    // With tunnels turned off, WebSocket is such a protocol too.
    let off = TestEdge::start_with(&origin.url(), |c| c.server.upgrade_protocols.clear()).await;
    let tcp = TcpStream::connect(off.addr()).await.unwrap();
    let asked = tokio_tungstenite::client_async(format!("ws://{}/plain", off.addr()), tcp).await;
    match asked {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), StatusCode::OK),
        other => panic!("expected a plain 200, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_quiet_tunnel_is_closed_after_the_tunnel_idle_timeout() {
    let origin = WsOrigin::start().await;
    let idle = Duration::from_millis(300);
    let edge = TestEdge::start_with(&origin.url(), |c| c.server.tunnel_idle_timeout = idle).await;
    let ws = connect(&edge, "/chat").await.unwrap();
    closed_when_quiet(&edge, ws, idle).await;
}

#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| c.server.max_connections = 1).await;
    let mut ws = connect(&edge, "/chat").await.unwrap();
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    // hyper is done with the connection; the tunnel still counts it.
    let text = edge.metrics().await;
    assert_eq!(metrics::value(&text, "edge_open_connections"), Some(1.0));
    // The only slot is taken: a second client is not served meanwhile.
    let second = connect(&edge, "/second");
    tokio::pin!(second);
    // A bounded wait for something that must not happen.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    assert!(
        early.is_err(),
        "served beside a tunnel holding the only slot"
    );
    ws.close(None).await.unwrap();
    while next(&mut ws).await.is_some_and(|m| m.is_ok()) {}
    drop(ws);
    let mut ws2 = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("served within 10s of the tunnel's end")
        .expect("a WebSocket");
    assert_eq!(
        echoed(&mut ws2, Message::text("2")).await,
        Message::text("2")
    );
}

#[tokio::test]
async fn shutdown_closes_tunnels_after_the_grace_period() {
    let origin = WsOrigin::start().await;
    let grace = Duration::from_millis(500);
    let mut edge = TestEdge::start_with(&origin.url(), |c| c.server.shutdown_grace = grace).await;
    let mut ws = connect(&edge, "/chat").await.unwrap();
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    let handle = edge.take_handle();
    // A monotonic measure of a real timeout, not cache time.
    let asked = Instant::now();
    let stopped = tokio::spawn(handle.shutdown());
    // Draining: the tunnel still carries messages during the grace period.
    assert_eq!(
        echoed(&mut ws, Message::text("still here")).await,
        Message::text("still here")
    );
    let end = next(&mut ws).await;
    assert!(
        matches!(end, None | Some(Err(_))),
        "closed by the edge: {end:?}"
    );
    assert!(asked.elapsed() >= grace, "{:?}", asked.elapsed());
    stopped.await.unwrap().unwrap();
}

// WebSocket over HTTP/2 (RFC 8441): an h2c client (prior knowledge) on the
// edge's cleartext listener, extended CONNECT, and tungstenite over the
// stream hyper hands back.

use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;

type H2Client = WebSocketStream<TokioIo<Upgraded>>;

/// An HTTP/2 connection to the edge, once SETTINGS_ENABLE_CONNECT_PROTOCOL
/// has been read from it (RFC 8441 §3: a client may not send an extended
/// CONNECT before).
async fn h2_connection(edge: &TestEdge) -> SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(edge.addr()).await.unwrap();
    let (sender, mut conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    // Reading the SETTINGS wakes no one: the flag is looked at again on
    // a short tick.
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let offered = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
            panic!("the connection ended: {r:?}");
        }
        if conn.is_extended_connect_protocol_enabled() {
            return Poll::Ready(());
        }
        while tick.poll_tick(cx).is_ready() {}
        Poll::Pending
    });
    tokio::time::timeout(Duration::from_secs(10), offered)
        .await
        .expect("SETTINGS_ENABLE_CONNECT_PROTOCOL offered within 10s");
    tokio::spawn(conn);
    sender
}

/// An extended CONNECT for WebSocket to `path`, with `fields`.
async fn h2_connect(
    sender: &mut SendRequest<Empty<Bytes>>,
    edge: &TestEdge,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<http::Response<Incoming>, hyper::Error> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{}{path}", edge.addr()))
        .header("sec-websocket-version", "13");
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Empty::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    sender.ready().await?;
    tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("an answer within 10s")
}

/// A WebSocket to `path` through the edge over HTTP/2, and the edge's 200.
async fn h2_ws(edge: &TestEdge, path: &str, fields: &[(&str, &str)]) -> (H2Client, HeaderMap) {
    let mut sender = h2_connection(edge).await;
    let resp = h2_connect(&mut sender, edge, path, fields).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.headers());
    let head = resp.headers().clone();
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    // The connection must outlive the test's use of the stream.
    tokio::spawn(async move {
        let _sender = sender;
        std::future::pending::<()>().await;
    });
    (ws, head)
}

#[tokio::test]
async fn h2_text_and_binary_frames_echo_through_the_edge() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let asked = [("sec-websocket-protocol", "chat, superchat")];
    let (mut ws, head) = h2_ws(&edge, "/chat?room=1", &asked).await;
    // The origin's choice, not its accept (which answers the edge's key).
    assert_eq!(head["sec-websocket-protocol"], "chat");
    assert!(!head.contains_key("sec-websocket-accept"), "{head:?}");
    assert!(!head.contains_key("upgrade"), "{head:?}");
    assert!(head.contains_key("via"), "{head:?}");

    let text = echoed(&mut ws, Message::text("hello over h2")).await;
    assert_eq!(text, Message::text("hello over h2"));
    let bytes = vec![0u8, 1, 2, 254, 255];
    let binary = echoed(&mut ws, Message::binary(bytes.clone())).await;
    assert_eq!(binary, Message::binary(bytes));

    // The origin got an HTTP/1.1 handshake made by the edge.
    let seen = origin.last_head();
    assert_eq!(seen["upgrade"], "websocket");
    assert_eq!(seen["connection"], "upgrade");
    assert_eq!(seen["sec-websocket-version"], "13");
    assert_eq!(seen["sec-websocket-key"].len(), 24, "16 bytes in base64");
    assert_eq!(seen["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(seen["host"], edge.addr().to_string().as_str());
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");

    let text = edge.metrics().await;
    assert_eq!(upgrades(&text, "websocket", "tunnel"), 1.0);
    assert_eq!(metrics::value(&text, "edge_open_tunnels"), Some(1.0));
}

#[tokio::test]
async fn h2_each_websocket_gets_its_own_key() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let (_a, _) = h2_ws(&edge, "/a", &[]).await;
    let first = origin.last_head()["sec-websocket-key"].clone();
    let (_b, _) = h2_ws(&edge, "/b", &[]).await;
    assert_ne!(origin.last_head()["sec-websocket-key"], first);
}

#[tokio::test]
async fn h2_a_one_mebibyte_message_arrives_whole() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let (mut ws, _) = h2_ws(&edge, "/big", &[]).await;
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back = echoed(&mut ws, Message::binary(big.clone())).await;
    assert_eq!(back.into_data().as_ref(), big.as_slice());
    let after = echoed(&mut ws, Message::text("after")).await;
    assert_eq!(after, Message::text("after"));
}

#[tokio::test]
async fn h2_the_client_closes() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let (mut ws, _) = h2_ws(&edge, "/chat", &[]).await;
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    close_from_the_client(&edge, ws).await;
}

#[tokio::test]
async fn h2_an_origin_that_declines_is_the_answer_to_the_connect() {
    let origin = WsOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let mut sender = h2_connection(&edge).await;
    let resp = h2_connect(&mut sender, &edge, "/forbidden", &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().contains_key("via"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"not for you");
    let text = edge.metrics().await;
    assert_eq!(upgrades(&text, "websocket", "declined"), 1.0);
    assert_eq!(metrics::value(&text, "edge_open_tunnels"), Some(0.0));
    // The same connection serves a WebSocket after it.
    let resp = h2_connect(&mut sender, &edge, "/chat", &[]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// An origin that answers every request with `head` and then holds the
/// socket open.
async fn raw_origin(head: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn h2_a_wrong_accept_is_a_bad_gateway() {
    let addr = raw_origin(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    )
    .await;
    let edge = TestEdge::start(&format!("http://{addr}")).await;
    let mut sender = h2_connection(&edge).await;
    let resp = h2_connect(&mut sender, &edge, "/chat", &[]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let text = edge.metrics().await;
    assert_eq!(upgrades(&text, "websocket", "failed"), 1.0);
    assert_eq!(metrics::value(&text, "edge_open_tunnels"), Some(0.0));
}

#[tokio::test]
async fn h2_a_success_without_a_switch_is_a_bad_gateway() {
    // A 200 passed on would tell the client its WebSocket is open.
    let origin = MockOrigin::start().await;
    origin.route("/chat", Reply::ok("a page, not a socket"));
    let edge = TestEdge::start(&origin.url()).await;
    let mut sender = h2_connection(&edge).await;
    let resp = h2_connect(&mut sender, &edge, "/chat", &[]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn h2_plain_connect_is_still_refused() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let mut sender = h2_connection(&edge).await;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri(edge.addr().to_string())
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(origin.total_hits(), 0);
}

#[tokio::test]
async fn h2_extended_connect_is_offered_only_with_websocket_allowed() {
    let origin = MockOrigin::start().await;
    origin.route("/plain", Reply::ok("plain answer"));
    let edge = TestEdge::start_with(&origin.url(), |c| c.server.upgrade_protocols.clear()).await;
    let tcp = TcpStream::connect(edge.addr()).await.unwrap();
    let (mut sender, mut conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    // The edge's SETTINGS come before its first answer: read by then.
    let plain = Request::get(format!("http://{}/plain", edge.addr()))
        .body(Empty::new())
        .unwrap();
    let answered = sender.send_request(plain);
    tokio::pin!(answered);
    let polled = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
            panic!("the connection ended: {r:?}");
        }
        answered.as_mut().poll(cx)
    });
    let resp = tokio::time::timeout(Duration::from_secs(10), polled)
        .await
        .expect("an answer within 10s")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!conn.is_extended_connect_protocol_enabled());
    tokio::spawn(conn);
    // A client that sends one anyway gets its stream reset (RFC 8441 §3).
    assert!(h2_connect(&mut sender, &edge, "/plain", &[]).await.is_err());
    assert_eq!(origin.hits("/plain"), 1);
}

#[tokio::test]
async fn h2_a_quiet_tunnel_is_closed_after_the_tunnel_idle_timeout() {
    let origin = WsOrigin::start().await;
    let idle = Duration::from_millis(300);
    let edge = TestEdge::start_with(&origin.url(), |c| c.server.tunnel_idle_timeout = idle).await;
    let (ws, _) = h2_ws(&edge, "/chat", &[]).await;
    closed_when_quiet(&edge, ws, idle).await;
}

#[tokio::test]
async fn h2_shutdown_closes_tunnels_after_the_grace_period() {
    let origin = WsOrigin::start().await;
    let grace = Duration::from_millis(500);
    let mut edge = TestEdge::start_with(&origin.url(), |c| c.server.shutdown_grace = grace).await;
    let (mut ws, _) = h2_ws(&edge, "/chat", &[]).await;
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    let handle = edge.take_handle();
    // A monotonic measure of a real timeout, not cache time.
    let asked = Instant::now();
    let stopped = tokio::spawn(handle.shutdown());
    assert_eq!(
        echoed(&mut ws, Message::text("still here")).await,
        Message::text("still here")
    );
    let end = next(&mut ws).await;
    assert!(
        matches!(end, None | Some(Err(_))),
        "closed by the edge: {end:?}"
    );
    assert!(asked.elapsed() >= grace, "{:?}", asked.elapsed());
    stopped.await.unwrap().unwrap();
}
