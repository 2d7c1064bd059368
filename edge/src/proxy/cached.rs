//! Phases 4–7 for cacheable requests (GET and HEAD with a cache key):
//! lookup, reuse or revalidation under RFC 9111, and storing what the origin
//! sends while it streams to the client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache::fill::{FillConfig, FillReader, Fills, Join, Waited};
use cache::meta::{BodyLayout, ObjectMeta};
use cache::object::{self, Found, ObjectWriter};
use cache::policy::{self, PolicyOptions, Reuse};
use cache::range::{self, RangeAnswer};
use cache::store::Store;
use cache::{CacheControl, CacheKey, CacheStatus, validation};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use purge_api::Verdict;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::bodies::Fill;
use super::fill::Forwarded;
use super::ranges::unsatisfiable;
use super::{Fetched, Proxy, clone_parts};
use crate::body::{self, ProxyBody};
use crate::config::CacheConfig;
use crate::error::ProxyError;
use crate::hooks::{EdgeHooks, Session};

/// What the cache phase hands back: the response head, its body and the
/// upstream status if the origin was asked.
pub(super) type Served = (response::Parts, ProxyBody, Option<StatusCode>);

/// The store and the policy choices, shared by all requests.
#[derive(Debug)]
pub(crate) struct CacheLayer {
    pub store: Store,
    pub opts: PolicyOptions,
    pub max_object_size: u64,
    /// Slice size for large objects; 0 when slicing is off.
    pub slice_size: u64,
    /// Objects being revalidated: one revalidation at a time per object;
    /// the receiver wakes when it ends.
    revalidating: Mutex<HashMap<CacheKey, watch::Receiver<()>>>,
    /// Misses being fetched, shared by the requests that want them.
    pub fills: Arc<Fills>,
}

impl CacheLayer {
    pub fn new(store: Store, config: &CacheConfig) -> Self {
        let fill_config = FillConfig {
            window: config.fill_window.as_usize(),
            // Fill windows sit on top of the memory tier's budget: together
            // they may add a quarter of it.
            total_window: config.memory.as_usize() / 4,
            wait_for_head: config.fill_wait_timeout,
            hit_for_pass: config.hit_for_pass,
        };
        CacheLayer {
            fills: Arc::new(Fills::new(store.clone(), fill_config)),
            store,
            opts: config.policy_options(),
            max_object_size: config.max_object_size.as_u64(),
            slice_size: config.slice_size.as_u64(),
            revalidating: Mutex::new(HashMap::new()),
        }
    }

    /// RFC 9111 §4.4: a successful unsafe request invalidates the stored
    /// responses for its target and for same-host `Location` and
    /// `Content-Location`. (Keys are derived the default way; a custom
    /// `cache_key` hook is not consulted here.)
    pub fn invalidate_after(&self, session: &Session, resp: &response::Parts) {
        if !validation::invalidates(&session.req.method, resp.status) {
            return;
        }
        let targets = std::iter::once(session.path_and_query().to_owned()).chain(
            validation::invalidation_targets(&resp.headers, session.host()),
        );
        for target in targets {
            if let Some(key) = session.key_for(&Method::GET, &target) {
                debug!(target = %target, "invalidated by {}", session.req.method);
                self.store.remove(&key);
            }
        }
    }

    /// Starts revalidating `key`, or, if another request already is,
    /// returns a receiver that wakes when it is done.
    fn begin_revalidation(
        self: &Arc<Self>,
        key: CacheKey,
    ) -> Result<RevalidationGuard, watch::Receiver<()>> {
        let mut map = self.revalidating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = map.get(&key) {
            return Err(done.clone());
        }
        let (done, receiver) = watch::channel(());
        map.insert(key, receiver);
        Ok(RevalidationGuard {
            layer: self.clone(),
            key,
            _done: done,
        })
    }
}

/// Ends a revalidation, however it ends: waiters wake when the sender
/// drops, after the key has left the map.
struct RevalidationGuard {
    layer: Arc<CacheLayer>,
    key: CacheKey,
    _done: watch::Sender<()>,
}

