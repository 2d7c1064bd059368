//! One request's life, phase by phase (ARCHITECTURE.md "One request"):
//! validate (`validate.rs`), `request_filter`, `cache_key`, then the cache
//! phases (`cached.rs`) for GET and HEAD with a key, or a pass through
//! `forward.rs` for everything else (a protocol switch, `upgrade.rs`, is a
//! pass whose `101` opens a tunnel, `tunnel.rs`; so is an HTTP/2 client's
//! WebSocket, `h2_websocket.rs`, translated to HTTP/1.1 upstream);
//! `response_filter`, and the end of the request (`finish.rs`).
//! `inspect.rs` (used by `mod.rs`, using `shared.rs` and `layer.rs`)
//! answers the admin cache inspector with
//! the same site choice and key.
//!
//! Files point one way, top to bottom: `mod.rs` → `cached.rs` →
//! `revalidate.rs` / `fill.rs` → `sliced_miss.rs` → `join.rs` →
//! `stream.rs` → `serve.rs` → `slices.rs` → `stored.rs` → `shared.rs` →
//! `forward.rs` / `layer.rs` → `respond.rs` → `bodies.rs`.

mod bodies;
mod cached;
mod encode;
mod fill;
mod finish;
mod forward;
mod h2_websocket;
mod inspect;
mod join;
mod layer;
mod respond;
mod revalidate;
mod serve;
mod shared;
mod sliced_miss;
mod slices;
mod stored;
mod stream;
mod tunnel;
mod upgrade;
mod validate;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use cache::store::Store;
use cache::{CacheStatus, Clock};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version, response};
use hyper::upgrade::OnUpgrade;
use purge_api::Purger;
use tracing::{Instrument, info, warn};

use crate::body::{self, ProxyBody};
use crate::config::{CacheMode, Config, IpNet, ShieldPeer};
use crate::error::{ErrorSource, ProxyError};
use crate::headers;
use crate::hooks::{EdgeHooks, Session};
use crate::metrics::Metrics;
use crate::observe::trace::{RequestStart, TraceCounts, Tracing};
use crate::routing::Routing;
use crate::server::idle::ConnActivity;
use crate::server::limits::ConnSlot;
use crate::server::tunnels::Tunnels;
use crate::sites::{RedirectTo, Sites};
use crate::transform::{Compression, Transformer};
use crate::upstream::Upstream;
use finish::Finisher;
use forward::Forwarder;
pub use inspect::InspectError;
use layer::CacheLayer;
use respond::{BodyOf, Detail, Fwd, Mark};
use shared::Shared;

/// A rule's redirect: its status, `Location`, and no body.
fn redirect_head(redirect: &RedirectTo, path_and_query: &str) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = redirect.status;
    if let Ok(location) = HeaderValue::from_str(&redirect.location(path_and_query)) {
        parts.headers.insert(header::LOCATION, location);
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    parts
}

/// A protocol switch the config allows, and the client's side of it.
struct Switch {
    /// The config's names of the protocols asked for.
    protocols: Vec<String>,
    /// The client's `Upgrade`, narrowed to them.
    upgrade: HeaderValue,
    /// The client's socket once our `101` is written.
    client: OnUpgrade,
}

/// Whether a request is a gRPC call (`application/grpc`, `+proto` and the
/// like; gRPC-Web is a browser protocol over plain HTTP and not meant).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start();
            v.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
                && matches!(v.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// What the server tells the proxy about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client_addr: SocketAddr,
    pub scheme: &'static str,
    /// Requests in flight keep the connection from being closed as idle.
    pub activity: Arc<ConnActivity>,
    /// The connection's place under `max_connections`, which a tunnel it
    /// becomes keeps.
    pub slot: Arc<ConnSlot>,
    /// The server's tunnels, which a tunnel joins.
    pub tunnels: Arc<Tunnels>,
}

/// The request pipeline, shared by every connection: the generation of
/// the configuration in force, swapped whole by a reload. A request keeps
/// the generation it started with to its end (and so does background work
/// it starts); the next request sees the new one.
#[derive(Debug)]
pub struct Proxy<H> {
    current: ArcSwap<Pipeline<H>>,
    /// The address actually bound, for the node to recognise itself among
    /// the shields.
    listen: SocketAddr,
    /// The shields the cluster reports live (`discovery.rs`), beside the
    /// static ones on every site's ring; kept here so that a reload's new
    /// generation starts with them.
    discovered: ArcSwap<Vec<ShieldPeer>>,
}

