//! Access control, one rule action each (`docs/access.md`): the client
//! address behind trusted proxies ([`real_ip`]), IP rules ([`ip_rules`]),
//! signed URLs ([`signed`]), JWT ([`jwt`]) and rate limits
//! ([`rate_limit`]). Compiled
//! once per site and rule into an [`Access`] that the rule's `Policy`
//! carries; the proxy asks [`Access::check`] right after the rule is
//! chosen and answers a [`Refusal`] with a short 4xx before anything else
//! runs. A policy without access keys holds an empty `Access`: one branch,
//! no allocation, no clock read.
//!
//! Sits below `sites` (which compiles it) and above `config` (which it
//! reads); knows nothing of the proxy.

pub mod ip_rules;
pub mod jwt;
pub mod rate_limit;
pub mod real_ip;
pub mod signed;
mod verified;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cache::Clock;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::config::{AccessConfig, LimitScope};
use ip_rules::{IpRules, IpVerdict};
use jwt::{Claims, Jwt, TokenError};
use rate_limit::{LimitVerdict, RateLimiter};
use real_ip::RealIp;
use signed::{SignatureError, SignedUrls};

/// What compiling access keys can refuse (validation reports these first,
/// with a line).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{field}: {network:?} is not a network: {why}")]
    Network {
        field: &'static str,
        network: String,
        why: String,
    },
    #[error("{field}: {name:?} is not a header name")]
    Header { field: &'static str, name: String },
    #[error("{field}: ${env} is not set or shorter than 16 bytes")]
    Secret { field: &'static str, env: String },
    #[error("jwt.jwks_file {path}: {source}")]
    JwksRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("jwt.jwks_file {path}: {source}")]
    Jwks {
        path: std::path::PathBuf,
        #[source]
        source: jwt::JwksError,
    },
}

/// A site's or rule's compiled checks; each piece is shared by the rules
/// that inherit it from their site (one bucket map for a site's limit).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub real_ip: Option<Arc<RealIp>>,
    pub ip_rules: Option<Arc<IpRules>>,
    pub rate_limit: Option<Arc<RateLimiter>>,
    pub signed_urls: Option<Arc<SignedUrls>>,
    pub jwt: Option<Arc<Jwt>>,
}

/// Why a request is refused; `as_str` is the access log's `error` and the
/// `reason` label of `edge_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    IpDenied,
    IpNotAllowed,
    Signature(SignatureError),
    Token(TokenError),
    RateLimited {
        retry_after: Duration,
        policy: HeaderValue,
    },
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::IpDenied => "ip_denied",
            Refusal::IpNotAllowed => "ip_not_allowed",
            Refusal::Signature(e) => e.as_str(),
            Refusal::Token(e) => e.as_str(),
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Token(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The fields a refusal adds to its error page: `Retry-After` (whole
    /// seconds, rounded up) and the IETF httpapi draft's `RateLimit-Policy`
    /// and `RateLimit` for a 429.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        if let Refusal::Token(why) = self {
            // RFC 6750 §3: no error code when no token was sent.
            let challenge = match why {
                TokenError::Missing => "Bearer realm=\"edge\"",
                _ => "Bearer realm=\"edge\", error=\"invalid_token\"",
            };
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Refusal::RateLimited {
            retry_after,
            policy,
        } = self
        {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let secs = secs.max(1);
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert(HeaderName::from_static("ratelimit-policy"), policy.clone());
            if let Ok(v) = HeaderValue::from_str(&format!("\"edge\";r=0;t={secs}")) {
                headers.insert(HeaderName::from_static("ratelimit"), v);
            }
        }
    }
}

