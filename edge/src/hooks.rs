//! The programmable surface: one trait whose default methods make the stock
//! proxy, called at each phase of a request's life (see `proxy.rs`).
//!
//! Implement [`EdgeHooks`] and pass it to
//! [`Server::bind_with_hooks`](crate::Server::bind_with_hooks) to block, rewrite,
//! route or annotate traffic; `examples/custom_hooks.rs` shows one.
//!
//! Hooks run on the request's task: they must not block. A hook returns a
//! future so it may await, but holding a lock across that await stalls every
//! request that shares it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::store::Tier;
use cache::{CacheKey, CacheStatus, KeyRules};
use http::{Response, StatusCode, request, response};
use origin_shield::Peer;

use crate::body::BodyEnd;
use crate::sites::{Policy, Site, Sites};

/// What the proxy knows about the request in hand. Hooks may read it all and
/// change `req` in `request_filter`.
#[derive(Debug)]
pub struct Session {
    /// The client's request head (the body streams separately).
    pub req: request::Parts,
    /// The client's address as seen on the socket.
    pub client_addr: SocketAddr,
    /// `"http"` or `"https"`: how the client reached us.
    pub downstream_scheme: &'static str,
    /// When the request head was received.
    pub started: Instant,
    /// Set by the `cache_key` phase; `None` for requests never cached.
    pub cache_key: Option<CacheKey>,
    /// The peer the request went to, once chosen.
    pub peer: Option<Peer>,
    /// How the cache took part; `Pass` until the cache phase decides.
    pub cache_status: CacheStatus,
    /// The tier a cached response came from.
    pub cache_tier: Option<Tier>,
    /// The configured query rules of the default key.
    pub(crate) key_rules: Arc<KeyRules>,
    /// The node's sites; [`site`](Self::site) and [`policy`](Self::policy)
    /// read this request's.
    pub(crate) sites: Arc<Sites>,
    /// The site the `Host` chose (`Site::index`), set before
    /// `request_filter`.
    pub site: usize,
    /// The rule of that site that matched (`Policy::rule`), if any.
    pub rule: Option<usize>,
    /// Set when a response that began as a hit had to fetch part of its
    /// body from the origin (slices not yet stored): it is counted as a
    /// miss, so hit ratios are not overstated.
    pub(crate) origin_fetched: Arc<std::sync::atomic::AtomicBool>,
    /// The claims of the JWT a rule's `jwt` check verified, for the hooks
    /// after `request_filter`; `None` without such a check.
    pub jwt_claims: Option<crate::access::jwt::Claims>,
    /// The request's part in its distributed trace (`[tracing]`); `None`
    /// without an `otlp_endpoint`.
    pub(crate) trace: Option<Box<crate::observe::trace::RequestTrace>>,
    /// Where [`host`](Self::host) is, found once per request head
    /// ([`Host::of`]): the site choice, purge verdicts, the access line and
    /// the live log all ask, and a `Host` field lookup is a header-map
    /// probe and a UTF-8 check each time.
    pub(crate) host: Host,
}

/// Where a request's host is (see [`Session::host`]).
#[derive(Debug, Clone)]
pub(crate) enum Host {
    /// In the URI's authority (absolute-form, HTTP/2 `:authority`): read
    /// from there, a field of the URI.
    Uri,
    /// The `Host` field (a cheap clone: its bytes are shared) and the
    /// length of the host before its port; `None` when there is no field
    /// or it is not text.
    Field(Option<(http::HeaderValue, usize)>),
}

impl Host {
    /// Where the host of the request head `req` is.
    pub(crate) fn of(req: &request::Parts) -> Host {
        if req.uri.authority().is_some() {
            return Host::Uri;
        }
        let field = req.headers.get(http::header::HOST).and_then(|value| {
            // A prefix of the field: the host before its port.
            let len = strip_port(value.to_str().ok()?).len();
            Some((value.clone(), len))
        });
        Host::Field(field)
    }
}

impl Session {
    /// The site this request belongs to.
    pub fn site(&self) -> Option<&Site> {
        self.sites.get(self.site)
    }

    /// What the matching rule says (the default policy when none matched).
    pub fn policy(&self) -> &Policy {
        self.sites.policy_of(self.site, self.rule)
    }

