//! The one validated `Config`, layered CLI flags and `EDGE_*` env vars > TOML
//! file > defaults.
//!
//! Every field documents its default; `examples/edge.toml` lists them all.
//! A bad file is an error naming the file, line and key, never a panic.

mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use origin_shield::balance::Policy;
use origin_shield::health::HealthPolicy;
use origin_shield::{Peer, Role, Scheme, Transport};
use serde::{Deserialize, Deserializer};

use crate::cli::Cli;
pub use units::{ByteSize, parse_duration};
use units::{de_duration, de_opt_duration};

/// Everything the server needs, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Client-facing listener. Default: `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/metrics`). Default: `127.0.0.1:9090`.
    /// Keep it on loopback or a private network.
    pub admin: SocketAddr,
    /// Where the disk cache and durable metadata live. Default: `./edge-data`.
    pub data_dir: PathBuf,
    /// This node's name in `Via`. Default: `edge`.
    pub node_name: String,
    /// `text` or `json`. Default: `text`.
    pub log_format: LogFormat,
    /// Write access lines (target `access`) to this file, appending, instead
    /// of stdout; other logs stay on stdout. Default: unset (stdout).
    pub access_log: Option<PathBuf>,
    /// Origin servers, `http(s)://host[:port]` or `{ url = "...", weight = N,
    /// http2 = bool, tls_name = "...", tls_verify = bool }`;
    /// requests are spread over them by `upstream.balance`, falling through
    /// to the next on connect failure. Default: none (at least one is
    /// required).
    #[serde(deserialize_with = "de_peers")]
    pub origins: Vec<Peer>,
    /// Shield nodes (other `edge` nodes), the same list on every node of a
    /// tier: `http://host:port` or `{ url = "...", weight = N, name = "..." }`.
    /// A cacheable miss goes to the shield that the consistent-hash ring
    /// picks for its key (falling through the ring, then to the origins,
    /// when shields are down); a node that finds itself in the list (by
    /// listen address or `name` = `node_name`) fetches its own keys from
    /// the origins. Default: none.
    #[serde(deserialize_with = "de_shields")]
    pub shields: Vec<ShieldPeer>,
    pub cache: CacheConfig,
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub purge: PurgeSettings,
    pub tls: TlsSettings,
}

/// HTTPS for clients: a second listener that terminates TLS (1.2 and 1.3,
/// ALPN `h2` and `http/1.1`) and serves the same pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Where to listen for TLS. Default: unset (no TLS listener).
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// More certificates, chosen by the SNI name a client asks for (exact
    /// names first, then `*.example.com` wildcards); `cert`/`key` above is
    /// the default for names none of them covers. Default: none.
    pub certs: Vec<SniCert>,
    /// How often the certificate files are checked for changes (they are
    /// also reloaded on SIGHUP). Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub reload_interval: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            listen: None,
            cert: None,
            key: None,
            certs: Vec::new(),
            reload_interval: Duration::from_secs(10),
        }
    }
}

/// A certificate for some server names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Names it serves: `www.example.com`, or `*.example.com`.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The purge API (on the admin listener) and the `PURGE` method.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeSettings {
    /// Bearer token the purge API and the `PURGE` method accept.
    /// Default: unset (the API answers 403 until one is set).
    pub token: Option<Secret>,
    /// Admin URLs of the other nodes of the cluster (`http://host:port`):
    /// every purge received here is forwarded to them until each has
    /// acknowledged it. Default: none.
    pub peers: Vec<String>,
    /// Client networks allowed to send `PURGE` on the main listener without
    /// the token. Default: `["127.0.0.1/32", "::1/128"]`.
    pub allow_from: Vec<String>,
    /// How long purge rules are kept; an object stored longer ago than this
    /// is refetched, since a rule that covered it may be forgotten.
    /// Default: `7d`.
    #[serde(deserialize_with = "de_duration")]
    pub rule_ttl: Duration,
    /// Most items per list in one purge request. Default: `1000`.
    pub max_items: usize,
    /// Remove `Surrogate-Key` from responses to clients (it is an origin's
    /// note to its CDN). Default: `true`.
    pub strip_surrogate_key: bool,
    /// Longest wait between two attempts to deliver a purge to a peer that
    /// is down (the wait doubles from 200ms up to this). Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub retry_max: Duration,
}