impl Drop for RevalidationGuard {
    fn drop(&mut self) {
        self.layer
            .revalidating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Sets `X-Cache` and the RFC 9211 `Cache-Status` on a response.
pub(crate) fn mark(headers: &mut HeaderMap, node: &str, status: CacheStatus, detail: &str) {
    mark_with_ttl(headers, node, status, detail, None);
}

/// [`mark`], with `; ttl=N` after the detail. Built by hand: `format!` was
/// a visible share of a hit's cost.
pub(crate) fn mark_with_ttl(
    headers: &mut HeaderMap,
    node: &str,
    status: CacheStatus,
    detail: &str,
    ttl: Option<i64>,
) {
    headers.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(status.as_str()),
    );
    let mut itoa = itoa::Buffer::new();
    let ttl = ttl.map(|t| itoa.format(t));
    let mut value = Vec::with_capacity(node.len() + detail.len() + 26);
    value.extend_from_slice(node.as_bytes());
    value.extend_from_slice(b"; ");
    value.extend_from_slice(detail.as_bytes());
    if let Some(ttl) = ttl {
        value.extend_from_slice(b"; ttl=");
        value.extend_from_slice(ttl.as_bytes());
    }
    // Handed over, not copied again as `from_str` would.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(HeaderName::from_static("cache-status"), v);
    }
}

/// Fields a 304 carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
    header::AGE,
];

