//! The cache inspector (`GET /cache/inspect?url=URL` on the admin
//! listener, `edge inspect URL`): what the cache holds for one URL, as
//! JSON. The URL becomes a GET request's session exactly as a request's
//! would (`Pipeline::inspect` in `mod.rs`: its `new_session`,
//! `choose_site` and the `cache_key` hook), so the key is the one traffic
//! gets (query rules, signed-URL parameters stripped). Then `cache::inspect` gathers the
//! stored variants without promoting anything, the purge rules judge each
//! one as the lookup would, and the policy's own functions give its age
//! and freshness on the injected clock.
//!
//! Never a body, and never a stored `Set-Cookie`: the headers listed are
//! the stored head without it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache::decision::{self, PurgeVerdict};
use cache::inspect::{self as peek, Freshness, Stored, Window};
use cache::meta::BodyLayout;
use cache::object::Found;
use cache::store::Tier;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use serde_json::{Value, json};

use super::layer::{CacheLayer, content_time};
use super::shared::Shared;
use crate::hooks::Session;

/// Why a URL could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    BadUrl(&'static str),
    #[error("no site answers for host {0:?}")]
    NoSite(String),
    #[error(transparent)]
    Store(#[from] cache::store::StoreError),
}

impl InspectError {
    /// The admin answer's status: the caller's mistake, an unknown host,
    /// or ours.
    pub fn status(&self) -> StatusCode {
        match self {
            InspectError::BadUrl(_) => StatusCode::BAD_REQUEST,
            InspectError::NoSite(_) => StatusCode::NOT_FOUND,
            InspectError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Stored fields never shown: a cookie set for one client is nobody
/// else's business, an operator's included.
fn hidden(name: &header::HeaderName) -> bool {
    name == header::SET_COOKIE || name.as_str() == "set-cookie2"
}

/// The head of a GET for `url` as a client would send it (absolute-form,
/// with `Host`).
pub(crate) fn request_for(url: &str) -> Result<(http::request::Parts, &'static str), InspectError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| InspectError::BadUrl("url: not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => {
            return Err(InspectError::BadUrl(
                "url: must be an absolute http:// or https:// URL",
            ));
        }
    };
    let Some(authority) = uri.authority().cloned() else {
        return Err(InspectError::BadUrl("url: no host"));
    };
    if authority.as_str().contains('@') {
        return Err(InspectError::BadUrl("url: user info is not allowed"));
    }
    let (parts, ()) = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::HOST, authority.as_str())
        .body(())
        .map_err(|_| InspectError::BadUrl("url: not a request target"))?
        .into_parts();
    Ok((parts, scheme))
}

/// The inspector's JSON for the URL of `session` (a GET, its site and
/// rule chosen as a request's are, see `Pipeline::inspect` in `mod.rs`),
/// whose `cache_key` phase gave `key` (`None`: never cached); `bypass`
/// when its rule bypasses the cache.
pub(crate) async fn report<H>(
    shared: &Shared<H>,
    session: &Session,
    key: Option<cache::CacheKey>,
    bypass: bool,
) -> Result<Value, InspectError> {
    let site = session.site().map(|s| s.name.clone());
    let mut out = json!({
        "url": session.req.uri.to_string(),
        "site": site,
        "rule": session.rule,
        "cacheable": key.is_some() && !bypass,
        "key": key.map(|k| k.to_hex()),
        "stored": false,
        "vary": Value::Null,
        "variants": [],
    });
    let Some(key) = key else {
        return Ok(out);
    };
    let cache = &shared.cache;
    // The rules naming the URL itself (a URL purge also drops the object,
    // so an absent object may be explained here); tags need an object.
    let url_rules = cache.purger.rules().covering(
        &key,
        session.host(),
        session.req.uri.path(),
        &[],
        cache.clock.now(),
    );
    out["url_rules"] = Value::Array(url_rules.iter().map(rule_json).collect());
    let seen = peek::gather(&cache.store, &key).await?;
    let now = cache.clock.now();
    let variants: Vec<Value> = seen
        .objects
        .iter()
        .map(|stored| variant_json(cache, session, key, stored, now))
        .collect();
    out["stored"] = json!(!variants.is_empty());
    out["vary"] = match &seen.vary {
        Some(names) => json!({
            "fields": names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            "tiers": tiers(&seen.vary_tiers),
        }),
        None => Value::Null,
    };
    if seen.vary.is_some() && seen.objects.is_empty() {
        // Variants exist only through the index: say why none is shown
        // rather than let "not stored" pass for the truth.
        out["note"] = json!(
            "a Vary record is stored but the variant index names no stored variant \
             (variants stored by an older binary, or whose entry was lost, are listed \
             once filled again)"
        );
    }
    out["variants"] = Value::Array(variants);
    Ok(out)
}

