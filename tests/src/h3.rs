//! An HTTP/3 client (quinn + h3 + h3-quinn) for the tests and the h3
//! benchmark: one QUIC connection, any number of concurrent requests on it,
//! bodies streamed both ways.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, StatusCode};

use crate::certs::{self, Cert};

/// A request stream of the connection (to send a body, read a response).
pub type Stream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 connection to an edge.
#[derive(Clone)]
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    /// The authority requests name (`:authority`), also the SNI.
    pub authority: String,
    _endpoint: quinn::Endpoint,
}

impl std::fmt::Debug for H3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Client")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct H3Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl H3Response {
    /// `X-Cache`, or "".
    pub fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A quinn client endpoint on an ephemeral port trusting `roots`.
pub fn endpoint(roots: &[&Cert]) -> anyhow::Result<quinn::Endpoint> {
    endpoint_with(certs::client_config(roots, &[b"h3"]))
}

/// A quinn client endpoint with its own TLS settings (0-RTT tests).
pub fn endpoint_with(tls: Arc<rustls::ClientConfig>) -> anyhow::Result<quinn::Endpoint> {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    Ok(endpoint)
}

impl H3Client {
    /// Connects to `addr` asking for `name` (SNI and `:authority`),
    /// trusting `cert`.
    pub async fn connect(addr: SocketAddr, cert: &Cert, name: &str) -> anyhow::Result<H3Client> {
        H3Client::connect_with(addr, certs::client_config(&[cert], &[b"h3"]), name).await
    }

    /// As [`connect`](Self::connect) with TLS settings of the caller's
    /// (the benchmark trusts a PEM file of its own).
    pub async fn connect_with(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> anyhow::Result<H3Client> {
        let endpoint = endpoint_with(tls)?;
        let conn = endpoint
            .connect(addr, name)?
            .await
            .context("QUIC handshake")?;
        H3Client::over(endpoint, conn, name).await
    }

    /// HTTP/3 on a QUIC connection already made (or still in 0-RTT).
    pub async fn over(
        endpoint: quinn::Endpoint,
        conn: quinn::Connection,
        name: &str,
    ) -> anyhow::Result<H3Client> {
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
            .await
            .context("HTTP/3 setup")?;
        // The connection's control streams; ends when the connection does.
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Client {
            send,
            conn,
            authority: name.to_owned(),
            _endpoint: endpoint,
        })
    }

    /// The QUIC connection (its peer certificate, its close reason).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    /// `https://{authority}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority)
    }

    /// Opens a request stream and sends the head (the body is the
    /// caller's: `send_data`, then `finish`).
    pub async fn open(&self, req: Request<()>) -> anyhow::Result<Stream> {
        let mut send = self.send.clone();
        Ok(send.send_request(req).await?)
    }

    /// A GET of `path` with `headers`, read whole.
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<H3Response> {
        let mut req = Request::get(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send_whole(req.body(())?, None).await
    }

    /// A GET of `path`, read whole.
    pub async fn get(&self, path: &str) -> anyhow::Result<H3Response> {
        self.get_with(path, &[]).await
    }

    /// `req` with `body` (sent in 64 KiB frames), read whole.
    pub async fn send_whole(
        &self,
        req: Request<()>,
        body: Option<Bytes>,
    ) -> anyhow::Result<H3Response> {
        let mut stream = self.open(req).await?;
        if let Some(mut body) = body {
            while !body.is_empty() {
                let piece = body.split_to(body.len().min(64 * 1024));
                stream.send_data(piece).await?;
            }
        }
        stream.finish().await?;
        read_response(&mut stream).await
    }
}

/// The response of `stream`, its body read to the end.
pub async fn read_response(stream: &mut Stream) -> anyhow::Result<H3Response> {
    let head = stream.recv_response().await?;
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            body.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    let (parts, ()) = head.into_parts();
    if parts.status.as_u16() == 0 {
        return Err(anyhow!("no status"));
    }
    Ok(H3Response {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(body),
    })
}
