//! RFC 9111 as a shared cache: what may be stored, for how long it is
//! fresh, how old it is, and whether a stored response may answer a request.
//!
//! Every function is pure and takes the clock as an argument, so tests move
//! time instead of sleeping. Where the RFC leaves a choice, the safer one for
//! a cache shared by many users is taken, and [`PolicyOptions`] can change it.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode, header};

use crate::cache_control::{CacheControl, Seconds};
pub use crate::reason::NoCacheReason;
use crate::targeted;

/// Operator choices where the RFC allows several behaviours.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Store responses carrying `Set-Cookie`. Default: `false` (one user's
    /// cookie would be handed to everyone).
    pub allow_set_cookie: bool,
    /// Store responses to requests carrying `Cookie` even when the response
    /// does not say it may be shared. Default: `false`: a page an origin
    /// built for a signed-in user, and forgot to mark `private`, would be
    /// served to everyone. (Varnish passes every such request; nginx stores
    /// them all.)
    pub allow_cookie_requests: bool,
    /// Heuristic freshness (RFC 9111 §4.2.2): this fraction of the time
    /// since `Last-Modified`. Default: `Some(0.1)`; `None` disables it.
    pub heuristic_fraction: Option<f64>,
    /// Upper bound of a heuristic lifetime. Default: 1 day.
    pub heuristic_max: Duration,
    /// Lifetime given to heuristically cacheable responses that carry no
    /// freshness information at all. Default: `None`: such a response is
    /// not reused (RFC 9111 has no default TTL).
    pub default_ttl: Option<Duration>,
    /// Honour `CDN-Cache-Control` (RFC 9213) and `Surrogate-Control` ahead
    /// of `Cache-Control`. Default: `true`.
    pub honor_cdn_cache_control: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            allow_set_cookie: false,
            allow_cookie_requests: false,
            heuristic_fraction: Some(0.1),
            heuristic_max: Duration::from_secs(86_400),
            default_ttl: None,
            honor_cdn_cache_control: true,
        }
    }
}

/// Where a freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessSource {
    SMaxAge,
    MaxAge,
    Expires,
    Heuristic,
    DefaultTtl,
    /// A site rule's `ttl` / `ttl_status` (see [`Defaults`]).
    Rule,
}

impl FreshnessSource {
    /// For the inspector's output.
    pub fn as_str(self) -> &'static str {
        match self {
            FreshnessSource::SMaxAge => "s-maxage",
            FreshnessSource::MaxAge => "max-age",
            FreshnessSource::Expires => "expires",
            FreshnessSource::Heuristic => "heuristic",
            FreshnessSource::DefaultTtl => "default-ttl",
            FreshnessSource::Rule => "rule",
        }
    }
}

/// What a site's rule says about responses that do not say themselves
/// (nginx `proxy_cache_valid`, `proxy_cache_use_stale`). All empty by
/// default: RFC 9111 alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults<'a> {
    /// Freshness for responses of statuses cacheable by default (RFC 9110
    /// §15.1, or marked `public`) that carry no explicit freshness.
    pub ttl: Option<Duration>,
    /// The rule's lifetime replaces the origin's explicit freshness
    /// (`no-store` and `private` are still honoured).
    pub ttl_override: bool,
    /// Freshness by status (negative caching), sorted by status; wins over
    /// `ttl` and applies to any status listed.
    pub ttl_status: &'a [(u16, Duration)],
    /// `stale-if-error` for responses that carry none.
    pub stale_if_error: Option<Duration>,
    /// `stale-while-revalidate` for responses that carry none.
    pub stale_while_revalidate: Option<Duration>,
}

impl Defaults<'_> {
    /// The rule's lifetime for a response of `status`, if it has one.
    fn lifetime(&self, status: StatusCode, public: bool) -> Option<Duration> {
        let code = status.as_u16();
        if let Ok(i) = self.ttl_status.binary_search_by_key(&code, |(s, _)| *s) {
            return Some(self.ttl_status[i].1);
        }
        self.ttl
            .filter(|_| heuristically_cacheable(status) || public)
    }
}

