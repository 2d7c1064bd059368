//! Prometheus metrics of the request pipeline. The [`Registry`] is created by
//! the server and injected here (and, later, into the other crates); names
//! live in [`names`] so dashboards and code agree.

use std::sync::{Arc, OnceLock};

use cache::CacheStatus;
use cache::store::Tier;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::body::BodyEnd;

/// Every metric name `edge` exports, in one place.
pub mod names {
    pub const REQUESTS_TOTAL: &str = "edge_requests_total";
    pub const REQUEST_DURATION_SECONDS: &str = "edge_request_duration_seconds";
    pub const RESPONSE_BYTES_TOTAL: &str = "edge_response_bytes_total";
    pub const CACHE_TIER_HITS_TOTAL: &str = "edge_cache_tier_hits_total";
    pub const CACHE_COLLAPSED_TOTAL: &str = "edge_cache_collapsed_total";
    pub const OPEN_CONNECTIONS: &str = "edge_open_connections";
    pub const CONNECTIONS_TOTAL: &str = "edge_connections_total";
    pub const ORIGIN_REQUESTS_TOTAL: &str = "edge_origin_requests_total";
    pub const ORIGIN_ERRORS_TOTAL: &str = "edge_origin_errors_total";
    pub const ORIGIN_DURATION_SECONDS: &str = "edge_origin_response_header_seconds";
    pub const TIME_TO_FIRST_BYTE_SECONDS: &str = "edge_time_to_first_byte_seconds";
    pub const FILLS_IN_FLIGHT: &str = "edge_fills_in_flight";
    pub const FILL_WINDOW_BYTES: &str = "edge_fill_window_bytes";
    pub const CACHE_BYTES: &str = "edge_cache_bytes";
    pub const CACHE_CAPACITY_BYTES: &str = "edge_cache_capacity_bytes";
    pub const CACHE_ENTRIES: &str = "edge_cache_entries";
    pub const PURGES_TOTAL: &str = "edge_purges_total";
    pub const PURGE_RULES: &str = "edge_purge_rules";
    pub const PURGE_BACKLOG: &str = "edge_purge_backlog";
    pub const CONFIG_RELOADS_TOTAL: &str = "edge_config_reloads_total";
    pub const CONFIG_GENERATION: &str = "edge_config_generation";
    pub const ACCESS_LOG_DROPPED_TOTAL: &str = "edge_access_log_dropped_total";
    pub const PEER_UP: &str = "edge_peer_up";
    pub const PEER_ACTIVE: &str = "edge_peer_active_requests";
    pub const PEER_FAILURES_TOTAL: &str = "edge_peer_failures_total";
    pub const PEER_EJECTIONS_TOTAL: &str = "edge_peer_ejections_total";
    pub const UPSTREAM_RETRIES_TOTAL: &str = "edge_upstream_retries_total";
    pub const UPSTREAM_CONNECTIONS_TOTAL: &str = "edge_upstream_connections_total";
    pub const UPSTREAM_OPEN_CONNECTIONS: &str = "edge_upstream_open_connections";
    pub const UPSTREAM_EXCHANGES_TOTAL: &str = "edge_upstream_exchanges_total";
    pub const UPSTREAM_REUSE_RATIO: &str = "edge_upstream_connection_reuse_ratio";
    pub const UPGRADES_TOTAL: &str = "edge_upgrades_total";
    pub const OPEN_TUNNELS: &str = "edge_open_tunnels";
    pub const TUNNEL_BYTES_TOTAL: &str = "edge_tunnel_bytes_total";
    pub const TUNNELS_CLOSED_TOTAL: &str = "edge_tunnels_closed_total";
    pub const REFUSED_TOTAL: &str = "edge_refused_total";
    pub const STALE_SERVED_TOTAL: &str = "edge_stale_served_total";
    pub const LIVE_LOG_WATCHERS: &str = "edge_live_log_watchers";
    pub const TRACE_SPANS_EXPORTED_TOTAL: &str = "edge_trace_spans_exported_total";
    pub const TRACE_SPANS_DROPPED_TOTAL: &str = "edge_trace_spans_dropped_total";
    pub const RATE_LIMIT_KEYS: &str = "edge_rate_limit_keys";
    pub const REQUESTS_BY_PROTOCOL_TOTAL: &str = "edge_requests_by_protocol_total";
    pub const H3_CONNECTIONS_TOTAL: &str = "edge_h3_connections_total";
    pub const RATE_LIMIT_OVERFLOW_TOTAL: &str = "edge_rate_limit_overflow_total";
}