impl Default for PurgeSettings {
    fn default() -> Self {
        PurgeSettings {
            token: None,
            peers: Vec::new(),
            allow_from: vec!["127.0.0.1/32".into(), "::1/128".into()],
            rule_ttl: Duration::from_secs(7 * 86_400),
            max_items: 1000,
            strip_surrogate_key: true,
            retry_max: Duration::from_secs(30),
        }
    }
}

/// A value never printed: `Debug` and logs show `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is in the network. IPv4 clients and IPv4-mapped IPv6
    /// clients (`::ffff:a.b.c.d`, from a dual-stack listener) are the same
    /// client, whichever way the network is written.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match self.addr {
            IpAddr::V4(net) => {
                let ip = match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(v6) => v6.to_ipv4_mapped(),
                };
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                ip.is_some_and(|ip| u32::from(net) & mask == u32::from(ip) & mask)
            }
            IpAddr::V6(net) => {
                let ip = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`key=value` fields).
    Text,
    /// One JSON object per line.
    Json,
}

/// The two cache tiers and the caching policy choices RFC 9111 leaves open.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory tier budget. Default: `256MiB`.
    pub memory: ByteSize,
    /// Disk tier size under `data_dir/cache`, at least `64MiB`.
    /// Default: `1GiB`.
    pub disk: ByteSize,
    /// Larger responses are not stored whole: they are kept in slices if
    /// the origin serves ranges, else passed through. Default: `256MiB`.
    pub max_object_size: ByteSize,
    /// Large objects are cached as slices of this size, each fetched from
    /// the origin with a Range request when first needed: a range request
    /// on a miss fetches only the slices it touches, as does any response
    /// larger than `max_object_size`. `0` turns slicing off. Default: `4MiB`.
    pub slice_size: ByteSize,
    /// Store responses that set cookies. Default: `false`.
    pub allow_set_cookie: bool,
    /// Store responses to requests with `Cookie` even when the response
    /// does not say it may be shared (`public`, `s-maxage`,
    /// `CDN-Cache-Control` or `Vary: Cookie`). Default: `false`, so a page
    /// built for one signed-in user is never served to others.
    pub allow_cookie_requests: bool,
    /// Heuristic freshness: this fraction of the time since
    /// `Last-Modified` (RFC 9111 §4.2.2); `0` disables it. Default: `0.1`.
    pub heuristic_fraction: f64,
    /// Cap on a heuristic lifetime. Default: `1d`.
    #[serde(deserialize_with = "de_duration")]
    pub heuristic_max: Duration,
    /// Lifetime for cacheable-by-default responses without any freshness
    /// information. Default: unset (such responses are not reused).
    #[serde(deserialize_with = "de_opt_duration")]
    pub default_ttl: Option<Duration>,
    /// Honour `CDN-Cache-Control` and `Surrogate-Control` ahead of
    /// `Cache-Control`. Default: `true`.
    pub honor_cdn_cache_control: bool,
    /// Query parameters left out of cache keys (e.g. `utm_source`).
    /// Default: none.
    pub key_ignore_query_params: Vec<String>,
    /// Sort query parameters in cache keys. Default: `false`.
    pub key_sort_query: bool,
    /// Leave the scheme out of cache keys, so `http://` and `https://`
    /// requests share objects. Default: `false` (nginx's default key has
    /// `$scheme` too).
    pub key_ignore_scheme: bool,
    /// Body bytes an in-flight fill keeps in memory for its readers;
    /// readers further behind read from the store. All fills together keep
    /// at most a quarter of `memory` this way. Default: `8MiB`.
    pub fill_window: ByteSize,
    /// How long a miss waits for another request's response head before
    /// fetching on its own. Default: `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub fill_wait_timeout: Duration,
    /// How long a URL whose response could not be stored skips the wait
    /// ("hit-for-pass"). Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub hit_for_pass: Duration,
}

