//! Phases 6–7a, the upstream side of every request that leaves the node:
//! the peer (hook, else the ring over shields and the origin pools), the
//! upstream request head, the exchange with its retries, and the peers'
//! passive health. Retries are decided by [`retry_after`], a pure function.

use std::sync::Arc;
use std::time::Duration;

use cache::{CacheKey, CacheStatus, Clock};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version, request, response};
use http_body_util::BodyExt;
use hyper::body::Body;
use origin_shield::balance::Member;
use origin_shield::{Peer, Role};
use tracing::warn;

use crate::body::{self, BoxError, ProxyBody, ReadTimeout};
use crate::error::{ErrorSource, ProxyError};
use crate::headers;
use crate::hooks::{EdgeHooks, Session};
use crate::metrics::Metrics;
use crate::routing::Routing;
use crate::upstream::{ClientBodyError, Upstream};

/// A response head and body as received from a peer, hop-by-hop fields
/// removed, with the times the policy needs.
pub(crate) struct Fetched {
    pub parts: response::Parts,
    pub body: ReadTimeout<hyper::body::Incoming>,
    pub exchange: cache::policy::Exchange,
}

/// Everything the upstream phases need, shared by all requests.
#[derive(Debug)]
pub(crate) struct Forwarder<H> {
    pub hooks: Arc<H>,
    /// Where misses go, one per site (`Site::index`).
    pub routings: Vec<Arc<Routing>>,
    /// For a site index out of range (never, as `routings` is built from
    /// the same sites): the first site's, or the top-level origins'.
    pub fallback_routing: Arc<Routing>,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    pub via: headers::Via,
    pub host_header: Option<HeaderValue>,
    pub client_body_timeout: Duration,
    /// Times each exchange (`Exchange::request_time`, `response_time`).
    pub clock: Clock,
}

/// The state of one request's attempts, as [`retry_after`] needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    /// The request has no body (a streamed body is consumed by the first
    /// attempt).
    pub replayable: bool,
    /// Replayable and of an idempotent method (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// No broken-connection retry spent yet.
    pub may_retry: bool,
    /// Another peer follows this one.
    pub more: bool,
}

/// Sending a request again after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Metric label (`edge_upstream_retries_total{reason}`).
    pub reason: &'static str,
    /// How many peers further on: 0 is the same peer on a fresh connection.
    pub step: usize,
    /// Whether it spends the retry budget (refused when it is empty).
    pub costs_budget: bool,
}

/// Whether to send the request again after `err`, and where.
pub(crate) fn retry_after(err: &ProxyError, a: Attempt) -> Option<Retry> {
    let retry = |reason, step, costs_budget| {
        Some(Retry {
            reason,
            step,
            costs_budget,
        })
    };
    match err {
        // Nothing reached the peer: the next one, at no cost to the retry
        // budget.
        ProxyError::Connect { .. } | ProxyError::Tls { .. } | ProxyError::ConnectTimeout { .. }
            if a.replayable && a.more =>
        {
            retry("connect", 1, false)
        }
        // Most often a pooled connection the peer had just closed: the
        // next peer in order, or this one again on a fresh connection if
        // it is the only one.
        ProxyError::Upstream { .. } if a.may_retry => retry("broken", usize::from(a.more), true),
        ProxyError::HeaderTimeout { .. } if a.idempotent && a.more => retry("timeout", 1, true),
        _ => None,
    }
}

impl<H: EdgeHooks> Forwarder<H> {
    /// Where this request's misses go: its site's routing.
    pub fn routing(&self, session: &Session) -> &Arc<Routing> {
        self.routings
            .get(session.site)
            .unwrap_or(&self.fallback_routing)
    }

