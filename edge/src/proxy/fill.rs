//! Misses through `cache::fill`: lead the fetch or join it, and stream the
//! fill to the client (a single range of it, if asked).

use std::sync::Arc;

use cache::fill::{FillFeeder, FillLeader, FillReader, Join, Waited};
use cache::object::ObjectWriter;
use cache::policy::PolicyOptions;
use cache::range::{self, RangeAnswer};
use cache::slice;
use cache::{CacheKey, CacheStatus};
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode, response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::bodies::{FillBody, Ranged};
use super::cached::{Served, content_length};
use super::ranges::{single_range, unsatisfiable};
use super::slices::{SliceTap, sliced_meta};
use super::{Fetched, Proxy};
use crate::body::{self, ProxyBody};
use crate::error::{ErrorSource, ProxyError};
use crate::hooks::{EdgeHooks, Session};

/// Pushes an origin body into a fill. Runs on its own task so the fill
/// completes (and the object is stored) even if every client leaves; stops
/// early only when nobody wants the bytes any more.
///
/// `expected`: the length the body must have to be stored, when its framing
/// does not say it (a chunked 206 is a slice only if it brings the whole
/// range; hyper checks a `Content-Length` itself).
pub(super) async fn feed(
    mut feeder: FillFeeder,
    mut body: crate::body::ReadTimeout<Incoming>,
    expected: Option<u64>,
) {
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    got += data.len() as u64;
                    feeder.push(data);
                }
            }
            Err(err) => {
                warn!(error = %err, "origin body failed; fill abandoned");
                return;
            }
        }
        if !feeder.is_wanted() {
            debug!("fill no longer wanted; stopped");
            return;
        }
    }
    if expected.is_some_and(|expected| expected != got) {
        warn!(
            got,
            ?expected,
            "origin body of the wrong length; fill abandoned"
        );
        return;
    }
    feeder.finish();
}

/// How a response that went to the origin is marked: the cache status it
/// gets and the RFC 9211 `fwd` reason.
#[derive(Debug, Clone, Copy)]
pub(super) struct Forwarded {
    pub status: CacheStatus,
    pub fwd: &'static str,
}

impl Forwarded {
    pub const MISS: Forwarded = Forwarded {
        status: CacheStatus::Miss,
        fwd: "fwd=uri-miss",
    };
}

/// What joining a fill came to.
pub(super) enum Joined {
    /// Fetch for everyone.
    Lead(FillLeader),
    /// Answered from the fill (or from what it stored).
    Served(Served),
    /// The origin just failed for the leader: answer this status.
    Failed(StatusCode),
    /// Fetch on your own.
    Alone,
    /// Recently uncacheable (or not shareable): fetch on your own at once.
    Bypass,
}

/// How many times a waiter joins a fill again after its leader went away,
/// before it fetches alone (each round waits at most `fill_wait_timeout`).
pub(super) const MAX_REJOINS: u32 = 3;

/// Reasons not to store that come from the leading request, not from the
/// response: they must not mark the URL hit-for-pass for everyone.
pub(super) const REQUEST_REASONS: [&str; 5] = [
    "request-no-store",
    "authorization",
    "cookie",
    "head",
    "method",
];

/// Whether this request's own headers keep it from sharing a response
/// (the `REQUEST_REASONS`): it may not take over a fill for the others.
pub(super) fn request_unshareable(session: &Session, opts: &PolicyOptions) -> bool {
    let headers = &session.req.headers;
    headers.contains_key(header::AUTHORIZATION)
        || (!opts.allow_cookie_requests && headers.contains_key(header::COOKIE))
        || cache::policy::request_directives(headers).has("no-store")
}