    /// The host the client asked for: the URI's authority (absolute-form or
    /// HTTP/2 `:authority`), else the `Host` field, without a port.
    pub fn host(&self) -> &str {
        match &self.host {
            Host::Uri => strip_port(self.authority()),
            // Checked as text by `Host::of`.
            Host::Field(Some((value, len))) => value
                .to_str()
                .ok()
                .and_then(|host| host.get(..*len))
                .unwrap_or(""),
            Host::Field(None) => "",
        }
    }

    /// Finds the host again after the request head may have changed (a
    /// `request_filter` hook may rewrite it): unless the URI still has no
    /// authority and the `Host` field is the very value seen before.
    pub(crate) fn refresh_host(&mut self) {
        if let Host::Field(seen) = &self.host
            && self.req.uri.authority().is_none()
        {
            let now = self.req.headers.get(http::header::HOST);
            let same = match (seen, now) {
                (Some((seen, _)), Some(now)) => std::ptr::eq(seen.as_bytes(), now.as_bytes()),
                (None, None) => true,
                _ => false,
            };
            if same {
                return;
            }
        }
        self.host = Host::of(&self.req);
    }

    /// The key the stock `cache_key` phase gives this request (GET and HEAD
    /// only): scheme, host, and path with the query as configured
    /// (`cache.key_ignore_query_params`, `cache.key_sort_query`).
    pub fn default_cache_key(&self) -> Option<CacheKey> {
        let access = &self.policy().access;
        if access.signed_urls.is_some() {
            // Every signed link to one object shares one copy.
            return self.key_for(&self.req.method, &access.key_path(self.path_and_query()));
        }
        self.key_for(&self.req.method, self.path_and_query())
    }

    /// The default key of `path_and_query` on this request's host. The
    /// port counts unless it is the scheme's default: the origin may build
    /// links and redirects from it.
    pub fn key_for(&self, method: &http::Method, path_and_query: &str) -> Option<CacheKey> {
        let host = self.authority_for_key();
        CacheKey::for_request(
            method,
            self.key_rules.scheme(self.downstream_scheme),
            host,
            &self.key_rules.normalize(path_and_query),
        )
    }

    /// The authority as it enters the default key: the port only when it
    /// is not the scheme's default.
    pub fn authority_for_key(&self) -> &str {
        let authority = self.authority();
        let default_port = if self.downstream_scheme == "https" {
            ":443"
        } else {
            ":80"
        };
        authority.strip_suffix(default_port).unwrap_or(authority)
    }

    /// The authority the client asked for, port included if it sent one
    /// (from where [`Host::of`] found it: no second header-map probe).
    fn authority(&self) -> &str {
        match &self.host {
            Host::Uri => self.req.uri.authority().map_or("", |a| a.as_str()),
            Host::Field(Some((value, _))) => value.to_str().unwrap_or(""),
            Host::Field(None) => "",
        }
    }

