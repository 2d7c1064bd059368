//! An origin response to a cacheable request, streamed to the client while
//! it is stored (whole, or cut into slices when too large), published to
//! the requests waiting on the same fill, or passed through unstored with
//! its reason.

use cache::fill::{FillLeader, FillReader};
use cache::object::ObjectWriter;
use cache::range::{self, RangeAnswer};
use cache::{CacheKey, CacheStatus, NoCacheReason, slice};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, response};
use hyper::body::Incoming;

use super::bodies::{Fill, FillBody, Ranged};
use super::forward::Fetched;
use super::respond::{self, BodyOf, Detail, Fwd, Mark, Served};
use super::shared::Shared;
use super::slices::{self, SliceTap};
use crate::body::{self, ReadTimeout};
use crate::hooks::{EdgeHooks, Session};

/// Streams an origin response to the client, and into the store when RFC
/// 9111 allows. `how` marks it if stored.
pub(crate) fn store_or_pass<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    key: CacheKey,
    fetched: Fetched,
    how: Mark,
) -> Served {
    let Fetched {
        parts,
        body,
        exchange,
    } = fetched;
    let cache = &shared.cache;
    match cache.object_writer(session, key, &parts, exchange) {
        Ok(writer) => stored_response(shared, session, parts, body, writer, how),
        Err(reason) => not_stored(shared, session, key, parts, body, how, reason),
    }
}

/// An origin response that may not be stored, passed through; if it
/// replaces a stored one (`how` is `EXPIRED`), that one is outdated and
/// its successor may not be kept: it is dropped.
fn not_stored<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    key: CacheKey,
    parts: response::Parts,
    body: ReadTimeout<Incoming>,
    how: Mark,
    reason: NoCacheReason,
) -> Served {
    if how.status == CacheStatus::Expired {
        shared.cache.store.remove(&key);
    }
    pass_through(shared, session, parts, body, how.fwd, reason)
}

/// An origin response streamed to the client and, through `writer`, into
/// the store.
pub(crate) fn stored_response<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    mut parts: response::Parts,
    body: ReadTimeout<Incoming>,
    writer: ObjectWriter,
    how: Mark,
) -> Served {
    let status = parts.status;
    session.cache_tier = None;
    let mark = how.with_fwd_status(status).stored();
    respond::mark(session, &mut parts.headers, &shared.cache.node, &mark);
    let body = body::boxed(body::Tapped::new(body, Fill(writer)));
    Served::new(parts, body, Some(status))
}

/// An origin response that is not stored, streamed as it comes: a miss,
/// whatever the cache held before.
pub(crate) fn pass_through<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    mut parts: response::Parts,
    body: ReadTimeout<Incoming>,
    fwd: Option<Fwd>,
    reason: NoCacheReason,
) -> Served {
    let status = parts.status;
    session.cache_tier = None;
    let mark = Mark { fwd, ..Mark::MISS }
        .with_fwd_status(status)
        .with_detail(Detail::NotStored(reason));
    if mark_head(shared, session, &mut parts, &mark) {
        return Served::new(parts, body::empty(), Some(status));
    }
    Served::new(parts, body::boxed(body), Some(status))
}

/// Marks the head of a response from the origin, and turns it into a
/// 304/412 when the client's own conditionals say so (they were not sent
/// upstream). Returns true when it did, and no body follows.
pub(crate) fn mark_head<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    parts: &mut response::Parts,
    mark: &Mark,
) -> bool {
    respond::mark(session, &mut parts.headers, &shared.cache.node, mark);
    respond::answer_conditionals(session, parts)
}

/// The fill leader's response: published to the waiters and stored while
/// it streams, or passed through (and the waiters released) when it may
/// not be shared.
pub(crate) fn lead<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    key: CacheKey,
    leader: FillLeader,
    fetched: Fetched,
    how: Mark,
) -> Served {
    let Fetched {
        parts,
        body,
        exchange,
    } = fetched;
    let cache = &shared.cache;
    match cache.object_writer(session, key, &parts, exchange) {
        Ok(writer) => {
            let policy = &writer.meta().policy;
            if policy.no_cache || policy.lifetime.is_zero() {
                // Storable, but every reuse needs validation (RFC 9111
                // §5.2.2.4): the waiters may not share it unvalidated.
                leader.release();
                return stored_response(shared, session, parts, body, writer, how);
            }
            let feeder = leader.publish(writer);
            let reader = feeder.reader();
            tokio::spawn(slices::feed(feeder, body, None));
            serve_fill(shared, session, reader, how, false)
        }
        Err(NoCacheReason::TooLarge) if sliceable(shared, &parts) => {
            // Too large to keep whole: keep it in slices. The head is
            // stored first; the waiters released then find it.
            let served = sliced_pass(shared, session, key, parts, body, exchange);
            leader.release();
            served
        }
        Err(reason) => {
            if reason.concerns_request_only() {
                // This request's own headers made the response unstorable:
                // the others may still share a fetch, led by one of them.
                drop(leader);
            } else {
                leader.refuse();
            }
            not_stored(shared, session, key, parts, body, how, reason)
        }
    }
}

