//! `[upstream]` and `[upstream.health]`: timeouts, pooling, balancing and
//! health of the connections to origins and shields.

use std::path::PathBuf;
use std::time::Duration;

use origin_shield::balance::Policy;
use origin_shield::health::HealthPolicy;
use serde::{Deserialize, Deserializer};

use super::units::de_duration;

/// How this node talks to its origins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

fn de_policy<'de, D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}
