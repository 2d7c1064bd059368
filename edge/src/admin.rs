//! The admin listener: `/healthz` and `/metrics` for load balancers and
//! Prometheus, `/peers` for operators (each peer's health as JSON), and the
//! purge API (`/purge`, handled by the `purge-api` crate); `/stats.json`
//! and the live `/dashboard` page that polls it; `POST /reload`; the
//! cache inspector (`/cache/inspect?url=URL`) and the live request log
//! (`/log?filter=…`, Server-Sent Events), both behind the purge token.
//! Bound to loopback by default; never expose it publicly.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::observe::live_log::{Filter, LiveLog, Next};
use crate::ops::reload::Reload;
use crate::routing::PeerView;
use crate::sites::Sites;
use crate::stats;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use purge_api::Purger;

/// The live state the admin pages read: the generation in force.
pub trait Live: Send + Sync {
    /// Sets the gauges read from live state.
    fn export_gauges(&self);
    /// What `/peers` shows: the default site's peers and their health.
    fn peers(&self) -> Vec<PeerView>;
    /// The sites in force, for `/sites`.
    fn sites(&self) -> Arc<Sites>;
    /// How long a request body may take (`server.client_body_timeout`).
    fn body_timeout(&self) -> std::time::Duration;
    /// What the cache holds for `url`, for `/cache/inspect`.
    fn inspect<'a>(&'a self, url: &'a str) -> Inspecting<'a>;
    /// The live request log, for `/log`.
    fn live_log(&self) -> Arc<LiveLog>;
}

/// The inspector's answer, in the making.
pub type Inspecting<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<serde_json::Value, crate::proxy::InspectError>>
            + Send
            + 'a,
    >,
>;

impl std::fmt::Debug for dyn Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

/// What admin handlers read.
#[derive(Debug)]
pub struct AdminState {
    registry: Registry,
    purger: Arc<Purger>,
    live: Arc<dyn Live>,
    reloader: Arc<dyn Reload>,
    node: String,
    started: std::time::Instant,
    /// Set once shutdown begins, so `/healthz` tells load balancers to stop
    /// sending new traffic.
    pub draining: AtomicBool,
}

impl AdminState {
    pub fn new(
        registry: Registry,
        purger: Arc<Purger>,
        live: Arc<dyn Live>,
        reloader: Arc<dyn Reload>,
        node: String,
    ) -> Self {
        AdminState {
            registry,
            purger,
            live,
            reloader,
            node,
            // Uptime for /healthz: monotonic, not cache semantics.
            started: std::time::Instant::now(),
            draining: AtomicBool::new(false),
        }
    }
}

/// Accepts admin connections until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    if req.uri().path() == "/log" {
                        return Ok::<_, Infallible>(live_log(&state, &req));
                    }
                    let resp = if req.uri().path().starts_with("/purge") {
                        purge(&state, req).await
                    } else if req.uri().path() == "/cache/inspect" {
                        inspect(&state, &req).await
                    } else if req.uri().path() == "/reload" {
                        reload(&state, &req).await
                    } else {
                        handle(&state, &req)
                    };
                    Ok(resp.map(BodyExt::boxed))
                }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = result {
                debug!(error = %err, "admin connection ended with error");
            }
        });
    }
}

/// The live page: HTML, CSS and JS in one file, no external assets.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Largest purge request body read.
const MAX_PURGE_BODY: usize = 1 << 20;

/// `/purge…`: read the body (bounded), hand it to the purge API.
async fn purge(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body_timeout = state.live.body_timeout();
    let read = tokio::time::timeout(body_timeout, Limited::new(body, MAX_PURGE_BODY).collect());
    let Ok(read) = read.await else {
        return purge_api::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("purge request body not received within {:?}", body_timeout),
        )
        .to_response()
        .map(Full::new);
    };
    let body = match read {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            let too_large = err.downcast_ref::<LengthLimitError>().is_some();
            let error = if too_large {
                purge_api::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("purge request body over {MAX_PURGE_BODY} bytes"),
                )
            } else {
                purge_api::ApiError::bad("purge request body incomplete")
            };
            return error.to_response().map(Full::new);
        }
    };
    state
        .purger
        .handle(&parts.method, parts.uri.path(), &parts.headers, body)
        .await
        .map(Full::new)
}