/// The pipeline as one configuration built it.
#[derive(Debug)]
pub struct Pipeline<H> {
    shared: Arc<Shared<H>>,
    key_rules: Arc<cache::KeyRules>,
    /// Networks that may send `PURGE` without the token.
    purge_from: Vec<IpNet>,
    strip_surrogate_key: bool,
    sites: Arc<Sites>,
    /// Every site's routing, the default site's (or the first) first.
    routings: Vec<Arc<Routing>>,
    /// `server.upgrade_protocols`, lowercase.
    upgrade_protocols: Vec<String>,
    tunnel_idle_timeout: std::time::Duration,
}

/// This generation's tracing: the one in force when `[tracing]` is
/// unchanged (its queue and export task go on), else a new one (the old
/// one's task ends once the requests still holding it finish).
fn tracing_for(
    config: &Config,
    running: Option<Arc<Tracing>>,
    metrics: &Metrics,
) -> Option<Arc<Tracing>> {
    if let Some(running) = running
        && *running.config() == config.tracing
    {
        return Some(running);
    }
    let counts = TraceCounts {
        exported: metrics.trace_spans_exported.clone(),
        dropped: metrics.trace_spans_dropped.clone(),
    };
    Tracing::start(&config.tracing, &config.node_name, counts).unwrap_or_else(|err| {
        warn!(error = %err, "serving without traces");
        None
    })
}

fn gauge<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// What the proxy is built from, besides the config.
#[derive(Debug)]
pub struct Parts<H> {
    pub hooks: H,
    pub metrics: Metrics,
    pub store: Store,
    pub purger: Arc<Purger>,
    pub upstream: Upstream,
    /// The address actually bound, for the node to recognise itself among
    /// the shields.
    pub listen: SocketAddr,
    /// "Now" for every cache decision (the system clock but in tests).
    pub clock: Clock,
    /// The sites by Host, and their rules.
    pub sites: Arc<Sites>,
}

/// What outlives a reload: the hooks, the cache and its fills, the purge
/// rules, the connections to peers (unless their settings change), the
/// metrics and the clock.
struct Lasting<H> {
    hooks: Arc<H>,
    metrics: Metrics,
    upstream: Arc<Upstream>,
    cache: CacheFrom,
    clock: Clock,
    live: Arc<crate::observe::live_log::LiveLog>,
    /// The tracing in force, kept when `[tracing]` did not change.
    tracing: Option<Arc<Tracing>>,
}

/// The cache layer of a first generation, or the one a reload carries over.
enum CacheFrom {
    Opened { store: Store, purger: Arc<Purger> },
    Before(Arc<CacheLayer>),
}

impl<H: EdgeHooks> Pipeline<H> {
    /// The pipeline for `config`, with what lasts from `lasting`; peers
    /// that were in `previous` routings keep their health.
    fn build(
        config: &Config,
        sites: Arc<Sites>,
        lasting: Lasting<H>,
        listen: SocketAddr,
        previous: &[Arc<Routing>],
        discovered: &[ShieldPeer],
    ) -> Self {
        let routings: Vec<Arc<Routing>> = sites
            .all()
            .iter()
            .map(|site| {
                Arc::new(Routing::keeping(
                    config,
                    &site.origins,
                    &site.shields,
                    listen,
                    previous,
                    discovered,
                ))
            })
            .collect();
        let fallback_routing = routings.first().cloned().unwrap_or_else(|| {
            Arc::new(Routing::keeping(
                config,
                &config.origins,
                &config.shields,
                listen,
                previous,
                discovered,
            ))
        });
        let site_names: Vec<String> = sites.all().iter().map(|s| s.name.clone()).collect();
        let tracing = tracing_for(config, lasting.tracing, &lasting.metrics);
        let fwd = Forwarder {
            hooks: lasting.hooks,
            routings: routings.clone(),
            fallback_routing,
            upstream: lasting.upstream,
            metrics: Arc::new(lasting.metrics.for_sites(&site_names)),
            via: headers::Via::new(&config.node_name),
            host_header: config
                .upstream
                .host_header
                .as_deref()
                .and_then(|h| HeaderValue::from_str(h).ok()),
            client_body_timeout: config.server.client_body_timeout,
            clock: lasting.clock.clone(),
        };
        let cache = match lasting.cache {
            CacheFrom::Before(before) => before.reconfigured(&config.cache),
            CacheFrom::Opened { store, purger } => CacheLayer::new(
                store,
                &config.cache,
                purger,
                lasting.clock,
                config.node_name.clone(),
            ),
        };
        Pipeline {
            shared: Arc::new(Shared {
                transform: Transformer {
                    settings: Arc::new(Compression::from_config(&config.compression)),
                    metrics: fwd.metrics.compression.clone(),
                },
                fwd,
                cache: Arc::new(cache),
                live: lasting.live,
                tracing,
            }),
            key_rules: Arc::new(config.cache.key_rules()),
            purge_from: config
                .purge
                .allow_from
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            strip_surrogate_key: config.purge.strip_surrogate_key,
            sites,
            routings,
            upgrade_protocols: config
                .server
                .upgrade_protocols
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            tunnel_idle_timeout: config.server.tunnel_idle_timeout,
        }
    }

