//! The JSON of the sites and rules in force, for `GET /sites` on the admin
//! listener: every key of a rule, always present (`null` or empty when
//! unset), durations in the config's own syntax (`"1h 30m"`). Rules hold no
//! secrets; peers are printed as `scheme://host:port`, which carries none.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Site;
use crate::config::{CacheMode, HeaderEdits, RuleConfig};

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
    })
}

fn headers(edits: &HeaderEdits) -> Value {
    json!({ "set": edits.set, "remove": edits.remove })
}

fn duration(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}
