//! One request's life, phase by phase (ARCHITECTURE.md "One request"):
//! validate, `request_filter`, `cache_key`, `upstream_peer`, build the
//! upstream request, fetch, `response_filter`, stream the body back, then
//! `logging` when the body ends (or when the client leaves first).
//!
//! GET and HEAD requests with a cache key go through the cache phases in
//! `cached.rs`; everything else is passed through by [`Proxy::forward`].

mod bodies;
mod cached;
mod fill;
mod ranges;
mod slices;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use std::time::SystemTime;

use cache::CacheStatus;
use cache::store::{Store, Tier};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version, request, response};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use origin_shield::balance::Member;
use origin_shield::{Peer, Role};
use tracing::{Instrument, Span, info, warn};

use crate::body::{self, BodyEnd, ProxyBody, ReadTimeout};
use crate::config::Config;
use crate::config::IpNet;
use crate::error::{BoxError, ErrorSource, ProxyError};
use crate::headers;
use crate::hooks::{EdgeHooks, RequestSummary, Session};
use crate::metrics::{BodySource, Metrics};
use crate::routing::Routing;
use crate::server::{ConnActivity, RequestActivity};
use crate::upstream::{ClientBodyError, Upstream};
use purge_api::Purger;

/// What the server tells the proxy about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client_addr: SocketAddr,
    pub scheme: &'static str,
    /// Requests in flight keep the connection from being closed as idle.
    pub activity: Arc<ConnActivity>,
}

/// The request pipeline, shared by every connection.
#[derive(Debug)]
pub struct Proxy<H> {
    hooks: Arc<H>,
    routing: Arc<Routing>,
    upstream: Arc<Upstream>,
    metrics: Arc<Metrics>,
    node_name: String,
    via: headers::Via,
    host_header: Option<HeaderValue>,
    client_body_timeout: std::time::Duration,
    cache: Arc<cached::CacheLayer>,
    key_rules: Arc<cache::KeyRules>,
    purger: Arc<Purger>,
    /// Networks that may send `PURGE` without the token.
    purge_from: Vec<IpNet>,
    strip_surrogate_key: bool,
}

/// A response head and body as received from a peer, hop-by-hop fields
/// removed, with the times the policy needs.
pub(crate) struct Fetched {
    pub parts: response::Parts,
    pub body: crate::body::ReadTimeout<Incoming>,
    pub exchange: cache::policy::Exchange,
}

fn gauge<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// nginx's "client closed request": the client left before a response head.
const CLIENT_CLOSED: u16 = 499;

