//! `[[sites]]` and `[[sites.rules]]`: several sites per node, each with its
//! own host names, origins and shields, and per-path rules (cache mode,
//! TTL defaults, negative caching, stale windows, header edits, redirects)
//! evaluated first match wins, in file order. The top-level `origins` are
//! the default site, for every `Host` no site names.

use std::collections::BTreeMap;
use std::time::Duration;

use origin_shield::Peer;
use serde::{Deserialize, Deserializer};

use super::peers::{self, ShieldPeer};
use super::units::{de_opt_duration, parse_duration};

/// One site: the hosts it answers for and where its misses go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Used in metrics (`site` label), logs and errors. Required, unique.
    pub name: String,
    /// Exact names (`shop.example`), then wildcards (`*.shop.example`,
    /// any name ending in `.shop.example`); compared without port, case
    /// insensitively. Required: at least one; a name belongs to one site.
    pub hosts: Vec<String>,
    /// Origin servers, the same forms as the top-level `origins`.
    /// Required: at least one.
    #[serde(default, deserialize_with = "peers::de_peers")]
    pub origins: Vec<Peer>,
    /// Shield nodes for this site, the same forms as the top-level
    /// `shields`. Default: none (misses go straight to `origins`).
    #[serde(default, deserialize_with = "peers::de_shields")]
    pub shields: Vec<ShieldPeer>,
    /// Per-path rules, first match wins. Default: none (the site behaves
    /// like a node without sites).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// Whether a rule's requests use the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// RFC 9111 as for any request. Default.
    #[default]
    Default,
    /// Never stored, never served from the cache (`X-Cache: PASS`).
    Bypass,
}

/// Header edits: `set` replaces (or adds) each field, `remove` drops them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderEdits {
    /// Field name → value. Default: none.
    pub set: BTreeMap<String, String>,
    /// Field names. Default: none.
    pub remove: Vec<String>,
}

/// Answer with a redirect instead of going to the cache or the origin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// The target: an absolute URL or a path. Required.
    pub to: String,
    /// 301, 302, 303, 307 or 308. Default: `301`.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// Append the part of the request path after the rule's `path` prefix,
    /// and the query, to `to`. Default: `false`.
    #[serde(default)]
    pub keep_path: bool,
}

fn default_redirect_status() -> u16 {
    301
}

/// One rule of a site: which requests it matches and what it changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// A path prefix on whole segments (`/api/` and `/api` both match
    /// `/api` and `/api/x`, never `/apix`). Default: unset.
    pub path: Option<String>,
    /// A regular expression on the path (`^/v[0-9]+/`), instead of `path`.
    /// Default: unset. A rule with neither matches every path.
    pub path_regex: Option<String>,
    /// Methods the rule applies to. Default: all.
    pub methods: Vec<String>,
    /// `default` or `bypass`. Default: `default`.
    pub cache: CacheMode,
    /// Freshness for storable responses that carry none (and, with
    /// `ttl_override`, in place of the origin's). Default: unset.
    #[serde(deserialize_with = "de_opt_duration")]
    pub ttl: Option<Duration>,
    /// `ttl` replaces the origin's own freshness. Default: `false`.
    pub ttl_override: bool,
    /// Negative caching: freshness by status (`{ 404 = "30s" }`) for
    /// responses of that status that carry none. Default: none.
    #[serde(deserialize_with = "de_status_durations")]
    pub ttl_status: BTreeMap<u16, Duration>,
    /// `stale-if-error` for responses that do not say. Default: unset.
    #[serde(deserialize_with = "de_opt_duration")]
    pub stale_if_error: Option<Duration>,
    /// `stale-while-revalidate` for responses that do not say. Default:
    /// unset.
    #[serde(deserialize_with = "de_opt_duration")]
    pub stale_while_revalidate: Option<Duration>,
    /// Edits of the request sent upstream. Default: none.
    pub request_headers: HeaderEdits,
    /// Edits of every response, hits included. Default: none.
    pub response_headers: HeaderEdits,
    /// Answer with this redirect. Default: unset.
    pub redirect: Option<Redirect>,
}

/// `{ "404" = "30s" }`: status codes (as TOML keys) to durations.
fn de_status_durations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<u16, Duration>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(status, ttl)| {
            let code: u16 = status
                .trim()
                .parse()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("status {status:?} is not within 100-599"))
                })?;
            let ttl = parse_duration(&ttl).map_err(serde::de::Error::custom)?;
            Ok((code, ttl))
        })
        .collect()
}
