//! Soak test: the real `edge` binary, for a few minutes, under mixed load
//! (hits on a hot set, misses on fresh paths, single and multiple ranges,
//! HEADs, POSTs and purges over many client connections) in front of an
//! origin that resets connections, stalls past the edge's timeouts,
//! answers 500/503 and closes mid-body (short Content-Length bodies and
//! cut-off chunked ones).
//!
//! It asserts that every response is correct (status, headers and bytes
//! checked against the origin's deterministic bodies) or a documented error:
//! 502/503/504, the origin's own 5xx passed on, or, while the origin failed
//! an exchange for the same path, a body cut off with the connection (never
//! a complete-looking short one) or a connection closed before the head.
//! Also that the edge does not panic; that its RSS and open descriptors stay
//! bounded and descriptors come back down when it is idle; and that nothing
//! truncated was ever cached: with faults off, every cacheable object the
//! origin served is read again through the edge (first `only-if-cached`,
//! then plainly) and its hash compared with the origin's.
//!
//! Not part of `cargo test`: `scripts/soak` runs it. Knobs (environment):
//! `SOAK_SECS` (120), `SOAK_REQUESTS` (5 000 000), `SOAK_CLIENTS` (64),
//! `SOAK_FAULT_RATE` (0.1 of origin exchanges), `SOAK_FAULTS` (which kinds,
//! e.g. `reset,cut_chunked`; all by default), `SOAK_CHUNKED_206` (1: half
//! the origin's 206s are chunked, like its 200s; 0: always Content-Length),
//! `SOAK_EDGE_LOG` (the edge's `EDGE_LOG`, `warn`; `warn,access=info` adds
//! the access log), `SOAK_SEED` (from the clock; printed, but the
//! interleaving of 64 connections is never reproducible). The edge's log is
//! kept in `$TMPDIR/edge-soak-SEED.log`; failures name the time of day (UTC)
//! to find them there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

mod common;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

const HOST: &str = "soak.test";
/// Objects `/hot/0..HOT`, read again and again (skewed to the low numbers).
const HOT: u64 = 160;
/// Uncacheable objects `/nc/0..UNCACHEABLE` (`no-store` or `private`).
const UNCACHEABLE: u64 = 24;
/// POST targets `/api/0..API` (the origin answers the body's hash).
const API: u64 = 16;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// The edge's budgets: small, so that both tiers evict all the time.
const MEMORY: u64 = 16 * MIB;
const DISK: u64 = 64 * MIB;
/// Objects over `MAX_OBJECT` are cut into `SLICE`s on the way through, and
/// a range miss fetches the slice holding it.
const MAX_OBJECT: u64 = MIB;
const SLICE: u64 = 256 * KIB;
/// Upstream connect, head and body-gap timeouts of the edge.
const UPSTREAM_TIMEOUT_MS: u64 = 1000;
/// How long a stalling origin says nothing: longer than the timeouts.
const STALL: Duration = Duration::from_millis(2500);
/// How long after the origin fails an exchange the edge may still let new
/// requests join it (the time for the failure to reach the edge under load).
const FAULT_GRACE: Duration = Duration::from_millis(100);
/// Idle upstream connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(3);
/// Connections idle longer are not reused: the admin listener closes idle
/// keep-alive connections after 10 s, and a request sent as it does so is
/// lost (HTTP/1.1's keep-alive race, not the edge's fault).
const MAX_REUSE_IDLE: Duration = Duration::from_secs(5);
/// No exchange may take longer (a hang is a failure).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// RSS allowance over `MEMORY` and the idle process: the fill windows
/// (a quarter of `MEMORY`), a 1 MiB chunk in flight on each side of every
/// client connection (64 × 2 MiB), hyper's buffers, foyer's disk-tier write
/// buffers and RocksDB's memtable, with room for allocator slack. Measured:
/// 22 MiB idle, 120–160 MiB at 64 connections, flat over 120 s.
const RSS_MARGIN: u64 = 192 * MIB;
/// Descriptors the edge may have open per client connection over its idle
/// count: the client's socket, at most one upstream exchange for it, plus
/// slice fetches and background refreshes that outlive their client.
const FDS_PER_CLIENT: usize = 4;
/// Descriptors the edge may keep over its idle count once every client
/// is gone and the upstream pool has timed out (files opened lazily by the
/// disk tier and RocksDB as they grow).
const FDS_IDLE_SLACK: usize = 24;

// ---------------------------------------------------------------- knobs

#[derive(Debug, Clone)]
struct Settings {
    secs: u64,
    max_requests: u64,
    clients: usize,
    fault_rate: f64,
    /// The kinds of fault to inject (`SOAK_FAULTS=reset,cut_chunked`).
    faults: Vec<Fault>,
    /// Whether sound 206s go chunked half the time, like the 200s
    /// (`SOAK_CHUNKED_206=0`: always with Content-Length).
    chunked_206: bool,
    seed: u64,
}

impl Settings {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
                Err(_) => default,
            }
        }
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Settings {
            secs: var("SOAK_SECS", 120),
            max_requests: var("SOAK_REQUESTS", 5_000_000),
            clients: var("SOAK_CLIENTS", 64usize).max(1),
            fault_rate: var("SOAK_FAULT_RATE", 0.1f64).clamp(0.0, 1.0),
            faults: match std::env::var("SOAK_FAULTS") {
                Ok(list) => list
                    .split(',')
                    .map(|name| {
                        let name = name.trim();
                        *Fault::ALL
                            .iter()
                            .find(|f| f.as_str() == name)
                            .unwrap_or_else(|| panic!("SOAK_FAULTS: unknown fault {name:?}"))
                    })
                    .collect(),
                Err(_) => Fault::ALL.to_vec(),
            },
            chunked_206: var("SOAK_CHUNKED_206", 1u8) != 0,
            seed: var("SOAK_SEED", clock),
        }
    }
}

/// splitmix64: enough randomness without a crate.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

// ------------------------------------------------------------ the objects

/// How an object may be cached, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Long,
    /// Stale after 2 s: revalidated with `If-None-Match`.
    Short,
    /// Stale after 2 s, then served while refreshed, or on origin errors.
    StaleWhileRevalidate,
    NoStore,
    Private,
}

impl Freshness {
    fn of(path: &str) -> Self {
        let seed = path_seed(path);
        if path.starts_with("/nc/") {
            if seed.is_multiple_of(2) {
                Freshness::NoStore
            } else {
                Freshness::Private
            }
        } else if path.starts_with("/hot/") {
            match (seed >> 40) % 10 {
                0 => Freshness::Short,
                1 => Freshness::StaleWhileRevalidate,
                _ => Freshness::Long,
            }
        } else {
            Freshness::Long
        }
    }