impl<H: EdgeHooks> Proxy<H> {
    /// `listen` is the address actually bound, for the node to recognise
    /// itself among the shields.
    pub fn new(
        config: &Config,
        hooks: H,
        metrics: Metrics,
        store: Store,
        purger: Arc<Purger>,
        upstream: Upstream,
        listen: SocketAddr,
    ) -> Self {
        Proxy {
            cache: Arc::new(cached::CacheLayer::new(store, &config.cache)),
            key_rules: Arc::new(config.cache.key_rules()),
            hooks: Arc::new(hooks),
            routing: Arc::new(Routing::new(config, listen)),
            upstream: Arc::new(upstream),
            metrics: Arc::new(metrics),
            node_name: config.node_name.clone(),
            via: headers::Via::new(&config.node_name),
            host_header: config
                .upstream
                .host_header
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok()),
            client_body_timeout: config.server.client_body_timeout,
            purger,
            purge_from: config
                .purge
                .allow_from
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            strip_surrogate_key: config.purge.strip_surrogate_key,
        }
    }

    /// Sets the gauges that are read from live state (at each scrape).
    pub fn export_gauges(&self) {
        let m = &self.metrics;
        self.routing.export(m);
        m.upstream_reuse_ratio.set(self.upstream.reuse_ratio());
        let fills = &self.cache.fills;
        m.fills_in_flight.set(gauge(fills.in_flight()));
        m.fill_window_bytes.set(gauge(fills.window_bytes()));
        let store = &self.cache.store;
        let memory = store.memory_usage();
        m.cache_bytes
            .with_label_values(&["memory"])
            .set(gauge(memory.bytes));
        m.cache_entries
            .with_label_values(&["memory"])
            .set(gauge(memory.entries));
        m.cache_capacity_bytes
            .with_label_values(&["memory"])
            .set(gauge(memory.capacity));
        m.cache_capacity_bytes
            .with_label_values(&["disk"])
            .set(gauge(store.disk_capacity()));
        m.purge_rules.set(gauge(self.purger.rules().len()));
        m.purge_backlog.set(gauge(self.purger.backlog_now()));
        self.purger.counts.export(|kind, delta| {
            m.purges.with_label_values(&[kind]).inc_by(delta);
        });
    }

    /// The purge machinery, for the admin listener.
    pub fn purger(&self) -> &Arc<Purger> {
        &self.purger
    }

    /// Where misses go, for the admin listener and the health probes.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// The pooled client to peers.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Flushes the cache's pending disk writes.
    pub async fn close(&self) {
        if let Err(err) = self.cache.store.close().await {
            warn!(error = %err, "closing the cache failed");
        }
    }

    /// Serves one request. Never fails: errors become responses here.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            client = %conn.client_addr.ip(),
        );
        let (parts, body) = req.into_parts();
        // Logs the request even if the client goes away before a response
        // head exists (this future is then dropped).
        let mut pending = Finisher {
            hooks: self.hooks.clone(),
            metrics: self.metrics.clone(),
            span: span.clone(),
            session: Session {
                req: parts,
                client_addr: conn.client_addr,
                downstream_scheme: conn.scheme,
                started: Instant::now(),
                cache_key: None,
                peer: None,
                cache_status: CacheStatus::Pass,
                cache_tier: None,
                key_rules: self.key_rules.clone(),
                origin_fetched: Default::default(),
            },
            ctx: self.hooks.new_ctx(),
            _activity: conn.activity.request_started(),
            error: None,
            upstream_status: None,
            answered: false,
        };
        let outcome = self
            .process(&mut pending.session, body, &mut pending.ctx)
            .instrument(span.clone())
            .await;
        let response = match outcome {
            Ok((resp, upstream_status)) => {
                pending.upstream_status = upstream_status;
                resp
            }
            Err(err) => {
                {
                    let _enter = span.enter();
                    match err.source_side() {
                        ErrorSource::Downstream => info!(error = %err, "refused request"),
                        _ => warn!(error = %err, "proxy error"),
                    }
                }
                pending.error = Some(err.as_str());
                let (mut parts, body) = err.to_response().into_parts();
                if err.source_side() != ErrorSource::Downstream
                    || pending.session.cache_key.is_some()
                {
                    // Say what the cache did, as for every other response.
                    let status = pending.session.cache_status;
                    let fwd = if status == CacheStatus::Pass {
                        "bypass"
                    } else {
                        "uri-miss"
                    };
                    let detail = format!("fwd={fwd}; detail={}", err.as_str());
                    cached::mark(&mut parts.headers, &self.node_name, status, &detail);
                    self.via.append(&mut parts.headers, Version::HTTP_11);
                }
                self.hooks
                    .response_filter(&pending.session, &mut parts, &mut pending.ctx)
                    .instrument(span)
                    .await;
                Response::from_parts(parts, body)
            }
        };
        pending.answered = true;
        let mut response = response;
        if response.status().as_u16() >= 400
            && request_has_body(&pending.session.req)
            && pending.session.req.version <= Version::HTTP_11
        {
            // An error to an upload (ours, or the origin's passed on) may
            // come before its body was read: hyper then closes the
            // connection, and the client must know before it sends another
            // request on it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.metrics
            .first_byte(pending.session.cache_status)
            .observe(pending.session.started.elapsed().as_secs_f64());
        Ok(pending.observe(response))
    }

    /// Phases 1–7; returns the response and the upstream status if asked.
    async fn process(
        self: &Arc<Self>,
        session: &mut Session,
        body: Incoming,
        ctx: &mut H::Ctx,
    ) -> Result<(Response<ProxyBody>, Option<StatusCode>), ProxyError> {
        validate(&session.req)?;

        if let Some(early) = self.hooks.request_filter(session, ctx).await {
            return Ok((early.map(body::full), None));
        }
        if session.req.method.as_str() == "PURGE" {
            return Ok((
                Box::pin(self.purge_method(session)).await.map(body::full),
                None,
            ));
        }

        session.cache_key = self.hooks.cache_key(session, ctx);
        let cacheable_method = matches!(session.req.method, Method::GET | Method::HEAD);
        let (mut parts, body, upstream_status) = match session.cache_key {
            Some(key) if cacheable_method => self.serve_cacheable(session, key, body, ctx).await?,
            _ => {
                let body = self.request_body(body);
                // Boxed: the miss and pass machinery would otherwise sit
                // inline in every request's future, hits included, and be
                // copied with it.
                let fetched = Box::pin(self.forward(session, body, ctx, &[])).await?;
                let status = fetched.parts.status;
                self.cache.invalidate_after(session, &fetched.parts);
                let mut parts = fetched.parts;
                cached::mark(
                    &mut parts.headers,
                    &self.node_name,
                    CacheStatus::Pass,
                    "fwd=bypass",
                );
                (parts, body::boxed(fetched.body), Some(status))
            }
        };
        self.via.append(&mut parts.headers, parts.version);
        parts.version = Version::HTTP_11;
        // Kept for another edge (a child of this shield): it needs the
        // tags to honour tag purges.
        if self.strip_surrogate_key && !session.req.headers.contains_key(&crate::routing::CDN_LOOP)
        {
            parts.headers.remove("surrogate-key");
        }
        self.hooks.response_filter(session, &mut parts, ctx).await;
        Ok((Response::from_parts(parts, body), upstream_status))
    }

    /// `PURGE /path` (the Varnish and nginx habit): purges this URL, for
    /// clients in `purge.allow_from` or bearing the purge token.
    async fn purge_method(&self, session: &Session) -> Response<bytes::Bytes> {
        let allowed = match self.purger.auth(&session.req.headers) {
            purge_api::Auth::Granted => true,
            // A wrong token is refused even from an allowed network.
            purge_api::Auth::Wrong => false,
            purge_api::Auth::Missing | purge_api::Auth::Disabled => self
                .purge_from
                .iter()
                .any(|net| net.contains(session.client_addr.ip())),
        };
        if !allowed {
            return purge_api::ApiError::new(
                StatusCode::FORBIDDEN,
                "PURGE is allowed from purge.allow_from or with the purge token",
            )
            .to_response();
        }
        let url = format!(
            "{}://{}{}",
            session.downstream_scheme,
            session.authority_for_key(),
            session.path_and_query()
        );
        self.purger
            .purge_url(&url)
            .await
            .unwrap_or_else(|err| err.to_response())
    }

    /// Phases 6–7a: picks the peer, sends the request (body streamed) and
    /// returns the response head. `extra` headers (validators) are added
    /// to the upstream request.
    pub(crate) async fn forward(
        &self,
        session: &mut Session,
        body: ProxyBody,
        ctx: &mut H::Ctx,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Fetched, ProxyError> {
        // Only a request without a body can be sent again: a streamed body
        // is consumed by the first attempt.
        let replayable = body.is_end_stream();
        let targets: Vec<(Peer, Option<Arc<Member>>)> =
            match self.hooks.upstream_peer(session, ctx).await {
                Some(peer) => vec![(peer, None)],
                None => self
                    .routing
                    .targets(
                        &session.req.method,
                        &session.req.headers,
                        session.cache_key,
                        session.client_addr.ip(),
                    )?
                    .into_iter()
                    .map(|m| (m.peer.clone(), Some(m)))
                    .collect(),
            };
        let Some((first, _)) = targets.first() else {
            return Err(ProxyError::NoPeer);
        };
        let mut upstream_req = self.upstream_request_parts(session, first, &body);
        if session.cache_key.is_some() && matches!(session.req.method, Method::GET | Method::HEAD) {
            // The cache answers the client's conditionals and ranges itself;
            // upstream it asks for whole responses, validated by its own
            // validators.
            for name in CLIENT_CONDITIONALS {
                upstream_req.headers.remove(name);
            }
        }
        for (name, value) in extra {
            upstream_req.headers.insert(name.clone(), value.clone());
        }
        self.hooks
            .upstream_request_filter(session, &mut upstream_req, ctx)
            .await;

        self.routing.budget.deposit();
        let mut body = Some(body);
        let idempotent = replayable && is_idempotent(&session.req.method);
        // A pooled connection the peer closed just as we wrote to it fails
        // an otherwise healthy exchange: idempotent requests get one retry.
        let mut may_retry = idempotent;
        let mut last_err = ProxyError::NoPeer;
        let mut at = 0;
        let mut busy_seen = false;
        while let Some((peer, member)) = targets.get(at) {
            let more = at + 1 < targets.len();
            if busy_seen && member.as_ref().is_some_and(|m| !m.health.is_up()) {
                // Live peers are full: overflow must not land on the ones
                // that are down.
                at += 1;
                continue;
            }
            let in_flight = match member {
                Some(member) => match member.health.try_acquire() {
                    Some(guard) => Some(guard),
                    None => {
                        // At its concurrency cap: the next peer, or 503.
                        self.peer_failed(member, "circuit_open", false);
                        last_err = ProxyError::PeersBusy;
                        busy_seen = true;
                        at += 1;
                        continue;
                    }
                },
                None => None,
            };
            upstream_req.uri = peer.uri_for(upstream_req.uri.path_and_query());
            let req_body = body.take().unwrap_or_else(body::empty);
            let req = Request::from_parts(clone_parts(&upstream_req), req_body);
            session.peer = Some(peer.clone());
            let request_time = SystemTime::now();
            let err = match self.upstream.send(peer, req).await {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    if let Some(member) = member {
                        if unhealthy_status(member, parts.status) {
                            self.peer_failed(member, "status", true);
                            // An origin that says it cannot serve: the next
                            // one may (idempotent, bodiless, budgeted).
                            if idempotent && more && self.routing.budget.try_spend() {
                                warn!(peer = %peer, status = parts.status.as_u16(), "origin unavailable; trying the next");
                                self.metrics
                                    .upstream_retries
                                    .with_label_values(&["status"])
                                    .inc();
                                at += 1;
                                continue;
                            }
                        } else {
                            member.health.record_success();
                        }
                    }
                    headers::strip_hop_by_hop(&mut parts.headers);
                    let exchange = cache::policy::Exchange {
                        request_time,
                        response_time: SystemTime::now(),
                    };
                    return Ok(Fetched {
                        parts,
                        body: body.holding(in_flight),
                        exchange,
                    });
                }
                Err(err) => err,
            };
            drop(in_flight);
            if let Some(member) = member
                && err.source_side() == ErrorSource::Upstream
            {
                // A stalled upload may be the client's doing as much as the
                // peer's: counted, but never held against the peer.
                let counts = !matches!(err, ProxyError::SendTimeout { .. });
                self.peer_failed(member, err.as_str(), counts);
            }
            let retry = match &err {
                // Nothing reached the peer: the next one, at no cost to the
                // retry budget.
                ProxyError::Connect { .. }
                | ProxyError::Tls { .. }
                | ProxyError::ConnectTimeout { .. }
                    if replayable && more =>
                {
                    Some(("connect", 1))
                }
                // Most often a pooled connection the peer had just closed:
                // the next peer in order, or this one again on a fresh
                // connection if it is the only one.
                ProxyError::Upstream { .. } if may_retry && self.routing.budget.try_spend() => {
                    may_retry = false;
                    Some(("broken", usize::from(more)))
                }
                ProxyError::HeaderTimeout { .. }
                    if idempotent && more && self.routing.budget.try_spend() =>
                {
                    Some(("timeout", 1))
                }
                _ => None,
            };
            let Some((reason, step)) = retry else {
                return Err(err);
            };
            warn!(peer = %peer, error = %err, reason, "upstream failed; sending the request again");
            self.metrics
                .upstream_retries
                .with_label_values(&[reason])
                .inc();
            at += step;
            last_err = err;
        }
        Err(last_err)
    }

    /// Counts a failed exchange against a peer (and the passive health
    /// check, if `counts` — a busy peer is not a broken one).
    fn peer_failed(&self, member: &Member, kind: &str, counts: bool) {
        let role = match member.peer.role() {
            Role::Origin => "origin",
            Role::Shield => "shield",
        };
        let peer = member.peer.to_string();
        self.metrics
            .peer_failures
            .with_label_values(&[&peer, role, kind])
            .inc();
        if counts && member.health.record_failure() {
            warn!(peer = %peer, role, "peer failed repeatedly; out of rotation for a while");
            self.metrics
                .peer_ejections
                .with_label_values(&[&peer, role])
                .inc();
        }
    }

    /// The client's body as sent upstream: failing if the client stalls, and
    /// with its errors marked as the client's.
    pub(crate) fn request_body(&self, body: Incoming) -> ProxyBody {
        if body.is_end_stream() {
            // Every GET: nothing to time or to box.
            return body::empty();
        }
        ReadTimeout::new(body, self.client_body_timeout)
            .map_err(|e| BoxError::from(ClientBodyError(e)))
            .boxed_unsync()
    }

    /// The upstream request head: the client's, minus hop-by-hop fields,
    /// with `Host`, `Via` and `X-Forwarded-*` set.
    fn upstream_request_parts(
        &self,
        session: &Session,
        peer: &Peer,
        body: &ProxyBody,
    ) -> request::Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = session.req.method.clone();
        parts.version = Version::HTTP_11;
        parts.uri = peer.uri_for(session.req.uri.path_and_query());
        parts.headers = session.req.headers.clone();
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h);
        // The body is forwarded at once; an origin's 100-continue would only
        // reach us, never the client, which hyper already answered.
        h.remove(header::EXPECT);
        if !body.is_end_stream() && body.size_hint().exact().is_none() {
            // Unknown length (chunked, or HTTP/2 without content-length):
            // say so, or the client would send GET/DELETE bodies as empty.
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        // RFC 9112 §3.2: an HTTP/1.1 request always carries Host.
        let host = self
            .host_header
            .clone()
            .or_else(|| {
                session
                    .req
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            })
            .or_else(|| session.req.headers.get(header::HOST).cloned())
            .or_else(|| HeaderValue::from_str(peer.authority().as_str()).ok());
        if let Some(host) = host {
            h.insert(header::HOST, host);
        }
        self.via.append(h, session.req.version);
        // The host the key was made from (an absolute-form target or
        // :authority wins over Host, RFC 9112 §3.2.2): an origin that
        // builds links from X-Forwarded-Host must build them for the host
        // its answer will be stored under.
        let asked_for = session.req.uri.authority().map_or_else(
            || session.req.headers.get(header::HOST).cloned(),
            |authority| HeaderValue::from_str(authority.as_str()).ok(),
        );
        headers::set_forwarded(
            h,
            session.client_addr.ip(),
            session.downstream_scheme,
            asked_for.as_ref(),
        );
        self.routing.mark_hop(h);
        parts
    }
}