    /// Path and query as the client sent them.
    pub fn path_and_query(&self) -> &str {
        self.req
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // IPv6 literal: keep through the closing bracket.
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    // A byte scan: `rsplit_once` set up a searcher costing more than the
    // scan of a short authority (callgrind).
    authority
        .bytes()
        .rposition(|b| b == b':')
        .map_or(authority, |colon| &authority[..colon])
}

/// A response made by a hook instead of going upstream.
pub type EarlyResponse = Response<Bytes>;

/// Builds a short plain-text [`EarlyResponse`].
pub fn early_response(status: StatusCode, text: &str) -> EarlyResponse {
    let mut resp = Response::new(Bytes::from(format!("{text}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What the `logging` phase is told about a finished request.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    /// Status sent to the client.
    pub status: StatusCode,
    /// Body bytes sent to the client.
    pub body_bytes: u64,
    /// From request head to the end of the response body.
    pub duration: Duration,
    /// How the response body ended.
    pub end: BodyEnd,
    /// Why the proxy answered with an error, if it did.
    pub error: Option<&'static str>,
    /// The status the upstream answered, if it was asked.
    pub upstream_status: Option<StatusCode>,
}

/// Hooks into each phase of a request. Every method has a default; the stock
/// `edge` binary uses [`DefaultHooks`].
pub trait EdgeHooks: Send + Sync + 'static {
    /// Per-request state shared by all phases of one request.
    type Ctx: Send + 'static;

    /// Creates the context for a new request.
    fn new_ctx(&self) -> Self::Ctx;

    /// Phase 2: inspect or rewrite the request, or answer it directly by
    /// returning a response (nothing goes upstream then).
    fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Option<EarlyResponse>> + Send {
        let _ = (session, ctx);
        async { None }
    }

    /// Phase 3: the cache key, or `None` to never cache this request.
    /// The default is [`Session::default_cache_key`].
    fn cache_key(&self, session: &Session, ctx: &mut Self::Ctx) -> Option<CacheKey> {
        let _ = ctx;
        session.default_cache_key()
    }

    /// Phase 6: the peer to fetch from, or `None` to use the configured
    /// origins (round robin, falling through on connect failure).
    fn upstream_peer(
        &self,
        session: &Session,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = Option<Peer>> + Send {
        let _ = (session, ctx);
        async { None }
    }

    /// Phase 7a: change the request head just before it is sent upstream
    /// (hop-by-hop fields are already gone, `Via` and `X-Forwarded-*` set).
    fn upstream_request_filter(
        &self,
        session: &Session,
        upstream: &mut request::Parts,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = ()> + Send {
        let _ = (session, upstream, ctx);
        async {}
    }

    /// Phase 7b: change the response head before it goes to the client:
    /// every response, whether it came from the cache, the origin or the
    /// proxy itself (errors). What is stored in the cache is the origin's
    /// response, before this filter.
    fn response_filter(
        &self,
        session: &Session,
        response: &mut response::Parts,
        ctx: &mut Self::Ctx,
    ) -> impl Future<Output = ()> + Send {
        let _ = (session, response, ctx);
        async {}
    }

    /// Phase 8: called once when the response body has ended (completely or
    /// not), after the access log line is written. Must not block.
    fn logging(&self, session: &Session, summary: &RequestSummary, ctx: &mut Self::Ctx) {
        let _ = (session, summary, ctx);
    }
}

/// The stock behaviour: every phase at its default.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHooks;

impl EdgeHooks for DefaultHooks {
    type Ctx = ();
    fn new_ctx(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    fn found(req: http::Request<()>) -> String {
        let (parts, ()) = req.into_parts();
        match Host::of(&parts) {
            Host::Uri => format!(
                "uri:{}",
                strip_port(parts.uri.authority().expect("authority").as_str())
            ),
            Host::Field(Some((value, len))) => value.to_str().expect("text")[..len].to_owned(),
            Host::Field(None) => String::new(),
        }
    }

    #[test]
    fn the_host_is_found_once_where_host_looked() {
        let get = |uri: &str| http::Request::get(uri);
        let host = |h: &'static str| get("/").header("host", h).body(()).expect("req");
        assert_eq!(found(host("shop.example:8080")), "shop.example");
        assert_eq!(found(host("[::1]:80")), "[::1]");
        assert_eq!(found(host("shop.example")), "shop.example");
        assert_eq!(found(get("/").body(()).expect("req")), "");
        let absolute = get("http://abs.example:81/x")
            .header("host", "other")
            .body(());
        assert_eq!(found(absolute.expect("req")), "uri:abs.example");
        let binary = get("/").header(
            "host",
            http::HeaderValue::from_bytes(b"\xff").expect("value"),
        );
        assert_eq!(found(binary.body(()).expect("req")), "");
    }

    #[test]
    fn a_rewritten_host_is_found_again() {
        let req = http::Request::get("/").header("host", "a.example:8080");
        let (mut parts, ()) = req.body(()).expect("req").into_parts();
        let host = Host::of(&parts);
        let config = crate::config::Config {
            origins: vec!["http://127.0.0.1:9".parse().expect("peer")],
            ..crate::config::Config::default()
        };
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static("b.example"),
        );
        let mut session = Session {
            host,
            req: parts,
            client_addr: "192.0.2.7:5555".parse().expect("addr"),
            downstream_scheme: "http",
            started: Instant::now(),
            cache_key: None,
            peer: None,
            cache_status: CacheStatus::Pass,
            cache_tier: None,
            key_rules: Arc::default(),
            sites: Arc::new(Sites::compile(&config).expect("sites")),
            site: 0,
            rule: None,
            origin_fetched: Arc::default(),
            jwt_claims: None,
            trace: None,
        };
        assert_eq!(session.host(), "a.example", "until refreshed");
        session.refresh_host();
        assert_eq!(session.host(), "b.example");
        session.req.headers.remove(http::header::HOST);
        session.refresh_host();
        assert_eq!(session.host(), "");
        session.req.uri = "http://c.example/".parse().expect("uri");
        session.refresh_host();
        assert_eq!(session.host(), "c.example");
    }
}