    fn cache_control(self) -> &'static str {
        match self {
            Freshness::Long => "public, max-age=3600",
            Freshness::Short => "max-age=2",
            Freshness::StaleWhileRevalidate => {
                "max-age=2, stale-while-revalidate=10, stale-if-error=60"
            }
            Freshness::NoStore => "no-store",
            Freshness::Private => "private, max-age=60",
        }
    }

    fn cacheable(self) -> bool {
        !matches!(self, Freshness::NoStore | Freshness::Private)
    }
}

fn path_seed(path: &str) -> u64 {
    let hash = blake3::hash(path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

/// Whether the origin knows `path` (GET and HEAD).
fn is_object(path: &str) -> bool {
    ["/hot/", "/cold/", "/nc/"].iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|n| n.parse::<u64>().is_ok())
    })
}

/// An object's length, the same for all its versions: 1 KiB to 4 MiB,
/// most small, some sliced (over `MAX_OBJECT`).
fn size_of(path: &str) -> u64 {
    let seed = path_seed(path);
    let x = seed >> 8;
    match seed % 100 {
        0..60 => KIB + x % (15 * KIB),
        60..85 => 16 * KIB + x % (240 * KIB),
        85..95 => 256 * KIB + x % (768 * KIB),
        _ => MIB + x % (3 * MIB),
    }
}

/// A strong validator naming the path and the version: `"<tag>.<version>"`.
fn etag(path: &str, version: u32) -> String {
    format!("\"{:08x}.{version}\"", path_seed(path) as u32)
}

/// The version an ETag names, if it is this path's.
fn etag_version(path: &str, headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(header::ETAG)?.to_str().ok()?;
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    let (tag, version) = inner.split_once('.')?;
    (tag == format!("{:08x}", path_seed(path) as u32))
        .then(|| version.parse().ok())
        .flatten()
}

/// Bytes `start..start + len` of a version of an object: blake3's
/// extendable output keyed by the path and version, so any slice is known
/// without storing the whole.
fn generate(path: &str, version: u32, start: u64, len: u64) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(path.as_bytes());
    hasher.update(&version.to_le_bytes());
    let mut reader = hasher.finalize_xof();
    reader.set_position(start);
    let mut out = vec![0u8; usize::try_from(len).expect("object sizes fit")];
    reader.fill(&mut out);
    out
}

/// The origin's objects: current versions, and memos of hot bodies and of
/// every version's hash.
#[derive(Debug, Default)]
struct Catalogue {
    versions: Mutex<HashMap<String, u32>>,
    bodies: Mutex<HashMap<String, (u32, Bytes)>>,
    hashes: Mutex<HashMap<(String, u32), blake3::Hash>>,
}

impl Catalogue {
    fn version(&self, path: &str) -> u32 {
        let versions = self.versions.lock().expect("versions lock");
        versions.get(path).copied().unwrap_or(0)
    }

    /// A new version of the object (a POST or a publish before a purge).
    fn bump(&self, path: &str) -> u32 {
        let mut versions = self.versions.lock().expect("versions lock");
        let version = versions.entry(path.to_owned()).or_insert(0);
        *version += 1;
        *version
    }

    /// Bytes `start..=end` of a version of `path`; the current version of
    /// hot and uncacheable objects is kept in memory.
    fn bytes(&self, path: &str, version: u32, start: u64, end: u64) -> Bytes {
        let memo = !path.starts_with("/cold/") && version == self.version(path);
        if !memo {
            return Bytes::from(generate(path, version, start, end + 1 - start));
        }
        let whole = {
            let bodies = self.bodies.lock().expect("bodies lock");
            bodies
                .get(path)
                .filter(|(v, _)| *v == version)
                .map(|(_, b)| b.clone())
        };
        let whole = whole.unwrap_or_else(|| {
            let body = Bytes::from(generate(path, version, 0, size_of(path)));
            let mut bodies = self.bodies.lock().expect("bodies lock");
            bodies.insert(path.to_owned(), (version, body.clone()));
            body
        });
        whole.slice(start as usize..=end as usize)
    }

    fn hash(&self, path: &str, version: u32) -> blake3::Hash {
        let key = (path.to_owned(), version);
        if let Some(hash) = self.hashes.lock().expect("hashes lock").get(&key) {
            return *hash;
        }
        let hash = blake3::hash(&self.bytes(path, version, 0, size_of(path) - 1));
        self.hashes.lock().expect("hashes lock").insert(key, hash);
        hash
    }
}

// ------------------------------------------------------ the chaos origin

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// RST before any answer.
    Reset,
    /// Nothing for `STALL`, then a normal (late) answer.
    StallHead,
    /// Part of the body, nothing for `STALL`, then the connection closes.
    StallBody,
    Status500,
    Status503,
    /// `Content-Length` of the whole, part of the body, then closed.
    CutLength,
    /// Chunked, part of the body, then closed without the last chunk.
    CutChunked,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::Reset,
        Fault::StallHead,
        Fault::StallBody,
        Fault::Status500,
        Fault::Status503,
        Fault::CutLength,
        Fault::CutChunked,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Fault::Reset => "reset",
            Fault::StallHead => "stall_head",
            Fault::StallBody => "stall_body",
            Fault::Status500 => "status_500",
            Fault::Status503 => "status_503",
            Fault::CutLength => "cut_content_length",
            Fault::CutChunked => "cut_chunked",
        }
    }

    /// How often, relative to the others.
    fn weight(self) -> u64 {
        match self {
            Fault::Reset => 25,
            Fault::StallHead | Fault::StallBody => 10,
            Fault::Status500 | Fault::Status503 => 15,
            Fault::CutLength | Fault::CutChunked => 12,
        }
    }
}

#[derive(Debug)]
struct Origin {
    cat: Arc<Catalogue>,
    faults_on: AtomicBool,
    fault_rate: f64,
    kinds: Vec<Fault>,
    chunked_206: bool,
    rng: Mutex<Rng>,
    faults: [AtomicU64; Fault::ALL.len()],
    requests: AtomicU64,
    partial: AtomicU64,
    not_modified: AtomicU64,
    posts: AtomicU64,
    /// Every cacheable object it answered with a body (read again at the end).
    served: Mutex<BTreeSet<String>>,
    /// When it last failed an exchange, per path.
    faulted: Mutex<HashMap<String, Instant>>,
}

