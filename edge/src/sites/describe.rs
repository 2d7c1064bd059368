//! The JSON of the sites and rules in force, for `GET /sites` on the admin
//! listener: every key of a rule, always present (`null` or empty when
//! unset), durations in the config's own syntax (`"1h 30m"`). Rules hold no
//! secrets; peers are printed as `scheme://host:port`, which carries none.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Site;
use crate::config::{AccessConfig, CacheMode, HeaderEdits, LimitKey, LimitScope, RuleConfig};

pub(crate) fn rules(rules: &[RuleConfig]) -> Value {
    Value::Array(rules.iter().map(rule).collect())
}

pub(crate) fn site(site: &Site) -> Value {
    json!({
        "name": site.name,
        "index": site.index,
        "default": site.is_default,
        "hosts": site.hosts,
        "origins": site.origins.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "shields": site
            .shields
            .iter()
            .map(|s| json!({ "url": s.peer.to_string(), "name": s.name }))
            .collect::<Vec<_>>(),
        "rules": site.describe(),
    })
}

fn rule(rule: &RuleConfig) -> Value {
    json!({
        "path": rule.path,
        "path_regex": rule.path_regex,
        "methods": rule.methods,
        "cache": match rule.cache {
            CacheMode::Default => "default",
            CacheMode::Bypass => "bypass",
            CacheMode::Shared => "shared",
        },
        "ttl": rule.ttl.map(duration),
        "ttl_override": rule.ttl_override,
        "ttl_status": rule
            .ttl_status
            .iter()
            .map(|(status, ttl)| (status.to_string(), duration(*ttl)))
            .collect::<Map<_, _>>(),
        "stale_if_error": rule.stale_if_error.map(duration),
        "stale_while_revalidate": rule.stale_while_revalidate.map(duration),
        "request_headers": headers(&rule.request_headers),
        "response_headers": headers(&rule.response_headers),
        "redirect": rule.redirect.as_ref().map(|r| json!({
            "to": r.to,
            "status": r.status,
            "keep_path": r.keep_path,
        })),
        "access": access(&rule.access()),
    })
}

/// The rule's own access keys (the site's are not repeated); secrets are
/// named by their environment variable only.
fn access(a: &AccessConfig) -> Value {
    json!({
        "real_ip": a.real_ip.as_ref().map(|r| json!({ "from": r.from, "header": r.header })),
        "allow": a.allow,
        "deny": a.deny,
        "rate_limit": a.rate_limit.as_ref().map(|r| json!({
            "requests": r.requests,
            "per": duration(r.per),
            "burst": r.burst,
            "key": match &r.key {
                LimitKey::ClientIp => "client_ip".to_owned(),
                LimitKey::Site => "site".to_owned(),
                LimitKey::Header(name) => format!("header:{name}"),
            },
            "scope": match r.scope {
                LimitScope::All => "all",
                LimitScope::Misses => "misses",
            },
            "max_keys": r.max_keys,
        })),
        "signed_urls": a.signed_urls.as_ref().map(|s| json!({
            "secret_env": s.secret_env,
            "secret2_env": s.secret2_env,
            "expires_param": s.expires_param,
            "signature_param": s.signature_param,
            "strip_from_origin": s.strip_from_origin,
        })),
        "jwt": a.jwt.as_ref().map(|j| json!({
            "jwks_file": j.jwks_file,
            "secret_env": j.secret_env,
            "issuer": j.issuer,
            "audience": j.audience,
            "header": j.header,
            "leeway": duration(j.leeway),
        })),
    })
}

fn headers(edits: &HeaderEdits) -> Value {
    json!({ "set": edits.set, "remove": edits.remove })
}

fn duration(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}
