//! The client side of HTTP/1.1: a keep-alive connection that reconnects
//! when the edge closes it, and responses read whole as the client got
//! them (cut off or not).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::bodies::full;
use crate::model::{MAX_REUSE_IDLE, ReqBody};

/// One client connection (HTTP/1.1, keep-alive), opened again after the
/// edge closes it.
pub struct Conn {
    addr: SocketAddr,
    pub sender: Option<SendRequest<ReqBody>>,
    /// The previous exchange on this connection, for failure reports.
    pub last: String,
    /// When the previous exchange ended: a connection idle for long is
    /// not reused, as the server may be closing it just then.
    idle_since: Instant,
}

#[derive(Debug)]
pub enum SendError {
    Connect(std::io::Error),
    /// The connection failed before a response head.
    NoHead(hyper::Error),
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            sender: None,
            last: String::new(),
            idle_since: Instant::now(),
        }
    }

    pub async fn send(
        &mut self,
        make: &(dyn Fn() -> Request<ReqBody> + Send + Sync),
    ) -> Result<Response<Incoming>, SendError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let usable = match self.sender.as_mut() {
                Some(_) if self.idle_since.elapsed() > MAX_REUSE_IDLE => false,
                Some(sender) => sender.ready().await.is_ok(),
                None => false,
            };
            if !usable {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .map_err(SendError::Connect)?;
                let _ = stream.set_nodelay(true);
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(SendError::NoHead)?;
                tokio::spawn(conn);
                sender.ready().await.map_err(SendError::NoHead)?;
                self.sender = Some(sender);
                self.last = "new connection".into();
            }
            let Some(sender) = self.sender.as_mut() else {
                continue;
            };
            let sent = sender.send_request(make()).await;
            self.idle_since = Instant::now();
            match sent {
                Ok(resp) => return Ok(resp),
                Err(err) => {
                    self.sender = None;
                    // Not sent at all (the edge had closed the connection
                    // just then): send it again on a new one.
                    if !(err.is_canceled() && attempts < 3) {
                        return Err(SendError::NoHead(err));
                    }
                }
            }
        }
    }
}

/// The connection ended, cleanly or by an RST, before a response head.
pub fn closed_or_reset(err: &hyper::Error) -> bool {
    use std::error::Error as _;
    err.is_incomplete_message()
        || err
            .source()
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
}

pub fn get_request(path: &str, host: &str) -> Request<ReqBody> {
    Request::get(path)
        .header(header::HOST, host)
        .body(full(Bytes::new()))
        .expect("request")
}

/// A response as the client got it.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body ended cleanly (not by an error or a closed connection).
    pub complete: bool,
}

impl Got {
    pub fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    pub fn describe(&self) -> String {
        format!(
            "status {} x-cache {} etag {:?} content-length {:?} content-range {:?} got {} bytes{}",
            self.status.as_u16(),
            self.x_cache(),
            self.headers.get(header::ETAG),
            self.content_length(),
            self.headers.get(header::CONTENT_RANGE),
            self.body.len(),
            if self.complete { "" } else { " (cut off)" },
        )
    }
}

pub async fn receive(resp: Response<Incoming>) -> Got {
    let (parts, mut body) = resp.into_parts();
    let mut bytes = Vec::new();
    let complete = loop {
        match body.frame().await {
            None => break true,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            Some(Err(_)) => break false,
        }
    };
    Got {
        status: parts.status,
        headers: parts.headers,
        body: bytes,
        complete,
    }
}
