//! WebSocket through the edge (docs/protocols.md): an echo origin written
//! with tokio-tungstenite, a tungstenite client talking to the edge; frames
//! both ways, closes from each side, an origin that declines, a protocol
//! the config does not allow, and the tunnel's idle timeout, connection
//! slot and shutdown.
// A test binary: helpers unwrap like the tests (a panic fails the test).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_tests::{MockOrigin, Reply, TestEdge, client, eventually, metrics};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
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
async fn next(ws: &mut Client) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message or the end within 10s")
}

async fn echoed(ws: &mut Client, msg: Message) -> Message {
    ws.send(msg).await.unwrap();
    next(ws).await.expect("a message").unwrap()
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
    ws.close(None).await.unwrap();
    // The origin's answer to our close, then the end of the stream.
    match next(&mut ws).await {
        Some(Ok(Message::Close(_))) | None => {}
        other => panic!("expected the close handshake, got {other:?}"),
    }
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
    let mut ws = connect(&edge, "/chat").await.unwrap();
    assert_eq!(
        echoed(&mut ws, Message::text("hi")).await,
        Message::text("hi")
    );
    // A monotonic measure of a real timeout, not cache time.
    let quiet_since = Instant::now();
    let end = next(&mut ws).await;
    assert!(
        matches!(end, None | Some(Err(_))),
        "the edge closes the socket: {end:?}"
    );
    assert!(quiet_since.elapsed() >= idle, "{:?}", quiet_since.elapsed());
    eventually("the tunnel counted as idle", async || {
        closed_for(&edge, "idle").await
    })
    .await;
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