/// Finishes a request exactly once: when its response body ends, or, if no
/// response was produced, when the request is dropped.
struct Finisher<H: EdgeHooks> {
    hooks: Arc<H>,
    metrics: Arc<Metrics>,
    span: Span,
    session: Session,
    ctx: H::Ctx,
    _activity: RequestActivity,
    error: Option<&'static str>,
    upstream_status: Option<StatusCode>,
    /// Set once a response exists; from then on the body reports the end.
    answered: bool,
}

impl<H: EdgeHooks> Finisher<H> {
    /// Wraps the body so that its end is reported.
    fn observe(self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let status = response.status();
        // No body goes out for these, whatever the body object holds.
        let bodiless = self.session.req.method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let mut me = Some(self);
        let on_end = Box::new(move |end: BodyEnd, bytes: u64| {
            if let Some(mut me) = me.take() {
                let end = if bodiless { BodyEnd::Complete } else { end };
                me.record(status, end, bytes);
            }
        });
        response.map(|b| body::boxed(body::observed(b, on_end)))
    }

    fn record(&mut self, status: StatusCode, end: BodyEnd, body_bytes: u64) {
        // Recorded here; the drop below must not record again.
        self.answered = true;
        let summary = RequestSummary {
            status,
            body_bytes,
            duration: self.session.started.elapsed(),
            end,
            error: self.error,
            upstream_status: self.upstream_status,
        };
        if self.session.cache_status.from_cache()
            && self
                .session
                .origin_fetched
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Part of the body came from the origin after all.
            self.session.cache_status = CacheStatus::Miss;
            self.session.cache_tier = None;
        }
        let cache_status = self.session.cache_status;
        self.metrics.request(status, end, cache_status).inc();
        if let Some(tier) = self.session.cache_tier
            && cache_status.from_cache()
        {
            self.metrics.tier_hit(tier).inc();
        }
        self.metrics
            .duration(status, cache_status)
            .observe(summary.duration.as_secs_f64());
        let source = match self.session.cache_tier {
            Some(Tier::Memory) if cache_status.from_cache() => BodySource::Memory,
            Some(Tier::Disk) if cache_status.from_cache() => BodySource::Disk,
            _ if self.upstream_status.is_some() => BodySource::Origin,
            _ => BodySource::Edge,
        };
        self.metrics
            .body_bytes(cache_status, source)
            .inc_by(body_bytes);
        let _enter = self.span.enter();
        access_log(&self.session, &summary);
        self.hooks.logging(&self.session, &summary, &mut self.ctx);
    }
}