impl Origin {
    fn new(cat: Arc<Catalogue>, settings: &Settings) -> Self {
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

    fn last_fault(&self, path: &str) -> Option<Instant> {
        self.faulted
            .lock()
            .expect("faulted lock")
            .get(path)
            .copied()
    }

    /// Whether it failed an exchange for `path` after `sent` (less
    /// `FAULT_GRACE`: a request sent just after the origin failed may still
    /// join that exchange before the edge has seen it fail).
    fn faulted_since(&self, path: &str, sent: Instant) -> bool {
        self.last_fault(path)
            .is_some_and(|at| at + FAULT_GRACE >= sent)
    }

    fn count(&self, fault: Fault) {
        let i = Fault::ALL.iter().position(|f| *f == fault).unwrap_or(0);
        self.faults[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A response or request body fed from a channel, so that it can stall,
/// stop short or fail; `len` makes it a Content-Length body.
#[derive(Debug)]
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// Streams `body` in 64 KiB pieces; with `cut_at`, stops there (after
/// `stall`) and fails, which closes the connection.
fn channel_body(body: Bytes, len: Option<u64>, cut: Option<Cut>) -> ChannelBody {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let limit = cut.as_ref().map_or(body.len(), |c| c.at.min(body.len()));
        let mut rest = body.slice(..limit);
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(64 * KIB as usize));
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
        }
        if let Some(cut) = cut {
            (cut.done)();
            if cut.stall {
                tokio::time::sleep(STALL).await;
            }
            let _ = tx
                .send(Err("chaos: the origin closes mid-body".into()))
                .await;
        }
    });
    ChannelBody { rx, len }
}

/// Where a body is cut off: after `at` bytes (and `STALL` if `stall`);
/// `done` runs when the bytes before the cut are sent.
struct Cut {
    at: usize,
    stall: bool,
    done: Box<dyn FnOnce() + Send>,
}

/// No body; `len` None leaves the framing to the headers (HEAD).
fn no_body(len: Option<u64>) -> ChannelBody {
    ChannelBody {
        rx: mpsc::channel(1).1,
        len,
    }
}

fn empty_body() -> ChannelBody {
    no_body(Some(0))
}