impl CacheConfig {
    /// How requests map to cache keys.
    pub fn key_rules(&self) -> cache::KeyRules {
        cache::KeyRules {
            ignore_query_params: self.key_ignore_query_params.clone(),
            sort_query: self.key_sort_query,
            ignore_scheme: self.key_ignore_scheme,
        }
    }
}

impl CacheConfig {
    /// The policy choices as the `cache` crate takes them.
    pub fn policy_options(&self) -> cache::policy::PolicyOptions {
        cache::policy::PolicyOptions {
            allow_set_cookie: self.allow_set_cookie,
            allow_cookie_requests: self.allow_cookie_requests,
            heuristic_fraction: (self.heuristic_fraction > 0.0).then_some(self.heuristic_fraction),
            heuristic_max: self.heuristic_max,
            default_ttl: self.default_ttl,
            honor_cdn_cache_control: self.honor_cdn_cache_control,
        }
    }
}

/// Limits and timeouts of the client-facing side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Open client connections at most; beyond it new connections wait in the
    /// kernel's accept queue. Default: `10000`.
    pub max_connections: usize,
    /// Largest request head (request line + headers); larger gets 431.
    /// At least `8KiB`. Default: `64KiB`.
    pub max_header_bytes: ByteSize,
    /// Most request header fields; more gets 431. Default: `100`.
    pub max_headers: usize,
    /// Time a client has to send a complete request head, and for a new
    /// connection to send its first request. On HTTP/1.1 this clock also runs
    /// while a keep-alive connection waits for its next request, so the
    /// effective HTTP/1.1 keep-alive time is the smaller of this and
    /// `idle_timeout`. Default: `15s`.
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long since its last
    /// request ended is closed (before its first request,
    /// `header_read_timeout` applies). Bytes that do not make a request,
    /// such as HTTP/2 PINGs, do not count. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long (the client
    /// stopped reading) closes the connection. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub send_timeout: Duration,
    /// Longest gap between two pieces of a request body; exceeded gives 408.
    /// Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub client_body_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// before the process exits anyway. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// HTTP/2 streams per connection. Default: `128`.
    pub h2_max_concurrent_streams: u32,
    /// Runtime worker threads; `0` means one per CPU, `1` a single-threaded
    /// scheduler (for a node pinned to one core). Default: `0`.
    pub worker_threads: usize,
}

/// How this node talks to its origins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// TCP connect timeout; exceeded gives 504. Default: `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Time from sending the request to receiving the response head;
    /// exceeded gives 504. Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// Longest gap between two pieces of a response body; exceeded aborts
    /// the response (the client sees a truncated body). Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub read_timeout: Duration,
    /// Idle pooled connections are closed after this. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub pool_idle_timeout: Duration,
    /// Idle keep-alive connections kept per origin (HTTP/1.1; an HTTP/2
    /// peer gets one multiplexed connection). Default: `256`.
    pub pool_max_idle_per_host: usize,
    /// PEM bundle of the CAs that https peers must chain to, instead of the
    /// system roots. Default: unset (system roots).
    pub tls_ca: Option<PathBuf>,
    /// Replace the client's `Host` with this value towards the origin.
    /// Default: unset (the client's `Host` is kept).
    pub host_header: Option<String>,
    /// How requests are spread over the origins: `round_robin`, `weighted`
    /// (smooth weighted round robin), `least_conn`, `p2c` (power of two
    /// choices), `hash_key` (consistent hash of the cache key) or `hash_ip`
    /// (of the client address). Default: `round_robin`.
    #[serde(deserialize_with = "de_policy")]
    pub balance: Policy,
    /// Failures in a row (connect errors, timeouts, 5xx) that take a peer
    /// out of rotation; 0 never does. Default: `3`.
    pub max_fails: u32,
    /// How long a peer stays out the first time; doubled for each further
    /// ejection in a row, up to 5 minutes. Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub fail_timeout: Duration,
    /// Requests in flight a peer may hold (circuit breaker); 0 is
    /// unlimited. Default: `0`.
    pub max_conns: u32,
    /// Retries on other peers (after timeouts and broken exchanges of
    /// idempotent requests) as a fraction of requests, so a failing origin
    /// is not hit twice by everything. Default: `0.2`.
    pub retry_budget: f64,
    /// Nodes a request may have passed (entries in `CDN-Loop`) before it is
    /// refused with 508; a request that already passed this node skips the
    /// shields. Default: `4`.
    pub max_hops: u32,
    /// How often origins given by host name are resolved again; each
    /// address becomes a pool member. `0s` resolves per connection only.
    /// Default: `30s`.
    #[serde(deserialize_with = "de_duration")]
    pub resolve_interval: Duration,
    /// Active health checks of every origin and shield.
    pub health: HealthCheckConfig,
}