/// An admin response's body: whole, or the `/log` stream.
type AdminBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A keep-alive comment this often: a watcher that went away is found
/// (and stops costing the node anything) by the write that fails.
const LOG_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /log?filter=TERMS`: access records as Server-Sent Events, one
/// `data:` JSON object per request that matches (`observe/live_log.rs`),
/// behind the purge API's token check.
fn live_log(state: &AdminState, req: &Request<Incoming>) -> Response<AdminBody> {
    let whole = |resp: Response<Full<Bytes>>| resp.map(BodyExt::boxed);
    if req.method() != Method::GET {
        return whole(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /log?filter=TERMS\n",
        ));
    }
    if let Err(refused) = state.purger.authorize(req.headers()) {
        return whole(refused.to_response().map(Full::new));
    }
    let mut terms = Vec::new();
    for pair in req.uri().query().unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix("filter=") {
            match percent_decode(value) {
                Some(v) => terms.push(v.replace('+', " ")),
                None => {
                    return whole(
                        purge_api::ApiError::bad("filter is not UTF-8")
                            .to_response()
                            .map(Full::new),
                    );
                }
            }
        }
    }
    let filter = match Filter::parse(&terms.join(",")) {
        Ok(filter) => filter,
        Err(why) => {
            return whole(
                purge_api::ApiError::bad(format!("bad filter: {why}"))
                    .to_response()
                    .map(Full::new),
            );
        }
    };
    let watcher = state.live.live_log().watch(filter).feed();
    let opening = Bytes::from_static(b": edge live log\n\n");
    let events = futures_util::stream::unfold(
        (Some(watcher), Some(opening)),
        |(watcher, first)| async move {
            if let Some(first) = first {
                return Some((Ok(hyper::body::Frame::data(first)), (watcher, None)));
            }
            let mut watcher = watcher?;
            let event = match watcher.next_within(LOG_KEEPALIVE).await {
                None => Bytes::from_static(b": keep-alive\n\n"),
                Some(Next::Record(record)) => {
                    let json = serde_json::to_string(&*record).unwrap_or_default();
                    Bytes::from(format!("data: {json}\n\n"))
                }
                Some(Next::Dropped(behind)) => {
                    // Said once, then the stream ends (the watcher drops).
                    let why = format!(": dropped: {behind} records behind\n\n");
                    return Some((Ok(hyper::body::Frame::data(Bytes::from(why))), (None, None)));
                }
                Some(Next::Closed) => return None,
            };
            Some((Ok(hyper::body::Frame::data(event)), (Some(watcher), None)))
        },
    );
    let mut resp = Response::new(http_body_util::StreamBody::new(events).boxed());
    live_view(resp.headers_mut(), "text/event-stream");
    resp
}

/// A live view's headers: its type, and never cached.
fn live_view(headers: &mut http::HeaderMap, content_type: &'static str) {
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
}

/// `GET /cache/inspect?url=URL`: what the cache holds for the URL (see
/// `proxy/inspect.rs`), behind the purge API's token check.
async fn inspect(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /cache/inspect?url=URL\n",
        );
    }
    if let Err(refused) = state.purger.authorize(req.headers()) {
        return refused.to_response().map(Full::new);
    }
    let Some(url) = req.uri().query().and_then(|q| query_param(q, "url")) else {
        return purge_api::ApiError::bad(
            "name the object: /cache/inspect?url=URL (percent-encoded)",
        )
        .to_response()
        .map(Full::new);
    };
    match state.live.inspect(&url).await {
        Ok(report) => json(&report),
        Err(err) => {
            if matches!(err, crate::proxy::InspectError::Store(_)) {
                warn!(error = %err, "cache inspection failed");
            }
            purge_api::ApiError::new(err.status(), err.to_string())
                .to_response()
                .map(Full::new)
        }
    }
}

/// The first value of `name` in a query string, percent-decoded; `None`
/// when absent or not UTF-8. A `+` stays a `+`: it is a literal in URLs,
/// which have no spaces to encode as forms do.
fn query_param(query: &str, name: &str) -> Option<String> {
    let raw = query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })?;
    percent_decode(raw)
}

/// `raw` percent-decoded; `None` when the result is not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `POST /reload`: reads the configuration again and applies it; 200
/// with what changed, or 400 with why nothing did. Guarded by the purge
/// token when one is set.
async fn reload(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST /reload\n");
    }
    match state.purger.auth(req.headers()) {
        purge_api::Auth::Granted | purge_api::Auth::Disabled => {}
        purge_api::Auth::Missing | purge_api::Auth::Wrong => {
            return purge_api::ApiError::new(
                StatusCode::UNAUTHORIZED,
                "reload needs the purge token (Authorization: Bearer …)",
            )
            .to_response()
            .map(Full::new);
        }
    }
    let reloader = state.reloader.clone();
    // Reading files and parsing certificates blocks: off the workers.
    let outcome = tokio::task::spawn_blocking(move || reloader.reload()).await;
    match outcome {
        Ok(Ok(reloaded)) => json(&reloaded),
        Ok(Err(err)) => {
            let body = serde_json::json!({ "error": err.to_string() });
            let mut resp = json(&body);
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            resp
        }
        Err(err) => {
            warn!(error = %err, "the reload task failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reload task failed\n",
            )
        }
    }
}

fn handle(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" if state.draining.load(Ordering::Relaxed) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/peers" => json(&state.live.peers()),
        "/sites" => json(&serde_json::json!({ "sites": state.live.sites().describe() })),
        "/stats.json" => {
            state.live.export_gauges();
            json(&stats::snapshot(
                &state.registry,
                &state.node,
                state.started,
            ))
        }
        "/dashboard" => {
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = Full::new(Bytes::from_static(DASHBOARD.as_bytes()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        "/metrics" => {
            state.live.export_gauges();
            let mut out = String::new();
            match TextEncoder::new().encode_utf8(&state.registry.gather(), &mut out) {
                Ok(()) => {
                    let mut resp = text(StatusCode::OK, "");
                    *resp.body_mut() = Full::new(Bytes::from(out));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    resp
                }
                Err(err) => {
                    warn!(error = %err, "cannot encode metrics");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
                }
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /metrics, /stats.json, /dashboard, /peers, /sites, /purge, /cache/inspect?url=URL, /log or POST /reload\n",
        ),
    }
}

/// A JSON answer (never cached: it is a live view).
fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = Full::new(Bytes::from(body));
            live_view(resp.headers_mut(), "application/json");
            resp
        }
        Err(err) => {
            warn!(error = %err, "cannot encode a JSON answer");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the answer\n",
            )
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let q = "x=1&url=http%3A%2F%2Fexample.com%2Fa%3Fb%3D1%26c&y";
        assert_eq!(
            query_param(q, "url").as_deref(),
            Some("http://example.com/a?b=1&c")
        );
        assert_eq!(query_param("url=a+b%2", "url").as_deref(), Some("a+b%2"));
        assert_eq!(query_param("y", "y").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "url"), None);
        assert_eq!(query_param("url=%ff", "url"), None);
    }
}