async fn start_origin(origin: Arc<Origin>) -> SocketAddr {
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

// ------------------------------------------------------- the edge process

struct EdgeProcess {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl EdgeProcess {
    fn spawn(origin: SocketAddr, dir: &Path) -> Self {
        let listen = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let config = dir.join("edge.toml");
        std::fs::write(&config, edge_config()).expect("config written");
        let (stdout, stderr) = (dir.join("edge.stdout"), dir.join("edge.stderr"));
        let child = common::edge_command(origin, &dir.join("data"), listen.port(), admin.port())
            .arg("--config")
            .arg(&config)
            .env(
                "EDGE_LOG",
                std::env::var("SOAK_EDGE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("edge binary starts");
        EdgeProcess {
            child,
            listen,
            admin,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = Conn::new(self.admin);
        loop {
            let made = || get_request("/healthz", &self.admin.to_string());
            if let Ok(resp) = conn.send(&made).await
                && resp.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("edge exited at start-up ({status}): {}", self.logs());
            }
            assert!(Instant::now() < deadline, "edge never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status (SIGKILL after the grace period).
    async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.stdout), read(&self.stderr))
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn edge_config() -> String {
    let timeout = format!("{UPSTREAM_TIMEOUT_MS}ms");
    format!(
        "[cache]\n\
         memory = \"{}MiB\"\n\
         disk = \"{}MiB\"\n\
         max_object_size = \"{}KiB\"\n\
         slice_size = \"{}KiB\"\n\
         [server]\n\
         shutdown_grace = \"5s\"\n\
         [upstream]\n\
         connect_timeout = \"{timeout}\"\n\
         header_timeout = \"{timeout}\"\n\
         read_timeout = \"{timeout}\"\n\
         pool_idle_timeout = \"{}s\"\n\
         pool_max_idle_per_host = 32\n",
        MEMORY / MIB,
        DISK / MIB,
        MAX_OBJECT / KIB,
        SLICE / KIB,
        POOL_IDLE.as_secs(),
    )
}

/// The edge's resident memory (KiB) and open descriptors.
fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

// ------------------------------------------------------------ the clients

/// One client connection (HTTP/1.1, keep-alive), opened again after the
/// edge closes it.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<ReqBody>>,
    /// The previous exchange on this connection, for failure reports.
    last: String,
    /// When the previous exchange ended: a connection idle for long is
    /// not reused, as the server may be closing it just then.
    idle_since: Instant,
}

#[derive(Debug)]
enum SendError {
    Connect(std::io::Error),
    /// The connection failed before a response head.
    NoHead(hyper::Error),
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            sender: None,
            last: String::new(),
            idle_since: Instant::now(),
        }
    }

    async fn send(
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
fn closed_or_reset(err: &hyper::Error) -> bool {
    use std::error::Error as _;
    err.is_incomplete_message()
        || err
            .source()
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
}

fn get_request(path: &str, host: &str) -> Request<ReqBody> {
    Request::get(path)
        .header(header::HOST, host)
        .body(full(Bytes::new()))
        .expect("request")
}

fn full(bytes: Bytes) -> ReqBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response as the client got it.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The body ended cleanly (not by an error or a closed connection).
    complete: bool,
}

impl Got {
    fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    fn describe(&self) -> String {
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

async fn receive(resp: Response<Incoming>) -> Got {
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

/// What one request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Hit,
    Miss,
    Range,
    RangeMiss,
    Uncacheable,
    Head,
    Post,
    Purge,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Hit,
        Op::Miss,
        Op::Range,
        Op::RangeMiss,
        Op::Uncacheable,
        Op::Head,
        Op::Post,
        Op::Purge,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Op::Hit => "hot",
            Op::Miss => "miss",
            Op::Range => "range",
            Op::RangeMiss => "rng-miss",
            Op::Uncacheable => "nocache",
            Op::Head => "head",
            Op::Post => "post",
            Op::Purge => "purge",
        }
    }

    fn pick(rng: &mut Rng) -> Op {
        const WEIGHTS: [(Op, u64); 8] = [
            (Op::Hit, 46),
            (Op::Miss, 10),
            (Op::Range, 16),
            (Op::RangeMiss, 4),
            (Op::Uncacheable, 8),
            (Op::Head, 3),
            (Op::Post, 8),
            (Op::Purge, 2),
        ];
        let mut roll = rng.below(WEIGHTS.iter().map(|(_, w)| w).sum());
        for (op, weight) in WEIGHTS {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        Op::Hit
    }
}

/// How a response was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    /// Correct, but a version older than a hard purge that completed before
    /// the request was sent (a fill in flight across the purge).
    OkOlderThanPurge,
    /// The origin's own injected 500/503, passed on.
    OriginError,
    Edge502,
    Edge503,
    Edge504,
    /// A correct prefix, then the connection closed: the origin cut it off.
    Truncated,
    /// The connection closed before any response head, while the origin
    /// failed an exchange for the same path.
    ClosedBeforeHead,
    /// `only-if-cached` on an object not in the cache (final re-read).
    NotCached,
    // Failures from here on.
    WrongBody,
    /// A complete-looking body shorter than the object.
    ShortComplete,
    /// Cut-off bytes that are not a prefix of the object.
    BadPrefix,
    WrongRange,
    WrongStatus,
    /// A hit on an object held whole (no origin involved) cut off.
    TruncatedHit,
    /// Cut off, though the origin failed nothing for it meanwhile.
    UnexplainedCut,
    NoHead,
    ConnectFailed,
    Hang,
    PurgeRefused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::OkOlderThanPurge => "ok_older_than_purge",
            Outcome::OriginError => "origin_5xx_passed",
            Outcome::Edge502 => "edge_502",
            Outcome::Edge503 => "edge_503",
            Outcome::Edge504 => "edge_504",
            Outcome::Truncated => "truncated_signalled",
            Outcome::ClosedBeforeHead => "closed_before_head",
            Outcome::NotCached => "not_cached",
            Outcome::WrongBody => "FAIL wrong_body",
            Outcome::ShortComplete => "FAIL short_complete",
            Outcome::BadPrefix => "FAIL bad_prefix",
            Outcome::WrongRange => "FAIL wrong_range",
            Outcome::WrongStatus => "FAIL wrong_status",
            Outcome::TruncatedHit => "FAIL truncated_hit",
            Outcome::UnexplainedCut => "FAIL unexplained_cut",
            Outcome::NoHead => "FAIL no_response_head",
            Outcome::ConnectFailed => "FAIL connect",
            Outcome::Hang => "FAIL hang",
            Outcome::PurgeRefused => "FAIL purge_refused",
        }
    }

    fn is_failure(self) -> bool {
        self >= Outcome::WrongBody
    }
}

type Verdict = (Outcome, String);

fn ok() -> Verdict {
    (Outcome::Ok, String::new())
}

/// Statuses other than the expected success.
fn judge_error(got: &Got) -> Verdict {
    let chaos = got.headers.contains_key("x-chaos");
    let outcome = match got.status.as_u16() {
        500 | 503 if chaos => Outcome::OriginError,
        502 if !chaos => Outcome::Edge502,
        503 if !chaos => Outcome::Edge503,
        504 if !chaos => Outcome::Edge504,
        _ => Outcome::WrongStatus,
    };
    (outcome, got.describe())
}

/// The ETag's version, checked against the origin's history.
fn judge_version(cat: &Catalogue, path: &str, got: &Got) -> Result<u32, Verdict> {
    let Some(version) = etag_version(path, &got.headers) else {
        return Err((Outcome::WrongBody, format!("bad ETag: {}", got.describe())));
    };
    if version > cat.version(path) {
        return Err((
            Outcome::WrongBody,
            format!("future version: {}", got.describe()),
        ));
    }
    Ok(version)
}

/// A cut-off body: documented if its bytes are the object's from `start`.
fn judge_cut(cat: &Catalogue, path: &str, version: u32, start: u64, got: &Got) -> Verdict {
    if !got.body.is_empty() {
        let end = start + got.body.len() as u64 - 1;
        if end >= size_of(path) || cat.bytes(path, version, start, end) != got.body {
            return (Outcome::BadPrefix, got.describe());
        }
    }
    let whole_in_store = size_of(path) <= SLICE;
    if got.x_cache() == "HIT" && whole_in_store {
        return (Outcome::TruncatedHit, got.describe());
    }
    (Outcome::Truncated, String::new())
}

/// A GET of the whole object.
fn judge_full(cat: &Catalogue, path: &str, got: &Got) -> Verdict {
    if got.status != StatusCode::OK {
        return judge_error(got);
    }
    let version = match judge_version(cat, path, got) {
        Ok(v) => v,
        Err(verdict) => return verdict,
    };
    let size = size_of(path);
    if let Some(declared) = got.content_length()
        && declared != size
    {
        let kind = if declared < size && got.complete {
            Outcome::ShortComplete
        } else {
            Outcome::WrongBody
        };
        return (kind, format!("object is {size} bytes: {}", got.describe()));
    }
    if !got.complete {
        return judge_cut(cat, path, version, 0, got);
    }
    if (got.body.len() as u64) < size {
        return (
            Outcome::ShortComplete,
            format!("object is {size} bytes: {}", got.describe()),
        );
    }
    if blake3::hash(&got.body) != cat.hash(path, version) {
        return (
            Outcome::WrongBody,
            format!("hash differs: {}", got.describe()),
        );
    }
    ok()
}

/// A range request: `(start, end)` inclusive, as the client resolves them.
#[derive(Debug, Clone)]
struct RangeAsk {
    header: String,
    ranges: Vec<(u64, u64)>,
}

fn pick_range(rng: &mut Rng, size: u64) -> RangeAsk {
    let single = |start: u64, end: u64, header: String| RangeAsk {
        header,
        ranges: vec![(start, end)],
    };
    match rng.below(10) {
        0..5 => {
            let start = rng.below(size);
            let end = start + rng.below((size - start).min(512 * KIB));
            single(start, end, format!("bytes={start}-{end}"))
        }
        5 | 6 => {
            let n = 1 + rng.below(size.min(256 * KIB));
            single(size - n, size - 1, format!("bytes=-{n}"))
        }
        7 => {
            let start = rng.below(size);
            single(start, size - 1, format!("bytes={start}-"))
        }
        8 => {
            // Across a slice boundary where there is one.
            let boundary = (SLICE * (1 + rng.below(size / SLICE + 1))).min(size - 1);
            let start = boundary.saturating_sub(1 + rng.below(4 * KIB));
            let end = (boundary + rng.below(4 * KIB)).min(size - 1);
            single(start, end, format!("bytes={start}-{end}"))
        }
        _ => {
            // Two disjoint ranges: multipart/byteranges.
            let a = rng.below(size / 2);
            let b = a + rng.below((size / 2 - a).min(64 * KIB));
            let c = size / 2 + 1 + rng.below(size / 2 - 1);
            let d = c + rng.below((size - c).min(64 * KIB));
            RangeAsk {
                header: format!("bytes={a}-{b},{c}-{d}"),
                ranges: vec![(a, b), (c, d)],
            }
        }
    }
}

fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, total.parse().ok()?))
}

