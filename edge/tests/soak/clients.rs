//! The load: client workers that pick operations, send them to the edge
//! (or its purge API), judge each answer, and tell cut-offs the origin
//! explains from unexplained ones and answers older than a purge from
//! the rest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;

use crate::bodies::{channel_body, full};
use crate::catalogue::{Catalogue, etag_version, generate, size_of};
use crate::common;
use crate::conn::{Conn, SendError, closed_or_reset, get_request, receive};
use crate::judges::{Judge, RangeAsk, judge_full, judge_head, judge_post, judge_range};
use crate::model::{API, HOST, HOT, KIB, REQUEST_TIMEOUT, ReqBody, Rng, SLICE, UNCACHEABLE};
use crate::origin::Origin;
use crate::outcome::{Op, Outcome, Tally, Verdict, ok};
use crate::settings::Settings;

/// Everything the client workers share.
pub struct Load {
    pub cat: Arc<Catalogue>,
    pub origin: Arc<Origin>,
    pub edge: SocketAddr,
    pub admin: SocketAddr,
    pub tally: Tally,
    pub stop: AtomicBool,
    pub started: AtomicU64,
    pub max_requests: u64,
    pub next_cold: AtomicU64,
    /// Per hot path: the version a hard purge published, and when the
    /// purge was answered.
    pub purged: Mutex<HashMap<String, (u32, Instant)>>,
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

/// Runs the client connections until `settings.secs` have passed (or the
/// request budget is spent); returns how long they ran.
pub async fn run_clients(load: &Arc<Load>, settings: &Settings, begin: Instant) -> Duration {
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
