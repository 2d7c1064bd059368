//! The end of a request, exactly once: metrics, the access log line and
//! the `logging` hook, when the response body ends, or when the client
//! leaves before a response (499).

use std::sync::Arc;

use cache::CacheStatus;
use cache::store::Tier;
use http::{Method, Response, StatusCode};
use tracing::{Span, info};

use crate::body::{self, BodyEnd, ProxyBody};
use crate::hooks::{EdgeHooks, RequestSummary, Session};
use crate::metrics::{BodySource, Metrics};
use crate::observe::trace::RequestEnd;
use crate::server::idle::RequestActivity;

/// nginx's "client closed request": the client left before a response head.
const CLIENT_CLOSED: u16 = 499;

/// Finishes a request exactly once: when its response body ends, or, if no
/// response was produced, when the request is dropped.
pub(crate) struct Finisher<H: EdgeHooks> {
    pub hooks: Arc<H>,
    pub metrics: Arc<Metrics>,
    pub live: Arc<crate::observe::live_log::LiveLog>,
    pub span: Span,
    pub session: Session,
    pub ctx: H::Ctx,
    pub _activity: RequestActivity,
    pub error: Option<&'static str>,
    pub upstream_status: Option<StatusCode>,
    /// Set once a response exists; from then on the body reports the end.
    pub answered: bool,
}

impl<H: EdgeHooks> Finisher<H> {
    /// Wraps the body so that its end is reported.
    pub fn observe(self, response: Response<ProxyBody>) -> Response<ProxyBody> {
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
        let site = self.session.site;
        self.metrics.request(site, status, end, cache_status).inc();
        self.metrics.protocol(self.session.req.version).inc();
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
            .body_bytes(site, cache_status, source)
            .inc_by(body_bytes);
        if let Some(trace) = self.session.trace.take() {
            trace.finish(RequestEnd {
                client: self.session.client_addr.ip(),
                status: status.as_u16(),
                body_bytes,
                site: self.metrics.site_label(site),
                cache_status: cache_status.as_str(),
                cache_tier: self.session.cache_tier.map(|t| t.as_str()),
                peer: self.session.peer.as_ref().map(|p| p.authority().as_str()),
                upstream_status: summary.upstream_status.map(|s| s.as_u16()),
                error: summary.error,
                body_end: summary.end.as_str(),
            });
        }
        let _enter = self.span.enter();
        match crate::observe::access_log::installed() {
            Some(log) => log.record(&self.session, &summary),
            None => access_log(&self.session, &summary),
        }
        self.live.record(&self.session, &summary);
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

/// One line per request on the `access` target, for an embedder whose
/// process has no buffered access log (`observe::access_log`): text or
/// JSON by the subscriber's format, fields named the same either way.
fn access_log(session: &Session, summary: &RequestSummary) {
    let peer = session.peer.as_ref().map(|p| p.authority().as_str());
    let header = |name| {
        session
            .req
            .headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    info!(
        target: "access",
        client = %session.client_addr.ip(),
        method = %session.req.method,
        host = session.host(),
        path = session.path_and_query(),
        version = ?session.req.version,
        protocol = crate::metrics::protocol_name(session.req.version),
        status = summary.status.as_u16(),
        bytes = summary.body_bytes,
        duration_ms = %format_args!("{:.3}", summary.duration.as_secs_f64() * 1000.0),
        peer = peer.unwrap_or("-"),
        cache = session.cache_status.as_str(),
        tier = session.cache_tier.map(|t| t.as_str()),
        upstream_status = summary.upstream_status.map(|s| s.as_u16()),
        error = summary.error,
        body_end = summary.end.as_str(),
        referer = header(http::header::REFERER),
        user_agent = header(http::header::USER_AGENT),
    );
}
