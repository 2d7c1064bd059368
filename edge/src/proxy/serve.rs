//! Answers from a stored object: its head (`Age`, `Content-Length`, the
//! mark with `ttl=`), the client's conditionals, ranges (206, multipart,
//! 416) and the body, read from the store or slice by slice, or in the
//! client's encoding (`encode.rs`).

use std::sync::Arc;

use cache::decision::{self, Decision, Lookup, PurgeVerdict, Serve};
use cache::meta::BodyLayout;
use cache::object::{self, Found};
use cache::policy;
use cache::range::{self, ByteRange, RangeAnswer};
use cache::{CacheKey, CacheStatus};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, response};
use tracing::debug;

use super::bodies::Chain;
use super::encode;
use super::respond::{self, BodyOf, Mark, Served};
use super::shared::Shared;
use super::{slices, stored};
use crate::body::{self, ProxyBody};
use crate::hooks::{EdgeHooks, Session};

/// Answers from a stored object, marked `mark` (its `ttl=` is set here),
/// or `None` if its body is gone.
pub(crate) async fn serve_stored<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    found: &Found,
    mark: Mark,
) -> Option<Served> {
    let served = serve_stored_as(shared, session, found, mark).await;
    // Counted once served (a body that can no longer be read is not), and
    // by why: stale in place of a failed origin is an outage, not a hit.
    if served.is_some()
        && let Some(reason) = respond::stale_reason(&mark)
    {
        shared.fwd.metrics.stale_served(session.site, reason).inc();
    }
    served
}

async fn serve_stored_as<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    found: &Found,
    mark: Mark,
) -> Option<Served> {
    let meta = &found.meta;
    let now = shared.cache.clock.now();
    let age = policy::current_age(&meta.policy, meta.response_time, now);
    let mut parts = respond::stored_head(meta, age);
    let mark = Mark {
        ttl: Some(respond::signed_ttl(meta, age)),
        ..mark
    };
    respond::mark(session, &mut parts.headers, &shared.cache.node, &mark);
    // The encoding first: the weak ETag it gives is what conditionals see.
    let (plan, encoded) = encode::plan_stored(shared, session, found, &mut parts).await;
    let done = |parts, body| Some(Served::new(parts, body, None).of(BodyOf::Transformed));

    if respond::answer_conditionals(session, &mut parts) {
        return done(parts, body::empty());
    }
    if session.req.method == Method::HEAD {
        return done(parts, body::empty());
    }
    let total = meta.body.len();
    if plan.transforms() {
        let body = match encode::encoded_body(shared, plan, encoded, &mut parts).await {
            Some(body) => body,
            None => {
                let identity = body_range(shared, session, found, 0, total).await?;
                encode::transcode_stored(shared, found, plan, identity)
            }
        };
        return done(parts, body);
    }
    if meta.status == StatusCode::OK {
        parts
            .headers
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        match range::evaluate(&session.req.headers, &meta.headers, total) {
            RangeAnswer::Full => {}
            RangeAnswer::Unsatisfiable => {
                respond::unsatisfiable(&mut parts, total);
                return done(parts, body::empty());
            }
            RangeAnswer::Partial(ranges) => {
                let body =
                    Box::pin(partial_body(shared, session, found, &mut parts, &ranges)).await?;
                parts.status = StatusCode::PARTIAL_CONTENT;
                return done(parts, body);
            }
        }
    }
    let body = body_range(shared, session, found, 0, total).await?;
    done(parts, body)
}

/// The bytes `start..start + len` of a stored object, whatever its layout,
/// or `None` if the chunk they start in is gone.
async fn body_range<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &Session,
    found: &Found,
    start: u64,
    len: u64,
) -> Option<ProxyBody> {
    match found.meta.body {
        BodyLayout::Sliced { .. } => slices::sliced_body(shared, session, found, start, len),
        _ => stored::stored_range(&shared.cache.store, found, start, len).await,
    }
}

/// A 206 body: one range as is, several as `multipart/byteranges`
/// (RFC 9110 §14.6). Sets the range headers on `parts`.
async fn partial_body<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &Session,
    found: &Found,
    parts: &mut response::Parts,
    ranges: &[ByteRange],
) -> Option<ProxyBody> {
    let total = found.meta.body.len();
    if let [range] = ranges {
        respond::single_range(parts, range, total);
        return body_range(shared, session, found, range.start, range.len()).await;
    }
    let boundary = format!("edge-{}", &found.object_key.to_hex()[..24]);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| format!("Content-Type: {ct}\r\n"))
        .unwrap_or_default();
    let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut len = 0u64;
    for range in ranges {
        let head = format!(
            "\r\n--{boundary}\r\n{content_type}Content-Range: {}\r\n\r\n",
            range.content_range(total)
        );
        len += head.len() as u64 + range.len();
        pieces.push(body::full(head));
        pieces.push(body_range(shared, session, found, range.start, range.len()).await?);
    }
    let tail = format!("\r\n--{boundary}--\r\n");
    len += tail.len() as u64;
    pieces.push(body::full(tail));
    respond::set_header(
        &mut parts.headers,
        header::CONTENT_TYPE,
        &format!("multipart/byteranges; boundary={boundary}"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Some(body::boxed(Chain::new(pieces, len)))
}

/// Serves the stored object for `key` if it is fresh now (after another
/// request's fill or revalidation stored it), marked `mark`.
pub(crate) async fn serve_fresh<H: EdgeHooks>(
    shared: &Arc<Shared<H>>,
    session: &mut Session,
    key: CacheKey,
    mark: Mark,
) -> Option<Served> {
    let cache = &shared.cache;
    let found = object::lookup(&cache.store, &key, &session.req.headers)
        .await
        .ok()??;
    let verdict = cache.purge_verdict(session, key, &found.meta);
    if verdict == PurgeVerdict::Invalid {
        debug!("stored object purged");
    }
    let req_cc = policy::request_directives(&session.req.headers);
    let lookup = Lookup {
        found: Some(found),
        complete: true,
    };
    let Decision::Serve(found, Serve::Fresh) =
        decision::decide(lookup, &req_cc, verdict, cache.clock.now())
    else {
        return None;
    };
    session.cache_tier = Some(found.tier);
    serve_stored(shared, session, &found, mark).await
}

/// `Mark` for a stored object served as is.
pub(crate) fn served_mark(how: Serve) -> Mark {
    match how {
        Serve::Fresh => Mark::hit(CacheStatus::Hit),
        Serve::MaxStale => Mark::hit(CacheStatus::Stale).with_detail(respond::Detail::MaxStale),
        Serve::WhileRevalidating => {
            Mark::hit(CacheStatus::Stale).with_detail(respond::Detail::StaleWhileRevalidate)
        }
    }
}
