//! The chaotic origin: a hyper server answering the catalogue's objects
//! (ranges, revalidation, POSTs) that injects faults at the configured
//! rate, counts what it did, and remembers when it last failed each path
//! and which cacheable objects it served.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::bodies::{ChannelBody, Cut, channel_body, empty_body, no_body};
use crate::catalogue::{Catalogue, Freshness, etag, is_object, path_seed, size_of};
use crate::model::{FAULT_GRACE, Rng, STALL};
use crate::settings::{Fault, Settings};

#[derive(Debug)]
pub struct Origin {
    cat: Arc<Catalogue>,
    pub faults_on: AtomicBool,
    fault_rate: f64,
    kinds: Vec<Fault>,
    chunked_206: bool,
    rng: Mutex<Rng>,
    faults: [AtomicU64; Fault::ALL.len()],
    pub requests: AtomicU64,
    partial: AtomicU64,
    not_modified: AtomicU64,
    posts: AtomicU64,
    /// Every cacheable object it answered with a body (read again at the end).
    pub served: Mutex<BTreeSet<String>>,
    /// When it last failed an exchange, per path.
    faulted: Mutex<HashMap<String, Instant>>,
}

impl Origin {
    pub fn new(cat: Arc<Catalogue>, settings: &Settings) -> Self {
        Origin {
            cat,
            faults_on: AtomicBool::new(true),
            fault_rate: settings.fault_rate,
            kinds: settings.faults.clone(),
            chunked_206: settings.chunked_206,
            rng: Mutex::new(Rng(settings.seed ^ 0x0123_4567)),
            faults: Default::default(),
            requests: AtomicU64::new(0),
            partial: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            served: Mutex::default(),
            faulted: Mutex::default(),
        }
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, Rng> {
        self.rng.lock().expect("rng lock")
    }

    fn pick_fault(&self) -> Option<Fault> {
        if !self.faults_on.load(Ordering::Relaxed) {
            return None;
        }
        let mut rng = self.rng();
        if !rng.chance(self.fault_rate) {
            return None;
        }
        let mut roll = rng.below(self.kinds.iter().map(|f| f.weight()).sum());
        for fault in &self.kinds {
            if roll < fault.weight() {
                return Some(*fault);
            }
            roll -= fault.weight();
        }
        None
    }

    /// Records a fault on `path` now, or for a stall when it ends (the
    /// edge gives up on it before that; requests that joined the stalled
    /// exchange meanwhile are cut off by this fault too).
    fn note(&self, path: &str, stall: bool) {
        let at = Instant::now() + if stall { STALL } else { Duration::ZERO };
        let mut faulted = self.faulted.lock().expect("faulted lock");
        let last = faulted.entry(path.to_owned()).or_insert(at);
        // A stall's time is in the future: a later fault must not move it back.
        *last = (*last).max(at);
    }

    pub fn last_fault(&self, path: &str) -> Option<Instant> {
        self.faulted
            .lock()
            .expect("faulted lock")
            .get(path)
            .copied()
    }

    /// Whether it failed an exchange for `path` after `sent` (less
    /// `FAULT_GRACE`: a request sent just after the origin failed may still
    /// join that exchange before the edge has seen it fail).
    pub fn faulted_since(&self, path: &str, sent: Instant) -> bool {
        self.last_fault(path)
            .is_some_and(|at| at + FAULT_GRACE >= sent)
    }

    fn count(&self, fault: Fault) {
        let i = Fault::ALL.iter().position(|f| *f == fault).unwrap_or(0);
        self.faults[i].fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn start_origin(origin: Arc<Origin>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("origin binds");
    let addr = listener.local_addr().expect("origin address");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(origin_connection(origin.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    addr
}

/// One connection from the edge. A `Reset` fault drops it with SO_LINGER
/// 0, so the edge sees an RST rather than a clean close.
async fn origin_connection(origin: Arc<Origin>, stream: TcpStream) {
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(guard) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    // Heads and bodies go in separate writes: without this, Nagle holds the
    // second until the edge's delayed ACK (40 ms a small POST answer).
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        service_fn(move |req| serve(origin.clone(), kill.clone(), req))
    };
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = kill.notified() => {
            let _ = socket2::SockRef::from(&guard).set_linger(Some(Duration::ZERO));
        }
    }
}

async fn serve(
    origin: Arc<Origin>,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Response<ChannelBody>, Infallible> {
    origin.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let mut fault = origin.pick_fault();
    if fault == Some(Fault::Reset) {
        origin.count(Fault::Reset);
        origin.note(&path, false);
        kill.notify_one();
        return std::future::pending().await;
    }
    if fault == Some(Fault::StallHead) {
        origin.count(Fault::StallHead);
        origin.note(&path, true);
        tokio::time::sleep(STALL).await;
        fault = None;
    }
    if let Some(f @ (Fault::Status500 | Fault::Status503)) = fault {
        origin.count(f);
        origin.note(&path, false);
        let status = if f == Fault::Status500 { 500 } else { 503 };
        let resp = Response::builder()
            .status(status)
            .header("x-chaos", status.to_string())
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::RETRY_AFTER, "1")
            .body(channel_body(
                Bytes::from(format!("chaos {status}\n")),
                None,
                None,
            ))
            .expect("origin response");
        return Ok(resp);
    }
    let builder = Response::builder();
    if parts.method == Method::POST {
        origin.posts.fetch_add(1, Ordering::Relaxed);
        let Ok(received) = body.collect().await.map(|c| c.to_bytes()) else {
            // The edge gave up on the upload: nobody reads this.
            return Ok(Response::builder()
                .status(400)
                .body(empty_body())
                .expect("origin response"));
        };
        if path.starts_with("/hot/") {
            origin.cat.bump(&path);
        }
        let hash = blake3::hash(&received).to_hex().to_string();
        let builder = builder.header(header::CACHE_CONTROL, "no-store");
        let body = Bytes::from(hash);
        return Ok(respond(&origin, &path, fault, builder, body, false));
    }
    if !matches!(parts.method, Method::GET | Method::HEAD) || !is_object(&path) {
        return Ok(Response::builder()
            .status(404)
            .body(empty_body())
            .expect("origin response"));
    }
    let version = origin.cat.version(&path);
    let tag = etag(&path, version);
    let freshness = Freshness::of(&path);
    let size = size_of(&path);
    // Tags group the hot objects only: a tag purge must not empty the
    // cache of everything the final re-read is to check.
    let group = if path.starts_with("/hot/") {
        format!("g{}", path_seed(&path) % 8)
    } else {
        "other".to_owned()
    };
    let mut builder = builder
        .header(header::ETAG, &tag)
        .header(header::CACHE_CONTROL, freshness.cache_control())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("surrogate-key", group);
    let if_none_match = parts.headers.get(header::IF_NONE_MATCH);
    if if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(&tag))
    {
        origin.not_modified.fetch_add(1, Ordering::Relaxed);
        if fault.is_some() {
            // Nothing to cut in a 304: fail the exchange instead.
            origin.count(Fault::Reset);
            origin.note(&path, false);
            kill.notify_one();
            return std::future::pending().await;
        }
        return Ok(builder.status(304).body(empty_body()).expect("origin 304"));
    }
    let mut partial = false;
    let (start, end) = match origin_range(&parts.headers, size, &tag) {
        OriginRange::Full => (0, size - 1),
        OriginRange::Part(start, end) => {
            partial = true;
            origin.partial.fetch_add(1, Ordering::Relaxed);
            builder = builder
                .status(206)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (start, end)
        }
        OriginRange::Unsatisfiable => {
            return Ok(builder
                .status(416)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(empty_body())
                .expect("origin 416"));
        }
    };
    if freshness.cacheable() {
        let mut served = origin.served.lock().expect("served lock");
        served.insert(path.clone());
    }
    if parts.method == Method::HEAD {
        return Ok(builder
            .header(header::CONTENT_LENGTH, end + 1 - start)
            .body(no_body(None))
            .expect("origin HEAD"));
    }
    let bytes = origin.cat.bytes(&path, version, start, end);
    Ok(respond(&origin, &path, fault, builder, bytes, partial))
}

/// A response with `body`, cut short or stalled as `fault` says; sound
/// bodies go half with Content-Length, half chunked (206s too, unless
/// `chunked_206` is off).
fn respond(
    origin: &Arc<Origin>,
    path: &str,
    fault: Option<Fault>,
    builder: http::response::Builder,
    body: Bytes,
    partial: bool,
) -> Response<ChannelBody> {
    let len = body.len() as u64;
    let may_chunk = !partial || origin.chunked_206;
    let (exact, at, stall) = {
        let mut rng = origin.rng();
        let at = Some(rng.below(len) as usize);
        match fault {
            Some(Fault::CutLength) => (Some(len), at, false),
            Some(Fault::CutChunked) => (None, at, false),
            Some(Fault::StallBody) => (rng.chance(0.5).then_some(len), at, true),
            _ if !may_chunk => (Some(len), None, false),
            _ => (rng.chance(0.5).then_some(len), None, false),
        }
    };
    let cut = at.map(|at| {
        let (origin, path) = (origin.clone(), path.to_owned());
        Cut {
            at,
            stall,
            done: Box::new(move || origin.note(&path, stall)),
        }
    });
    if let Some(fault) = fault {
        origin.count(fault);
    }
    builder
        .body(channel_body(body, exact, cut))
        .expect("origin response")
}

enum OriginRange {
    Full,
    Part(u64, u64),
    Unsatisfiable,
}

/// A single `Range` (`a-b`, `a-`, `-n`); several, or a stale `If-Range`,
/// get the whole object.
fn origin_range(headers: &HeaderMap, size: u64, tag: &str) -> OriginRange {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
    else {
        return OriginRange::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.to_str().ok() != Some(tag)
    {
        return OriginRange::Full;
    }
    if spec.contains(',') {
        return OriginRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return OriginRange::Full;
    };
    let (start, end) = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size - 1)),
        (Ok(a), Err(_)) if last.is_empty() => (a, size - 1),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => (size.saturating_sub(n), size - 1),
        _ => return OriginRange::Full,
    };
    if start >= size {
        return OriginRange::Unsatisfiable;
    }
    OriginRange::Part(start, end)
}

pub fn print_origin(origin: &Origin) {
    let faults: Vec<String> = Fault::ALL
        .iter()
        .zip(&origin.faults)
        .map(|(f, n)| format!("{} {}", f.as_str(), n.load(Ordering::Relaxed)))
        .collect();
    println!(
        "origin: {} requests ({} ranges, {} not modified, {} POSTs); faults injected: {}",
        origin.requests.load(Ordering::Relaxed),
        origin.partial.load(Ordering::Relaxed),
        origin.not_modified.load(Ordering::Relaxed),
        origin.posts.load(Ordering::Relaxed),
        faults.join(", ")
    );
}