/// Active health checks: a GET to `path` on every peer each `interval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Path to probe, e.g. `/healthz`. Default: unset (no active checks;
    /// failures are still counted passively).
    pub path: Option<String>,
    /// Default: `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Default: `2s`.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// The status a healthy peer answers. Default: `200`.
    pub expect_status: u16,
    /// Successful probes in a row that bring a peer back. Default: `2`.
    pub rise: u32,
    /// Failed probes in a row that take a peer down. Default: `3`.
    pub fall: u32,
}

/// A shield peer and the name it goes by (to recognise this node).
#[derive(Debug, Clone)]
pub struct ShieldPeer {
    pub peer: Peer,
    pub name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
            data_dir: PathBuf::from("./edge-data"),
            node_name: "edge".to_owned(),
            log_format: LogFormat::Text,
            access_log: None,
            origins: Vec::new(),
            shields: Vec::new(),
            purge: PurgeSettings::default(),
            tls: TlsSettings::default(),
            cache: CacheConfig::default(),
            server: ServerConfig::default(),
            upstream: UpstreamConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: ByteSize::mib(256),
            disk: ByteSize::gib(1),
            max_object_size: ByteSize::mib(256),
            slice_size: ByteSize::mib(4),
            allow_set_cookie: false,
            allow_cookie_requests: false,
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(86_400),
            default_ttl: None,
            honor_cdn_cache_control: true,
            key_ignore_query_params: Vec::new(),
            key_sort_query: false,
            key_ignore_scheme: false,
            fill_window: ByteSize::mib(8),
            fill_wait_timeout: Duration::from_secs(5),
            hit_for_pass: Duration::from_secs(10),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 10_000,
            max_header_bytes: ByteSize::kib(64),
            max_headers: 100,
            header_read_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            h2_max_concurrent_streams: 128,
            worker_threads: 0,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_host: 256,
            tls_ca: None,
            host_header: None,
            balance: Policy::RoundRobin,
            max_fails: 3,
            fail_timeout: Duration::from_secs(10),
            max_conns: 0,
            retry_budget: 0.2,
            max_hops: 4,
            resolve_interval: Duration::from_secs(30),
            health: HealthCheckConfig::default(),
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            expect_status: 200,
            rise: 2,
            fall: 3,
        }
    }
}

impl UpstreamConfig {
    /// The thresholds every peer is judged by.
    pub fn health_policy(&self) -> HealthPolicy {
        HealthPolicy {
            max_fails: self.max_fails,
            fail_timeout: self.fail_timeout,
            max_ejection: Duration::from_secs(300),
            max_conns: self.max_conns,
            rise: self.health.rise,
            fall: self.health.fall,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {}{message}", path.display(), key_prefix(key))]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the offending key, when known.
        key: Option<String>,
        message: String,
    },
    #[error("{origin}`{key}`{}: {message}", flag.map(|f| format!(" ({f})")).unwrap_or_default())]
    Invalid {
        /// Where the bad value came from, `file:line: ` or
        /// `command line: `, or empty when it is a default.
        origin: String,
        key: &'static str,
        /// The flag that sets the key, if there is one.
        flag: Option<&'static str>,
        message: String,
    },
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!("key `{k}`: "))
        .unwrap_or_default()
}