    fn hooks(&self) -> &Arc<H> {
        &self.shared.fwd.hooks
    }

    fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.fwd.metrics
    }
}

impl<H: EdgeHooks> Proxy<H> {
    pub fn new(config: &Config, parts: Parts<H>) -> Self {
        let Parts {
            hooks,
            metrics,
            store,
            purger,
            upstream,
            listen,
            clock,
            sites,
        } = parts;
        let live = Arc::new(crate::observe::live_log::LiveLog::new(
            metrics.live_log_watchers.clone(),
        ));
        let lasting = Lasting {
            hooks: Arc::new(hooks),
            metrics,
            upstream: Arc::new(upstream),
            live,
            cache: CacheFrom::Opened { store, purger },
            clock,
            tracing: None,
        };
        let first = Pipeline::build(config, sites, lasting, listen, &[], &[]);
        Proxy {
            current: ArcSwap::from_pointee(first),
            listen,
            discovered: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// The live request log (`/log`), the same for every generation.
    pub fn live_log(&self) -> Arc<crate::observe::live_log::LiveLog> {
        self.pipeline().shared.live.clone()
    }

    /// The pipeline in force now.
    pub fn pipeline(&self) -> Arc<Pipeline<H>> {
        self.current.load_full()
    }

    /// A pipeline for `config` and its compiled `sites`, built beside the
    /// one in force (which keeps serving): the cache, fills, purges and
    /// hooks carry over, and so does the health of every peer that stays.
    /// `upstream` replaces the connections to peers when their settings
    /// changed.
    pub fn prepare(
        &self,
        config: &Config,
        sites: Arc<Sites>,
        upstream: Option<Upstream>,
    ) -> Arc<Pipeline<H>> {
        let now = self.pipeline();
        let fwd = &now.shared.fwd;
        let lasting = Lasting {
            hooks: fwd.hooks.clone(),
            metrics: Metrics::clone(&fwd.metrics),
            upstream: upstream.map_or_else(|| fwd.upstream.clone(), Arc::new),
            cache: CacheFrom::Before(now.shared.cache.clone()),
            clock: fwd.clock.clone(),
            live: now.shared.live.clone(),
            tracing: now.shared.tracing.clone(),
        };
        Arc::new(Pipeline::build(
            config,
            sites,
            lasting,
            self.listen,
            &now.routings,
            &self.discovered.load(),
        ))
    }

    /// Puts `next` in force for the requests that start from now on.
    pub fn install(&self, next: Arc<Pipeline<H>>) {
        self.current.store(next.clone());
        // The cluster's shields may have changed since `next` was built:
        // whichever of this and `set_discovered` runs last applies the
        // newest list to the generation in force.
        next.set_discovered(&self.discovered.load());
    }

    /// The cluster's live shields changed: every site's ring is rebuilt
    /// over its static shields and `shields` (those staying keep their
    /// health and their keys). Returns whether any ring changed.
    pub fn set_discovered(&self, shields: Vec<ShieldPeer>) -> bool {
        self.discovered.store(Arc::new(shields));
        self.pipeline().set_discovered(&self.discovered.load())
    }

    /// The sites by Host, for the admin listener.
    pub fn sites(&self) -> Arc<Sites> {
        self.pipeline().sites.clone()
    }

    /// Sets the gauges that are read from live state (at each scrape).
    pub fn export_gauges(&self) {
        let now = self.pipeline();
        let m = now.metrics();
        let fwd = &now.shared.fwd;
        for routing in &fwd.routings {
            routing.export(m);
        }
        m.upstream_reuse_ratio.set(fwd.upstream.reuse_ratio());
        let cache = &now.shared.cache;
        let fills = &cache.fills;
        m.fills_in_flight.set(gauge(fills.in_flight()));
        m.fill_window_bytes.set(gauge(fills.window_bytes()));
        let store = &cache.store;
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
        for site in now.sites.all() {
            let limiters = site.rate_limiters();
            let label = m.site_label(site.index);
            m.rate_limit_keys
                .with_label_values(&[label])
                .set(gauge(limiters.iter().map(|l| l.keys()).sum::<usize>()));
            let overflowed: u64 = limiters.iter().map(|l| l.take_overflowed()).sum();
            m.rate_limit_overflow
                .with_label_values(&[label])
                .inc_by(overflowed);
        }
        m.purge_rules.set(gauge(cache.purger.rules().len()));
        m.purge_backlog.set(gauge(cache.purger.backlog_now()));
        cache.purger.counts.export(|kind, delta| {
            m.purges.with_label_values(&[kind]).inc_by(delta);
        });
    }

    /// The purge machinery (the same in every generation).
    pub fn purger(&self) -> Arc<Purger> {
        self.pipeline().shared.cache.purger.clone()
    }

    /// Sends the spans still queued (bounded), then flushes the cache's
    /// pending disk writes.
    pub async fn close(&self) {
        if let Some(tracing) = &self.pipeline().shared.tracing {
            tracing.close(std::time::Duration::from_secs(2)).await;
        }
        if let Err(err) = self.pipeline().shared.cache.store.close().await {
            warn!(error = %err, "closing the cache failed");
        }
    }

    /// Serves one request on the generation in force when it arrived.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<crate::body::ClientBody>,
        conn: ConnInfo,
    ) -> Result<Response<ProxyBody>, Infallible> {
        self.pipeline().handle(req, conn).await
    }
}

impl<H: EdgeHooks> Pipeline<H> {
    /// Rebuilds every routing's shield ring with `discovered`.
    fn set_discovered(&self, discovered: &[ShieldPeer]) -> bool {
        let mut changed = false;
        for routing in &self.routings {
            changed |= routing.set_discovered(discovered);
        }
        let fallback = &self.shared.fwd.fallback_routing;
        if !self.routings.iter().any(|r| Arc::ptr_eq(r, fallback)) {
            changed |= fallback.set_discovered(discovered);
        }
        changed
    }

