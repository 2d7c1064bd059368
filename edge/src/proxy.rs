//! One request's life, phase by phase (ARCHITECTURE.md "One request"):
//! validate, `request_filter`, `cache_key`, `upstream_peer`, build the
//! upstream request, fetch, `response_filter`, stream the body back, then
//! `logging` when the body ends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version, request};
use hyper::body::{Body, Incoming};
use origin_shield::Peer;
use origin_shield::balance::RoundRobin;
use tracing::{Instrument, Span, info, warn};

use crate::body::{self, BodyEnd, Observed, ProxyBody};
use crate::config::Config;
use crate::error::{ErrorSource, ProxyError};
use crate::headers;
use crate::hooks::{EdgeHooks, RequestSummary, Session};
use crate::metrics::{Metrics, status_class};
use crate::upstream::Upstream;

/// What the server tells the proxy about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client_addr: SocketAddr,
    pub scheme: &'static str,
    /// Requests of this connection whose response has not ended; the idle
    /// timer never closes a connection while this is above zero.
    pub in_flight: Arc<AtomicUsize>,
}

/// Holds a connection's in-flight count up for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request pipeline, shared by every connection.
#[derive(Debug)]
pub struct Proxy<H> {
    hooks: Arc<H>,
    origins: RoundRobin,
    upstream: Upstream,
    metrics: Metrics,
    node_name: String,
    host_header: Option<HeaderValue>,
}

impl<H: EdgeHooks> Proxy<H> {
    pub fn new(config: &Config, hooks: H, metrics: Metrics) -> Self {
        Proxy {
            hooks: Arc::new(hooks),
            origins: RoundRobin::new(config.origins.clone()),
            upstream: Upstream::new(config.upstream.clone(), metrics.clone()),
            metrics,
            node_name: config.node_name.clone(),
            host_header: config
                .upstream
                .host_header
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok()),
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
        let in_flight = InFlight::enter(&conn.in_flight);
        let (parts, body) = req.into_parts();
        let mut session = Session {
            req: parts,
            client_addr: conn.client_addr,
            downstream_scheme: conn.scheme,
            started: Instant::now(),
            cache_key: None,
            peer: None,
        };
        let mut ctx = self.hooks.new_ctx();
        let outcome = self
            .process(&mut session, body, &mut ctx)
            .instrument(span.clone())
            .await;
        let (response, error, upstream_status) = match outcome {
            Ok((resp, upstream_status)) => (resp, None, upstream_status),
            Err(err) => {
                let _enter = span.enter();
                match err.source_side() {
                    ErrorSource::Downstream => info!(error = %err, "refused request"),
                    _ => warn!(error = %err, "proxy error"),
                }
                let (mut parts, body) = err.to_response().into_parts();
                self.hooks
                    .response_filter(&session, &mut parts, &mut ctx)
                    .instrument(span.clone())
                    .await;
                (Response::from_parts(parts, body), Some(err.as_str()), None)
            }
        };
        Ok(self.observe(
            response,
            session,
            ctx,
            span,
            in_flight,
            error,
            upstream_status,
        ))
    }