impl Config {
    /// Parses a TOML document; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_error = |err: &toml::de::Error, key: Option<String>| {
            let (line, column) = err
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                key,
                message: err.message().trim().to_owned(),
            }
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| parse_error(&e, None))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != ".").then_some(key);
            parse_error(e.inner(), key)
        })
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// The file named by `--config` (or `--check-config`), if any, then the
    /// flags and `EDGE_*` variables over it, validated.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = cli.check_config.as_deref().or(cli.config.as_deref());
        let (mut config, text) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                (Config::from_toml(&text, path)?, Some(text))
            }
            None => (Config::default(), None),
        };
        cli.apply_to(&mut config);
        config.validate().map_err(|(key, message)| {
            let origin = if cli.overrides(key) {
                "command line: ".to_owned()
            } else {
                match (file, text.as_deref().and_then(|t| key_line(t, key))) {
                    (Some(path), Some(line)) => format!("{}:{line}: ", path.display()),
                    (Some(path), None) => format!("{}: ", path.display()),
                    (None, _) => String::new(),
                }
            };
            ConfigError::Invalid {
                origin,
                key,
                flag: Cli::flag_for(key),
                message,
            }
        })?;
        Ok(config)
    }

    /// Checks what serde cannot: required values and cross-field limits.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        // (Port 0 asks for any free port: two of those never clash.)
        if self.listen == self.admin && self.listen.port() != 0 {
            return Err((
                "admin",
                format!(
                    "{} is also the listen address: give the admin listener its own",
                    self.admin
                ),
            ));
        }
        if self.tls.listen.is_some() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err((
                "tls.listen",
                "a TLS listener needs tls.cert and tls.key (--tls-cert, --tls-key)".into(),
            ));
        }
        if self.origins.is_empty() {
            return Err((
                "origins",
                "no origin configured: pass --origin http://HOST:PORT or set `origins`".into(),
            ));
        }
        if http::HeaderValue::from_str(&format!("1.1 {}", self.node_name)).is_err()
            || self.node_name.is_empty()
            || self.node_name.contains([' ', ','])
        {
            return Err((
                "node_name",
                format!(
                    "{:?} must be a non-empty token (no spaces or commas)",
                    self.node_name
                ),
            ));
        }
        if let Some(host) = &self.upstream.host_header
            && http::HeaderValue::from_str(host).is_err()
        {
            return Err((
                "upstream.host_header",
                format!("{host:?} is not a valid header value"),
            ));
        }
        if self.server.max_header_bytes < ByteSize::kib(8) {
            return Err(("server.max_header_bytes", "must be at least 8KiB".into()));
        }
        if self.server.max_connections == 0 {
            return Err(("server.max_connections", "must be at least 1".into()));
        }
        if self.server.max_headers == 0 {
            return Err(("server.max_headers", "must be at least 1".into()));
        }
        if self.server.h2_max_concurrent_streams == 0 {
            return Err((
                "server.h2_max_concurrent_streams",
                "must be at least 1".into(),
            ));
        }
        if self.cache.memory < ByteSize::mib(1) {
            return Err(("cache.memory", "must be at least 1MiB".into()));
        }
        if self.cache.disk < ByteSize::mib(64) {
            return Err(("cache.disk", "must be at least 64MiB".into()));
        }
        if !(0.0..=1.0).contains(&self.upstream.retry_budget) {
            return Err(("upstream.retry_budget", "must be between 0 and 1".into()));
        }
        if self.upstream.max_hops == 0 {
            return Err(("upstream.max_hops", "must be at least 1".into()));
        }
        if let Some(path) = &self.upstream.health.path
            && (!path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err())
        {
            return Err((
                "upstream.health.path",
                format!("{path:?} must be a path starting with /"),
            ));
        }
        if http::StatusCode::from_u16(self.upstream.health.expect_status).is_err() {
            return Err(("upstream.health.expect_status", "not an HTTP status".into()));
        }
        for net in &self.purge.allow_from {
            if let Err(why) = net.parse::<IpNet>() {
                return Err(("purge.allow_from", why));
            }
        }
        if let Some(peer) = self.purge.peers.iter().find(|p| p.parse::<Peer>().is_err()) {
            return Err((
                "purge.peers",
                format!("{peer:?} is not an http://HOST:PORT admin URL"),
            ));
        }
        if self.purge.token.as_ref().is_some_and(|t| t.0.len() < 8) {
            return Err(("purge.token", "must be at least 8 characters".into()));
        }
        let slice = self.cache.slice_size;
        if slice.as_u64() != 0 && (slice < ByteSize::kib(64) || slice > ByteSize::mib(64)) {
            return Err((
                "cache.slice_size",
                "must be 0 (off) or between 64KiB and 64MiB".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.cache.heuristic_fraction) {
            return Err(("cache.heuristic_fraction", "must be between 0 and 1".into()));
        }
        let timeouts = [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.send_timeout", self.server.send_timeout),
            (
                "server.client_body_timeout",
                self.server.client_body_timeout,
            ),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.header_timeout", self.upstream.header_timeout),
            ("upstream.read_timeout", self.upstream.read_timeout),
            ("upstream.fail_timeout", self.upstream.fail_timeout),
            ("purge.rule_ttl", self.purge.rule_ttl),
            ("purge.retry_max", self.purge.retry_max),
            ("tls.reload_interval", self.tls.reload_interval),
            ("upstream.health.interval", self.upstream.health.interval),
            ("upstream.health.timeout", self.upstream.health.timeout),
        ];
        if let Some((key, _)) = timeouts.iter().find(|(_, d)| d.is_zero()) {
            return Err((key, "must be greater than zero".into()));
        }
        Ok(())
    }
}