impl<H: EdgeHooks> Drop for Finisher<H> {
    fn drop(&mut self) {
        if !self.answered {
            self.error = Some("client_closed");
            let status = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
            self.record(status, BodyEnd::Aborted, 0);
        }
    }
}

/// Whether a response status says the peer itself is unwell. Only an
/// origin's 502/503/504 count: a 500 is usually one broken page, a 508 or a
/// 4xx the request's own doing, and a shield's 5xx is mostly the origin's
/// failure relayed (ejecting the shield would only move its keys).
fn unhealthy_status(member: &Member, status: StatusCode) -> bool {
    member.peer.role() == Role::Origin
        && matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        )
}

/// Whether the request came with a body (framed by a non-zero length or
/// by chunks).
fn request_has_body(req: &request::Parts) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Refuses requests no origin should see (RFC 9112 §3.2: an HTTP/1.1
/// request needs exactly one valid `Host`; user info never travels).
fn validate(req: &request::Parts) -> Result<(), ProxyError> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    if req
        .uri
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(ProxyError::BadRequest("user info in the request target"));
    }
    match host {
        Some(h) if !valid_host(h.as_bytes()) => {
            return Err(ProxyError::BadRequest("invalid Host header"));
        }
        Some(_) => {}
        None if req.version == Version::HTTP_11 && req.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("missing Host header"));
        }
        None => {}
    }
    if req.method == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not supported"));
    }
    // Request smuggling (RFC 9112 §6.1): the only transfer coding we can
    // forward faithfully is chunked. (Content-Length beside it never gets
    // here: hyper drops it, reads the body as chunked and closes the
    // connection after the response, as §6.3 asks.)
    if let Some(te) = req.headers.get(header::TRANSFER_ENCODING) {
        let chunked_only = req
            .headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .count()
            == 1
            && te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked");
        if !chunked_only {
            return Err(ProxyError::UnsupportedCoding);
        }
    }
    Ok(())
}