    /// Phases 1–7; returns the response and the upstream status if asked.
    async fn process(
        &self,
        session: &mut Session,
        body: Incoming,
        ctx: &mut H::Ctx,
    ) -> Result<(Response<ProxyBody>, Option<StatusCode>), ProxyError> {
        validate(&session.req)?;

        if let Some(early) = self.hooks.request_filter(session, ctx).await {
            return Ok((early.map(body::full), None));
        }

        session.cache_key = self.hooks.cache_key(session, ctx);

        let mut upstream_req = self.upstream_request_parts(session);
        // Only a request without a body can be re-sent to another peer: a
        // streamed body is consumed by the first attempt.
        let replayable = body.is_end_stream();
        let peers: Vec<Peer> = match self.hooks.upstream_peer(session, ctx).await {
            Some(peer) => vec![peer],
            None if replayable => self.origins.pick_order().cloned().collect(),
            None => self.origins.pick().cloned().into_iter().collect(),
        };
        let Some(first) = peers.first() else {
            return Err(ProxyError::NoPeer);
        };
        upstream_req.uri = first.uri_for(session.req.uri.path_and_query());
        self.hooks
            .upstream_request_filter(session, &mut upstream_req, ctx)
            .await;

        let mut body = Some(body::boxed(body));
        let mut last_err = ProxyError::NoPeer;
        for peer in &peers {
            upstream_req.uri = peer.uri_for(upstream_req.uri.path_and_query());
            let req_body = body.take().unwrap_or_else(body::empty);
            let req = Request::from_parts(clone_parts(&upstream_req), req_body);
            session.peer = Some(peer.clone());
            match self.upstream.send(peer, req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let (mut parts, resp_body) = resp.into_parts();
                    headers::strip_hop_by_hop(&mut parts.headers);
                    headers::append_via(&mut parts.headers, parts.version, &self.node_name);
                    parts.version = Version::HTTP_11;
                    self.hooks.response_filter(session, &mut parts, ctx).await;
                    return Ok((
                        Response::from_parts(parts, body::boxed(resp_body)),
                        Some(status),
                    ));
                }
                Err(err @ ProxyError::Connect { .. }) if replayable => {
                    warn!(peer = %peer, error = %err, "peer unreachable, trying the next");
                    last_err = err;
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_err)
    }

    /// The upstream request head: the client's, minus hop-by-hop fields,
    /// with `Host`, `Via` and `X-Forwarded-*` set. The URI is filled in per
    /// peer.
    fn upstream_request_parts(&self, session: &Session) -> request::Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = session.req.method.clone();
        parts.version = Version::HTTP_11;
        parts.headers = session.req.headers.clone();
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h);
        // The body is forwarded at once; an origin's 100-continue would only
        // reach us, never the client, which hyper already answered.
        h.remove(header::EXPECT);
        let host = self.host_header.clone().or_else(|| {
            session
                .req
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| session.req.headers.get(header::HOST).cloned())
        });
        if let Some(host) = host {
            h.insert(header::HOST, host);
        }
        headers::append_via(h, session.req.version, &self.node_name);
        headers::set_forwarded(h, session.client_addr.ip(), session.downstream_scheme);
        parts
    }

    /// Phase 8: wraps the body so that, when it ends, metrics are counted,
    /// the access log line is written and the `logging` hook runs.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &self,
        response: Response<ProxyBody>,
        session: Session,
        mut ctx: H::Ctx,
        span: Span,
        in_flight: InFlight,
        error: Option<&'static str>,
        upstream_status: Option<StatusCode>,
    ) -> Response<ProxyBody> {
        let status = response.status();
        let hooks = self.hooks.clone();
        let metrics = self.metrics.clone();
        let on_end = Box::new(move |end: BodyEnd, body_bytes: u64| {
            let _in_flight = in_flight;
            let summary = RequestSummary {
                status,
                body_bytes,
                duration: session.started.elapsed(),
                end,
                error,
                upstream_status,
            };
            let class = status_class(status);
            metrics
                .requests
                .with_label_values(&[class, end.as_str()])
                .inc();
            metrics
                .request_duration
                .with_label_values(&[class])
                .observe(summary.duration.as_secs_f64());
            metrics.response_bytes.inc_by(body_bytes);
            let _enter = span.enter();
            access_log(&session, &summary);
            hooks.logging(&session, &summary, &mut ctx);
        });
        response.map(|b| body::boxed(Observed::new(b, on_end)))
    }
}

/// Refuses requests no origin should see (RFC 9112 §3.2: an HTTP/1.1
/// request needs exactly one valid `Host`).
fn validate(req: &request::Parts) -> Result<(), ProxyError> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    match host {
        Some(h) => {
            let valid = h
                .to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .is_some_and(|a| !a.host().is_empty() && !a.as_str().contains('@'));
            if !valid {
                return Err(ProxyError::BadRequest("invalid Host header"));
            }
        }
        None if req.version == Version::HTTP_11 && req.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("missing Host header"));
        }
        None => {}
    }
    if req.method == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not supported"));
    }
    Ok(())
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
        duration_ms = summary.duration.as_secs_f64() * 1000.0,
        peer = peer.unwrap_or("-"),
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
        let twice = parts(Request::get("/").header("host", "a").header("host", "b"));
        assert!(validate(&twice).is_err());
        let bad = parts(Request::get("/").header("host", "a b"));
        assert!(validate(&bad).is_err());
        let userinfo = parts(Request::get("/").header("host", "u@a"));
        assert!(validate(&userinfo).is_err());
    }
}
