//! What serde cannot check in `[[sites]]` and `[[sites.rules]]`: names,
//! host names and their overlaps across sites, required origins, and each
//! rule's path, regex, methods, TTL settings, header edits and redirect.
//!
//! Errors are `(key, message)` with the key as serde and `lines::key_line`
//! write it (`sites[1].rules[0].path_regex`) and the message starting with
//! the site's name (`site "shop": ...`), so an operator finds both.

use std::collections::HashMap;

use super::hosts::HostPattern;
use super::sites::{HeaderEdits, RuleConfig, SiteConfig};

type Invalid = (String, String);

/// Checks every site and rule; the first problem found is the error.
pub(super) fn validate_sites(sites: &[SiteConfig]) -> Result<(), Invalid> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    // Every host pattern seen so far, with the index of its site.
    let mut claimed: Vec<(HostPattern, usize)> = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let key = |field: &str| format!("sites[{i}].{field}");
        let invalid = |field: &str, why: String| (key(field), format!("{}: {why}", site.label()));
        let fail = |field: &str, why: String| Err(invalid(field, why));
        check_name(&site.name).map_err(|why| invalid("name", why))?;
        if let Some(first) = names.insert(&site.name, i) {
            return fail(
                "name",
                format!("the name is already used by sites[{first}]; each site needs its own"),
            );
        }
        if site.hosts.is_empty() {
            return fail("hosts", "`hosts` must name at least one host".into());
        }
        let mut own = Vec::with_capacity(site.hosts.len());
        for host in &site.hosts {
            let pattern = HostPattern::parse(host).map_err(|why| invalid("hosts", why))?;
            for (other, j) in &claimed {
                let theirs = &sites[*j].label();
                if *other == pattern {
                    return fail(
                        "hosts",
                        format!(
                            "host {host:?} is also a host of {theirs}: a name belongs to one site"
                        ),
                    );
                }
                if other.covers(&pattern) || pattern.covers(other) {
                    return fail(
                        "hosts",
                        format!(
                            "overlapping host names: {host:?} and {theirs}'s \"{other}\" both cover {:?}",
                            narrower(&pattern, other).to_string()
                        ),
                    );
                }
            }
            own.push(pattern);
        }
        claimed.extend(own.into_iter().map(|p| (p, i)));
        if site.origins.is_empty() {
            return fail(
                "origins",
                "no origin configured: set `origins` (the same forms as the top-level `origins`)"
                    .into(),
            );
        }
        super::access::validate_access(&site.access())
            .map_err(|(field, why)| invalid(&field, why))?;
        for (r, rule) in site.rules.iter().enumerate() {
            check_rule(rule)
                .map_err(|(field, why)| (field.to_owned(), why))
                .and_then(|()| super::access::validate_access(&rule.access()))
                .and_then(|()| edits("request_headers", &rule.request_headers))
                .and_then(|()| edits("response_headers", &rule.response_headers))
                .map_err(|(field, why)| {
                    (
                        key(&format!("rules[{r}].{field}")),
                        format!("{}: {why}", site.label()),
                    )
                })?;
        }
    }
    Ok(())
}

/// Of two overlapping patterns, the one whose names they share.
fn narrower<'a>(a: &'a HostPattern, b: &'a HostPattern) -> &'a HostPattern {
    if a.covers(b) { b } else { a }
}

/// A name fit for a metrics label and a log field, quoted or not.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("`name` must not be empty".into());
    }
    if name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(
            "`name` must be 1 to 64 letters, digits, `-`, `_` or `.` (it is a metrics label)"
                .into(),
        );
    }
    Ok(())
}

/// One rule; the error names the field (relative to the rule).
fn check_rule(rule: &RuleConfig) -> Result<(), (&'static str, String)> {
    if let Some(path) = &rule.path {
        if rule.path_regex.is_some() {
            return Err((
                "path_regex",
                "a rule matches on `path` or on `path_regex`, not both".into(),
            ));
        }
        let is_path = path
            .parse::<http::uri::PathAndQuery>()
            .is_ok_and(|p| p.query().is_none() && p.as_str() == path);
        if !path.starts_with('/') || !is_path {
            return Err((
                "path",
                format!("{path:?} must be a path prefix starting with / (no query)"),
            ));
        }
    }
    if let Some(regex) = &rule.path_regex {
        regex::Regex::new(regex)
            .map_err(|e| ("path_regex", format!("{regex:?} does not compile: {e}")))?;
    }
    for method in &rule.methods {
        let upper = method.to_ascii_uppercase();
        if http::Method::from_bytes(method.as_bytes()).is_err() {
            return Err((
                "methods",
                format!("{method:?} is not an HTTP method (a token such as GET)"),
            ));
        }
        if upper != *method && http::Method::from_bytes(upper.as_bytes()).is_ok_and(is_standard) {
            return Err((
                "methods",
                format!("methods are case-sensitive: write {upper:?}, not {method:?}"),
            ));
        }
    }
    if rule.ttl_override && rule.ttl.is_none() {
        return Err((
            "ttl_override",
            "`ttl_override = true` needs a `ttl` to put in place of the origin's".into(),
        ));
    }
    if let Some(redirect) = &rule.redirect {
        if !matches!(redirect.status, 301 | 302 | 303 | 307 | 308) {
            return Err((
                "redirect.status",
                format!(
                    "{} is not a redirect status: use 301, 302, 303, 307 or 308",
                    redirect.status
                ),
            ));
        }
        let to = &redirect.to;
        if to.is_empty() {
            return Err(("redirect.to", "must not be empty".into()));
        }
        let absolute = to
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        let path = to.starts_with('/') && !to.starts_with("//");
        if http::HeaderValue::from_str(to).is_err() || !(absolute || path) {
            return Err((
                "redirect.to",
                format!("{to:?} must be an absolute http(s) URL or a path starting with /"),
            ));
        }
        if redirect.keep_path && rule.path_regex.is_some() {
            return Err((
                "redirect.keep_path",
                "keep_path keeps the rest of the path after the rule's `path` prefix: \
                 it cannot be used with path_regex"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn is_standard(method: http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .contains(&method)
}

/// Fields that frame the message or describe one connection: edge keeps
/// them right, and an edit of them could split or join messages.
const MANAGED: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `set` and `remove` of the table `table`; the error names the field,
/// down to the header set (`request_headers.set.X-Site`), whose line is
/// its own when the table is written as a sub-table.
fn edits(table: &str, edits: &HeaderEdits) -> Result<(), (String, String)> {
    let field_name = |name: &str| {
        let parsed = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header field name"))?;
        if MANAGED.contains(&parsed.as_str()) {
            return Err(format!(
                "{name:?} is managed by edge (message framing and connection) and cannot be edited"
            ));
        }
        Ok(parsed)
    };
    for (name, value) in &edits.set {
        let set = || format!("{table}.set.{name}");
        let parsed = field_name(name).map_err(|why| (set(), why))?;
        if http::HeaderValue::from_str(value).is_err() {
            return Err((
                set(),
                format!("the value of {name:?} is not a valid header value: {value:?}"),
            ));
        }
        if edits
            .remove
            .iter()
            .any(|r| r.eq_ignore_ascii_case(parsed.as_str()))
        {
            return Err((
                format!("{table}.remove"),
                format!("{name:?} is both set and removed: set replaces it already"),
            ));
        }
    }
    for name in &edits.remove {
        field_name(name).map_err(|why| (format!("{table}.remove"), why))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