    /// Phases 6–7a: picks the peer, sends the request (body streamed) and
    /// returns the response head. `extra` headers (validators) are added
    /// to the upstream request.
    pub async fn forward(
        &self,
        session: &mut Session,
        body: ProxyBody,
        ctx: &mut H::Ctx,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Fetched, ProxyError> {
        let method = session.req.method.clone();
        self.forward_as(session, method, body, ctx, extra).await
    }

    /// [`Self::forward`] with another method upstream than the client's:
    /// the `GET` of a WebSocket handshake an HTTP/2 client asked for with
    /// CONNECT (`h2_websocket.rs`). Peers are picked, and retries decided,
    /// for that method.
    pub async fn forward_as(
        &self,
        session: &mut Session,
        method: Method,
        body: ProxyBody,
        ctx: &mut H::Ctx,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Fetched, ProxyError> {
        // A rate limit of scope `misses` counts what reaches the origin:
        // misses, passes and revalidations, not hits.
        let access = &session.policy().access;
        if access.rate_limit.is_some() {
            access
                .check_origin(session.client_addr.ip(), &session.req.headers, &self.clock)
                .map_err(ProxyError::Refused)?;
        }
        // Only a request without a body can be sent again: a streamed body
        // is consumed by the first attempt.
        let replayable = body.is_end_stream();
        let routing = self.routing(session);
        let targets: Vec<(Peer, Option<Arc<Member>>)> =
            match self.hooks.upstream_peer(session, ctx).await {
                Some(peer) => vec![(peer, None)],
                None => routing
                    .targets(
                        &method,
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
        let mut upstream_req = self.upstream_request_parts(session, &method, first, &body);
        if session.cache_key.is_some() && matches!(method, Method::GET | Method::HEAD) {
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

        routing.budget.deposit();
        let mut body = Some(body);
        let idempotent = replayable && is_idempotent(&method);
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
            let mut req = Request::from_parts(clone_parts(&upstream_req), req_body);
            let mut span = session.trace.as_ref().and_then(|t| {
                t.upstream(
                    method.as_str(),
                    peer.authority().as_str(),
                    at,
                    req.headers_mut(),
                )
            });
            session.peer = Some(peer.clone());
            let request_time = self.clock.now();
            let err = match self.upstream.send(peer, req).await {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    if let Some(span) = &mut span {
                        span.answered(parts.status.as_u16());
                    }
                    if let Some(member) = member {
                        if unhealthy_status(member, parts.status) {
                            self.peer_failed(member, "status", true);
                            // An origin that says it cannot serve: the next
                            // one may (idempotent, bodiless, budgeted).
                            if idempotent && more && routing.budget.try_spend() {
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
                    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                        if !upstream_req.headers.contains_key(header::UPGRADE) {
                            // Nothing to switch to: what follows is not
                            // HTTP, and the client asked for HTTP.
                            return Err(ProxyError::Upstream {
                                peer: peer.to_string(),
                                source: "101 Switching Protocols to a request without Upgrade"
                                    .into(),
                            });
                        }
                        // The switch is this hop's and the client's too:
                        // its two fields go on to the client.
                        headers::strip_hop_by_hop_but_upgrade(&mut parts.headers);
                    } else {
                        headers::strip_hop_by_hop(&mut parts.headers);
                    }
                    let exchange = cache::policy::Exchange {
                        request_time,
                        response_time: self.clock.now(),
                    };
                    return Ok(Fetched {
                        parts,
                        body: body.holding(in_flight).traced(span),
                        exchange,
                    });
                }
                Err(err) => err,
            };
            if let Some(span) = span {
                span.failed(err.as_str());
            }
            drop(in_flight);
            if let Some(member) = member
                && err.source_side() == ErrorSource::Upstream
            {
                // A stalled upload may be the client's doing as much as the
                // peer's: counted, but never held against the peer.
                let counts = !matches!(err, ProxyError::SendTimeout { .. });
                self.peer_failed(member, err.as_str(), counts);
            }
            let attempt = Attempt {
                replayable,
                idempotent,
                may_retry,
                more,
            };
            let retry = match retry_after(&err, attempt) {
                Some(retry) if !retry.costs_budget || routing.budget.try_spend() => retry,
                _ => return Err(err),
            };
            if retry.reason == "broken" {
                may_retry = false;
            }
            let Retry { reason, step, .. } = retry;
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
    pub fn request_body(&self, body: crate::body::ClientBody) -> ProxyBody {
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
        method: &Method,
        peer: &Peer,
        body: &ProxyBody,
    ) -> request::Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method.clone();
        parts.version = Version::HTTP_11;
        let access = &session.policy().access;
        parts.uri = if access.strips_origin() {
            // The signature is edge's business; the origin sees the link
            // every signed copy of it stands for.
            let stripped = access.key_path(session.path_and_query());
            let pq = http::uri::PathAndQuery::try_from(stripped.as_ref()).ok();
            peer.uri_for(pq.as_ref().or(session.req.uri.path_and_query()))
        } else {
            peer.uri_for(session.req.uri.path_and_query())
        };
        parts.headers = session.req.headers.clone();
        let h = &mut parts.headers;
        let trailers = headers::accepts_trailers(h);
        headers::strip_hop_by_hop(h);
        if trailers {
            // gRPC needs it end to end (an HTTP/2 peer may refuse a call
            // without it); the one TE value HTTP/2 allows (RFC 9113 §8.2.2).
            // Dropped again if the request goes on HTTP/1.1 (upstream/pool.rs).
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
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
        self.routing(session).mark_hop(h);
        // The site rule's edits, before the `upstream_request_filter` hook
        // (which may override them).
        session.policy().request_headers.apply(h);
        parts
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

/// A copy of `session` for origin fetches that outlive the request's own
/// phases (background revalidation, slices fetched while a body streams):
/// a GET for `key` with the client's headers.
pub(crate) fn background_session(session: &Session, key: CacheKey) -> Session {
    let mut req = clone_parts(&session.req);
    req.method = Method::GET;
    Session {
        req,
        client_addr: session.client_addr,
        downstream_scheme: session.downstream_scheme,
        // A duration for logs and metrics, not cache semantics.
        started: std::time::Instant::now(),
        cache_key: Some(key),
        peer: None,
        cache_status: CacheStatus::Pass,
        cache_tier: None,
        key_rules: session.key_rules.clone(),
        sites: session.sites.clone(),
        site: session.site,
        rule: session.rule,
        // Shared: what the copy fetches counts against the request.
        origin_fetched: session.origin_fetched.clone(),
        jwt_claims: session.jwt_claims.clone(),
        // Its upstream spans belong to the request that started it.
        trace: session.trace.as_ref().map(|t| Box::new(t.background())),
        host: session.host.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(replayable: bool, idempotent: bool, may_retry: bool, more: bool) -> Attempt {
        Attempt {
            replayable,
            idempotent,
            may_retry,
            more,
        }
    }

    /// Reason, step, costs the budget.
    type Plan = (&'static str, usize, bool);

    fn decide(err: ProxyError, a: Attempt) -> Option<Plan> {
        retry_after(&err, a).map(|r| (r.reason, r.step, r.costs_budget))
    }

    #[test]
    fn retries_as_a_table() {
        let peer = || "origin:80".to_owned();
        let connect = || ProxyError::ConnectTimeout { peer: peer() };
        let broken = || ProxyError::Upstream {
            peer: peer(),
            source: "reset".into(),
        };
        let slow = || ProxyError::HeaderTimeout {
            peer: peer(),
            timeout: Duration::from_secs(1),
        };
        let stalled = || ProxyError::SendTimeout {
            peer: peer(),
            timeout: Duration::from_secs(1),
        };
        let get = attempt(true, true, true, true);
        let get_last = attempt(true, true, true, false);
        let post = attempt(true, false, false, true);
        let upload = attempt(false, false, false, true);
        #[rustfmt::skip]
        let table: Vec<(ProxyError, Attempt, Option<Plan>)> = vec![
            (connect(), get,      Some(("connect", 1, false))),
            (connect(), post,     Some(("connect", 1, false))),
            (connect(), upload,   None),
            (connect(), get_last, None),
            (broken(),  get,      Some(("broken", 1, true))),
            // The only peer: the same one again, on a fresh connection.
            (broken(),  get_last, Some(("broken", 0, true))),
            (broken(),  attempt(true, true, false, true), None),
            (broken(),  post,     None),
            (slow(),    get,      Some(("timeout", 1, true))),
            (slow(),    get_last, None),
            (slow(),    post,     None),
            (stalled(), get,      None),
            (ProxyError::PeersBusy, get, None),
        ];
        for (i, (err, a, want)) in table.into_iter().enumerate() {
            assert_eq!(decide(err, a), want, "row {i}");
        }
    }
}