/// What the policy needs to remember about a stored response, computed once
/// when it is stored (or refreshed by a 304) so that the hit path parses
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Freshness lifetime (§4.2.1); zero means "stale at once".
    pub lifetime: Duration,
    pub source: FreshnessSource,
    /// Age when received, corrected for delays (§4.2.3).
    pub corrected_initial_age: Duration,
    /// `no-cache` (qualified or not): every reuse needs validation.
    pub no_cache: bool,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: never served
    /// stale (§5.2.2.2, §5.2.2.8, §5.2.2.10).
    pub must_revalidate: bool,
    /// `stale-while-revalidate` window (RFC 5861), if any.
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` window (RFC 5861), if any.
    pub stale_if_error: Option<Duration>,
}

impl StoredPolicy {
    /// Fresh for `lifetime` with no other directive, received now: for
    /// objects that do not come from an origin response (tools, tests,
    /// benchmarks).
    pub fn fresh_for(lifetime: Duration) -> Self {
        StoredPolicy {
            lifetime,
            source: FreshnessSource::MaxAge,
            corrected_initial_age: Duration::ZERO,
            no_cache: false,
            must_revalidate: false,
            stale_while_revalidate: None,
            stale_if_error: None,
        }
    }
}

/// The caching directives that apply to us: `CDN-Cache-Control`, else
/// `Surrogate-Control`, else `Cache-Control` (RFC 9213 §2.1: a targeted
/// field replaces the general one entirely; one that is malformed is
/// ignored entirely, see [`targeted`](crate::targeted)).
pub fn response_directives(headers: &HeaderMap, opts: &PolicyOptions) -> CacheControl {
    targeted_directives(headers, opts)
        .or_else(|| CacheControl::from_headers(headers, header::CACHE_CONTROL))
        .unwrap_or_default()
}

/// The targeted field that applies to us, if one is there and well formed.
fn targeted_directives(headers: &HeaderMap, opts: &PolicyOptions) -> Option<CacheControl> {
    if !opts.honor_cdn_cache_control {
        return None;
    }
    targeted::cdn_cache_control(headers).or_else(|| targeted::surrogate_control(headers))
}

/// Directives of a request; `Pragma: no-cache` counts as `no-cache` when
/// there is no `Cache-Control` (RFC 9111 §5.4).
pub fn request_directives(headers: &HeaderMap) -> CacheControl {
    match CacheControl::from_headers(headers, header::CACHE_CONTROL) {
        Some(cc) => cc,
        None => {
            let pragma_no_cache = headers
                .get_all(header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("no-cache"))
                });
            if pragma_no_cache {
                CacheControl::parse("no-cache")
            } else {
                CacheControl::default()
            }
        }
    }
}

/// Status codes that are cacheable by default (RFC 9110 §15.1), i.e. may be
/// stored with a heuristic lifetime. 206 is among them but we store only
/// whole responses.
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose semantics RFC 9110 §15 defines and whose responses
/// this cache stores by the ordinary rules: what `must-understand`
/// (RFC 9111 §5.2.2.3) calls understood. Interim, 206 and 304 are never
/// stored whole and were refused before this is asked.
fn understood_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421
            | 422
            | 426
            | 500..=505
    )
}

/// The times of one exchange with the origin.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// When the request was sent.
    pub request_time: SystemTime,
    /// When the response head arrived.
    pub response_time: SystemTime,
}

/// Decides whether a response to `method` may be stored (RFC 9111 §3) and,
/// if so, what the policy must remember about it.
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    status: StatusCode,
    resp_headers: &HeaderMap,
    exchange: Exchange,
    opts: &PolicyOptions,
) -> Result<StoredPolicy, NoCacheReason> {
    let response = Response {
        status,
        headers: resp_headers,
        exchange,
    };
    storable_with(method, req_headers, response, opts, &Defaults::default())
}

/// A response as the policy judges it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    pub exchange: Exchange,
}

/// [`storable`] under a site rule's [`Defaults`]: the origin's explicit
/// freshness wins (unless `ttl_override`), then the rule's lifetime, then
/// heuristic freshness and `default_ttl`; the rule's stale windows apply
/// where the response has none.
pub fn storable_with(
    method: &Method,
    req_headers: &HeaderMap,
    response: Response<'_>,
    opts: &PolicyOptions,
    defaults: &Defaults<'_>,
) -> Result<StoredPolicy, NoCacheReason> {
    let Response {
        status,
        headers: resp_headers,
        exchange,
    } = response;
    if method != Method::GET {
        return Err(NoCacheReason::Method);
    }
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NoCacheReason::Status);
    }
    if request_directives(req_headers).has("no-store") {
        return Err(NoCacheReason::RequestNoStore);
    }
    let cc = response_directives(resp_headers, opts);
    // §5.2.2.3: `must-understand` limits storing to status codes whose
    // caching rules we implement, and for those it overrides `no-store`
    // (a cache that does not know `must-understand` honours `no-store`).
    let must_understand = cc.has("must-understand");
    if must_understand && !understood_status(status) {
        return Err(NoCacheReason::Status);
    }
    if cc.has("no-store") && !must_understand {
        return Err(NoCacheReason::NoStore);
    }
    // Qualified `private="f"` would let a shared cache store the rest; the
    // safer reading treats any `private` as "not for us".
    if cc.has("private") {
        return Err(NoCacheReason::Private);
    }
    if req_headers.contains_key(header::AUTHORIZATION)
        && !(cc.has("public")
            || cc.has("must-revalidate")
            || cc.seconds("s-maxage") != Seconds::Absent)
    {
        return Err(NoCacheReason::Authorization);
    }
    if !opts.allow_cookie_requests
        && req_headers.contains_key(header::COOKIE)
        && !shared_despite_cookies(resp_headers, &cc, opts)
    {
        return Err(NoCacheReason::Cookie);
    }
    if !opts.allow_set_cookie && resp_headers.contains_key(header::SET_COOKIE) {
        return Err(NoCacheReason::SetCookie);
    }
    if has_vary_star(resp_headers) {
        return Err(NoCacheReason::VaryStar);
    }
    let rule = defaults
        .lifetime(status, cc.has("public"))
        .map(|ttl| (ttl, FreshnessSource::Rule));
    let (lifetime, source) = match rule {
        Some(rule) if defaults.ttl_override => rule,
        _ => explicit_lifetime(resp_headers, &cc, exchange.response_time)
            .or(rule)
            .or_else(|| implicit_lifetime(status, resp_headers, &cc, exchange.response_time, opts))
            .ok_or(NoCacheReason::NoFreshness)?,
    };
    let s_maxage = cc.seconds("s-maxage") != Seconds::Absent;
    Ok(StoredPolicy {
        lifetime,
        source,
        corrected_initial_age: corrected_initial_age(resp_headers, exchange),
        no_cache: cc.has("no-cache"),
        must_revalidate: cc.has("must-revalidate") || cc.has("proxy-revalidate") || s_maxage,
        stale_while_revalidate: window(&cc, "stale-while-revalidate")
            .or(defaults.stale_while_revalidate),
        stale_if_error: window(&cc, "stale-if-error").or(defaults.stale_if_error),
    })
}

fn window(cc: &CacheControl, name: &str) -> Option<Duration> {
    match cc.seconds(name) {
        Seconds::Valid(s) => Some(Duration::from_secs(s)),
        _ => None,
    }
}

/// Whether a response to a request with cookies says it may go to others:
/// `public` or `s-maxage` (what RFC 9111 §3.5 accepts for `Authorization`,
/// but `must-revalidate`, which says nothing about audience), a
/// `CDN-Cache-Control` addressed to caches like us, or `Vary: Cookie`, which
/// keys it by the cookies so only the same cookies get it.
fn shared_despite_cookies(headers: &HeaderMap, cc: &CacheControl, opts: &PolicyOptions) -> bool {
    cc.has("public")
        || cc.seconds("s-maxage") != Seconds::Absent
        || targeted_directives(headers, opts).is_some()
        || headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|name| name.trim().eq_ignore_ascii_case("cookie"))
}

fn has_vary_star(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim() == "*"))
}

/// Freshness lifetime for a shared cache (RFC 9111 §4.2.1), or `None` when
/// the response carries no freshness information and none may be assumed.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
    opts: &PolicyOptions,
) -> Option<(Duration, FreshnessSource)> {
    explicit_lifetime(headers, cc, response_time)
        .or_else(|| implicit_lifetime(status, headers, cc, response_time, opts))
}

/// The lifetime the response states: `s-maxage`, `max-age`, `Expires`.
fn explicit_lifetime(
    headers: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
) -> Option<(Duration, FreshnessSource)> {
    // An invalid delta-seconds makes the response stale, not uncached: it
    // can still be revalidated.
    let explicit = |s: Seconds, source| match s {
        Seconds::Valid(secs) => Some((Duration::from_secs(secs), source)),
        Seconds::Invalid => Some((Duration::ZERO, source)),
        Seconds::Absent => None,
    };
    if let Some(found) = explicit(cc.seconds("s-maxage"), FreshnessSource::SMaxAge) {
        return Some(found);
    }
    if let Some(found) = explicit(cc.seconds("max-age"), FreshnessSource::MaxAge) {
        return Some(found);
    }
    if headers.contains_key(header::EXPIRES) {
        let date = date_header(headers, header::DATE).unwrap_or(response_time);
        // §5.3: an invalid Expires (e.g. "0") means already expired.
        let lifetime = date_header(headers, header::EXPIRES)
            .and_then(|expires| expires.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        return Some((lifetime, FreshnessSource::Expires));
    }
    None
}

/// The lifetime assumed for a response that states none (§4.2.2):
/// heuristic, then `default_ttl`, for statuses cacheable by default.
fn implicit_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
    opts: &PolicyOptions,
) -> Option<(Duration, FreshnessSource)> {
    if !(heuristically_cacheable(status) || cc.has("public")) {
        return None;
    }
    let date = date_header(headers, header::DATE).unwrap_or(response_time);
    if let (Some(fraction), Some(last_modified)) = (
        opts.heuristic_fraction,
        date_header(headers, header::LAST_MODIFIED),
    ) && let Ok(since) = date.duration_since(last_modified)
    {
        let lifetime = since
            .mul_f64(fraction.clamp(0.0, 1.0))
            .min(opts.heuristic_max);
        return Some((lifetime, FreshnessSource::Heuristic));
    }
    opts.default_ttl
        .map(|ttl| (ttl, FreshnessSource::DefaultTtl))
}

/// `corrected_initial_age` of RFC 9111 §4.2.3: the larger of the apparent
/// age (clock skew permitting) and the upstream `Age` plus the time the
/// response spent in flight.
pub fn corrected_initial_age(headers: &HeaderMap, exchange: Exchange) -> Duration {
    let date = date_header(headers, header::DATE).unwrap_or(exchange.response_time);
    let apparent_age = exchange
        .response_time
        .duration_since(date)
        .unwrap_or(Duration::ZERO);
    let age_value = age_value(headers).unwrap_or(Duration::ZERO);
    let response_delay = exchange
        .response_time
        .duration_since(exchange.request_time)
        .unwrap_or(Duration::ZERO);
    apparent_age.max(age_value.saturating_add(response_delay))
}

/// The `Age` a response arrived with (RFC 9111 §5.1): delta-seconds,
/// capped at 2^31 (§1.2.2, so nothing below overflows). A list-valued
/// field (`Age: 7200, 0`, or two lines) is invalid, and the first member
/// counts: reading it as no Age would make an old response fresh.
pub fn age_value(headers: &HeaderMap) -> Option<Duration> {
    let first = headers.get(header::AGE)?.to_str().ok()?;
    let member = first.split(',').next().unwrap_or(first).trim();
    if member.is_empty() || !member.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = member.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs.min(1 << 31)))
}

/// `current_age` of RFC 9111 §4.2.3 at `now`.
pub fn current_age(stored: &StoredPolicy, response_time: SystemTime, now: SystemTime) -> Duration {
    let resident = now.duration_since(response_time).unwrap_or(Duration::ZERO);
    stored.corrected_initial_age.saturating_add(resident)
}

/// How a stored response may answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh: serve it.
    Fresh,
    /// Stale, but the client accepts that (`max-stale`): serve it.
    StaleAllowed,
    /// Stale within `stale-while-revalidate`: serve it and revalidate in
    /// the background.
    StaleWhileRevalidate,
    /// Must be validated with the origin before use.
    Revalidate,
}

impl Reuse {
    pub fn as_str(self) -> &'static str {
        match self {
            Reuse::Fresh => "fresh",
            Reuse::StaleAllowed => "stale-allowed",
            Reuse::StaleWhileRevalidate => "stale-while-revalidate",
            Reuse::Revalidate => "revalidate",
        }
    }
}

/// Whether the stored response may be reused for a request with directives
/// `req` at `now` (RFC 9111 §4, §4.2.4, §5.2.1, RFC 5861 §3).
pub fn evaluate(
    stored: &StoredPolicy,
    response_time: SystemTime,
    req: &CacheControl,
    now: SystemTime,
) -> Reuse {
    if stored.no_cache || req.has("no-cache") {
        return Reuse::Revalidate;
    }
    let age = current_age(stored, response_time, now);
    if let Seconds::Valid(max_age) = req.seconds("max-age")
        && age > Duration::from_secs(max_age)
    {
        return Reuse::Revalidate;
    }
    if req.seconds("max-age") == Seconds::Invalid {
        return Reuse::Revalidate;
    }
    let remaining = stored.lifetime.saturating_sub(age);
    let fresh = stored.lifetime > age;
    match req.seconds("min-fresh") {
        Seconds::Valid(min) if remaining < Duration::from_secs(min) => return Reuse::Revalidate,
        Seconds::Invalid => return Reuse::Revalidate,
        _ => {}
    }
    if fresh {
        return Reuse::Fresh;
    }
    if stored.must_revalidate {
        return Reuse::Revalidate;
    }
    let staleness = age - stored.lifetime;
    let client_accepts = req.has("max-stale")
        && match req.seconds("max-stale") {
            Seconds::Valid(limit) => staleness <= Duration::from_secs(limit),
            // `max-stale` without a value accepts any staleness.
            Seconds::Invalid | Seconds::Absent => true,
        };
    if client_accepts {
        return Reuse::StaleAllowed;
    }
    if stored
        .stale_while_revalidate
        .is_some_and(|window| staleness <= window)
    {
        return Reuse::StaleWhileRevalidate;
    }
    Reuse::Revalidate
}

/// Whether a stale response may stand in for an origin error or 5xx
/// (RFC 5861 §4), given the response's and the request's `stale-if-error`.
pub fn stale_if_error_allows(
    stored: &StoredPolicy,
    response_time: SystemTime,
    req: &CacheControl,
    now: SystemTime,
) -> bool {
    if stored.must_revalidate || stored.no_cache {
        return false;
    }
    let age = current_age(stored, response_time, now);
    let staleness = age.saturating_sub(stored.lifetime);
    let req_window = match req.seconds("stale-if-error") {
        Seconds::Valid(s) => Some(Duration::from_secs(s)),
        _ => None,
    };
    stored
        .stale_if_error
        .into_iter()
        .chain(req_window)
        .any(|window| staleness <= window)
}

fn date_header(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers.get(name).and_then(crate::date::from_header)
}

#[cfg(test)]
mod tests;