/// Answers the client's own conditionals (RFC 9110 §13.2.2) from the
/// response head in `parts`: turns it into a 304 (keeping the fields a 304
/// carries) or a 412 and returns true, or leaves it alone.
fn answer_conditionals(session: &Session, parts: &mut response::Parts) -> bool {
    let Some(answer) = validation::evaluate_client_conditionals(
        &session.req.method,
        &session.req.headers,
        parts.status,
        &parts.headers,
    ) else {
        return false;
    };
    parts.status = answer;
    let keep: Vec<_> = parts
        .headers
        .iter()
        .filter(|(n, _)| {
            answer == StatusCode::NOT_MODIFIED
                && (NOT_MODIFIED_FIELDS.contains(n) || *n == "x-cache" || *n == "cache-status")
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    parts.headers.clear();
    for (n, v) in keep {
        parts.headers.append(n, v);
    }
    true
}

/// Purge tags: `Surrogate-Key` (space-separated) and `Cache-Tag`
/// (comma-separated).
fn tags(headers: &HeaderMap) -> Vec<String> {
    let mut tags = Vec::new();
    let lists = [("surrogate-key", ' '), ("cache-tag", ',')];
    for (name, sep) in lists {
        for value in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
            tags.extend(
                value
                    .split(sep)
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    tags
}

/// A copy of `session` for origin fetches that outlive the request's own
/// phases (background revalidation, slices fetched while a body streams):
/// a GET for `key` with the client's headers.
pub(super) fn background_session(session: &Session, key: CacheKey) -> Session {
    let mut req = clone_parts(&session.req);
    req.method = Method::GET;
    Session {
        req,
        client_addr: session.client_addr,
        downstream_scheme: session.downstream_scheme,
        started: std::time::Instant::now(),
        cache_key: Some(key),
        peer: None,
        cache_status: CacheStatus::Pass,
        cache_tier: None,
        key_rules: session.key_rules.clone(),
        // Shared: what the copy fetches counts against the request.
        origin_fetched: session.origin_fetched.clone(),
    }
}

/// When a stored response's content was made, for purge rules: when the
/// request for it was sent (a fetch sent before a purge but answered after
/// it is older than the purge), less the `Age` it arrived with (a shield's
/// copy is as old as the shield says). Not the apparent age from `Date`:
/// its one-second resolution would make fetches just after a purge look
/// older than it.
fn content_time(meta: &ObjectMeta) -> SystemTime {
    let age = meta
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    meta.request_time
        .checked_sub(age)
        .unwrap_or(meta.request_time)
}

/// A declared `Content-Length`.
pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

fn signed_ttl(meta: &ObjectMeta, age: Duration) -> i64 {
    let lifetime = i64::try_from(meta.policy.lifetime.as_secs()).unwrap_or(i64::MAX);
    lifetime.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))
}

impl<H: EdgeHooks> Proxy<H> {
    /// The cache phases for one request.
    pub(super) async fn serve_cacheable(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        body: Incoming,
        ctx: &mut H::Ctx,
    ) -> Result<Served, ProxyError> {
        let req_cc = policy::request_directives(&session.req.headers);
        let found = match object::lookup(&self.cache.store, &key, &session.req.headers).await {
            Ok(found) => found,
            Err(err) => {
                warn!(error = %err, "cache lookup failed; fetching from origin");
                None
            }
        };
        let found = found.and_then(|found| self.apply_purges(session, key, found));
        let client_body = self.request_body(body);
        // Whatever happens next involves the origin unless the cache answers;
        // a failure on the way still counts as a miss, not a pass.
        session.cache_status = CacheStatus::Miss;
        let Some(found) = found else {
            if req_cc.has("only-if-cached") {
                return Err(ProxyError::OnlyIfCached);
            }
            return Box::pin(self.fill(session, key, client_body, ctx)).await;
        };
        if req_cc.has("only-if-cached") && !self.slices_cached(session, key, &found).await {
            return Err(ProxyError::OnlyIfCached);
        }
        session.cache_tier = Some(found.tier);
        let now = SystemTime::now();
        match policy::evaluate(&found.meta.policy, found.meta.response_time, &req_cc, now) {
            Reuse::Fresh => {
                if let Some(served) = self
                    .serve_stored(session, &found, CacheStatus::Hit, "hit")
                    .await
                {
                    return Ok(served);
                }
            }
            Reuse::StaleAllowed => {
                if let Some(served) = self
                    .serve_stored(session, &found, CacheStatus::Stale, "hit; detail=max-stale")
                    .await
                {
                    return Ok(served);
                }
            }
            Reuse::StaleWhileRevalidate => {
                if let Some(served) = self
                    .serve_stored(
                        session,
                        &found,
                        CacheStatus::Stale,
                        "hit; detail=stale-while-revalidate",
                    )
                    .await
                {
                    self.spawn_revalidation(session, key, found);
                    return Ok(served);
                }
            }
            // RFC 9111 §5.2.1.7: a stored response that would need the
            // origin does not satisfy only-if-cached.
            Reuse::Revalidate if req_cc.has("only-if-cached") => {
                return Err(ProxyError::OnlyIfCached);
            }
            Reuse::Revalidate => {
                let guard = match self.cache.begin_revalidation(found.object_key) {
                    Ok(guard) => guard,
                    Err(done) => {
                        // Another request is revalidating this object: its
                        // answer (usually a 304) serves us too.
                        if let Some(served) =
                            Box::pin(self.after_revalidation(session, key, done)).await
                        {
                            return Ok(served);
                        }
                        // Or a new representation, still arriving.
                        if let Some(waiter) = self.cache.fills.waiter(key)
                            && let Waited::Reader(reader) =
                                Box::pin(waiter.wait(&session.req.headers)).await
                            && !self.fill_purged(session, key, &reader)
                        {
                            self.metrics.cache_collapsed.inc();
                            let how = Forwarded {
                                status: CacheStatus::Expired,
                                fwd: "fwd=stale",
                            };
                            return Ok(self.serve_fill(session, reader, how, "; collapsed"));
                        }
                        return Box::pin(self.revalidate(
                            session,
                            key,
                            found,
                            client_body,
                            ctx,
                            &req_cc,
                        ))
                        .await;
                    }
                };
                let served =
                    Box::pin(self.revalidate(session, key, found, client_body, ctx, &req_cc)).await;
                drop(guard);
                return served;
            }
        }
        // The object's body is gone (a chunk was evicted): a miss.
        self.cache.store.remove(&found.object_key);
        if req_cc.has("only-if-cached") {
            return Err(ProxyError::OnlyIfCached);
        }
        Box::pin(self.fill(session, key, client_body, ctx)).await
    }

    /// What the purge rules make of a stored object: gone (hard purge), or
    /// expired as of the purge (soft: stale windows count from then, and
    /// the next use revalidates), or untouched.
    pub(super) fn apply_purges(
        &self,
        session: &Session,
        key: CacheKey,
        found: Found,
    ) -> Option<Found> {
        match self.purge_verdict(session, key, &found.meta) {
            Verdict::Valid => Some(found),
            Verdict::Invalid => {
                debug!("stored object purged");
                None
            }
            Verdict::Stale(at) => {
                let mut meta = (*found.meta).clone();
                let age_then = policy::current_age(&meta.policy, meta.response_time, at);
                meta.policy.lifetime = meta.policy.lifetime.min(age_then);
                Some(Found {
                    meta: Arc::new(meta),
                    ..found
                })
            }
        }
    }

    /// Whether a purge made since covers what a fill is fetching: its
    /// request went to the origin before the purge. A request that arrives
    /// after the purge's answer must not get those bytes.
    pub(super) fn fill_purged(
        &self,
        session: &Session,
        key: CacheKey,
        reader: &FillReader,
    ) -> bool {
        !matches!(
            self.purge_verdict(session, key, &reader.head().meta),
            Verdict::Valid
        )
    }

    /// The purge rules' verdict on `meta`, stored (or being fetched) under
    /// `key` for this request's host and path.
    fn purge_verdict(&self, session: &Session, key: CacheKey, meta: &ObjectMeta) -> Verdict {
        let rules = self.purger.rules();
        if rules.is_empty() {
            // Most of the time: no need for the host or the content's age.
            return Verdict::Valid;
        }
        rules.verdict(
            &key,
            session.host(),
            session.req.uri.path(),
            &meta.tags,
            content_time(meta),
        )
    }

    /// Waits (as long as a miss waits for a fill) for another request's
    /// revalidation, then serves the object if it is now fresh.
    async fn after_revalidation(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        mut done: watch::Receiver<()>,
    ) -> Option<Served> {
        let wait = self.cache.fills.config().wait_for_head;
        // `changed` returns Err when the guard's sender drops: the normal
        // end. Only the timeout matters.
        let _ended = tokio::time::timeout(wait, done.changed()).await.ok()?;
        let found = object::lookup(&self.cache.store, &key, &session.req.headers)
            .await
            .ok()??;
        let found = self.apply_purges(session, key, found)?;
        let req_cc = policy::request_directives(&session.req.headers);
        let reuse = policy::evaluate(
            &found.meta.policy,
            found.meta.response_time,
            &req_cc,
            SystemTime::now(),
        );
        if reuse != Reuse::Fresh {
            return None;
        }
        self.metrics.cache_collapsed.inc();
        session.cache_tier = Some(found.tier);
        self.serve_stored(
            session,
            &found,
            CacheStatus::Revalidated,
            "fwd=stale; collapsed",
        )
        .await
    }

    /// Answers from a stored object, or `None` if its body is gone.
    pub(super) async fn serve_stored(
        self: &Arc<Self>,
        session: &mut Session,
        found: &Found,
        status: CacheStatus,
        detail: &str,
    ) -> Option<Served> {
        let meta = &found.meta;
        let age = policy::current_age(&meta.policy, meta.response_time, SystemTime::now());
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = meta.status;
        parts.headers = meta.headers.clone();
        parts
            .headers
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
        if meta.status != StatusCode::NO_CONTENT && meta.status != StatusCode::NOT_MODIFIED {
            // Known exactly, even if the origin sent the body chunked.
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.body.len()));
        }
        session.cache_status = status;
        let ttl = Some(signed_ttl(meta, age));
        mark_with_ttl(&mut parts.headers, &self.node_name, status, detail, ttl);

        if answer_conditionals(session, &mut parts) {
            return Some((parts, body::empty(), None));
        }
        if session.req.method == Method::HEAD {
            return Some((parts, body::empty(), None));
        }
        let total = meta.body.len();
        if meta.status == StatusCode::OK {
            parts
                .headers
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            match range::evaluate(&session.req.headers, &meta.headers, total) {
                RangeAnswer::Full => {}
                RangeAnswer::Unsatisfiable => {
                    unsatisfiable(&mut parts, total);
                    return Some((parts, body::empty(), None));
                }
                RangeAnswer::Partial(ranges) => {
                    let body =
                        Box::pin(self.partial_body(session, found, &mut parts, &ranges)).await?;
                    parts.status = StatusCode::PARTIAL_CONTENT;
                    return Some((parts, body, None));
                }
            }
        }
        let body = self.stored_range(session, found, 0, total).await?;
        Some((parts, body, None))
    }

    /// A stale (or `no-cache`) object: ask the origin with its validators.
    async fn revalidate(
        self: &Arc<Self>,
        session: &mut Session,
        key: CacheKey,
        found: Found,
        client_body: ProxyBody,
        ctx: &mut H::Ctx,
        req_cc: &CacheControl,
    ) -> Result<Served, ProxyError> {
        let validators = validation::conditional_headers(&found.meta.headers);
        // RFC 9211: `request` when the client asked for it, `stale` when
        // the object had expired.
        let fwd = if req_cc.has("no-cache") {
            "fwd=request"
        } else {
            "fwd=stale"
        };
        let fetched = match self.forward(session, client_body, ctx, &validators).await {
            Ok(fetched) => fetched,
            Err(err) => return self.stale_on_error(session, &found, req_cc, err).await,
        };
        let status = fetched.parts.status;
        // A 304 to our validators, or a HEAD response describing the same
        // representation (RFC 9111 §4.3.5), refreshes the stored headers.
        let confirms = if status == StatusCode::NOT_MODIFIED {
            !validators.is_empty()
                && validation::validators_match(&found.meta.headers, &fetched.parts.headers)
        } else {
            session.req.method == Method::HEAD
                && status == found.meta.status
                && validation::head_confirms(&found.meta.headers, &fetched.parts.headers)
        };
        if confirms {
            let refreshed = Found {
                meta: self.refresh(&found, &fetched, &session.req.headers),
                ..found
            };
            let upstream = Some(status);
            return match self
                .serve_stored(
                    session,
                    &refreshed,
                    CacheStatus::Revalidated,
                    &format!("{fwd}; fwd-status=304"),
                )
                .await
            {
                Some((parts, body, _)) => Ok((parts, body, upstream)),
                None => {
                    self.cache.store.remove(&refreshed.object_key);
                    let fetched = self.forward(session, body::empty(), ctx, &[]).await?;
                    Ok(
                        self.store_or_pass(
                            session,
                            key,
                            fetched,
                            CacheStatus::Miss,
                            "fwd=uri-miss",
                        ),
                    )
                }
            };
        }
        if status.is_server_error()
            && policy::stale_if_error_allows(
                &found.meta.policy,
                found.meta.response_time,
                req_cc,
                SystemTime::now(),
            )
        {
            warn!(status = status.as_u16(), "origin error; serving stale");
            if let Some(served) = self
                .serve_stored(
                    session,
                    &found,
                    CacheStatus::Stale,
                    "fwd=stale; detail=stale-if-error",
                )
                .await
            {
                return Ok(served);
            }
        }
        let fetched = if status == StatusCode::NOT_MODIFIED {
            // A 304 for something else: the client never asked
            // conditionally, so fetch the representation in full.
            self.forward(session, body::empty(), ctx, &[]).await?
        } else {
            fetched
        };
        // A new representation: requests that waited for this revalidation
        // stream it as it arrives, like a miss's waiters.
        if session.req.method == Method::GET
            && let Join::Leader(leader) = self.cache.fills.join(key)
        {
            let how = Forwarded {
                status: CacheStatus::Expired,
                fwd,
            };
            return Ok(self.lead(session, key, leader, fetched, how));
        }
        Ok(self.store_or_pass(session, key, fetched, CacheStatus::Expired, fwd))
    }

    /// The origin failed: serve the stale object if `stale-if-error` allows.
    async fn stale_on_error(
        self: &Arc<Self>,
        session: &mut Session,
        found: &Found,
        req_cc: &CacheControl,
        err: ProxyError,
    ) -> Result<Served, ProxyError> {
        if policy::stale_if_error_allows(
            &found.meta.policy,
            found.meta.response_time,
            req_cc,
            SystemTime::now(),
        ) {
            warn!(error = %err, "origin failed; serving stale");
            if let Some(served) = self
                .serve_stored(
                    session,
                    found,
                    CacheStatus::Stale,
                    "fwd=stale; detail=stale-if-error",
                )
                .await
            {
                return Ok(served);
            }
        }
        Err(err)
    }

    /// Stores the headers of a 304 into the object (RFC 9111 §4.3.4) and
    /// returns the refreshed meta. If the refreshed response may no longer
    /// be stored, the object is removed and the meta serves this request
    /// only.
    fn refresh(&self, found: &Found, fetched: &Fetched, request: &HeaderMap) -> Arc<ObjectMeta> {
        let mut headers = found.meta.headers.clone();
        // Date and Age describe the old exchange: the new one's (or none,
        // which means "now") must drive the age calculation.
        headers.remove(header::DATE);
        headers.remove(header::AGE);
        validation::merge_not_modified(&mut headers, &fetched.parts.headers);
        let stored = policy::storable(
            &Method::GET,
            request,
            found.meta.status,
            &headers,
            fetched.exchange,
            &self.cache.opts,
        );
        let mut meta = (*found.meta).clone();
        meta.headers = headers;
        meta.request_time = fetched.exchange.request_time;
        meta.response_time = fetched.exchange.response_time;
        match stored {
            Ok(policy) => {
                meta.policy = policy;
                self.cache.store.put_object(&found.object_key, meta.clone());
            }
            Err(reason) => {
                debug!(
                    reason = reason.as_str(),
                    "revalidated object no longer storable"
                );
                self.cache.store.remove(&found.object_key);
            }
        }
        Arc::new(meta)
    }

    /// An origin response for a cacheable request: streams it to the
    /// client, and into the store when RFC 9111 allows.
    pub(super) fn store_or_pass(
        &self,
        session: &mut Session,
        key: CacheKey,
        fetched: Fetched,
        if_stored: CacheStatus,
        fwd: &str,
    ) -> Served {
        let Fetched {
            parts,
            body,
            exchange,
        } = fetched;
        match self.object_writer(session, key, &parts, exchange) {
            Ok(writer) => self.stored_response(session, parts, body, writer, if_stored, fwd),
            Err(reason) => {
                if if_stored == CacheStatus::Expired {
                    // The stored response is outdated and its successor
                    // may not be kept: drop it.
                    self.cache.store.remove(&key);
                }
                self.pass_through(session, parts, body, fwd, reason)
            }
        }
    }

    /// An origin response streamed to the client and, through `writer`,
    /// into the store.
    pub(super) fn stored_response(
        &self,
        session: &mut Session,
        mut parts: response::Parts,
        body: crate::body::ReadTimeout<Incoming>,
        writer: ObjectWriter,
        if_stored: CacheStatus,
        fwd: &str,
    ) -> Served {
        let status = parts.status;
        session.cache_status = if_stored;
        session.cache_tier = None;
        let detail = format!("{fwd}; fwd-status={}; stored", status.as_u16());
        mark(&mut parts.headers, &self.node_name, if_stored, &detail);
        let body = body::boxed(body::Tapped::new(body, Fill(writer)));
        (parts, body, Some(status))
    }

    /// Whether an origin response may be stored, and if so the writer that
    /// will store it (RFC 9111 §3, plus HEAD and the size limit).
    pub(super) fn object_writer(
        &self,
        session: &Session,
        key: CacheKey,
        parts: &response::Parts,
        exchange: policy::Exchange,
    ) -> Result<ObjectWriter, &'static str> {
        let meta = self.object_meta(session, parts.status, &parts.headers, exchange)?;
        let too_large =
            content_length(&parts.headers).is_some_and(|len| len > self.cache.max_object_size);
        if too_large {
            return Err("too-large");
        }
        Ok(ObjectWriter::new(
            self.cache.store.clone(),
            key,
            &session.req.headers,
            meta,
            self.cache.max_object_size,
        ))
    }

    /// The meta an origin response would be stored with, or why it may not
    /// be stored (RFC 9111 §3, plus HEAD); its body layout is set later.
    pub(super) fn object_meta(
        &self,
        session: &Session,
        status: StatusCode,
        headers: &HeaderMap,
        exchange: policy::Exchange,
    ) -> Result<ObjectMeta, &'static str> {
        if session.req.method == Method::HEAD {
            return Err("head");
        }
        let policy = policy::storable(
            &session.req.method,
            &session.req.headers,
            status,
            headers,
            exchange,
            &self.cache.opts,
        )
        .map_err(|reason| reason.as_str())?;
        Ok(ObjectMeta {
            status,
            headers: headers.clone(),
            request_time: exchange.request_time,
            response_time: exchange.response_time,
            policy,
            body: BodyLayout::Inline(Bytes::new()),
            vary: object::vary_names(headers).unwrap_or_default(),
            tags: tags(headers),
        })
    }

    /// An origin response that is not stored, streamed as it comes.
    pub(super) fn pass_through(
        &self,
        session: &mut Session,
        mut parts: response::Parts,
        body: crate::body::ReadTimeout<Incoming>,
        fwd: &str,
        reason: &str,
    ) -> Served {
        let status = parts.status;
        session.cache_tier = None;
        let detail = format!("{fwd}; fwd-status={}; detail={reason}", status.as_u16());
        if self.miss_head(session, &mut parts, &detail) {
            return (parts, body::empty(), Some(status));
        }
        (parts, body::boxed(body), Some(status))
    }

    /// [`mark_head`](Self::mark_head) for a miss.
    pub(super) fn miss_head(
        &self,
        session: &mut Session,
        parts: &mut response::Parts,
        detail: &str,
    ) -> bool {
        self.mark_head(session, parts, CacheStatus::Miss, detail)
    }

    /// The head of a response from the origin, marked `status`, and turned
    /// into a 304/412 when the client's own conditionals say so (they were
    /// not sent upstream). Returns true when it was, and no body follows.
    pub(super) fn mark_head(
        &self,
        session: &mut Session,
        parts: &mut response::Parts,
        status: CacheStatus,
        detail: &str,
    ) -> bool {
        session.cache_status = status;
        mark(&mut parts.headers, &self.node_name, status, detail);
        answer_conditionals(session, parts)
    }

    /// `stale-while-revalidate`: refresh the object in the background, at
    /// most once at a time per object.
    fn spawn_revalidation(self: &Arc<Self>, session: &Session, key: CacheKey, found: Found) {
        let Ok(guard) = self.cache.begin_revalidation(found.object_key) else {
            return;
        };
        let proxy = self.clone();
        let mut background = background_session(session, key);
        tokio::spawn(async move {
            let _guard = guard;
            let mut ctx = proxy.hooks.new_ctx();
            let validators = validation::conditional_headers(&found.meta.headers);
            let fetched = match proxy
                .forward(&mut background, body::empty(), &mut ctx, &validators)
                .await
            {
                Ok(fetched) => fetched,
                Err(err) => {
                    warn!(error = %err, "background revalidation failed");
                    return;
                }
            };
            if fetched.parts.status == StatusCode::NOT_MODIFIED
                && !validators.is_empty()
                && validation::validators_match(&found.meta.headers, &fetched.parts.headers)
            {
                proxy.refresh(&found, &fetched, &background.req.headers);
                return;
            }
            if fetched.parts.status.is_server_error() {
                // Keep serving what we have until the window closes.
                return;
            }
            let (_, mut body, _) = proxy.store_or_pass(
                &mut background,
                key,
                fetched,
                CacheStatus::Expired,
                "fwd=stale",
            );
            // Drain the body so the fill completes.
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        });
    }
}