fn judge_range(cat: &Catalogue, path: &str, ask: &RangeAsk, got: &Got) -> Verdict {
    match got.status {
        // Ignoring a Range is always allowed; the whole must be right.
        StatusCode::OK => return judge_full(cat, path, got),
        StatusCode::PARTIAL_CONTENT => {}
        _ => return judge_error(got),
    }
    let version = match judge_version(cat, path, got) {
        Ok(v) => v,
        Err(verdict) => return verdict,
    };
    let size = size_of(path);
    let content_type = got
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(boundary) = content_type
        .strip_prefix("multipart/byteranges")
        .and_then(|rest| rest.split_once("boundary="))
        .map(|(_, b)| b.trim_matches('"').to_owned())
    {
        if !got.complete {
            return (Outcome::Truncated, String::new());
        }
        return match parse_multipart(&got.body, &boundary) {
            Some(parts) if parts.len() == ask.ranges.len() => {
                for ((start, end, total, bytes), (want_start, want_end)) in
                    parts.iter().zip(&ask.ranges)
                {
                    if (start, end, total) != (want_start, want_end, &size)
                        || cat.bytes(path, version, *start, *end) != *bytes
                    {
                        return (
                            Outcome::WrongRange,
                            format!("multipart part differs: {}", got.describe()),
                        );
                    }
                }
                ok()
            }
            _ => (
                Outcome::WrongRange,
                format!("multipart unreadable: {}", got.describe()),
            ),
        };
    }
    let Some((start, end, total)) = got
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
    else {
        return (
            Outcome::WrongRange,
            format!("no Content-Range: {}", got.describe()),
        );
    };
    // One part answering several ranges must cover them all.
    let covers = ask.ranges.iter().all(|(s, e)| start <= *s && *e <= end);
    let exact = ask.ranges.len() > 1 || ask.ranges == [(start, end)];
    if total != size || end >= size || !covers || !exact {
        return (
            Outcome::WrongRange,
            format!("asked {}: {}", ask.header, got.describe()),
        );
    }
    let len = end + 1 - start;
    if got.content_length().is_some_and(|cl| cl != len) {
        return (
            Outcome::WrongRange,
            format!("length differs: {}", got.describe()),
        );
    }
    if !got.complete {
        return judge_cut(cat, path, version, start, got);
    }
    if got.body.len() as u64 != len {
        return (
            Outcome::ShortComplete,
            format!("asked {}: {}", ask.header, got.describe()),
        );
    }
    if cat.bytes(path, version, start, end) != got.body {
        return (
            Outcome::WrongRange,
            format!("bytes differ: {}", got.describe()),
        );
    }
    ok()
}

/// One part of a `multipart/byteranges` body: start, end, total, bytes.
type Part = (u64, u64, u64, Vec<u8>);

fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0)?;
    loop {
        at += delimiter.len();
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = std::str::from_utf8(&body[at..head_end]).ok()?;
        let range = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-range")
                .then(|| parse_content_range(value))
                .flatten()
        })?;
        let start = head_end + 4;
        let end = start + usize::try_from(range.1 + 1 - range.0).ok()?;
        parts.push((range.0, range.1, range.2, body.get(start..end)?.to_vec()));
        at = find(body, delimiter.as_bytes(), end)?;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Counts by outcome and operation, cache statuses of correct answers,
/// and the first failures in full.
#[derive(Debug, Default)]
struct Tally {
    counts: Mutex<BTreeMap<(Outcome, Op), u64>>,
    x_cache: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<String>>,
    /// The first answers older than a purge, in full.
    notes: Mutex<Vec<String>>,
    failed: AtomicU64,
}

impl Tally {
    fn record(&self, op: Op, path: &str, verdict: Verdict, x_cache: &str) {
        let (outcome, detail) = verdict;
        *self
            .counts
            .lock()
            .expect("tally lock")
            .entry((outcome, op))
            .or_default() += 1;
        if outcome == Outcome::Ok {
            *self
                .x_cache
                .lock()
                .expect("tally lock")
                .entry(x_cache.to_owned())
                .or_default() += 1;
        }
        if outcome == Outcome::OkOlderThanPurge {
            let mut notes = self.notes.lock().expect("tally lock");
            if notes.len() < 10 {
                notes.push(format!(
                    "{} {path}: x-cache {x_cache}, {detail}",
                    op.as_str()
                ));
            }
        }
        if outcome.is_failure() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut failures = self.failures.lock().expect("tally lock");
            if failures.len() < 40 {
                failures.push(format!(
                    "{} {} {} {path}: {detail}",
                    utc_now(),
                    outcome.as_str(),
                    op.as_str()
                ));
            }
        }
    }
}

impl Tally {
    /// Outcomes, and the X-Cache of the correct answers, on one line.
    fn brief(&self) -> String {
        let counts = self.counts.lock().expect("tally lock");
        let mut by_outcome: BTreeMap<Outcome, u64> = BTreeMap::new();
        for ((outcome, _), n) in counts.iter() {
            *by_outcome.entry(*outcome).or_default() += n;
        }
        let outcomes: Vec<String> = by_outcome
            .iter()
            .map(|(o, n)| format!("{} {n}", o.as_str()))
            .collect();
        let mut statuses: BTreeMap<&str, u64> = BTreeMap::new();
        let x_cache = self.x_cache.lock().expect("tally lock");
        for (key, n) in x_cache.iter() {
            *statuses
                .entry(key.split('|').next().unwrap_or("-"))
                .or_default() += n;
        }
        format!("{} (correct by X-Cache: {statuses:?})", outcomes.join(", "))
    }
}

/// Everything the client workers share.
struct Load {
    cat: Arc<Catalogue>,
    origin: Arc<Origin>,
    edge: SocketAddr,
    admin: SocketAddr,
    tally: Tally,
    stop: AtomicBool,
    started: AtomicU64,
    max_requests: u64,
    next_cold: AtomicU64,
    /// Per hot path: the version a hard purge published, and when the
    /// purge was answered.
    purged: Mutex<HashMap<String, (u32, Instant)>>,
}

async fn client_worker(load: Arc<Load>, seed: u64) {
    let mut rng = Rng(seed);
    let mut conn = Conn::new(load.edge);
    let mut admin = Conn::new(load.admin);
    while !load.stop.load(Ordering::Relaxed)
        && load.started.fetch_add(1, Ordering::Relaxed) < load.max_requests
    {
        let op = Op::pick(&mut rng);
        // Skewed to the low numbers: a few objects are very hot.
        let hot = format!("/hot/{}", (HOT as f64 * rng.unit().powi(2)) as u64);
        let (path, exchange) = match op {
            Op::Hit | Op::Range | Op::Head => (hot, &mut conn),
            Op::Miss | Op::RangeMiss => (
                format!("/cold/{}", load.next_cold.fetch_add(1, Ordering::Relaxed)),
                &mut conn,
            ),
            Op::Uncacheable => (format!("/nc/{}", rng.below(UNCACHEABLE)), &mut conn),
            Op::Post if rng.chance(0.1) => (hot, &mut conn),
            Op::Post => (format!("/api/{}", rng.below(API)), &mut conn),
            Op::Purge => (hot, &mut admin),
        };
        let sent_at = Instant::now();
        let run = one_request(&load, &mut rng, op, &path, exchange);
        let (verdict, x_cache) = match tokio::time::timeout(REQUEST_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => {
                exchange.sender = None;
                (
                    (Outcome::Hang, format!("no answer in {REQUEST_TIMEOUT:?}")),
                    "-".into(),
                )
            }
        };
        let verdict = older_than_purge(&load, &path, sent_at, verdict, &x_cache);
        load.tally.record(op, &path, verdict, &x_cache);
    }
}