/// Latency buckets from 0.5 ms to 30 s: a hit on loopback is sub-millisecond,
/// an origin fetch can take seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Handles to the pipeline's metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Requests by site, status class (`2xx` …), how the body ended and
    /// cache status (`HIT`, `MISS` …): request hit ratio.
    pub requests: IntCounterVec,
    /// Request duration, head received to body end, by status class and
    /// cache status.
    pub request_duration: HistogramVec,
    /// Request head received to response head ready, by cache status.
    pub time_to_first_byte: HistogramVec,
    /// Body bytes sent to clients by site, cache status and source
    /// (memory, disk, origin, edge): byte hit ratio and tier share.
    pub response_bytes: IntCounterVec,
    /// Responses served from cache by the tier that held them.
    pub cache_tier_hits: IntCounterVec,
    /// Misses served from another request's fill instead of the origin.
    pub cache_collapsed: IntCounter,
    pub open_connections: IntGauge,
    pub connections: IntCounter,
    /// Upstream responses by peer and status class.
    pub origin_requests: IntCounterVec,
    /// Upstream failures by kind (`connect`, `header_timeout` …).
    pub origin_errors: IntCounterVec,
    /// Time from sending a request upstream to its response head, by peer.
    pub origin_duration: HistogramVec,
    /// Fills (origin fetches shared by readers) in flight; set at scrape.
    pub fills_in_flight: IntGauge,
    /// Body bytes fills hold in memory for their readers; set at scrape.
    pub fill_window_bytes: IntGauge,
    /// Bytes and entries held per tier, and each tier's size; set at
    /// scrape (the disk tier's fill is in foyer's `foyer_storage_*`).
    pub cache_bytes: IntGaugeVec,
    pub cache_capacity_bytes: IntGaugeVec,
    pub cache_entries: IntGaugeVec,
    /// Purge items accepted, by kind (`url`, `prefix`, `host`, `tag`, and
    /// `replicated` for whole purges received from peers).
    pub purges: IntCounterVec,
    /// Purges in force, and purges still owed to peers; set at scrape.
    pub purge_rules: IntGauge,
    pub purge_backlog: IntGauge,
    /// Configuration reloads by `result` (`ok`, `error`).
    pub config_reloads: IntCounterVec,
    /// The configuration generation in force: 1 at start, one more per
    /// reload that applied.
    pub config_generation: IntGauge,
    /// 1 while a peer gets traffic (probes say up, not ejected), by peer
    /// and role (`origin`, `shield`); set when metrics are scraped.
    pub peer_up: IntGaugeVec,
    /// Requests in flight per peer; set when metrics are scraped.
    pub peer_active: IntGaugeVec,
    /// Failed exchanges per peer by kind (`connect`, `timeout`, `status`,
    /// `circuit_open` when the concurrency cap turned a request away).
    pub peer_failures: IntCounterVec,
    /// Times a peer was taken out of rotation after failures in a row.
    pub peer_ejections: IntCounterVec,
    /// Requests sent again to another peer, by why.
    pub upstream_retries: IntCounterVec,
    /// Connections opened to peers, by peer and protocol (`h1`, `h2`).
    pub upstream_connections: IntCounterVec,
    /// Connections to peers open now.
    pub upstream_open_connections: IntGauge,
    /// Exchanges with peers by whether their connection was `new` or
    /// `reused` (an idle HTTP/1.1 one, or a stream on an HTTP/2 one).
    pub upstream_exchanges: IntCounterVec,
    /// Share of exchanges since start that reused a connection; set at
    /// scrape. For a window, divide the rates of `upstream_exchanges`.
    pub upstream_reuse_ratio: Gauge,
    /// Compression work and stored encodings served (`transform/`).
    pub compression: crate::transform::Metrics,
    /// Requests that asked to switch protocols (`Upgrade`), by protocol
    /// (a configured name, or `other`) and result: `tunnel` (101, bytes
    /// relayed), `declined` (the origin answered without switching),
    /// `not_allowed` (not in `server.upgrade_protocols`: forwarded without
    /// `Upgrade`), `failed` (no peer, a bogus 101, or a socket not handed
    /// over).
    pub upgrades: IntCounterVec,
    /// Tunnels open now (each also holds its client connection's place in
    /// `open_connections`).
    pub open_tunnels: IntGauge,
    /// Watchers of the live request log (`/log`, `edge log`) connected now.
    pub live_log_watchers: IntGauge,
    /// Bytes relayed by tunnels, by `direction` (`to_origin`, `to_client`).
    pub tunnel_bytes: IntCounterVec,
    /// Tunnels ended, by `reason`: `closed` (a side closed), `idle`
    /// (`server.tunnel_idle_timeout`), `shutdown` (the grace period was
    /// over), `error` (a socket failed).
    pub tunnels_closed: IntCounterVec,
    /// Requests refused by an access check, by site and reason
    /// (`ip_denied`, `ip_not_allowed`, `rate_limited`, `signature_missing`,
    /// `signature_invalid`, `signature_expired`).
    pub refused: IntCounterVec,
    /// Stale objects served, by site and reason: `origin_error` (the
    /// origin failed and `stale-if-error` allowed it: an outage the hit
    /// counters would hide, Varnish's grace), `revalidating`
    /// (`stale-while-revalidate`), `max_stale` (the client asked).
    pub stale_served: IntCounterVec,
    /// Spans the collector accepted (`[tracing]`).
    pub trace_spans_exported: IntCounter,
    /// Spans given up, by reason: `queue_full` (the collector is slower
    /// than the traffic) or `export_failed` (it refused, timed out or is
    /// down).
    pub trace_spans_dropped: IntCounterVec,
    /// Keys the rate limiters track, by site; set at scrape.
    pub rate_limit_keys: IntGaugeVec,
    /// Checks by keys that found their limiter full (`max_keys`) and
    /// shared its overflow bucket, by site; added at scrape.
    pub rate_limit_overflow: IntCounterVec,
    /// Client requests answered by `protocol` (`h1`, `h2`, `h3`); the
    /// three series resolved once (see [`Metrics::protocol`]).
    pub requests_by_protocol: IntCounterVec,
    by_protocol: [IntCounter; 3],
    /// QUIC connection attempts on the HTTP/3 listener by `result`:
    /// `accepted` (handshake done), `handshake_failed`, `handshake_timeout`
    /// (`server.header_read_timeout`), `refused` (`server.max_connections`
    /// reached), `retry` (asked to prove its address first).
    pub h3_connections: IntCounterVec,
    /// The per-request series above, resolved once per label set.
    series: Arc<RequestSeries>,
    /// The `site` label's values, by `Site::index`.
    sites: Arc<[String]>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`, for a node
    /// with only the default site.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        Metrics::register_for_sites(registry, &["default".to_owned()])
    }

    /// Creates the metrics for these sites (the `site` label's values, by
    /// `Site::index`) and registers them in `registry`.
    pub fn register_for_sites(
        registry: &Registry,
        sites: &[String],
    ) -> prometheus::Result<Metrics> {
        // A label value per site: at least one, so an index is always in
        // range.
        let sites: Arc<[String]> = if sites.is_empty() {
            Arc::from(vec!["default".to_owned()])
        } else {
            Arc::from(sites.to_vec())
        };
        let requests_by_protocol = IntCounterVec::new(
            Opts::new(
                names::REQUESTS_BY_PROTOCOL_TOTAL,
                "Client requests answered, by protocol (h1, h2, h3)",
            ),
            &["protocol"],
        )?;
        let by_protocol = ["h1", "h2", "h3"].map(|p| requests_by_protocol.with_label_values(&[p]));
        let m = Metrics {
            by_protocol,
            requests_by_protocol,
            h3_connections: IntCounterVec::new(
                Opts::new(
                    names::H3_CONNECTIONS_TOTAL,
                    "QUIC connection attempts on the HTTP/3 listener, by result",
                ),
                &["result"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(names::REQUESTS_TOTAL, "Client requests answered"),
                &["site", "status_class", "body_end", "cache_status"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    names::REQUEST_DURATION_SECONDS,
                    "Client request duration, head received to body end",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["status_class", "cache_status"],
            )?,
            time_to_first_byte: HistogramVec::new(
                HistogramOpts::new(
                    names::TIME_TO_FIRST_BYTE_SECONDS,
                    "Request head received to response head ready, by cache status",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["cache_status"],
            )?,
            response_bytes: IntCounterVec::new(
                Opts::new(
                    names::RESPONSE_BYTES_TOTAL,
                    "Response body bytes sent to clients, by cache status and where they \
                     came from (memory, disk, origin, or edge for its own answers)",
                ),
                &["site", "cache_status", "source"],
            )?,
            cache_tier_hits: IntCounterVec::new(
                Opts::new(
                    names::CACHE_TIER_HITS_TOTAL,
                    "Responses served from cache, by the tier that held them",
                ),
                &["tier"],
            )?,
            cache_collapsed: IntCounter::new(
                names::CACHE_COLLAPSED_TOTAL,
                "Misses that joined another request's fill instead of going to the origin",
            )?,
            open_connections: IntGauge::new(names::OPEN_CONNECTIONS, "Open client connections")?,
            connections: IntCounter::new(names::CONNECTIONS_TOTAL, "Client connections accepted")?,
            origin_requests: IntCounterVec::new(
                Opts::new(names::ORIGIN_REQUESTS_TOTAL, "Upstream responses received"),
                &["peer", "status_class"],
            )?,
            origin_errors: IntCounterVec::new(
                Opts::new(names::ORIGIN_ERRORS_TOTAL, "Upstream requests that failed"),
                &["kind"],
            )?,
            origin_duration: HistogramVec::new(
                HistogramOpts::new(
                    names::ORIGIN_DURATION_SECONDS,
                    "Upstream time to response head",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["peer"],
            )?,
            fills_in_flight: IntGauge::new(
                names::FILLS_IN_FLIGHT,
                "Origin fetches in flight that readers share",
            )?,
            fill_window_bytes: IntGauge::new(
                names::FILL_WINDOW_BYTES,
                "Body bytes in-flight fills hold in memory for their readers",
            )?,
            cache_bytes: IntGaugeVec::new(
                Opts::new(names::CACHE_BYTES, "Bytes held by a cache tier"),
                &["tier"],
            )?,
            cache_capacity_bytes: IntGaugeVec::new(
                Opts::new(names::CACHE_CAPACITY_BYTES, "Size of a cache tier"),
                &["tier"],
            )?,
            cache_entries: IntGaugeVec::new(
                Opts::new(
                    names::CACHE_ENTRIES,
                    "Entries held by a cache tier (heads, Vary records, body chunks)",
                ),
                &["tier"],
            )?,
            purges: IntCounterVec::new(
                Opts::new(names::PURGES_TOTAL, "Purge items accepted, by kind"),
                &["kind"],
            )?,
            purge_rules: IntGauge::new(names::PURGE_RULES, "Purges in force")?,
            config_reloads: IntCounterVec::new(
                Opts::new(
                    names::CONFIG_RELOADS_TOTAL,
                    "Configuration reloads (SIGHUP, POST /reload) by result",
                ),
                &["result"],
            )?,
            config_generation: IntGauge::new(
                names::CONFIG_GENERATION,
                "The configuration generation in force (1 at start, +1 per applied reload)",
            )?,
            purge_backlog: IntGauge::new(
                names::PURGE_BACKLOG,
                "Purge deliveries still owed to cluster peers",
            )?,
            peer_up: IntGaugeVec::new(
                Opts::new(
                    names::PEER_UP,
                    "1 while a peer gets traffic, 0 while it is out",
                ),
                &["peer", "role"],
            )?,
            peer_active: IntGaugeVec::new(
                Opts::new(names::PEER_ACTIVE, "Requests in flight per peer"),
                &["peer", "role"],
            )?,
            peer_failures: IntCounterVec::new(
                Opts::new(
                    names::PEER_FAILURES_TOTAL,
                    "Failed exchanges per peer, by kind",
                ),
                &["peer", "role", "kind"],
            )?,
            peer_ejections: IntCounterVec::new(
                Opts::new(
                    names::PEER_EJECTIONS_TOTAL,
                    "Times a peer was taken out of rotation after failures in a row",
                ),
                &["peer", "role"],
            )?,
            upstream_retries: IntCounterVec::new(
                Opts::new(
                    names::UPSTREAM_RETRIES_TOTAL,
                    "Requests sent again, to the next peer or the same one",
                ),
                &["reason"],
            )?,
            upstream_connections: IntCounterVec::new(
                Opts::new(
                    names::UPSTREAM_CONNECTIONS_TOTAL,
                    "Connections opened to peers, by protocol",
                ),
                &["peer", "protocol"],
            )?,
            upstream_open_connections: IntGauge::new(
                names::UPSTREAM_OPEN_CONNECTIONS,
                "Connections to peers open now",
            )?,
            upstream_exchanges: IntCounterVec::new(
                Opts::new(
                    names::UPSTREAM_EXCHANGES_TOTAL,
                    "Requests sent to peers, by whether the connection was new or reused",
                ),
                &["connection"],
            )?,
            upstream_reuse_ratio: Gauge::new(
                names::UPSTREAM_REUSE_RATIO,
                "Share of upstream requests since start sent on a reused connection",
            )?,
            compression: crate::transform::Metrics::new(registry)?,
            upgrades: IntCounterVec::new(
                Opts::new(
                    names::UPGRADES_TOTAL,
                    "Requests that asked to switch protocols, by protocol and result",
                ),
                &["protocol", "result"],
            )?,
            live_log_watchers: IntGauge::new(
                names::LIVE_LOG_WATCHERS,
                "Watchers of the live request log (/log) connected now",
            )?,
            open_tunnels: IntGauge::new(
                names::OPEN_TUNNELS,
                "Connections switched to another protocol (WebSocket) open now",
            )?,
            tunnel_bytes: IntCounterVec::new(
                Opts::new(
                    names::TUNNEL_BYTES_TOTAL,
                    "Bytes relayed by tunnels, by direction",
                ),
                &["direction"],
            )?,
            tunnels_closed: IntCounterVec::new(
                Opts::new(names::TUNNELS_CLOSED_TOTAL, "Tunnels ended, by reason"),
                &["reason"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    names::REFUSED_TOTAL,
                    "Requests refused by an access check, by site and reason",
                ),
                &["site", "reason"],
            )?,
            stale_served: IntCounterVec::new(
                Opts::new(
                    names::STALE_SERVED_TOTAL,
                    "Stale objects served, by site and reason (origin_error, revalidating, max_stale)",
                ),
                &["site", "reason"],
            )?,
            trace_spans_exported: IntCounter::new(
                names::TRACE_SPANS_EXPORTED_TOTAL,
                "Trace spans the OTLP collector accepted",
            )?,
            trace_spans_dropped: IntCounterVec::new(
                Opts::new(
                    names::TRACE_SPANS_DROPPED_TOTAL,
                    "Trace spans dropped, by reason (queue_full, export_failed)",
                ),
                &["reason"],
            )?,
            rate_limit_keys: IntGaugeVec::new(
                Opts::new(names::RATE_LIMIT_KEYS, "Keys tracked by rate limits"),
                &["site"],
            )?,
            rate_limit_overflow: IntCounterVec::new(
                Opts::new(
                    names::RATE_LIMIT_OVERFLOW_TOTAL,
                    "Rate limit checks of keys beyond max_keys (one shared bucket)",
                ),
                &["site"],
            )?,
            series: Arc::new(RequestSeries::new(sites.len())),
            sites,
        };
        // Known label sets start at 0, so dashboards see them before the
        // first event (and a rate over them is 0, not "no data").
        for kind in ["url", "prefix", "host", "tag", "replicated"] {
            m.purges.with_label_values(&[kind]);
        }
        for reason in ["connect", "broken", "timeout", "status"] {
            m.upstream_retries.with_label_values(&[reason]);
        }
        for result in ["ok", "error"] {
            m.config_reloads.with_label_values(&[result]);
        }
        m.config_generation.set(1);
        for connection in ["new", "reused"] {
            m.upstream_exchanges.with_label_values(&[connection]);
        }
        for direction in ["to_origin", "to_client"] {
            m.tunnel_bytes.with_label_values(&[direction]);
        }
        for reason in ["closed", "idle", "shutdown", "error"] {
            m.tunnels_closed.with_label_values(&[reason]);
        }
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.response_bytes.clone()))?;
        registry.register(Box::new(m.cache_tier_hits.clone()))?;
        registry.register(Box::new(m.cache_collapsed.clone()))?;
        registry.register(Box::new(m.open_connections.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.origin_requests.clone()))?;
        registry.register(Box::new(m.origin_errors.clone()))?;
        registry.register(Box::new(m.origin_duration.clone()))?;
        registry.register(Box::new(m.time_to_first_byte.clone()))?;
        registry.register(Box::new(m.fills_in_flight.clone()))?;
        registry.register(Box::new(m.fill_window_bytes.clone()))?;
        registry.register(Box::new(m.cache_bytes.clone()))?;
        registry.register(Box::new(m.cache_capacity_bytes.clone()))?;
        registry.register(Box::new(m.cache_entries.clone()))?;
        registry.register(Box::new(m.purges.clone()))?;
        registry.register(Box::new(m.purge_rules.clone()))?;
        registry.register(Box::new(m.purge_backlog.clone()))?;
        registry.register(Box::new(m.config_reloads.clone()))?;
        registry.register(Box::new(m.config_generation.clone()))?;
        registry.register(Box::new(m.peer_up.clone()))?;
        registry.register(Box::new(m.peer_active.clone()))?;
        registry.register(Box::new(m.peer_failures.clone()))?;
        registry.register(Box::new(m.peer_ejections.clone()))?;
        registry.register(Box::new(m.upstream_retries.clone()))?;
        registry.register(Box::new(m.upstream_connections.clone()))?;
        registry.register(Box::new(m.upstream_open_connections.clone()))?;
        registry.register(Box::new(m.upstream_exchanges.clone()))?;
        registry.register(Box::new(m.upstream_reuse_ratio.clone()))?;
        registry.register(Box::new(m.upgrades.clone()))?;
        registry.register(Box::new(m.open_tunnels.clone()))?;
        registry.register(Box::new(m.live_log_watchers.clone()))?;
        registry.register(Box::new(m.tunnel_bytes.clone()))?;
        registry.register(Box::new(m.tunnels_closed.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.stale_served.clone()))?;
        registry.register(Box::new(m.trace_spans_exported.clone()))?;
        registry.register(Box::new(m.trace_spans_dropped.clone()))?;
        registry.register(Box::new(m.rate_limit_keys.clone()))?;
        registry.register(Box::new(m.rate_limit_overflow.clone()))?;
        registry.register(Box::new(m.requests_by_protocol.clone()))?;
        registry.register(Box::new(m.h3_connections.clone()))?;
        Ok(m)
    }
}

/// The access log's and metrics' name of an HTTP version: `h1` (0.9 to
/// 1.1), `h2` or `h3`.
pub fn protocol_name(version: http::Version) -> &'static str {
    ["h1", "h2", "h3"][protocol_index(version)]
}

fn protocol_index(version: http::Version) -> usize {
    match version {
        http::Version::HTTP_2 => 1,
        http::Version::HTTP_3 => 2,
        _ => 0,
    }
}

/// Where a response's body bytes came from, the `source` label of
/// `edge_response_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySource {
    Memory,
    Disk,
    Origin,
    /// Made by the edge itself (errors, purge answers, 304s).
    Edge,
}