/// Whether a response too large to store whole may be kept in slices.
fn sliceable<H>(shared: &Shared<H>, parts: &response::Parts) -> bool {
    shared.cache.slice_size > 0
        && slice::can_slice(parts.status, &parts.headers)
        && respond::content_length(&parts.headers).is_some()
}

/// Streams a large response to the client while storing the object's head
/// (sliced) and cutting the body into slices as it passes.
fn sliced_pass<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    key: CacheKey,
    mut parts: response::Parts,
    body: ReadTimeout<Incoming>,
    exchange: cache::policy::Exchange,
) -> Served {
    let cache = &shared.cache;
    let size = cache.slice_size;
    let total = respond::content_length(&parts.headers).unwrap_or(0);
    let whole = match cache.object_meta(session, parts.status, &parts.headers, exchange) {
        Ok(whole) => slices::sliced_meta(whole, total, size),
        Err(reason) => {
            return pass_through(shared, session, parts, body, Some(Fwd::UriMiss), reason);
        }
    };
    let head = ObjectWriter::new(
        cache.store.clone(),
        key,
        &session.req.headers,
        whole.clone(),
        0,
    );
    head.finish_sliced(total, size);
    let tap = SliceTap {
        store: cache.store.clone(),
        primary: key,
        request: session.req.headers.clone(),
        whole,
        slice_size: size,
        current: None,
        next_index: 0,
    };
    let status = parts.status;
    let mark = Mark::MISS
        .with_fwd_status(status)
        .stored()
        .with_detail(Detail::Slice);
    if mark_head(shared, session, &mut parts, &mark) {
        return Served::new(parts, body::empty(), Some(status));
    }
    Served::new(
        parts,
        body::boxed(body::Tapped::new(body, tap)),
        Some(status),
    )
}

/// Answers from a fill in flight, marked `how` (and `collapsed` when this
/// request joined another's fetch).
pub(crate) fn serve_fill<H: EdgeHooks>(
    shared: &Shared<H>,
    session: &mut Session,
    reader: FillReader,
    how: Mark,
    collapsed: bool,
) -> Served {
    let head = reader.head().clone();
    let mut parts = respond::head_of(&head.meta);
    let status = head.meta.status;
    let mut mark = how.with_fwd_status(status).stored();
    mark.collapsed = collapsed;
    // Answered from the fill's head, the fill goes on without us.
    if mark_head(shared, session, &mut parts, &mark) {
        return Served::new(parts, body::empty(), Some(status));
    }
    let len = respond::content_length(&parts.headers);
    let fill_head = reader.head().clone();
    let body = FillBody::new(reader, len);
    // A range on a miss: the whole object is fetched once (and stored),
    // the client gets its range as soon as those bytes arrive.
    if let Some(total) = len
        && status == StatusCode::OK
        && session.req.method == Method::GET
    {
        parts
            .headers
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        match range::evaluate(&session.req.headers, &head.meta.headers, total) {
            RangeAnswer::Partial(ranges) if ranges.len() == 1 => {
                let range = ranges[0];
                respond::single_range(&mut parts, &range, total);
                let body = body::boxed(Ranged::new(body, range.start, range.len()));
                return Served::new(parts, body, Some(status));
            }
            RangeAnswer::Unsatisfiable => {
                respond::unsatisfiable(&mut parts, total);
                return Served::new(parts, body::empty(), Some(status));
            }
            // Several ranges on a miss: the whole response (allowed).
            _ => {}
        }
    }
    Served::new(parts, body::boxed(body), Some(status)).of(BodyOf::Filling(fill_head))
}
