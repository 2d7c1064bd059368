//! Clients for tests: a hyper client for well-formed HTTP/1.1 and h2c, and a
//! raw socket for what a well-behaved client would never send.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 keep-alive client.
pub fn http1() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (h2c).
pub fn h2c() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends `req` and returns the response with its body still streaming.
pub async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Response<Incoming> {
    tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response within 20s")
        .expect("request succeeds")
}

/// Sends `req` and collects the whole body.
pub async fn fetch(client: &TestClient, req: Request<Full<Bytes>>) -> Response<Bytes> {
    let resp = send(client, req).await;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body within 20s")
        .expect("body completes")
        .to_bytes();
    Response::from_parts(parts, body)
}

/// Sends `req` and collects the whole body; `None` if the server did not
/// answer, or not within `timeout` (for a server that may be down).
pub async fn try_fetch(
    client: &TestClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Option<Response<Bytes>> {
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .ok()?
        .ok()?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(timeout, body.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some(Response::from_parts(parts, body))
}

/// GET `url` with a fresh HTTP/1.1 client.
pub async fn get(url: &str) -> Response<Bytes> {
    fetch(&http1(), get_request(url)).await
}

/// GET `url` with extra request headers, with a fresh HTTP/1.1 client.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Response<Bytes> {
    let mut req = Request::get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    fetch(&http1(), req.body(Full::default()).expect("valid request")).await
}

pub fn get_request(url: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .body(Full::default())
        .expect("valid request")
}

/// A request body the test feeds chunk by chunk.
#[derive(Debug)]
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

/// Writes `raw` to `addr` and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, raw: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// One GET for `path` on a fresh TLS connection to `addr` for host `name`,
/// trusting `cert`, offering `alpn`: over h2 when the server chose it,
/// else HTTP/1.1. Returns the negotiated ALPN protocol and the response
/// with its whole body.
pub async fn get_tls(
    addr: SocketAddr,
    cert: &crate::certs::Cert,
    name: &str,
    alpn: &[&[u8]],
    path: &str,
) -> (Option<Vec<u8>>, Response<Bytes>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_owned()).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(crate::certs::client_config(&[cert], alpn))
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake with the generated certificate");
    let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = hyper_util::rt::TokioIo::new(tls);
    let req = Request::get(format!("https://{name}{path}"))
        .header("host", name)
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = if protocol.as_deref() == Some(b"h2") {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("h2 response")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("h1 response")
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (protocol, Response::from_parts(parts, body))
}