impl BodySource {
    const ALL: [BodySource; 4] = [
        BodySource::Memory,
        BodySource::Disk,
        BodySource::Origin,
        BodySource::Edge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BodySource::Memory => "memory",
            BodySource::Disk => "disk",
            BodySource::Origin => "origin",
            BodySource::Edge => "edge",
        }
    }
}

const STATUS_CLASSES: usize = 5;
const BODY_ENDS: usize = 3;
const CACHE_STATUSES: usize = 6;
const TIERS: usize = 2;

/// The series every request updates, resolved once per label set:
/// `with_label_values` hashes its labels and takes a lock on each call,
/// and a hit made five of those calls.
#[derive(Debug)]
struct RequestSeries {
    requests: Series<IntCounter>,
    duration: Series<prometheus::Histogram>,
    time_to_first_byte: Series<prometheus::Histogram>,
    response_bytes: Series<IntCounter>,
    tier_hits: Series<IntCounter>,
}

/// One metric's children by index, each made on first use (a label set
/// never used is never exported, as with `with_label_values`).
#[derive(Debug)]
struct Series<M>(Box<[OnceLock<M>]>);

impl<M> Series<M> {
    fn new(len: usize) -> Self {
        Series((0..len).map(|_| OnceLock::new()).collect())
    }

