//! A scriptable origin: per-path replies (status, headers, body, chunked with
//! gaps or a gate, delays, a head held until a test opens a [`Gate`],
//! failing mid-body), request counts, a record of every request it saw, and
//! a way to wait until requests have arrived.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cache::Clock;
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::{Gate, clocks};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the origin answers on one path.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: ReplyBody,
    head_delay: Duration,
    /// When set, the head waits until it opens (after `head_delay`).
    head_gate: Option<Gate>,
    /// The headers of the 304 a matching `If-None-Match` gets, instead of
    /// the reply's own (an origin that repeats no validator).
    not_modified: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Full(Bytes),
    /// Sent chunk by chunk (no Content-Length, so chunked on the wire).
    Chunks {
        chunks: Vec<Bytes>,
        gap: Duration,
        /// When set, everything after the first chunk waits for it.
        gate: Option<Arc<Notify>>,
    },
    /// Declares `declared` bytes, sends `sent`, then fails the connection.
    Truncated {
        declared: usize,
        sent: Bytes,
    },
    /// Returns the request body.
    Echo,
    /// Returns the value of a request header (empty if absent).
    EchoHeader(String),
    /// A static file: `Accept-Ranges: bytes`, and a single `Range`
    /// (`bytes=a-b`, `a-`, `-n`) answered with a 206.
    File(Bytes),
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: ReplyBody::Full(body.into()),
            head_delay: Duration::ZERO,
            head_gate: None,
            not_modified: None,
        }
    }

    /// 200 echoing the request body back.
    pub fn echo() -> Self {
        Reply {
            body: ReplyBody::Echo,
            ..Reply::ok("")
        }
    }

    /// 200 whose body is the request's value of `header`: every client
    /// gets its own answer.
    pub fn echo_header(header: &str) -> Self {
        Reply {
            body: ReplyBody::EchoHeader(header.to_owned()),
            ..Reply::ok("")
        }
    }

    /// A static file that serves byte ranges, like nginx does.
    pub fn file(body: impl Into<Bytes>) -> Self {
        Reply {
            body: ReplyBody::File(body.into()),
            ..Reply::ok("")
        }
        .header("accept-ranges", "bytes")
    }

    /// Byte chunks sent `gap` apart (after `gate`, if given, for all but
    /// the first), without a Content-Length.
    pub fn streamed(chunks: Vec<Bytes>, gap: Duration, gate: Option<Arc<Notify>>) -> Self {
        Reply {
            body: ReplyBody::Chunks { chunks, gap, gate },
            ..Reply::ok("")
        }
    }

    /// Chunks sent `gap` apart, without a Content-Length.
    pub fn chunked(chunks: &[&'static str], gap: Duration) -> Self {
        Reply {
            body: ReplyBody::Chunks {
                chunks: chunks
                    .iter()
                    .map(|c| Bytes::from_static(c.as_bytes()))
                    .collect(),
                gap,
                gate: None,
            },
            ..Reply::ok("")
        }
    }

    /// Sends the first chunk, then waits until `gate` is notified to send
    /// the rest: proves a client got the first before the origin finished.
    pub fn gated(chunks: &[&'static str], gate: Arc<Notify>) -> Self {
        let mut reply = Reply::chunked(chunks, Duration::ZERO);
        if let ReplyBody::Chunks { gate: g, .. } = &mut reply.body {
            *g = Some(gate);
        }
        reply
    }

    /// Declares `declared` bytes but sends only `sent`, then breaks.
    pub fn truncated(declared: usize, sent: &'static str) -> Self {
        Reply {
            body: ReplyBody::Truncated {
                declared,
                sent: Bytes::from_static(sent.as_bytes()),
            },
            ..Reply::ok("")
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before sending the response head.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.head_delay = delay;
        self
    }

    /// Answers a matching `If-None-Match` with a 304 carrying only
    /// `headers` (and `Date`), not the reply's: e.g. no `ETag` at all, as
    /// RFC 9110 §15.4.5 allows an origin that sent it before.
    pub fn not_modified_with(mut self, headers: &[(&str, &str)]) -> Self {
        self.not_modified = Some(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self
    }

    /// Holds the response head until `gate` opens: the request stays in
    /// flight at the origin for exactly as long as the test wants.
    pub fn held(mut self, gate: &Gate) -> Self {
        self.head_gate = Some(gate.clone());
        self
    }
}

/// Replies to paths without a route of their own.
type Fallback = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Reply>>,
    fallback: Mutex<Option<Fallback>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// How many requests have been recorded: bumped after each, so that
    /// waiters look again.
    recorded: watch::Sender<usize>,
    /// Request body bytes received so far, counted as they arrive.
    body_bytes: AtomicU64,
    /// Response body bytes handed to the connection so far.
    sent_bytes: Arc<AtomicU64>,
    /// Connections accepted so far, and the HTTP versions of requests.
    connections: AtomicU64,
    /// The `Date` this origin sends; shared with the edges in front of it
    /// (see `clocks.rs`), so that `TestEdge::advance` moves both.
    clock: Clock,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("routes", &lock(&self.routes).len())
            .field("requests", &lock(&self.requests).len())
            .finish_non_exhaustive()
    }
}

/// A real HTTP/1.1 + h2c server on `127.0.0.1:0`; stops when dropped.
#[derive(Debug)]
pub struct MockOrigin {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl MockOrigin {
    pub async fn start() -> MockOrigin {
        MockOrigin::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// An origin on which every path is a cacheable 200 naming itself
    /// (`object /a/b`, `max-age=3600`), tagged by its first segment
    /// (`Surrogate-Key: tag-a`): a site to cache and purge.
    pub async fn start_site() -> MockOrigin {
        let origin = MockOrigin::start().await;
        origin.fallback(|path| {
            let tag = format!("tag-{}", path.split('/').nth(1).unwrap_or(""));
            Reply::ok(format!("object {path}"))
                .header("cache-control", "max-age=3600")
                .header("surrogate-key", &tag)
        });
        origin
    }

    /// An origin on a given address (to bring a "dead" peer back to life).
    pub async fn start_on(addr: SocketAddr) -> MockOrigin {
        MockOrigin::listen(addr, None).await
    }

    /// An HTTPS origin (HTTP/1.1 and h2 by ALPN) presenting `tls`'s
    /// certificate.
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> MockOrigin {
        let addr = "127.0.0.1:0".parse().expect("addr");
        MockOrigin::listen(addr, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn listen(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> MockOrigin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let clock = Clock::adjustable();
        clocks::register(addr, &clock);
        let state = Arc::new(State {
            clock,
            ..State::default()
        });
        let task = tokio::spawn(accept_loop(listener, state.clone(), tls));
        MockOrigin { addr, state, task }
    }

    /// Connections accepted so far (TLS ones once their handshake is done).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT`
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Scripts the reply for requests whose path (without query) is `path`.
    /// Unscripted paths get 200 `hello from PATH`, or what [`fallback`]
    /// says.
    ///
    /// [`fallback`]: MockOrigin::fallback
    pub fn route(&self, path: &str, reply: Reply) {
        lock(&self.state.routes).insert(path.to_owned(), reply);
    }

    /// Answers every path without a route with `reply(path)`.
    pub fn fallback(&self, reply: impl Fn(&str) -> Reply + Send + Sync + 'static) {
        *lock(&self.state.fallback) = Some(Arc::new(reply));
    }

    /// How many requests reached `path` (query ignored).
    pub fn hits(&self, path: &str) -> usize {
        self.requests(path).len()
    }

    /// How many requests reached the origin, on any path.
    pub fn total_hits(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Returns once `n` requests have reached `path` (query ignored),
    /// counted when the origin has read a request whole, before it
    /// answers; panics after [`DEFAULT_LIMIT`](crate::wait::DEFAULT_LIMIT).
    pub async fn wait_for_hits(&self, path: &str, n: usize) {
        let mut recorded = self.state.recorded.subscribe();
        let reached = recorded.wait_for(|_| self.hits(path) >= n);
        let in_time = tokio::time::timeout(crate::wait::DEFAULT_LIMIT, reached).await;
        assert!(
            in_time.is_ok(),
            "the origin got {} requests for {path}, not {n}",
            self.hits(path)
        );
    }

    /// Every request that reached `path`, oldest first.
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.uri.split('?').next() == Some(path))
            .cloned()
            .collect()
    }

    /// Request body bytes received so far over all requests, counted frame
    /// by frame as they arrive (before a request is complete).
    pub fn body_bytes_received(&self) -> u64 {
        self.state.body_bytes.load(Ordering::Relaxed)
    }

    /// Response body bytes sent so far over all requests, counted as the
    /// connection takes them.
    pub fn body_bytes_sent(&self) -> u64 {
        self.state.sent_bytes.load(Ordering::Relaxed)
    }

    /// The most recent request to `path`.
    pub fn last_request(&self, path: &str) -> Option<RecordedRequest> {
        self.requests(path).pop()
    }
}

impl Drop for MockOrigin {
    fn drop(&mut self) {
        self.task.abort();
        clocks::forget(self.addr);
    }
}

impl MockOrigin {
    /// The clock this origin's `Date` comes from.
    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }
}

/// Adds `Date` from `clock` unless the reply sets its own.
fn dated(
    mut builder: http::response::Builder,
    reply: &Reply,
    clock: &Clock,
) -> http::response::Builder {
    if !reply
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("date"))
    {
        builder = builder.header("date", httpdate::fmt_http_date(clock.now()));
    }
    builder
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let service = {
                let state = state.clone();
                service_fn(move |req| respond(state.clone(), req))
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    state.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(tls) => {
                    // A refused handshake is the client's choice (a test
                    // of a wrong name); nothing to serve.
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    state.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

async fn respond(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ChannelBody>, Infallible> {
    let (parts, mut incoming) = req.into_parts();
    let mut body = Vec::new();
    while let Some(Ok(frame)) = incoming.frame().await {
        if let Some(data) = frame.data_ref() {
            state
                .body_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            body.extend_from_slice(data);
        }
    }
    let body = Bytes::from(body);
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.to_string());
    let path = parts.uri.path().to_owned();
    let if_none_match = parts.headers.get("if-none-match").cloned();
    let header_values = parts.headers.clone();
    lock(&state.requests).push(RecordedRequest {
        method: parts.method,
        uri,
        version: parts.version,
        headers: parts.headers,
        body: body.clone(),
    });
    state.recorded.send_modify(|n| *n += 1);
    let route = lock(&state.routes).get(&path).cloned();
    let fallback = lock(&state.fallback).clone();
    let reply = match (route, fallback) {
        (Some(reply), _) => reply,
        (None, Some(fallback)) => fallback(&path),
        (None, None) => Reply::ok(format!("hello from {path}")),
    };
    if !reply.head_delay.is_zero() {
        tokio::time::sleep(reply.head_delay).await;
    }
    if let Some(gate) = &reply.head_gate {
        gate.wait().await;
    }
    // Like a real origin: a matching If-None-Match gets a 304 with the
    // reply's headers and no body.
    let etag = reply
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
        .map(|(_, v)| v.clone());
    let inm = if_none_match;
    if let (Some(etag), Some(inm)) = (etag, inm)
        && inm
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut builder = dated(Response::builder().status(304), &reply, &state.clock);
        for (name, value) in reply.not_modified.as_ref().unwrap_or(&reply.headers) {
            builder = builder.header(name, value);
        }
        let resp = builder
            .body(ChannelBody::empty())
            .unwrap_or_else(|_| Response::new(ChannelBody::empty()));
        return Ok(resp);
    }

    let mut reply = reply;
    if let ReplyBody::EchoHeader(name) = &reply.body {
        let value = header_values
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        reply.body = ReplyBody::EchoHeader(value);
    }
    if let ReplyBody::File(file) = &reply.body {
        let (status, part) = file_range(&header_values, file);
        if let Some((start, end)) = part {
            reply.headers.push((
                "content-range".into(),
                format!("bytes {start}-{end}/{}", file.len()),
            ));
        }
        if status == 416 {
            reply
                .headers
                .push(("content-range".into(), format!("bytes */{}", file.len())));
        }
        reply.status = status;
        reply.body = ReplyBody::Full(match part {
            Some((start, end)) => file.slice(start..=end),
            None if status == 416 => Bytes::new(),
            None => file.clone(),
        });
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(4);
    let mut builder = dated(
        Response::builder().status(reply.status),
        &reply,
        &state.clock,
    );
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    let exact_len = match &reply.body {
        ReplyBody::Full(b) => Some(b.len() as u64),
        ReplyBody::Echo => Some(body.len() as u64),
        ReplyBody::EchoHeader(_) => None,
        ReplyBody::Truncated { declared, .. } => {
            builder = builder.header("content-length", declared.to_string());
            None
        }
        ReplyBody::Chunks { .. } | ReplyBody::File(_) => None,
    };
    tokio::spawn(async move {
        match reply.body {
            ReplyBody::Full(b) | ReplyBody::File(b) => {
                // In pieces, like a file read: a client that stops reading
                // stops the sending.
                let mut rest = b;
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(64 << 10));
                    if tx.send(Ok(piece)).await.is_err() {
                        return;
                    }
                }
            }
            ReplyBody::Echo => {
                let _ = tx.send(Ok(body)).await;
            }
            ReplyBody::EchoHeader(value) => {
                let _ = tx.send(Ok(Bytes::from(value))).await;
            }
            ReplyBody::Truncated { sent, .. } => {
                let _ = tx.send(Ok(sent)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(Err("origin fails mid-body".into())).await;
            }
            ReplyBody::Chunks { chunks, gap, gate } => {
                for (i, chunk) in chunks.into_iter().enumerate() {
                    if i > 0 {
                        match &gate {
                            Some(gate) if i == 1 => gate.notified().await,
                            _ => tokio::time::sleep(gap).await,
                        }
                    }
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let resp = builder
        .body(ChannelBody {
            rx,
            exact_len,
            sent: Some(state.sent_bytes.clone()),
        })
        .unwrap_or_else(|_| Response::new(ChannelBody::empty()));
    Ok(resp)
}

/// The status and inclusive byte range a static file answers `request`
/// with: one range only (enough for a cache's slice requests).
fn file_range(request: &HeaderMap, file: &Bytes) -> (u16, Option<(usize, usize)>) {
    let len = file.len();
    let Some(spec) = request
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .filter(|v| !v.contains(','))
    else {
        return (200, None);
    };
    let Some((first, last)) = spec.split_once('-') else {
        return (200, None);
    };
    let range = match (first.trim().parse::<usize>(), last.trim().parse::<usize>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(len.saturating_sub(1)))),
        (Ok(start), Err(_)) if last.trim().is_empty() => Some((start, len.saturating_sub(1))),
        (Err(_), Ok(n)) if first.trim().is_empty() && n > 0 => {
            Some((len.saturating_sub(n), len.saturating_sub(1)))
        }
        _ => return (200, None),
    };
    match range {
        Some((start, end)) if start < len => (206, Some((start, end))),
        _ => (416, None),
    }
}

/// A response body fed by a task, so bodies can arrive slowly or break.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    exact_len: Option<u64>,
    sent: Option<Arc<AtomicU64>>,
}

impl ChannelBody {
    fn empty() -> Self {
        let (_, rx) = mpsc::channel(1);
        ChannelBody {
            rx,
            exact_len: Some(0),
            sent: None,
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let item = std::task::ready!(self.rx.poll_recv(cx));
        if let (Some(Ok(data)), Some(sent)) = (&item, &self.sent) {
            sent.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.exact_len {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}