/// An answer from before a hard purge that completed before the request
/// was sent is noted apart (it can only come from a fill that was under
/// way across the purge).
fn older_than_purge(
    load: &Load,
    path: &str,
    sent_at: Instant,
    verdict: Verdict,
    x_cache: &str,
) -> Verdict {
    if verdict.0 != Outcome::Ok || !path.starts_with("/hot/") {
        return verdict;
    }
    let purged = load.purged.lock().expect("purged lock").get(path).copied();
    let version: Option<u32> = x_cache.split_once('|').and_then(|(_, v)| v.parse().ok());
    match (purged, version) {
        (Some((floor, at)), Some(v)) if at < sent_at && v < floor => (
            Outcome::OkOlderThanPurge,
            format!(
                "version {v}; a purge answered {:?} before the request was sent published {floor}",
                sent_at - at
            ),
        ),
        _ => verdict,
    }
}

/// Sends one request and judges the answer; returns the verdict and
/// `X-Cache|version` of the answer.
async fn one_request(
    load: &Load,
    rng: &mut Rng,
    op: Op,
    path: &str,
    conn: &mut Conn,
) -> (Verdict, String) {
    let cat = &load.cat;
    let (make, judge): (Box<dyn Fn() -> Request<ReqBody> + Send + Sync>, Judge) = match op {
        Op::Hit | Op::Miss | Op::Uncacheable => {
            let path = path.to_owned();
            (Box::new(move || get_request(&path, HOST)), Judge::Full)
        }
        Op::Range | Op::RangeMiss => {
            let ask = pick_range(rng, size_of(path));
            let (path, header) = (path.to_owned(), ask.header.clone());
            let make = move || {
                let mut req = get_request(&path, HOST);
                let value = header.parse().expect("range header");
                req.headers_mut().insert(header::RANGE, value);
                req
            };
            (Box::new(make), Judge::Range(ask))
        }
        Op::Head => {
            let path = path.to_owned();
            let make = move || {
                let mut req = get_request(&path, HOST);
                *req.method_mut() = Method::HEAD;
                req
            };
            (Box::new(make), Judge::Head)
        }
        Op::Post => {
            let len = rng.below(128 * KIB) as usize;
            let body = Bytes::from(generate(path, rng.next() as u32, 0, len as u64));
            let chunked = rng.chance(0.3);
            let want = blake3::hash(&body).to_hex().to_string();
            let path = path.to_owned();
            let make = move || {
                let body = if chunked {
                    channel_body(body.clone(), None, None).boxed_unsync()
                } else {
                    full(body.clone())
                };
                Request::post(&path)
                    .header(header::HOST, HOST)
                    .body(body)
                    .expect("post request")
            };
            (Box::new(make), Judge::Post(want))
        }
        Op::Purge => return purge(load, rng, path, conn).await,
    };
    let sent_at = Instant::now();
    let resp = match conn.send(&*make).await {
        Ok(resp) => resp,
        Err(SendError::Connect(err)) => {
            return ((Outcome::ConnectFailed, err.to_string()), "-".into());
        }
        Err(SendError::NoHead(err)) => {
            // The edge drops the connection, head unsent, when the origin's
            // body fails right after its head: a body cut off early, or an
            // early answer to a POST (the origin closes without reading the
            // upload). Hyper aborts the connection with the head still in
            // its write buffer; with upload bytes unread, the close is an RST.
            if closed_or_reset(&err) && load.origin.faulted_since(path, sent_at) {
                return ((Outcome::ClosedBeforeHead, String::new()), "-".into());
            }
            let detail = format!("{err:?}; previous on this connection: {}", conn.last);
            return ((Outcome::NoHead, detail), "-".into());
        }
    };
    let got = receive(resp).await;
    if !got.complete {
        conn.sender = None;
    }
    conn.last = format!(
        "{} {path}: {} {:?}",
        op.as_str(),
        got.describe(),
        got.headers.get(header::CONNECTION)
    );
    let verdict = match &judge {
        Judge::Full => judge_full(cat, path, &got),
        Judge::Range(ask) => judge_range(cat, path, ask, &got),
        Judge::Head => judge_head(cat, path, &got),
        Judge::Post(want) => judge_post(want, &got),
    };
    let version = etag_version(path, &got.headers);
    // A cut-off answer is documented when the origin failed an exchange
    // for this path meanwhile, or the object changed under its slices.
    let faulted = load.origin.faulted_since(path, sent_at);
    let verdict = match verdict {
        (Outcome::Truncated, _) if !faulted && version.is_none_or(|v| v >= cat.version(path)) => {
            let last = load
                .origin
                .last_fault(path)
                .map(|at| sent_at.saturating_duration_since(at));
            (
                Outcome::UnexplainedCut,
                format!(
                    "no origin fault since the request was sent (last {last:?} before), \
                     no new version: {}",
                    got.describe()
                ),
            )
        }
        other => other,
    };
    let version = version.map_or(String::new(), |v| v.to_string());
    (verdict, format!("{}|{version}", got.x_cache()))
}

enum Judge {
    Full,
    Range(RangeAsk),
    Head,
    Post(String),
}

fn judge_head(cat: &Catalogue, path: &str, got: &Got) -> Verdict {
    if got.status != StatusCode::OK {
        return judge_error(got);
    }
    if let Err(verdict) = judge_version(cat, path, got) {
        return verdict;
    }
    // Without Content-Length is allowed: the GET it stands for (the one
    // the edge filled with) may have been chunked (RFC 9110 §9.3.2).
    if got.content_length().is_some_and(|cl| cl != size_of(path)) || !got.body.is_empty() {
        return (Outcome::WrongBody, format!("HEAD: {}", got.describe()));
    }
    ok()
}

fn judge_post(want: &str, got: &Got) -> Verdict {
    if got.status != StatusCode::OK {
        return judge_error(got);
    }
    if !got.complete {
        // The origin cut its answer: a prefix of the hash, or nothing.
        return if want.as_bytes().starts_with(&got.body) {
            (Outcome::Truncated, String::new())
        } else {
            (Outcome::BadPrefix, got.describe())
        };
    }
    if got.body != want.as_bytes() {
        return (
            Outcome::WrongBody,
            format!("POST answer differs: {}", got.describe()),
        );
    }
    ok()
}

