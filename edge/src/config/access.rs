//! Access control keys of a site or a rule (`docs/access.md`): the client
//! address behind trusted proxies (`real_ip`), IP rules (`allow`, `deny`),
//! a rate limit (`rate_limit`), signed URLs (`signed_urls`) and JWT
//! (`jwt`). Plain data as the file says it; `validate_access` checks what
//! serde cannot and `crate::access` compiles it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ipnet::IpNet;
use super::units::de_duration;

/// The access keys, as a site or a rule sets them. A rule's key replaces
/// the site's key of the same name; unset keys are inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Take the client address from a header when the connection comes
    /// from a trusted proxy. Default: unset (the socket's address).
    pub real_ip: Option<RealIpConfig>,
    /// Only these networks may send requests (`403` for others).
    /// Default: unset (every address).
    pub allow: Option<Vec<String>>,
    /// These networks are refused (`403`), before `allow` is asked.
    /// Default: unset (none).
    pub deny: Option<Vec<String>>,
    /// A token bucket per key. Default: unset (no limit).
    pub rate_limit: Option<RateLimitConfig>,
    /// HMAC-SHA256 signed links. Default: unset.
    pub signed_urls: Option<SignedUrlsConfig>,
    /// JSON Web Tokens. Default: unset.
    pub jwt: Option<JwtConfig>,
}

impl AccessConfig {
    /// `self` with every key it leaves unset taken from `outer` (the
    /// site's keys under a rule's).
    pub fn over(&self, outer: &AccessConfig) -> AccessConfig {
        AccessConfig {
            real_ip: self.real_ip.clone().or_else(|| outer.real_ip.clone()),
            allow: self.allow.clone().or_else(|| outer.allow.clone()),
            deny: self.deny.clone().or_else(|| outer.deny.clone()),
            rate_limit: self.rate_limit.clone().or_else(|| outer.rate_limit.clone()),
            signed_urls: self
                .signed_urls
                .clone()
                .or_else(|| outer.signed_urls.clone()),
            jwt: self.jwt.clone().or_else(|| outer.jwt.clone()),
        }
    }

    /// Nothing set: the request goes as it would without access control.
    pub fn is_empty(&self) -> bool {
        *self == AccessConfig::default()
    }
}

/// nginx's `set_real_ip_from` + `real_ip_header` + `real_ip_recursive on`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealIpConfig {
    /// Trusted proxies (CIDRs or addresses). Required, at least one.
    pub from: Vec<String>,
    /// The header carrying the client chain. Default: `X-Forwarded-For`.
    #[serde(default = "default_real_ip_header")]
    pub header: String,
}

fn default_real_ip_header() -> String {
    "X-Forwarded-For".to_owned()
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client address (after `real_ip`). Default.
    ClientIp,
    /// The value of this request header (a request without it is counted
    /// by its client address).
    Header(String),
    /// One bucket for the whole site (or rule).
    Site,
}

impl<'de> Deserialize<'de> for LimitKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.as_str() {
            "client_ip" => Ok(LimitKey::ClientIp),
            "site" => Ok(LimitKey::Site),
            other => match other.strip_prefix("header:") {
                Some(name) if !name.trim().is_empty() => Ok(LimitKey::Header(name.trim().into())),
                _ => Err(serde::de::Error::custom(format!(
                    "key {raw:?} is not client_ip, site or header:NAME"
                ))),
            },
        }
    }
}

/// Which requests a rate limit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// Every request, hits included (the limit protects the edge too).
    /// Default.
    #[default]
    All,
    /// Only requests that go to the origin (misses, passes, revalidations).
    Misses,
}

/// A token bucket of `requests + burst` tokens refilled at `requests` per
/// `per`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per `per`. Required, at least 1.
    pub requests: u32,
    /// The window. Default: `1s`.
    #[serde(default = "one_second", deserialize_with = "de_duration")]
    pub per: Duration,
    /// Extra requests allowed at once. Default: `0`.
    #[serde(default)]
    pub burst: u32,
    /// `client_ip`, `header:NAME` or `site`. Default: `client_ip`.
    #[serde(default = "default_limit_key")]
    pub key: LimitKey,
    /// `all` or `misses`. Default: `all`.
    #[serde(default)]
    pub scope: LimitScope,
    /// Keys tracked at most; keys beyond share one bucket (and are counted
    /// in `edge_rate_limit_overflow_total`). Default: `100000`.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn default_limit_key() -> LimitKey {
    LimitKey::ClientIp
}

fn default_max_keys() -> usize {
    100_000
}

/// HMAC-SHA256 signed URLs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedUrlsConfig {
    /// The environment variable holding the secret (at least 16 bytes).
    /// Required.
    pub secret_env: String,
    /// A second secret accepted too, for rotation. Default: unset.
    #[serde(default)]
    pub secret2_env: Option<String>,
    /// The query parameter with the expiry (Unix seconds). Default:
    /// `expires`.
    #[serde(default = "default_expires_param")]
    pub expires_param: String,
    /// The query parameter with the signature (base64url). Default: `sig`.
    #[serde(default = "default_signature_param")]
    pub signature_param: String,
    /// Remove both parameters from the request sent to the origin too
    /// (they are never in the cache key). Default: `true`.
    #[serde(default = "yes")]
    pub strip_from_origin: bool,
}