/// The line of a TOML file where the dotted `key` is set, if it is.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = header.trim();
            continue;
        }
        let assigned = line
            .split_once('=')
            .is_some_and(|(lhs, _)| lhs.trim() == name);
        if current == section && assigned {
            return Some(i + 1);
        }
    }
    None
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// A peer in the config: a URL, or a table with a weight, a name and how
/// to connect.
enum PeerEntry {
    Url(String),
    Table(PeerTable),
}

/// By hand rather than `untagged`, so that a bad key in a table is named
/// instead of "did not match any variant".
impl<'de> Deserialize<'de> for PeerEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PeerEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or a table with `url`")
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<PeerEntry, E> {
                Ok(PeerEntry::Url(url.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PeerEntry, A::Error> {
                PeerTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(PeerEntry::Table)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerTable {
    url: String,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    name: Option<String>,
    /// HTTP/2: ALPN over TLS, prior knowledge in cleartext.
    #[serde(default)]
    http2: bool,
    /// `false` accepts any certificate (self-signed labs only).
    #[serde(default = "yes")]
    tls_verify: bool,
    /// SNI and certificate name, when not the URL's host.
    #[serde(default)]
    tls_name: Option<String>,
}

fn yes() -> bool {
    true
}

impl PeerEntry {
    fn parse<E: serde::de::Error>(self, role: Role) -> Result<(Peer, Option<String>), E> {
        let table = match self {
            PeerEntry::Url(url) => PeerTable {
                url,
                weight: None,
                name: None,
                http2: false,
                tls_verify: true,
                tls_name: None,
            },
            PeerEntry::Table(table) => table,
        };
        let url = table.url;
        if table.weight.is_some_and(|w| w == 0 || w > 100) {
            return Err(E::custom(format!("{url}: weight must be 1 to 100")));
        }
        let peer = url
            .parse::<Peer>()
            .map_err(E::custom)?
            .with_weight(table.weight.unwrap_or(1))
            .with_role(role);
        if table.name.is_some() && role == Role::Origin {
            return Err(E::custom(format!(
                "{url}: `name` is for shields (to recognise this node); origins have none"
            )));
        }
        let tls_settings = !table.tls_verify || table.tls_name.is_some();
        if tls_settings && peer.scheme() != Scheme::Https {
            return Err(E::custom(format!(
                "{url}: tls_verify and tls_name apply to https:// peers only"
            )));
        }
        if let Some(name) = &table.tls_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(E::custom(format!(
                "{url}: tls_name {name:?} is not a DNS name or IP address"
            )));
        }
        let peer = peer.with_transport(Transport {
            http2: table.http2,
            insecure_skip_verify: !table.tls_verify,
            tls_name: table.tls_name.map(Into::into),
        });
        Ok((peer, table.name))
    }
}

fn de_peers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Peer>, D::Error> {
    Vec::<PeerEntry>::deserialize(d)?
        .into_iter()
        .map(|e| e.parse(Role::Origin).map(|(peer, _)| peer))
        .collect()
}

fn de_shields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ShieldPeer>, D::Error> {
    Vec::<PeerEntry>::deserialize(d)?
        .into_iter()
        .map(|e| {
            e.parse(Role::Shield)
                .map(|(peer, name)| ShieldPeer { peer, name })
        })
        .collect()
}

fn de_policy<'de, D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("edge.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen, Config::default().listen);
        assert_eq!(c.server.max_headers, 100);
        assert_eq!(c.cache.memory, ByteSize::mib(256));
    }

    #[test]
    fn the_admin_listener_is_loopback_unless_told_otherwise() {
        // Metrics, stats and purge live there: never on the open internet
        // by accident, whether from an empty file or the shipped example.
        assert!(parse("").unwrap().admin.ip().is_loopback());
        let example = include_str!("../../../examples/edge.toml");
        assert!(parse(example).unwrap().admin.ip().is_loopback());
    }

    #[test]
    fn networks_match_ipv4_clients_however_either_is_written() {
        // Found by fuzzing: a network written IPv4-mapped never matched.
        let v4: std::net::IpAddr = "10.1.0.1".parse().unwrap();
        let mapped: std::net::IpAddr = "::ffff:10.1.0.1".parse().unwrap();
        let other: std::net::IpAddr = "10.1.0.2".parse().unwrap();
        for net in [
            "10.1.0.1",
            "10.1.0.0/24",
            "::ffff:10.1.0.1",
            "::ffff:10.1.0.0/120",
        ] {
            let net: IpNet = net.parse().unwrap();
            assert!(net.contains(v4), "{net:?}");
            assert!(net.contains(mapped), "{net:?}");
        }
        let exact: IpNet = "::ffff:10.1.0.1".parse().unwrap();
        assert!(!exact.contains(other));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(!v6.contains(v4));
        assert!(v6.contains("2001:db8::5".parse().unwrap()));
    }

    #[test]
    fn reads_every_section() {
        let c = parse(
            r#"
listen = "0.0.0.0:80"
origins = ["http://10.0.0.1:8000", "http://10.0.0.2"]
[cache]
memory = "1GiB"
disk = 4294967296
[server]
idle_timeout = "2m"
[upstream]
host_header = "origin.internal"
"#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 80);
        assert_eq!(c.origins.len(), 2);
        assert_eq!(c.cache.memory, ByteSize::gib(1));
        assert_eq!(c.cache.disk, ByteSize::gib(4));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.upstream.host_header.as_deref(), Some("origin.internal"));
    }

    #[test]
    fn peers_take_weights_names_and_a_policy() {
        let c = parse(
            r#"
origins = ["http://10.0.0.1:8000", { url = "http://10.0.0.2", weight = 3 }]
shields = [{ url = "http://10.1.0.1:8080", name = "shield-a" }, "http://10.1.0.2:8080"]
[upstream]
balance = "weighted"
max_fails = 5
[upstream.health]
path = "/healthz"
"#,
        )
        .unwrap();
        assert_eq!(c.origins[1].weight(), 3);
        assert_eq!(c.shields[0].name.as_deref(), Some("shield-a"));
        assert_eq!(c.shields[1].peer.role(), Role::Shield);
        assert_eq!(c.upstream.balance, Policy::Weighted);
        assert_eq!(c.upstream.health.path.as_deref(), Some("/healthz"));
        let err = parse("origins = [\"http://a\"]\n[upstream]\nbalance = \"random\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3:") && err.contains("least_conn"), "{err}");
        let err = parse("origins = [{ url = \"http://a\", weight = 0 }]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("weight"), "{err}");
    }

    #[test]
    fn peer_tables_take_tls_settings_and_name_bad_keys() {
        let c = parse(
            "origins = [{ url = \"https://10.0.0.1\", tls_name = \"o.example\", http2 = true }]\n",
        )
        .unwrap();
        let peer = &c.origins[0];
        assert_eq!(peer.tls_name(), "o.example");
        assert!(peer.transport().http2 && !peer.transport().insecure_skip_verify);
        for (bad, says) in [
            (
                "{ url = \"http://a\", tls_verify = false }",
                "https:// peers only",
            ),
            (
                "{ url = \"https://a\", tls_name = \"not a name\" }",
                "not a DNS name",
            ),
            ("{ url = \"http://a\", name = \"x\" }", "for shields"),
            ("{ url = \"http://a\", wieght = 2 }", "wieght"),
        ] {
            let err = parse(&format!("origins = [{bad}]\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && err.contains("edge.toml:1"), "{err}");
        }
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.0.1".parse().unwrap()),
            "v4-mapped"
        );
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        let c = parse("origins = [\"http://a\"]\n[purge]\nallow_from = [\"nope\"]\n").unwrap();
        assert_eq!(c.validate().unwrap_err().0, "purge.allow_from");
        let c = parse("origins = [\"http://a\"]\n[purge]\ntoken = \"0123456789\"\n").unwrap();
        assert_eq!(format!("{:?}", c.purge.token), "Some(***)");
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let err = parse("listen = \"127.0.0.1:1\"\n\n[server]\nidle_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("edge.toml:4:"), "{err}");
        assert!(err.contains("server.idle_timeout"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[upstream]\nconect_timeout = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("edge.toml:2:"), "{err}");
        assert!(err.contains("conect_timeout"), "{err}");
    }

    #[test]
    fn bad_origin_and_syntax_errors_have_lines() {
        let err = parse("origins = [\"ftp://x\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("edge.toml:1:"), "{err}");
        assert!(err.contains("origins") && err.contains("scheme"), "{err}");
        let err = parse("a = 1\nlisten = \n").unwrap_err().to_string();
        assert!(err.starts_with("edge.toml:2:"), "{err}");
    }

    #[test]
    fn validation_requires_an_origin() {
        let c = parse("").unwrap();
        let (key, _) = c.validate().unwrap_err();
        assert_eq!(key, "origins");
        let c = parse("origins = [\"http://127.0.0.1:1\"]").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn finds_the_line_of_a_key() {
        let text = "origins = []\n\n[cache]\n# disk = 1\nmemory = \"1KiB\"\ndisk=\"1MiB\"\n[server]\ndisk = 3\n";
        assert_eq!(key_line(text, "origins"), Some(1));
        assert_eq!(key_line(text, "cache.memory"), Some(5));
        assert_eq!(key_line(text, "cache.disk"), Some(6));
        assert_eq!(key_line(text, "server.disk"), Some(8));
        assert_eq!(key_line(text, "node_name"), None);
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