    fn get(&self, index: usize, make: impl FnOnce() -> M) -> &M {
        self.0[index].get_or_init(make)
    }
}

impl RequestSeries {
    fn new(sites: usize) -> Self {
        RequestSeries {
            requests: Series::new(sites * STATUS_CLASSES * BODY_ENDS * CACHE_STATUSES),
            duration: Series::new(STATUS_CLASSES * CACHE_STATUSES),
            time_to_first_byte: Series::new(CACHE_STATUSES),
            response_bytes: Series::new(sites * CACHE_STATUSES * BodySource::ALL.len()),
            tier_hits: Series::new(TIERS),
        }
    }
}

impl Metrics {
    /// `edge_requests_total{site, status_class, body_end, cache_status}`.
    /// The `edge_requests_by_protocol_total` series of a request over
    /// `version`.
    pub fn protocol(&self, version: http::Version) -> &IntCounter {
        &self.by_protocol[protocol_index(version)]
    }

    pub fn request(
        &self,
        site: usize,
        status: http::StatusCode,
        end: BodyEnd,
        cache: CacheStatus,
    ) -> &IntCounter {
        let site = self.site_index(site);
        let class = class_index(status);
        let index = ((site * STATUS_CLASSES + class) * BODY_ENDS + end as usize) * CACHE_STATUSES
            + cache as usize;
        self.series.requests.get(index, || {
            self.requests.with_label_values(&[
                &self.sites[site],
                status_class(status),
                end.as_str(),
                cache.as_str(),
            ])
        })
    }