impl<H: EdgeHooks> Proxy<H> {
    /// A miss: join the fill of `key`, or lead it. Only one request per key
    /// goes to the origin while a fill is in flight; the others stream the
    /// same response as it arrives.
    pub(super) async fn fill(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        client_body: ProxyBody,
        ctx: &mut H::Ctx,
    ) -> Result<Served, ProxyError> {
        session.cache_tier = None;
        if self.routing.passed_here(&session.req.headers) {
            // Back at this node through a shield loop: this node's own fetch
            // of the key is what sent it round, so waiting on it would wait
            // on ourselves.
            return self.bypass(session, key, client_body, ctx).await;
        }
        if self.cache.slice_size > 0
            && session.req.method == Method::GET
            && session.req.headers.contains_key(header::RANGE)
        {
            return self.sliced_miss(session, key, client_body, ctx).await;
        }
        // A HEAD brings no body to share.
        let shareable = session.req.method != Method::HEAD;
        let leader = match self.join_fill(session, key, shareable).await {
            Joined::Lead(leader) => leader,
            Joined::Served(served) => return Ok(served),
            Joined::Failed(status) => return Err(ProxyError::CollapsedFailure(status)),
            Joined::Alone => {
                let fetched = self.forward(session, client_body, ctx, &[]).await?;
                return Ok(self.store_or_pass(
                    session,
                    key,
                    fetched,
                    CacheStatus::Miss,
                    "fwd=uri-miss",
                ));
            }
            Joined::Bypass => return self.bypass(session, key, client_body, ctx).await,
        };
        match self.forward(session, client_body, ctx, &[]).await {
            Ok(fetched) => Ok(self.lead(session, key, leader, fetched, Forwarded::MISS)),
            Err(err) => {
                if err.source_side() == ErrorSource::Upstream {
                    leader.fail(err.status());
                }
                // Otherwise (the client's own body failed) dropping the
                // leader hands the fetch to a waiter.
                Err(err)
            }
        }
    }

    /// Joins the fill of `key` (or skips it, if not `shareable`): lead it,
    /// or be served by it, or by what its leader stored another way (in
    /// slices), or go alone. A leader that leaves before the head hands
    /// over to a waiter, at most `MAX_REJOINS` times.
    pub(super) async fn join_fill(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        shareable: bool,
    ) -> Joined {
        let mut rejoins = 0;
        loop {
            let join = if shareable {
                self.cache.fills.join(key)
            } else {
                Join::Bypass
            };
            let waiter = match join {
                Join::Leader(leader) => return Joined::Lead(leader),
                Join::Bypass => return Joined::Bypass,
                Join::Waiter(waiter) => waiter,
            };
            match waiter.wait(&session.req.headers).await {
                // Fetched before a purge: start a fill of our own, and let
                // later requests join that one instead.
                Waited::Reader(reader) if self.fill_purged(session, key, &reader) => {
                    self.cache.fills.detach(&key, &reader);
                    if rejoins >= MAX_REJOINS {
                        return Joined::Alone;
                    }
                    rejoins += 1;
                }
                Waited::Reader(reader) => {
                    self.metrics.cache_collapsed.inc();
                    let served = self.serve_fill(session, reader, Forwarded::MISS, "; collapsed");
                    return Joined::Served(served);
                }
                // The leader's client left before the head: one of us
                // takes over the fetch, the others wait for it.
                Waited::Rejoin
                    if rejoins < MAX_REJOINS && !request_unshareable(session, &self.cache.opts) =>
                {
                    rejoins += 1;
                }
                Waited::Failed(status) => return Joined::Failed(status),
                Waited::Alone | Waited::Rejoin => {
                    // The leader may have stored the object in slices.
                    let detail = "fwd=uri-miss; collapsed";
                    return match self
                        .serve_fresh(session, key, CacheStatus::Miss, detail)
                        .await
                    {
                        Some(served) => {
                            self.metrics.cache_collapsed.inc();
                            Joined::Served(served)
                        }
                        None => Joined::Alone,
                    };
                }
            }
        }
    }

    /// A key recently found uncacheable (or a HEAD): straight to the origin,
    /// storing the response if it turns out cacheable after all.
    async fn bypass(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        client_body: ProxyBody,
        ctx: &mut H::Ctx,
    ) -> Result<Served, ProxyError> {
        let Fetched {
            parts,
            body,
            exchange,
        } = self.forward(session, client_body, ctx, &[]).await?;
        Ok(match self.object_writer(session, key, &parts, exchange) {
            Ok(writer) => {
                // Cacheable again: stop bypassing the fill.
                self.cache.fills.clear_pass(&key);
                self.stored_response(
                    session,
                    parts,
                    body,
                    writer,
                    CacheStatus::Miss,
                    "fwd=uri-miss",
                )
            }
            Err(reason) => self.pass_through(session, parts, body, "fwd=uri-miss", reason),
        })
    }