impl Access {
    /// Compiles `config`; keys it leaves unset come from `outer` (the
    /// site's, under a rule) as they are, sharing their state.
    /// `rule` is the rule's index (`None` for the site's own keys).
    pub fn compile(
        config: &AccessConfig,
        outer: &Access,
        rule: Option<usize>,
    ) -> Result<Access, AccessError> {
        let nets = |field: &'static str, list: &[String]| {
            list.iter()
                .map(|n| {
                    n.parse().map_err(|why| AccessError::Network {
                        field,
                        network: n.clone(),
                        why,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let real_ip = match &config.real_ip {
            None => outer.real_ip.clone(),
            Some(r) => Some(Arc::new(RealIp {
                from: nets("real_ip.from", &r.from)?,
                header: HeaderName::from_bytes(r.header.as_bytes()).map_err(|_| {
                    AccessError::Header {
                        field: "real_ip.header",
                        name: r.header.clone(),
                    }
                })?,
            })),
        };
        let ip_rules = if config.allow.is_none() && config.deny.is_none() {
            outer.ip_rules.clone()
        } else {
            Some(Arc::new(IpRules {
                allow: config
                    .allow
                    .as_deref()
                    .map(|l| nets("allow", l))
                    .transpose()?,
                deny: nets("deny", config.deny.as_deref().unwrap_or_default())?,
            }))
        };
        let rate_limit = match &config.rate_limit {
            None => outer.rate_limit.clone(),
            Some(r) => Some(Arc::new(RateLimiter::at(r, rule))),
        };
        let signed_urls = match &config.signed_urls {
            None => outer.signed_urls.clone(),
            Some(s) => {
                let mut secrets = vec![secret("signed_urls.secret_env", &s.secret_env)?];
                if let Some(second) = &s.secret2_env {
                    secrets.push(secret("signed_urls.secret2_env", second)?);
                }
                let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
                Some(Arc::new(SignedUrls::new(
                    &secrets,
                    &s.expires_param,
                    &s.signature_param,
                    s.strip_from_origin,
                )))
            }
        };
        let jwt = match &config.jwt {
            None => outer.jwt.clone(),
            Some(j) => {
                let jwks = match &j.jwks_file {
                    None => None,
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|source| {
                        AccessError::JwksRead {
                            path: path.clone(),
                            source,
                        }
                    })?),
                };
                let hs256 = match &j.secret_env {
                    None => None,
                    Some(env) => Some(secret("jwt.secret_env", env)?),
                };
                let header = HeaderName::from_bytes(j.header.as_bytes()).map_err(|_| {
                    AccessError::Header {
                        field: "jwt.header",
                        name: j.header.clone(),
                    }
                })?;
                let compiled = Jwt::new(
                    jwks.as_deref(),
                    hs256.as_deref().map(str::as_bytes),
                    j.issuer.as_deref(),
                    j.audience.as_deref(),
                    header,
                    j.leeway,
                )
                .map_err(|source| AccessError::Jwks {
                    path: j.jwks_file.clone().unwrap_or_default(),
                    source,
                })?;
                Some(Arc::new(compiled))
            }
        };
        Ok(Access {
            real_ip,
            ip_rules,
            rate_limit,
            signed_urls,
            jwt,
        })
    }

    /// No check configured: the fast path.
    pub fn is_empty(&self) -> bool {
        self.real_ip.is_none()
            && self.ip_rules.is_none()
            && self.rate_limit.is_none()
            && self.signed_urls.is_none()
            && self.jwt.is_none()
    }

    /// The client address to use for a request from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        match &self.real_ip {
            Some(r) => r.client(peer, headers),
            None => peer,
        }
    }

    /// The checks of a request from `client` (after [`client`](Self::client))
    /// in order: IP rules, signature, JWT, then a rate limit of scope
    /// `all` (so that refused requests do not use up a client's tokens).
    /// A verified token's claims are the answer.
    pub fn check(
        &self,
        client: IpAddr,
        path_and_query: &str,
        headers: &HeaderMap,
        clock: &Clock,
    ) -> Result<Option<Claims>, Refusal> {
        if let Some(rules) = &self.ip_rules {
            match rules.verdict(client) {
                IpVerdict::Allowed => {}
                IpVerdict::Denied => return Err(Refusal::IpDenied),
                IpVerdict::NotAllowed => return Err(Refusal::IpNotAllowed),
            }
        }
        if let Some(signed) = &self.signed_urls {
            signed
                .verify(path_and_query, clock.now())
                .map_err(Refusal::Signature)?;
        }
        let claims = match &self.jwt {
            Some(jwt) => Some(jwt.verify(headers, clock.now()).map_err(Refusal::Token)?),
            None => None,
        };
        self.limit(LimitScope::All, client, headers, clock)?;
        Ok(claims)
    }

    /// The rate limit of scope `misses`, asked when a request is about to
    /// go to the origin.
    pub fn check_origin(
        &self,
        client: IpAddr,
        headers: &HeaderMap,
        clock: &Clock,
    ) -> Result<(), Refusal> {
        self.limit(LimitScope::Misses, client, headers, clock)
    }

    fn limit(
        &self,
        scope: LimitScope,
        client: IpAddr,
        headers: &HeaderMap,
        clock: &Clock,
    ) -> Result<(), Refusal> {
        match &self.rate_limit {
            Some(limit) if limit.scope == scope => {
                match limit.check(client, headers, clock.now()) {
                    LimitVerdict::Allowed => Ok(()),
                    LimitVerdict::Limited { retry_after } => Err(Refusal::RateLimited {
                        retry_after,
                        policy: limit.policy_header().clone(),
                    }),
                }
            }
            _ => Ok(()),
        }
    }

    /// `path_and_query` as the cache key and (with `strip_from_origin`)
    /// the origin see it: without the signed-URL parameters.
    pub fn key_path<'a>(&self, path_and_query: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.signed_urls {
            Some(s) => signed::strip_params(path_and_query, &s.params()),
            None => std::borrow::Cow::Borrowed(path_and_query),
        }
    }

    /// Whether the origin request drops the signed-URL parameters.
    pub fn strips_origin(&self) -> bool {
        self.signed_urls
            .as_ref()
            .is_some_and(|s| s.strip_from_origin)
    }
}

/// A secret from the environment, at least 16 bytes.
fn secret(field: &'static str, env: &str) -> Result<String, AccessError> {
    std::env::var(env)
        .ok()
        .filter(|v| v.len() >= 16)
        .ok_or_else(|| AccessError::Secret {
            field,
            env: env.to_owned(),
        })
}