    /// The same metrics with these sites as the `site` label's values (a
    /// reload changed the sites): the counters go on, only the per-request
    /// series are resolved anew.
    pub fn for_sites(&self, sites: &[String]) -> Metrics {
        let sites: Arc<[String]> = if sites.is_empty() {
            Arc::from(vec!["default".to_owned()])
        } else {
            Arc::from(sites.to_vec())
        };
        Metrics {
            series: Arc::new(RequestSeries::new(sites.len())),
            sites,
            ..self.clone()
        }
    }

    /// `edge_refused_total{site, reason}`; refusals are rare next to
    /// requests, so the label lookup is not cached.
    pub fn refused(&self, site: usize, reason: &str) -> IntCounter {
        let site = self.site_label(site);
        self.refused.with_label_values(&[site, reason])
    }

    /// `edge_stale_served_total{site, reason}`.
    pub fn stale_served(&self, site: usize, reason: &str) -> IntCounter {
        let site = self.site_label(site);
        self.stale_served.with_label_values(&[site, reason])
    }

    /// The `site` label of a site index.
    pub fn site_label(&self, site: usize) -> &str {
        self.sites
            .get(self.site_index(site))
            .map_or("default", String::as_str)
    }

    /// `site` if it names a site, else the first (never out of range).
    fn site_index(&self, site: usize) -> usize {
        if site < self.sites.len() { site } else { 0 }
    }