    /// The leader's response: published to the waiters and stored while it
    /// streams, or passed through (and the waiters released) when it may
    /// not be shared.
    pub(super) fn lead(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        leader: FillLeader,
        fetched: Fetched,
        how: Forwarded,
    ) -> Served {
        let Fetched {
            parts,
            body,
            exchange,
        } = fetched;
        match self.object_writer(session, key, &parts, exchange) {
            Ok(writer) => {
                let policy = &writer.meta().policy;
                if policy.no_cache || policy.lifetime.is_zero() {
                    // Storable, but every reuse needs validation (RFC 9111
                    // §5.2.2.4): the waiters may not share it unvalidated.
                    leader.release();
                    return self.stored_response(session, parts, body, writer, how.status, how.fwd);
                }
                let feeder = leader.publish(writer);
                let reader = feeder.reader();
                tokio::spawn(feed(feeder, body, None));
                self.serve_fill(session, reader, how, "")
            }
            Err("too-large") if self.sliceable(&parts) => {
                // Too large to keep whole: keep it in slices. The head is
                // stored first; the waiters released then find it.
                let served = self.sliced_pass(session, key, parts, body, exchange);
                leader.release();
                served
            }
            Err(reason) => {
                if REQUEST_REASONS.contains(&reason) {
                    // This request's own headers made the response
                    // unstorable: the others may still share a fetch, led
                    // by one of them.
                    drop(leader);
                } else {
                    leader.refuse();
                }
                if how.status == CacheStatus::Expired {
                    // The stored response is outdated and its successor
                    // may not be kept: drop it.
                    self.cache.store.remove(&key);
                }
                self.pass_through(session, parts, body, how.fwd, reason)
            }
        }
    }

    /// Whether a response too large to store whole may be kept in slices.
    fn sliceable(&self, parts: &response::Parts) -> bool {
        self.cache.slice_size > 0
            && slice::can_slice(parts.status, &parts.headers)
            && content_length(&parts.headers).is_some()
    }

    /// Streams a large response to the client while storing the object's
    /// head (sliced) and cutting the body into slices as it passes.
    fn sliced_pass(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        mut parts: response::Parts,
        body: crate::body::ReadTimeout<Incoming>,
        exchange: cache::policy::Exchange,
    ) -> Served {
        let size = self.cache.slice_size;
        let total = content_length(&parts.headers).unwrap_or(0);
        let whole = match self.object_meta(session, parts.status, &parts.headers, exchange) {
            Ok(whole) => sliced_meta(whole, total, size),
            Err(reason) => return self.pass_through(session, parts, body, "fwd=uri-miss", reason),
        };
        let head = ObjectWriter::new(
            self.cache.store.clone(),
            key,
            &session.req.headers,
            whole.clone(),
            0,
        );
        head.finish_sliced(total, size);
        let tap = SliceTap {
            store: self.cache.store.clone(),
            primary: key,
            request: session.req.headers.clone(),
            whole,
            slice_size: size,
            current: None,
            next_index: 0,
        };
        let status = parts.status;
        let detail = format!(
            "fwd=uri-miss; fwd-status={}; stored; detail=slice",
            status.as_u16()
        );
        if self.miss_head(session, &mut parts, &detail) {
            return (parts, body::empty(), Some(status));
        }
        (
            parts,
            body::boxed(body::Tapped::new(body, tap)),
            Some(status),
        )
    }

    /// Answers from a fill in flight.
    pub(super) fn serve_fill(
        &self,
        session: &mut Session,
        reader: FillReader,
        how: Forwarded,
        collapsed: &str,
    ) -> Served {
        let head = reader.head().clone();
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = head.meta.status;
        parts.headers = head.meta.headers.clone();
        let detail = format!(
            "{}; fwd-status={}; stored{collapsed}",
            how.fwd,
            head.meta.status.as_u16()
        );
        // Answered from the fill's head, the fill goes on without us.
        if self.mark_head(session, &mut parts, how.status, &detail) {
            return (parts, body::empty(), Some(head.meta.status));
        }
        let len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let status = head.meta.status;
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
                    single_range(&mut parts, &range, total);
                    let body = body::boxed(Ranged::new(body, range.start, range.len()));
                    return (parts, body, Some(status));
                }
                RangeAnswer::Unsatisfiable => {
                    unsatisfiable(&mut parts, total);
                    return (parts, body::empty(), Some(status));
                }
                // Several ranges on a miss: the whole response (allowed).
                _ => {}
            }
        }
        (parts, body::boxed(body), Some(status))
    }
}
