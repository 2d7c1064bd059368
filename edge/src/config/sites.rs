//! `[[sites]]` and `[[sites.rules]]`: several sites per node, each with its
//! own host names, origins and shields, and per-path rules (cache mode,
//! TTL defaults, negative caching, stale windows, header edits, redirects)
//! evaluated first match wins, in file order. The top-level `origins` are
//! the default site, for every `Host` no site names.

use std::collections::BTreeMap;
use std::time::Duration;

use origin_shield::Peer;
use serde::{Deserialize, Deserializer};

use super::access::{AccessConfig, JwtConfig, RateLimitConfig, RealIpConfig, SignedUrlsConfig};
use super::peers::{self, ShieldPeer};
use super::units::{de_duration, de_opt_duration};

/// The name of the site made of the top-level `origins` and `shields`.
pub const DEFAULT_SITE: &str = "default";

/// One site: the hosts it answers for and where its misses go.
/// (`Default` is for code that builds one; a file must set `name`, `hosts`
/// and `origins`.)
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
    /// `false` turns `[compression]` off for the site's responses (rules
    /// may turn it back on). Default: unset (`compression.enabled`).
    #[serde(default)]
    pub compression: Option<bool>,
    /// Access control (`docs/access.md`): the client address behind
    /// trusted proxies. Default: unset (rules may set their own).
    #[serde(default)]
    pub real_ip: Option<RealIpConfig>,
    /// Only these networks may send requests (`403`). Default: unset (rules may set their own).
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// These networks are refused (`403`). Default: unset (rules may set their own).
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    /// A token bucket per key (`429`). Default: unset (rules may set their own).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// HMAC-SHA256 signed links (`403`). Default: unset (rules may set their own).
    #[serde(default)]
    pub signed_urls: Option<SignedUrlsConfig>,
    /// JWT bearer tokens (`401`). Default: unset (rules may set their own).
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
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
    /// As `default`, and requests that a `jwt` check let in share the cache
    /// too: the token header is not sent to the origin (edge checked it)
    /// and nothing of it is in the key. Without it such requests pass.
    Shared,
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
    /// `default`, `bypass` or `shared`. Default: `default`.
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
    /// `false`: never compress or decompress this rule's responses;
    /// `true`: do, even where the site says `false` (when
    /// `compression.enabled`). Default: unset (the site's choice).
    pub compression: Option<bool>,
    /// Access control (`docs/access.md`): the client address behind
    /// trusted proxies. Default: the site's.
    pub real_ip: Option<RealIpConfig>,
    /// Only these networks may send requests (`403`). Default: the site's.
    pub allow: Option<Vec<String>>,
    /// These networks are refused (`403`). Default: the site's.
    pub deny: Option<Vec<String>>,
    /// A token bucket per key (`429`). Default: the site's.
    pub rate_limit: Option<RateLimitConfig>,
    /// HMAC-SHA256 signed links (`403`). Default: the site's.
    pub signed_urls: Option<SignedUrlsConfig>,
    /// JWT bearer tokens (`401`). Default: the site's.
    pub jwt: Option<JwtConfig>,
}

/// `{ 404 = "30s" }`: status codes (as TOML keys) to durations. A status
/// is checked as a key, so that the error points at it rather than at the
/// whole table.
fn de_status_durations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<u16, Duration>, D::Error> {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Status(u16);
    impl<'de> Deserialize<'de> for Status {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let status = String::deserialize(d)?;
            status
                .trim()
                .parse()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(Status)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!("status {status:?} is not within 100-599"))
                })
        }
    }
    struct Ttl(Duration);
    impl<'de> Deserialize<'de> for Ttl {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            de_duration(d).map(Ttl)
        }
    }
    let raw = BTreeMap::<Status, Ttl>::deserialize(d)?;
    Ok(raw.into_iter().map(|(s, t)| (s.0, t.0)).collect())
}

macro_rules! access_of {
    ($t:ty) => {
        impl $t {
            /// The access keys this table sets.
            pub fn access(&self) -> AccessConfig {
                AccessConfig {
                    real_ip: self.real_ip.clone(),
                    allow: self.allow.clone(),
                    deny: self.deny.clone(),
                    rate_limit: self.rate_limit.clone(),
                    signed_urls: self.signed_urls.clone(),
                    jwt: self.jwt.clone(),
                }
            }
        }
    };
}
access_of!(SiteConfig);
access_of!(RuleConfig);

impl SiteConfig {
    /// How errors name the site: `site "shop"`.
    pub fn label(&self) -> String {
        format!("site {:?}", self.name)
    }
}

/// `site "shop"` for a key under `sites[i]` in the text of a config file
/// that parses as TOML, if that site has a name: parse errors are found
/// before there is a `SiteConfig` to ask.
pub(super) fn site_label(text: &str, key: &str) -> Option<String> {
    let index: usize = key
        .strip_prefix("sites[")?
        .split(']')
        .next()?
        .parse()
        .ok()?;
    let table: toml::Table = toml::from_str(text).ok()?;
    let name = table.get("sites")?.get(index)?.get("name")?.as_str()?;
    Some(format!("site {name:?}"))
}