    /// `edge_request_duration_seconds{status_class, cache_status}`.
    pub fn duration(&self, status: http::StatusCode, cache: CacheStatus) -> &prometheus::Histogram {
        let index = class_index(status) * CACHE_STATUSES + cache as usize;
        self.series.duration.get(index, || {
            self.request_duration
                .with_label_values(&[status_class(status), cache.as_str()])
        })
    }

    /// `edge_time_to_first_byte_seconds{cache_status}`.
    pub fn first_byte(&self, cache: CacheStatus) -> &prometheus::Histogram {
        self.series.time_to_first_byte.get(cache as usize, || {
            self.time_to_first_byte.with_label_values(&[cache.as_str()])
        })
    }

    /// `edge_response_bytes_total{site, cache_status, source}`.
    pub fn body_bytes(&self, site: usize, cache: CacheStatus, source: BodySource) -> &IntCounter {
        let site = self.site_index(site);
        let index =
            (site * CACHE_STATUSES + cache as usize) * BodySource::ALL.len() + source as usize;
        self.series.response_bytes.get(index, || {
            self.response_bytes.with_label_values(&[
                &self.sites[site],
                cache.as_str(),
                source.as_str(),
            ])
        })
    }

    /// `edge_cache_tier_hits_total{tier}`.
    pub fn tier_hit(&self, tier: Tier) -> &IntCounter {
        self.series.tier_hits.get(tier as usize, || {
            self.cache_tier_hits.with_label_values(&[tier.as_str()])
        })
    }
}

