//! `[purge]`: who may purge, and how purges reach the other nodes.

use std::time::Duration;

use serde::Deserialize;

use super::units::de_duration;

/// The purge API (on the admin listener) and the `PURGE` method.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

impl PurgeSettings {
    /// The purge machinery's settings.
    pub fn for_purger(&self) -> purge_api::PurgeConfig {
        purge_api::PurgeConfig {
            token: self.token.as_ref().map(|t| t.0.clone()),
            peers: self.peers.clone(),
            rule_ttl: self.rule_ttl,
            max_items: self.max_items,
            retry_max: self.retry_max,
            ..purge_api::PurgeConfig::default()
        }
    }
}