    /// Every site's routing, the default site's (or the first) first: for
    /// the health probes, DNS and `/peers`.
    pub fn routings(&self) -> &[Arc<Routing>] {
        &self.routings
    }

    /// The sites by Host.
    pub fn sites(&self) -> &Arc<Sites> {
        &self.sites
    }

    /// Where misses go when no site says otherwise, for `/peers`.
    pub fn routing(&self) -> &Arc<Routing> {
        &self.shared.fwd.fallback_routing
    }

    /// How long a client may take to send a request body.
    pub fn client_body_timeout(&self) -> std::time::Duration {
        self.shared.fwd.client_body_timeout
    }

    /// The pooled client to peers.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.shared.fwd.upstream
    }

    /// Serves one request. Never fails: errors become responses here.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<crate::body::ClientBody>,
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
            hooks: self.hooks().clone(),
            metrics: self.metrics().clone(),
            live: self.shared.live.clone(),
            span: span.clone(),
            session: self.new_session(parts, conn.client_addr, conn.scheme),
            ctx: self.hooks().new_ctx(),
            _activity: conn.activity.request_started(),
            error: None,
            upstream_status: None,
            answered: false,
        };
        if let Some(tracing) = &self.shared.tracing {
            let session = &pending.session;
            let mut trace = tracing.request(&session.req.headers, session.req.method.as_str());
            if trace.is_recording() {
                trace.describe(RequestStart {
                    method: session.req.method.as_str(),
                    path: session.req.uri.path(),
                    host: session.host(),
                    scheme: session.downstream_scheme,
                    protocol: headers::protocol_version(session.req.version),
                });
            }
            pending.session.trace = Some(Box::new(trace));
        }
        let outcome = self
            .process(&mut pending.session, body, &mut pending.ctx, &conn, &span)
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
                        // Refusals can come in floods: the access log and
                        // the counter have them.
                        _ if matches!(err, ProxyError::Refused(_)) => {
                            tracing::debug!(error = %err, "access refused");
                        }
                        ErrorSource::Downstream => info!(error = %err, "refused request"),
                        _ => warn!(error = %err, "proxy error"),
                    }
                }
                pending.error = Some(err.as_str());
                if let ProxyError::Refused(refusal) = &err {
                    self.metrics()
                        .refused(pending.session.site, refusal.as_str())
                        .inc();
                }
                let (mut parts, body) = err.to_response().into_parts();
                if err.source_side() != ErrorSource::Downstream
                    || pending.session.cache_key.is_some()
                {
                    // Say what the cache did, as for every other response.
                    let status = pending.session.cache_status;
                    let fwd = if status == CacheStatus::Pass {
                        Fwd::Bypass
                    } else {
                        Fwd::UriMiss
                    };
                    let mark =
                        Mark::forwarded(status, fwd).with_detail(Detail::Error(err.as_str()));
                    respond::write_mark(&mut parts.headers, &self.shared.cache.node, &mark);
                    self.shared
                        .fwd
                        .via
                        .append(&mut parts.headers, Version::HTTP_11);
                }
                // Every response gets the site rule's header edits.
                (pending.session.policy().response_headers).apply(&mut parts.headers);
                self.hooks()
                    .response_filter(&pending.session, &mut parts, &mut pending.ctx)
                    .instrument(span)
                    .await;
                Response::from_parts(parts, body)
            }
        };
        pending.answered = true;
        let mut response = response;
        if response.status().as_u16() >= 400
            && validate::request_has_body(&pending.session.req)
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
        self.metrics()
            .first_byte(pending.session.cache_status)
            .observe(pending.session.started.elapsed().as_secs_f64());
        Ok(pending.observe(response))
    }

    /// The session of a request with head `req`, from `client_addr` over
    /// `scheme`, before any phase ran (the inspector builds one for a URL
    /// the same way, so its key is the one a request would get).
    fn new_session(
        &self,
        req: http::request::Parts,
        client_addr: SocketAddr,
        scheme: &'static str,
    ) -> Session {
        Session {
            host: crate::hooks::Host::of(&req),
            req,
            client_addr,
            downstream_scheme: scheme,
            // A duration for logs and metrics, not cache semantics.
            started: Instant::now(),
            cache_key: None,
            peer: None,
            cache_status: CacheStatus::Pass,
            cache_tier: None,
            key_rules: self.key_rules.clone(),
            sites: self.sites.clone(),
            // Set by `choose_site` once the Host is checked.
            site: 0,
            rule: None,
            origin_fetched: Default::default(),
            jwt_claims: None,
            trace: None,
        }
    }

    /// The site by Host and its rule for the request (`Session::site`,
    /// `Session::rule`), or 421 when no site answers for the host.
    fn choose_site(&self, session: &mut Session) -> Result<&crate::sites::Policy, ProxyError> {
        let Some(site) = self.sites.site_for(session.host()) else {
            return Err(ProxyError::Misdirected(session.host().to_owned()));
        };
        session.site = site.index;
        let policy = site.policy(&session.req.method, session.req.uri.path());
        session.rule = policy.rule;
        Ok(policy)
    }

    /// What the cache holds for `url`, as the inspector's JSON
    /// (`inspect.rs`): keyed as a GET for it from a client would be.
    pub async fn inspect(&self, url: &str) -> Result<serde_json::Value, InspectError> {
        let (req, scheme) = inspect::request_for(url)?;
        // The inspector is not a client: no address of its own.
        let nobody = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut session = self.new_session(req, nobody, scheme);
        let bypass = match self.choose_site(&mut session) {
            Ok(policy) => policy.cache == CacheMode::Bypass,
            Err(_) => return Err(InspectError::NoSite(session.host().to_owned())),
        };
        let key = {
            // Not held across an await: a hook's context need not be Send.
            let mut ctx = self.hooks().new_ctx();
            self.hooks().cache_key(&session, &mut ctx)
        };
        inspect::report(&self.shared, &session, key, bypass).await
    }

    /// Phases 1–7; returns the response and the upstream status if asked.
    async fn process(
        self: &Arc<Self>,
        session: &mut Session,
        body: crate::body::ClientBody,
        ctx: &mut H::Ctx,
        conn: &ConnInfo,
        span: &tracing::Span,
    ) -> Result<(Response<ProxyBody>, Option<StatusCode>), ProxyError> {
        validate::validate(&session.req)?;
        // The site by Host, and its rule: before the hooks, which may
        // override what the rule says.
        let policy = self.choose_site(session)?;
        let access = &policy.access;
        if !access.is_empty() {
            // The address limits, IP rules, logs and X-Forwarded-For use.
            let client = access.client(session.client_addr.ip(), &session.req.headers);
            session.client_addr.set_ip(client);
            session.jwt_claims = access
                .check(
                    client,
                    session.path_and_query(),
                    &session.req.headers,
                    &self.shared.fwd.clock,
                )
                .map_err(ProxyError::Refused)?;
            if let (Some(jwt), Some(_)) = (&access.jwt, &session.jwt_claims)
                && policy.cache == CacheMode::Shared
            {
                // The response is for everyone the token check lets in:
                // the origin must not tailor it to the token (and RFC 9111
                // §3.5 would keep a response to `Authorization` out).
                session.req.headers.remove(&jwt.header);
            }
        }

        let early = self.hooks().request_filter(session, ctx).await;
        session.refresh_host();
        if let Some(early) = early {
            return Ok((early.map(body::full), None));
        }
        if session.req.method.as_str() == "PURGE" {
            return Ok((
                Box::pin(self.purge_method(session)).await.map(body::full),
                None,
            ));
        }

        if let Some(redirect) = &session.policy().redirect {
            let mut parts = redirect_head(redirect, session.path_and_query());
            self.finish_head(session, &mut parts, ctx).await;
            return Ok((Response::from_parts(parts, body::empty()), None));
        }

        match h2_websocket::ask(&session.req, &self.upgrade_protocols) {
            h2_websocket::Ask::Other => {}
            h2_websocket::Ask::NotAllowed => {
                self.count_upgrade(upgrade::OTHER, "not_allowed");
                return Err(ProxyError::BadRequest(
                    "extended CONNECT to a protocol not allowed",
                ));
            }
            h2_websocket::Ask::WebSocket => {
                // hyper gives every CONNECT one; without it no 200 could
                // become a tunnel, and a CONNECT must not go on as such.
                let Some(client) = session.req.extensions.remove::<OnUpgrade>() else {
                    return Err(ProxyError::BadRequest("CONNECT is not supported"));
                };
                return Box::pin(self.connect_websocket(session, ctx, conn, span, client)).await;
            }
        }
        match upgrade::ask(&session.req, &self.upgrade_protocols) {
            upgrade::Ask::Plain => {}
            upgrade::Ask::NotAllowed => {
                self.count_upgrade(upgrade::OTHER, "not_allowed");
            }
            upgrade::Ask::Allowed { protocols, upgrade } => {
                // Absent only on a connection served without upgrades.
                if let Some(client) = session.req.extensions.remove::<OnUpgrade>() {
                    let ask = Switch {
                        protocols,
                        upgrade,
                        client,
                    };
                    return Box::pin(self.switch(session, body, ctx, conn, span, ask)).await;
                }
            }
        }

        session.cache_key = self.hooks().cache_key(session, ctx);
        let cacheable_method = matches!(session.req.method, Method::GET | Method::HEAD);
        // A gRPC call is never a cache lookup, whatever its method: its
        // answer is in trailers, which the cache does not store.
        // A JWT-authenticated request passes unless its rule shares it:
        // the answer may be this user's own.
        let bypass = session.policy().cache == CacheMode::Bypass
            || is_grpc(&session.req.headers)
            || (session.jwt_claims.is_some() && session.policy().cache != CacheMode::Shared);
        let (mut parts, body, upstream_status) = match session.cache_key {
            Some(key) if cacheable_method && !bypass => {
                let served = cached::serve_cacheable(&self.shared, session, key, body, ctx).await?;
                let mut parts = served.head;
                let body = encode::streamed(
                    &self.shared,
                    session,
                    &mut parts,
                    served.body,
                    served.body_of,
                );
                (parts, body, served.upstream_status)
            }
            _ => {
                let body = self.shared.fwd.request_body(body);
                // Boxed: the miss and pass machinery would otherwise sit
                // inline in every request's future, hits included, and be
                // copied with it.
                let fetched = Box::pin(self.shared.fwd.forward(session, body, ctx, &[])).await?;
                let status = fetched.parts.status;
                self.shared.cache.invalidate_after(session, &fetched.parts);
                let mut parts = fetched.parts;
                let mark = Mark::forwarded(CacheStatus::Pass, Fwd::Bypass);
                respond::write_mark(&mut parts.headers, &self.shared.cache.node, &mark);
                let body = body::boxed(fetched.body);
                let body = encode::streamed(&self.shared, session, &mut parts, body, BodyOf::Other);
                (parts, body, Some(status))
            }
        };
        self.finish_head(session, &mut parts, ctx).await;
        Ok((Response::from_parts(parts, body), upstream_status))
    }

    /// A request asking for an allowed protocol switch: a pass with the
    /// `Upgrade` kept; on the origin's `101` the client gets it too and a
    /// tunnel copies the bytes after it; any other answer is relayed as is.
    async fn switch(
        &self,
        session: &mut Session,
        body: crate::body::ClientBody,
        ctx: &mut H::Ctx,
        conn: &ConnInfo,
        span: &tracing::Span,
        ask: Switch,
    ) -> Result<(Response<ProxyBody>, Option<StatusCode>), ProxyError> {
        let Switch {
            protocols,
            upgrade,
            client,
        } = ask;
        let label = protocols.first().map_or(upgrade::OTHER, String::as_str);
        let body = self.shared.fwd.request_body(body);
        let fields = upgrade::upstream_fields(&upgrade);
        let fetched = match self.shared.fwd.forward(session, body, ctx, &fields).await {
            Ok(fetched) => fetched,
            Err(err) => {
                self.count_upgrade(label, "failed");
                return Err(err);
            }
        };
        let mut parts = fetched.parts;
        let status = parts.status;
        let origin_body = body::boxed(fetched.body);
        let answer = upgrade::answer(&protocols, status, parts.headers.get(header::UPGRADE));
        let origin = parts.extensions.remove::<OnUpgrade>();
        let body = match (answer, origin) {
            (upgrade::Answer::Response, _) => {
                self.count_upgrade(label, "declined");
                origin_body
            }
            (upgrade::Answer::Switched(protocol), Some(origin)) => {
                self.count_upgrade(&protocol, "tunnel");
                self.open_tunnel(protocol, client, origin, origin_body, conn, span);
                body::empty()
            }
            (upgrade::Answer::Switched(_) | upgrade::Answer::Bogus, _) => {
                self.count_upgrade(label, "failed");
                return Err(ProxyError::Upstream {
                    peer: session
                        .peer
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string),
                    source: format!(
                        "101 to a protocol not asked for: {:?}",
                        parts.headers.get(header::UPGRADE)
                    )
                    .into(),
                });
            }
        };
        let mark = Mark::forwarded(CacheStatus::Pass, Fwd::Bypass);
        respond::write_mark(&mut parts.headers, &self.shared.cache.node, &mark);
        self.finish_head(session, &mut parts, ctx).await;
        Ok((Response::from_parts(parts, body), Some(status)))
    }

    /// An HTTP/2 client's WebSocket (RFC 8441): the CONNECT goes to the
    /// peer an HTTP/1.1 upgrade would go to, as the `GET` handshake of RFC
    /// 6455 with a key of ours; the origin's `101`, its accept checked,
    /// becomes the client's `200` and a tunnel between the HTTP/2 stream
    /// and the origin's socket; any other answer is the client's.
    async fn connect_websocket(
        &self,
        session: &mut Session,
        ctx: &mut H::Ctx,
        conn: &ConnInfo,
        span: &tracing::Span,
        client: OnUpgrade,
    ) -> Result<(Response<ProxyBody>, Option<StatusCode>), ProxyError> {
        let label = h2_websocket::WEBSOCKET;
        let Some(key) = h2_websocket::new_key() else {
            self.count_upgrade(label, "failed");
            return Err(ProxyError::Internal(
                "no random bytes for a WebSocket key".into(),
            ));
        };
        let fields = h2_websocket::upstream_fields(&key);
        // hyper gives a CONNECT no body: its DATA frames are the tunnel's.
        let forwarded = self
            .shared
            .fwd
            .forward_as(session, Method::GET, body::empty(), ctx, &fields)
            .await;
        let fetched = match forwarded {
            Ok(fetched) => fetched,
            Err(err) => {
                self.count_upgrade(label, "failed");
                return Err(err);
            }
        };
        let mut parts = fetched.parts;
        let status = parts.status;
        let origin_body = body::boxed(fetched.body);
        let answer = h2_websocket::answer(status, &parts.headers, &key);
        let origin = parts.extensions.remove::<OnUpgrade>();
        let body = match (answer, origin) {
            (h2_websocket::Answer::Declined, _) => {
                self.count_upgrade(label, "declined");
                origin_body
            }
            (h2_websocket::Answer::Switched, Some(origin)) => {
                self.count_upgrade(label, "tunnel");
                h2_websocket::client_head(&mut parts);
                self.open_tunnel(label.to_owned(), client, origin, origin_body, conn, span);
                body::empty()
            }
            (bad, _) => {
                self.count_upgrade(label, "failed");
                return Err(ProxyError::Upstream {
                    peer: session
                        .peer
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string),
                    source: format!("answer to a WebSocket handshake: {status}, {bad:?}").into(),
                });
            }
        };
        let mark = Mark::forwarded(CacheStatus::Pass, Fwd::Bypass);
        respond::write_mark(&mut parts.headers, &self.shared.cache.node, &mark);
        self.finish_head(session, &mut parts, ctx).await;
        Ok((Response::from_parts(parts, body), Some(status)))
    }

    /// Starts the tunnel of a switched request, holding what it keeps
    /// alive (the connection's slot and activity, the peer's in-flight
    /// count through `origin_body`).
    fn open_tunnel(
        &self,
        protocol: String,
        client: OnUpgrade,
        origin: OnUpgrade,
        origin_body: ProxyBody,
        conn: &ConnInfo,
        span: &tracing::Span,
    ) {
        tunnel::Tunnel {
            protocol,
            client,
            origin,
            idle_timeout: self.tunnel_idle_timeout,
            metrics: self.metrics().clone(),
            holds: tunnel::Holds {
                _activity: conn.activity.request_started(),
                _slot: conn.slot.clone(),
                guard: conn.tunnels.open(),
                _origin_body: origin_body,
            },
            span: span.clone(),
        }
        .spawn();
    }

    fn count_upgrade(&self, protocol: &str, result: &str) {
        self.metrics()
            .upgrades
            .with_label_values(&[protocol, result])
            .inc();
    }

    /// What every answer of the pipeline gets last: `Via`, HTTP/1.1, the
    /// Surrogate-Key policy, the site rule's header edits, then the
    /// `response_filter` hook (which may override them).
    async fn finish_head(&self, session: &Session, parts: &mut response::Parts, ctx: &mut H::Ctx) {
        self.shared
            .fwd
            .via
            .append(&mut parts.headers, parts.version);
        parts.version = Version::HTTP_11;
        // Kept for another edge (a child of this shield): it needs the
        // tags to honour tag purges.
        if self.strip_surrogate_key && !session.req.headers.contains_key(&crate::routing::CDN_LOOP)
        {
            parts.headers.remove("surrogate-key");
        }
        session.policy().response_headers.apply(&mut parts.headers);
        self.hooks().response_filter(session, parts, ctx).await;
    }

    /// `PURGE /path` (the Varnish and nginx habit): purges this URL, for
    /// clients in `purge.allow_from` or bearing the purge token.
    async fn purge_method(&self, session: &Session) -> Response<bytes::Bytes> {
        let purger = &self.shared.cache.purger;
        let allowed = match purger.auth(&session.req.headers) {
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
        purger
            .purge_url(&url)
            .await
            .unwrap_or_else(|err| err.to_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_by_content_type() {
        let with = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC; charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/grpcx"));
        assert!(!with("application/json"));
        assert!(!is_grpc(&http::HeaderMap::new()));
    }
}