/// One stored variant: where it is, how old and fresh, what covers it.
fn variant_json(
    cache: &CacheLayer,
    session: &Session,
    key: cache::CacheKey,
    stored: &Stored,
    now: SystemTime,
) -> Value {
    let meta = &stored.meta;
    // The verdict and rules a lookup of this URL would get.
    let verdict = cache.purge_verdict(session, key, meta);
    let covering = cache.purger.rules().covering(
        &key,
        session.host(),
        session.req.uri.path(),
        &meta.tags,
        content_time(meta),
    );
    let found = Found {
        meta: meta.clone(),
        tier: stored.tiers.first().copied().unwrap_or(Tier::Memory),
        object_key: stored.object_key,
    };
    let after_purge = decision::apply_purge(found, verdict);
    let freshness = after_purge
        .as_ref()
        .map(|found| peek::freshness(&found.meta, now));
    let selector: serde_json::Map<String, Value> = stored
        .selector
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
        .collect();
    let (layout, size) = match &meta.body {
        BodyLayout::Inline(body) => ("inline", body.len() as u64),
        BodyLayout::Chunked { len, .. } => ("chunked", *len),
        BodyLayout::Sliced { len, .. } => ("sliced", *len),
    };
    json!({
        "object_key": stored.object_key.to_hex(),
        "selector": selector,
        "tiers": tiers(&stored.tiers),
        "status": meta.status.as_u16(),
        "size": size,
        "layout": layout,
        "stored_at": time(meta.response_time),
        "stored_at_unix": unix(meta.response_time),
        "freshness_source": meta.policy.source.as_str(),
        "servable": after_purge.is_some(),
        "freshness": freshness.map(|f| freshness_json(&f)),
        "validators": {
            "etag": text(&meta.headers, header::ETAG),
            "last_modified": text(&meta.headers, header::LAST_MODIFIED),
        },
        "tags": meta.tags,
        "headers": headers_json(&meta.headers),
        "encodings": stored.encodings.iter().map(|e| json!({
            "encoding": e.encoding.token(),
            "size": e.size,
            "tiers": tiers(&e.tiers),
        })).collect::<Vec<_>>(),
        "sliced": stored.slices.is_some(),
        "slices": stored.slices.as_ref().map(|s| json!({
            "slice_size": s.slice_size,
            "count": s.count,
            "checked": s.checked,
            "held": s.held,
        })),
        "purge": {
            "verdict": match verdict {
                PurgeVerdict::Valid => "valid".to_owned(),
                PurgeVerdict::Stale(_) => "soft-purged".to_owned(),
                PurgeVerdict::Invalid => "purged".to_owned(),
            },
            "rules": covering.iter().map(|c| {
                let mut rule = rule_json(c);
                rule["covers"] = json!(c.covers);
                rule
            }).collect::<Vec<_>>(),
        },
    })
}

/// A rule naming an object or URL: its selector and latest purge times.
fn rule_json(c: &purge_api::rules::Covering) -> Value {
    json!({
        "kind": c.kind,
        "selector": c.selector,
        "hard_at": c.hard.map(time),
        "soft_at": c.soft.map(time),
    })
}

fn freshness_json(f: &Freshness) -> Value {
    let window = |w: Option<Window>| {
        w.map(|w| json!({ "window_secs": w.window.as_secs(), "left_secs": w.left.as_secs() }))
    };
    json!({
        "state": f.reuse.as_str(),
        "age_secs": f.age.as_secs(),
        "lifetime_secs": f.lifetime.as_secs(),
        "fresh_for_secs": f.fresh_for.as_secs(),
        "stale_for_secs": f.stale_for.as_secs(),
        "stale_while_revalidate": window(f.stale_while_revalidate),
        "stale_if_error": window(f.stale_if_error),
    })
}

/// The stored head, as `[name, value]` pairs, without hidden fields.
fn headers_json(headers: &HeaderMap) -> Vec<Value> {
    headers
        .iter()
        .filter(|(name, _)| !hidden(name))
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect()
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn tiers(tiers: &[Tier]) -> Vec<&'static str> {
    tiers.iter().map(|t| t.as_str()).collect()
}

fn time(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d: Duration| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_absolute_get_requests() {
        let (req, scheme) = request_for("https://Example.com:8443/a?b=1").unwrap();
        assert_eq!(scheme, "https");
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.headers[header::HOST], "Example.com:8443");
        assert_eq!(req.uri.path_and_query().unwrap().as_str(), "/a?b=1");
        for bad in ["/a", "ftp://x/a", "http://u@x/a", "not a url"] {
            assert!(
                matches!(request_for(bad), Err(InspectError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn set_cookie_is_never_listed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        h.insert(header::SET_COOKIE, "session=secret".parse().unwrap());
        h.insert("set-cookie2", "old=secret".parse().unwrap());
        let listed = serde_json::to_string(&headers_json(&h)).unwrap();
        assert!(listed.contains("text/plain"));
        assert!(!listed.contains("secret"), "{listed}");
    }
}