/// Whether a `Host` value is `host [":" port]` (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a bracketed IPv6 literal, or a non-empty reg-name or IPv4
/// address; never user info. Checked in place: parsing an `Authority`
/// copied the value on every request.
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        if literal.len() < 2
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (None, &rest[close + 1..])
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        (Some(&value[..end]), &value[end..])
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let host_ok = host.is_none_or(|name| !name.is_empty() && valid_reg_name(name));
    port_ok && host_ok
}

/// RFC 3986 reg-name: unreserved, sub-delims and percent-encoded octets.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let escaped = name.get(i + 1..i + 3);
                if !escaped.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// Conditional and range fields of a client, answered by the cache rather
/// than forwarded on cacheable requests.
const CLIENT_CONDITIONALS: [HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// `request::Parts` is not `Clone` (extensions may not be); the upstream
/// request carries none.
fn clone_parts(parts: &request::Parts) -> request::Parts {
    let (mut out, ()) = Request::new(()).into_parts();
    out.method = parts.method.clone();
    out.uri = parts.uri.clone();
    out.version = parts.version;
    out.headers = parts.headers.clone();
    out
}

/// One line per request on the `access` target: text or JSON by the
/// subscriber's format, fields named the same either way.
fn access_log(session: &Session, summary: &RequestSummary) {
    let peer = session.peer.as_ref().map(|p| p.authority().as_str());
    info!(
        target: "access",
        client = %session.client_addr.ip(),
        method = %session.req.method,
        host = session.host(),
        path = session.path_and_query(),
        version = ?session.req.version,
        status = summary.status.as_u16(),
        bytes = summary.body_bytes,
        duration_ms = %format_args!("{:.3}", summary.duration.as_secs_f64() * 1000.0),
        peer = peer.unwrap_or("-"),
        cache = session.cache_status.as_str(),
        tier = session.cache_tier.map(|t| t.as_str()),
        upstream_status = summary.upstream_status.map(|s| s.as_u16()),
        error = summary.error,
        body_end = summary.end.as_str(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> request::Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_rules() {
        let ok = parts(Request::get("/").header("host", "example.com:8080"));
        assert!(validate(&ok).is_ok());
        let missing = parts(Request::get("/"));
        assert!(validate(&missing).is_err());
        let h10 = parts(Request::get("/").version(Version::HTTP_10));
        assert!(validate(&h10).is_ok(), "HTTP/1.0 may omit Host");
        let absolute = parts(Request::get("http://example.com/"));
        assert!(validate(&absolute).is_ok());
        let userinfo_target = parts(Request::get("http://u:p@example.com/"));
        assert!(validate(&userinfo_target).is_err());
        let twice = parts(Request::get("/").header("host", "a").header("host", "b"));
        assert!(validate(&twice).is_err());
        let bad = parts(Request::get("/").header("host", "a b"));
        assert!(validate(&bad).is_err());
        let userinfo = parts(Request::get("/").header("host", "u@a"));
        assert!(validate(&userinfo).is_err());
    }

    #[test]
    fn host_values() {
        for good in [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com.",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "[::ffff:10.0.0.1]",
            "xn--bcher-kva.example",
            "a_b.example",
            "caf%C3%A9.example",
            "host:",
        ] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "", ":80", "a b", "u@a", "u:p@a", "a:b:c", "a:8o", "[::1", "[]", "[::1]x", "[zz::1]",
            "a/b", "a?b", "a#b", "a%2", "a%zz", "a\\b", "{a}",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }
}