/// A purge through the admin API: URL (most often after publishing a new
/// version), soft URL, prefix or tag.
async fn purge(load: &Load, rng: &mut Rng, path: &str, conn: &mut Conn) -> (Verdict, String) {
    let url = format!("http://{HOST}{path}");
    let mut published = None;
    let body = match rng.below(10) {
        0..5 => {
            published = Some(load.cat.bump(path));
            serde_json::json!({ "urls": [url] })
        }
        5 | 6 => serde_json::json!({ "urls": [url], "soft": true }),
        7 | 8 => {
            published = Some(load.cat.bump(path));
            serde_json::json!({ "prefixes": [format!("{HOST}{path}")] })
        }
        _ => serde_json::json!({ "tags": [format!("g{}", rng.below(8))] }),
    };
    let body = Bytes::from(body.to_string());
    let admin = load.admin.to_string();
    let make = || {
        Request::post("/purge")
            .header(header::HOST, &admin)
            .header(header::AUTHORIZATION, format!("Bearer {}", common::TOKEN))
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(body.clone()))
            .expect("purge request")
    };
    let got = match conn.send(&make).await {
        Ok(resp) => receive(resp).await,
        Err(err) => return ((Outcome::PurgeRefused, format!("{err:?}")), "-".into()),
    };
    if got.status != StatusCode::OK || !got.complete {
        let text = String::from_utf8_lossy(&got.body).into_owned();
        return (
            (Outcome::PurgeRefused, format!("{} {text}", got.describe())),
            "-".into(),
        );
    }
    if let Some(version) = published {
        let mut purged = load.purged.lock().expect("purged lock");
        purged.insert(path.to_owned(), (version, Instant::now()));
    }
    (ok(), "(purge API)".into())
}

// ------------------------------------------------------------- the checks

/// With faults off, every cacheable object the origin ever served, read
/// whole through the edge: cached copies must hash as the origin's. With
/// `only_if_cached` the edge answers from its cache or 504, so reading
/// does not evict what is still to be read.
async fn reread_all(
    load: Arc<Load>,
    paths: Vec<String>,
    workers: usize,
    only_if_cached: bool,
) -> Tally {
    let paths = Arc::new(paths);
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (load, paths, next, tally) = (load.clone(), paths.clone(), next.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(load.edge);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(path) = paths.get(i) else { break };
                let make = || {
                    let mut req = get_request(path, HOST);
                    if only_if_cached {
                        let value = header::HeaderValue::from_static("only-if-cached");
                        req.headers_mut().insert(header::CACHE_CONTROL, value);
                    }
                    req
                };
                let run = async {
                    match conn.send(&make).await {
                        Ok(resp) => {
                            let got = receive(resp).await;
                            if !got.complete {
                                conn.sender = None;
                            }
                            let verdict = if only_if_cached && got.status == 504 {
                                (Outcome::NotCached, String::new())
                            } else {
                                judge_full(&load.cat, path, &got)
                            };
                            (verdict, got.x_cache().to_owned())
                        }
                        Err(err) => ((Outcome::NoHead, format!("{err:?}")), "-".to_owned()),
                    }
                };
                let (verdict, x_cache) = match tokio::time::timeout(REQUEST_TIMEOUT, run).await {
                    Ok(done) => done,
                    Err(_) => ((Outcome::Hang, String::new()), "-".to_owned()),
                };
                // With faults off, a documented error is a failure too.
                let verdict = match verdict.0 {
                    Outcome::Ok | Outcome::NotCached => verdict,
                    other if other.is_failure() => verdict,
                    other => (
                        Outcome::WrongStatus,
                        format!("{} with faults off, x-cache {x_cache}", other.as_str()),
                    ),
                };
                tally.record(Op::Hit, path, verdict, &x_cache);
            }
        }));
    }
    for task in tasks {
        task.await.expect("re-read worker");
    }
    Arc::into_inner(tally).expect("re-read workers done")
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