fn default_expires_param() -> String {
    "expires".to_owned()
}

fn default_signature_param() -> String {
    "sig".to_owned()
}

fn yes() -> bool {
    true
}

/// JWT bearer tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (`{"keys": [...]}`) with the RS256, ES256 and EdDSA
    /// keys; read again on every reload. Default: unset (then
    /// `secret_env` is required).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The environment variable with an HS256 secret (at least 16 bytes).
    /// Default: unset.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The required `iss`. Default: unset (not checked).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The required `aud` (a token may list several). Default: unset
    /// (not checked).
    #[serde(default)]
    pub audience: Option<String>,
    /// The header with `Bearer <token>`. Default: `Authorization`.
    #[serde(default = "default_jwt_header")]
    pub header: String,
    /// Clock skew allowed on `exp` and `nbf`. Default: `30s`.
    #[serde(default = "thirty_seconds", deserialize_with = "de_duration")]
    pub leeway: Duration,
}

fn default_jwt_header() -> String {
    "Authorization".to_owned()
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// What serde cannot check in `access`; the error names the field
/// relative to the table the keys sit in (`rate_limit.requests`).
pub(super) fn validate_access(access: &AccessConfig) -> Result<(), (String, String)> {
    let nets = |field: &str, list: &[String]| {
        for net in list {
            net.parse::<IpNet>()
                .map_err(|why| (field.to_owned(), why))?;
        }
        Ok::<_, (String, String)>(())
    };
    if let Some(real_ip) = &access.real_ip {
        if real_ip.from.is_empty() {
            return Err((
                "real_ip.from".into(),
                "`from` must name at least one trusted proxy network".into(),
            ));
        }
        nets("real_ip.from", &real_ip.from)?;
        header_name("real_ip.header", &real_ip.header)?;
    }
    if let Some(allow) = &access.allow {
        nets("allow", allow)?;
    }
    if let Some(deny) = &access.deny {
        nets("deny", deny)?;
    }
    if let Some(limit) = &access.rate_limit {
        if limit.requests == 0 {
            return Err((
                "rate_limit.requests".into(),
                "must be at least 1 (use `deny` to refuse everything)".into(),
            ));
        }
        if limit.per.is_zero() || limit.per > Duration::from_secs(86_400 * 365) {
            return Err((
                "rate_limit.per".into(),
                "must be more than 0 and at most a year".into(),
            ));
        }
        if let LimitKey::Header(name) = &limit.key {
            header_name("rate_limit.key", name)?;
        }
        if limit.max_keys == 0 {
            return Err(("rate_limit.max_keys".into(), "must be at least 1".into()));
        }
    }
    if let Some(signed) = &access.signed_urls {
        secret("signed_urls.secret_env", &signed.secret_env)?;
        if let Some(second) = &signed.secret2_env {
            secret("signed_urls.secret2_env", second)?;
        }
        for (field, param) in [
            ("signed_urls.expires_param", &signed.expires_param),
            ("signed_urls.signature_param", &signed.signature_param),
        ] {
            if param.is_empty() || param.contains(['&', '=', '?', '#']) {
                return Err((
                    field.into(),
                    format!("{param:?} must be a query parameter name"),
                ));
            }
        }
        if signed.expires_param == signed.signature_param {
            return Err((
                "signed_urls.signature_param".into(),
                "must differ from expires_param".into(),
            ));
        }
    }
    if let Some(jwt) = &access.jwt {
        header_name("jwt.header", &jwt.header)?;
        match (&jwt.jwks_file, &jwt.secret_env) {
            (None, None) => {
                return Err((
                    "jwt".into(),
                    "set `jwks_file` (RS256, ES256, EdDSA) or `secret_env` (HS256)".into(),
                ));
            }
            (Some(path), _) => {
                std::fs::metadata(path).map_err(|e| {
                    (
                        "jwt.jwks_file".to_owned(),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
            }
            (None, Some(_)) => {}
        }
        if let Some(env) = &jwt.secret_env {
            secret("jwt.secret_env", env)?;
        }
    }
    Ok(())
}

fn header_name(field: &str, name: &str) -> Result<(), (String, String)> {
    http::HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| {
            (
                field.to_owned(),
                format!("{name:?} is not a valid header field name"),
            )
        })
}

/// A secret is read from the environment when the config is loaded (and
/// again on reload), so that a missing one is an error with a line.
fn secret(field: &str, env: &str) -> Result<(), (String, String)> {
    match std::env::var(env) {
        Ok(value) if value.len() >= 16 => Ok(()),
        Ok(_) => Err((
            field.to_owned(),
            format!("the secret in ${env} is shorter than 16 bytes"),
        )),
        Err(_) => Err((
            field.to_owned(),
            format!("${env} is not set (or not UTF-8)"),
        )),
    }
}
