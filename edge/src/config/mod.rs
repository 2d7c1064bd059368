//! The one validated `Config`, layered CLI flags and `EDGE_*` env vars > TOML
//! file > defaults.
//!
//! Every field documents its default; `examples/edge.toml` lists them all.
//! A bad file is an error naming the file, line and key, never a panic.
//!
//! One module per section of the file (`cache`, `compression`, `server`, `upstream`,
//! `purge`, `tls`, `tracing`, `sites`; `peers` for `origins` and `shields`); `load` reads the
//! file and lays the command line's [`Overrides`] over it, `validate` checks
//! what serde cannot. The command line itself is `crate::cli`, which this
//! module does not know.

mod access;
mod cache;
pub mod changes;
mod cluster;
mod compression;
mod hosts;
mod ipnet;
mod lines;
mod load;
mod peers;
mod purge;
mod server;
mod sites;
mod tls;
mod tracing;
mod units;
mod upstream;
mod validate;
mod validate_sites;

use std::net::SocketAddr;
use std::path::PathBuf;

use origin_shield::Peer;
use serde::Deserialize;

pub use access::{
    AccessConfig, JwtConfig, LimitKey, LimitScope, RateLimitConfig, RealIpConfig, SignedUrlsConfig,
};
pub use cache::{CacheConfig, DiskAdmissionMode};
pub use cluster::ClusterSettings;
pub use compression::CompressionConfig;
pub use hosts::HostPattern;
pub use ipnet::IpNet;
pub use load::{ConfigError, Overrides};
pub use peers::ShieldPeer;
pub use purge::{PurgeSettings, Secret};
pub use server::ServerConfig;
pub use sites::{CacheMode, DEFAULT_SITE, HeaderEdits, Redirect, RuleConfig, SiteConfig};
pub use tls::{SniCert, TlsSettings};
pub use tracing::TracingConfig;
pub use units::{ByteSize, parse_duration};
pub use upstream::{HealthCheckConfig, UpstreamConfig};

/// Everything the server needs, validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// The access lines' format: `combined` (nginx's, with cache status,
    /// tier and duration appended), `json` or `text` (`key=value`).
    /// Default: unset (as `log_format`).
    pub access_log_format: Option<AccessLogFormat>,
    /// Write access lines (target `access`) to this file, appending, instead
    /// of stdout; other logs stay on stdout. Default: unset (stdout).
    pub access_log: Option<PathBuf>,
    /// Access lines are written in batches, by a thread of their own, at
    /// least this often: a crash loses at most this much of the log.
    /// Default: `1s`.
    #[serde(deserialize_with = "units::de_duration")]
    pub access_log_flush: std::time::Duration,
    /// A batch is written early once this much is pending (nginx's
    /// `access_log … buffer=`). Lines are dropped, and counted in
    /// `edge_access_log_dropped_total`, when 16 times this is pending (the
    /// disk is full or slower than the traffic): serving never waits for
    /// the log. Default: `64KiB`.
    pub access_log_buffer: ByteSize,
    /// Origin servers, `http(s)://host[:port]` or `{ url = "...", weight = N,
    /// http2 = bool, tls_name = "...", tls_verify = bool }`;
    /// requests are spread over them by `upstream.balance`, falling through
    /// to the next on connect failure. Default: none (at least one is
    /// required).
    #[serde(deserialize_with = "peers::de_peers")]
    pub origins: Vec<Peer>,
    /// Shield nodes (other `edge` nodes), the same list on every node of a
    /// tier: `http://host:port` or `{ url = "...", weight = N, name = "..." }`.
    /// A cacheable miss goes to the shield that the consistent-hash ring
    /// picks for its key (falling through the ring, then to the origins,
    /// when shields are down); a node that finds itself in the list (by
    /// listen address or `name` = `node_name`) fetches its own keys from
    /// the origins. Default: none.
    #[serde(deserialize_with = "peers::de_shields")]
    pub shields: Vec<ShieldPeer>,
    /// More sites on this node, by `Host` (see `config/sites.rs`); the
    /// top-level `origins` serve every host no site names. Default: none.
    pub sites: Vec<SiteConfig>,
    /// The access keys of the default site (the top-level `origins`), as a
    /// `[[sites]]` entry sets them on its own table: `real_ip`, `allow`,
    /// `deny`, `rate_limit`, `signed_urls`, `jwt` (`docs/access.md`).
    /// Default: none.
    pub access: AccessConfig,
    pub cache: CacheConfig,
    pub compression: CompressionConfig,
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub purge: PurgeSettings,
    pub cluster: ClusterSettings,
    pub tls: TlsSettings,
    pub tracing: TracingConfig,
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
            access_log_format: None,
            access_log_flush: std::time::Duration::from_secs(1),
            access_log_buffer: ByteSize::kib(64),
            origins: Vec::new(),
            shields: Vec::new(),
            sites: Vec::new(),
            access: AccessConfig::default(),
            purge: PurgeSettings::default(),
            cluster: ClusterSettings::default(),
            tls: TlsSettings::default(),
            cache: CacheConfig::default(),
            compression: CompressionConfig::default(),
            server: ServerConfig::default(),
            upstream: UpstreamConfig::default(),
            tracing: TracingConfig::default(),
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

/// `access_log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// nginx's `combined` (GoAccess and log parsers read it), then
    /// `cache=`, `tier=` and `duration_ms=`.
    Combined,
    /// One JSON object per line (the field names of docs/logging.md).
    Json,
    /// `key=value` fields.
    Text,
}