const STATUS_CLASS_NAMES: [&str; STATUS_CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index of `status`'s class in [`STATUS_CLASS_NAMES`].
fn class_index(status: http::StatusCode) -> usize {
    // StatusCode is 100..=999: classes 6xx and up count as 5xx.
    usize::from(status.as_u16() / 100).clamp(1, STATUS_CLASSES) - 1
}

/// `2xx`, `4xx` …: a label with five values rather than sixty.
pub fn status_class(status: http::StatusCode) -> &'static str {
    STATUS_CLASS_NAMES[class_index(status)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series indexes assume these enums' sizes.
    #[test]
    fn series_cover_every_label_value() {
        assert_eq!(CacheStatus::Pass as usize, CACHE_STATUSES - 1);
        assert_eq!(BodyEnd::Aborted as usize, BODY_ENDS - 1);
        assert_eq!(Tier::Disk as usize, TIERS - 1);
        assert_eq!(
            class_index(http::StatusCode::from_u16(599).unwrap()),
            STATUS_CLASSES - 1
        );
        let registry = Registry::new();
        let sites = ["default".to_owned(), "shop".to_owned()];
        let m = Metrics::register_for_sites(&registry, &sites).unwrap();
        m.request(0, http::StatusCode::OK, BodyEnd::Complete, CacheStatus::Hit)
            .inc();
        m.request(0, http::StatusCode::OK, BodyEnd::Complete, CacheStatus::Hit)
            .inc();
        m.request(1, http::StatusCode::OK, BodyEnd::Complete, CacheStatus::Hit)
            .inc();
        m.request(
            1,
            http::StatusCode::BAD_GATEWAY,
            BodyEnd::Error,
            CacheStatus::Miss,
        )
        .inc();
        // An index past the sites counts for the first, never panics.
        m.request(9, http::StatusCode::OK, BodyEnd::Complete, CacheStatus::Hit)
            .inc();
        m.body_bytes(1, CacheStatus::Hit, BodySource::Disk)
            .inc_by(7);
        m.tier_hit(Tier::Disk).inc();
        m.duration(http::StatusCode::NOT_FOUND, CacheStatus::Pass)
            .observe(0.1);
        m.first_byte(CacheStatus::Stale).observe(0.1);
        let hits = |site| {
            m.requests
                .with_label_values(&[site, "2xx", "complete", "HIT"])
                .get()
        };
        assert_eq!((hits("default"), hits("shop")), (3, 1));
        let errors = m
            .requests
            .with_label_values(&["shop", "5xx", "error", "MISS"]);
        assert_eq!(errors.get(), 1);
        let bytes = m.response_bytes.with_label_values(&["shop", "HIT", "disk"]);
        assert_eq!(bytes.get(), 7);
        assert_eq!(m.cache_tier_hits.with_label_values(&["disk"]).get(), 1);
        let duration = m.request_duration.with_label_values(&["4xx", "PASS"]);
        assert_eq!(duration.get_sample_count(), 1);
        let ttfb = m.time_to_first_byte.with_label_values(&["STALE"]);
        assert_eq!(ttfb.get_sample_count(), 1);
    }

    #[test]
    fn registers_once_and_encodes() {
        let registry = Registry::new();
        let m = Metrics::register(&registry).unwrap();
        m.requests
            .with_label_values(&["default", "2xx", "complete", "HIT"])
            .inc();
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut out)
            .unwrap();
        assert!(out.contains(
            "edge_requests_total{body_end=\"complete\",cache_status=\"HIT\",site=\"default\",status_class=\"2xx\"} 1"
        ));
        assert!(
            Metrics::register(&registry).is_err(),
            "double registration is refused"
        );
    }

    #[test]
    fn classes() {
        assert_eq!(status_class(http::StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(http::StatusCode::CONTINUE), "1xx");
        assert_eq!(
            status_class(http::StatusCode::from_u16(999).unwrap()),
            "5xx"
        );
        assert_eq!(status_class(http::StatusCode::GATEWAY_TIMEOUT), "5xx");
    }
}