/// The time of day (UTC, as the edge's log has it), to find a failure there.
fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (now.as_secs() % 86_400, now.subsec_millis());
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Samples the edge's RSS and descriptors every `SAMPLE_EVERY` until the
/// task is aborted or the process is gone.
fn spawn_sampler(pid: u32, begin: Instant) -> (Arc<Mutex<Vec<Sample>>>, JoinHandle<()>) {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let samples = samples.clone();
        tokio::spawn(async move {
            while let Some((rss_kib, fds)) = sample(pid) {
                let at = begin.elapsed();
                let sample = Sample { at, rss_kib, fds };
                samples.lock().expect("samples lock").push(sample);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    (samples, task)
}

/// Runs the client connections until `settings.secs` have passed (or the
/// request budget is spent); returns how long they ran.
async fn run_clients(load: &Arc<Load>, settings: &Settings, begin: Instant) -> Duration {
    let workers: Vec<_> = (0..settings.clients)
        .map(|i| {
            let seed = settings.seed ^ ((i as u64 + 1) << 32);
            tokio::spawn(client_worker(load.clone(), seed))
        })
        .collect();
    let deadline = begin + Duration::from_secs(settings.secs);
    while Instant::now() < deadline && !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("client worker");
    }
    begin.elapsed()
}

/// Hot objects first, then the newest misses: what is likeliest cached is
/// read before the second pass's misses evict it.
fn reread_order(mut paths: Vec<String>) -> Vec<String> {
    paths.sort_by_key(|p| {
        let n: u64 = p
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match p.starts_with("/cold/") {
            true => (1, u64::MAX - n),
            false => (0, n),
        }
    });
    paths
}

/// Requests by outcome (rows) and operation (columns).
fn print_outcomes(counts: &BTreeMap<(Outcome, Op), u64>) {
    print!("{:<24}{:>9}", "outcome", "total");
    for op in Op::ALL {
        print!("{:>9}", op.as_str());
    }
    println!();
    let outcomes: BTreeSet<Outcome> = counts.keys().map(|(o, _)| *o).collect();
    for outcome in outcomes {
        let row: Vec<u64> = Op::ALL
            .iter()
            .map(|op| counts.get(&(outcome, *op)).copied().unwrap_or(0))
            .collect();
        print!("{:<24}{:>9}", outcome.as_str(), row.iter().sum::<u64>());
        for n in row {
            print!("{n:>9}");
        }
        println!();
    }
}

/// What the edge process used, against its bounds.
#[derive(Debug)]
struct Resources {
    idle_rss: u64,
    idle_fds: usize,
    rss_bound: u64,
    fds_bound: usize,
    samples: Vec<Sample>,
    /// Once the clients were gone and the upstream pool idle.
    after: Option<(u64, usize)>,
}

impl Resources {
    fn peak_rss(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)
    }

    fn peak_fds(&self) -> usize {
        self.samples.iter().map(|s| s.fds).max().unwrap_or(0)
    }

    fn print(&self) {
        println!(
            "edge: peak RSS {:.1} MiB (bound {:.1}), peak fds {} (bound {}); after idle {:?} \
             (idle at start {:.1} MiB, {} fds)",
            mib(self.peak_rss()),
            mib(self.rss_bound),
            self.peak_fds(),
            self.fds_bound,
            self.after
                .map(|(r, f)| format!("{:.1} MiB, {f} fds", mib(r))),
            mib(self.idle_rss),
            self.idle_fds,
        );
        let trend: Vec<String> = self
            .samples
            .iter()
            .step_by((self.samples.len() / 12).max(1))
            .map(|s| format!("{}s:{:.0}MiB/{}", s.at.as_secs(), mib(s.rss_kib), s.fds))
            .collect();
        println!("samples (t:RSS/fds): {}", trend.join(" "));
    }
}

fn print_origin(origin: &Origin) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with scripts/soak"]
async fn soak_mixed_load_against_a_chaotic_origin() {
    let settings = Settings::from_env();
    let cat = Arc::new(Catalogue::default());
    let origin = Arc::new(Origin::new(cat.clone(), &settings));
    let origin_addr = start_origin(origin.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut edge = EdgeProcess::spawn(origin_addr, dir.path());
    edge.wait_ready().await;
    let pid = edge.pid();
    let (idle_rss, idle_fds) = sample(pid).expect("edge is sampled");
    let faults: Vec<&str> = settings.faults.iter().map(|f| f.as_str()).collect();
    println!(
        "soak: {} s, {} connections, fault rate {} {faults:?}, chunked 206s {}, seed {}; \
         edge pid {pid}, idle RSS {:.1} MiB, {idle_fds} fds",
        settings.secs,
        settings.clients,
        settings.fault_rate,
        settings.chunked_206,
        settings.seed,
        mib(idle_rss)
    );

    // The load, with the edge sampled throughout.
    let load = Arc::new(Load {
        cat: cat.clone(),
        origin: origin.clone(),
        edge: edge.listen,
        admin: edge.admin,
        tally: Tally::default(),
        stop: AtomicBool::new(false),
        started: AtomicU64::new(0),
        max_requests: settings.max_requests,
        next_cold: AtomicU64::new(0),
        purged: Mutex::default(),
    });
    let begin = Instant::now();
    let (samples, sampler) = spawn_sampler(pid, begin);
    let elapsed = run_clients(&load, &settings, begin).await;

    // Faults off; let stalled exchanges and background fills finish, then
    // read everything cacheable again.
    origin.faults_on.store(false, Ordering::Relaxed);
    tokio::time::sleep(STALL + Duration::from_secs(1)).await;
    let served = origin.served.lock().expect("served lock").clone();
    let paths = reread_order(served.into_iter().collect());
    let before = origin.requests.load(Ordering::Relaxed);
    let cached = reread_all(load.clone(), paths.clone(), 16, true).await;
    // Background refreshes of stale objects may reach the origin; anything
    // else asked of it during this pass is a slice fetched for a partly
    // stored object despite only-if-cached.
    let origin_during_cached = origin.requests.load(Ordering::Relaxed) - before;
    let reread = reread_all(load.clone(), paths.clone(), 16, false).await;

    // Every client connection is closed now; idle upstream connections go
    // after POOL_IDLE. Descriptors must come back to about the idle count.
    tokio::time::sleep(POOL_IDLE + Duration::from_secs(3)).await;
    let after = sample(pid);
    sampler.abort();
    let resources = Resources {
        idle_rss,
        idle_fds,
        rss_bound: idle_rss + (MEMORY + RSS_MARGIN) / KIB,
        fds_bound: idle_fds + FDS_PER_CLIENT * settings.clients + 64,
        samples: samples.lock().expect("samples lock").clone(),
        after,
    };
    let alive = matches!(edge.child.try_wait(), Ok(None));
    let exit = edge.terminate().await;
    let logs = edge.logs();
    let panics: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(5)
        .collect();

    // ---- summary
    let counts = load.tally.counts.lock().expect("tally lock").clone();
    let total: u64 = counts.values().sum();
    println!("\n=== soak summary ===");
    println!(
        "requests {total} in {:.1} s: {:.0}/s ({} connections)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        settings.clients
    );
    print_outcomes(&counts);
    println!("all: {}", load.tally.brief());
    print_origin(&origin);
    resources.print();
    println!(
        "final re-read of {} cacheable objects, faults off:\n  from cache (only-if-cached): {} \
         [origin asked {origin_during_cached} times meanwhile]\n  then all through the edge:    {}",
        paths.len(),
        cached.brief(),
        reread.brief()
    );
    let warn_lines = logs.lines().filter(|l| l.contains("WARN")).count();
    let error_lines: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
    println!(
        "edge log: {warn_lines} WARN, {} ERROR lines; exit {exit:?}",
        error_lines.len()
    );
    for line in error_lines.iter().take(5) {
        println!("  {line}");
    }
    for note in load.tally.notes.lock().expect("tally lock").iter() {
        println!("  older than purge: {note}");
    }
    let failures = load.tally.failures.lock().expect("tally lock").clone();
    let reread_failures: Vec<String> = [&cached, &reread]
        .iter()
        .flat_map(|t| t.failures.lock().expect("tally lock").clone())
        .collect();
    for failure in failures.iter().chain(&reread_failures) {
        println!("  {failure}");
    }

    // ---- verdicts
    let kept = std::env::temp_dir().join(format!("edge-soak-{}.log", settings.seed));
    let _ = std::fs::write(&kept, &logs);
    let kept = kept.display();
    println!("edge log kept in {kept}");
    assert!(
        panics.is_empty(),
        "the edge panicked: {panics:?} (log: {kept})"
    );
    assert!(alive, "the edge process died during the soak (log: {kept})");
    assert!(
        exit.is_some_and(|s| s.success()),
        "the edge did not shut down cleanly on SIGTERM: {exit:?} (log: {kept})"
    );
    assert_eq!(
        load.tally.failed.load(Ordering::Relaxed),
        0,
        "responses neither correct nor a documented error (first: {failures:#?}; log: {kept})"
    );
    assert_eq!(
        cached.failed.load(Ordering::Relaxed) + reread.failed.load(Ordering::Relaxed),
        0,
        "objects read again with faults off were wrong (first: {reread_failures:#?})"
    );
    assert!(
        counts.keys().any(|(o, _)| *o == Outcome::Ok),
        "no request succeeded"
    );
    assert!(
        resources.peak_rss() <= resources.rss_bound,
        "edge RSS peaked at {:.1} MiB, over {:.1} MiB",
        mib(resources.peak_rss()),
        mib(resources.rss_bound)
    );
    assert!(
        resources.peak_fds() <= resources.fds_bound,
        "edge had {} descriptors open, over {}",
        resources.peak_fds(),
        resources.fds_bound
    );
    let (_, fds_after) = resources.after.expect("edge sampled after the load");
    assert!(
        fds_after <= idle_fds + FDS_IDLE_SLACK,
        "descriptors leak: {fds_after} open when idle after the soak, {idle_fds} before"
    );
}
