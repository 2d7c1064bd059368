//! The purge API's requests and answers: JSON in, a validated
//! [`PurgeRecord`] out, every problem a 400 naming it. Nothing touches the
//! cache until the whole request has been read and checked, so a bad item
//! never leaves a purge half applied.

use cache::{CacheKey, KeyRules};
use http::uri::{Authority, Uri};
use http::{HeaderMap, Method, Response, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::rules::{PurgeRecord, path_prefixes};

/// `POST /purge`, the shape Cloudflare's and Fastly's users know.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub soft: bool,
}

/// A request the API refuses, with the status and a message for the
/// client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// The error as JSON; a 503 says when to retry (a hand-over of the
    /// purge database takes about a second).
    pub fn to_response(&self) -> Response<bytes::Bytes> {
        let mut resp = json_response(self.status, &serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<bytes::Bytes> {
    let bytes = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(bytes::Bytes::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Parses and checks a `POST /purge` body into a record (id and time set
/// by the caller).
pub fn parse_request(
    body: &[u8],
    rules: &KeyRules,
    max_items: usize,
) -> Result<PurgeRecord, ApiError> {
    let request: PurgeRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid purge request: {e}")))?;
    let lists = [
        ("urls", request.urls.len()),
        ("prefixes", request.prefixes.len()),
        ("hosts", request.hosts.len()),
        ("tags", request.tags.len()),
    ];
    if lists.iter().all(|(_, n)| *n == 0) {
        return Err(ApiError::bad(
            "nothing to purge: give urls, prefixes, hosts or tags",
        ));
    }
    if let Some((name, n)) = lists.iter().find(|(_, n)| *n > max_items) {
        return Err(ApiError::bad(format!(
            "too many {name}: {n} (at most {max_items} per request)"
        )));
    }
    let mut record = PurgeRecord {
        id: String::new(),
        at: 0,
        soft: request.soft,
        url_keys: Vec::new(),
        urls: Vec::new(),
        prefixes: Vec::new(),
        hosts: Vec::new(),
        tags: Vec::new(),
        all: false,
    };
    for url in &request.urls {
        let key =
            url_key(url, rules).map_err(|why| ApiError::bad(format!("urls: {url:?}: {why}")))?;
        record.url_keys.push(key.to_hex());
        record.urls.push(url.clone());
    }
    for prefix in &request.prefixes {
        record.prefixes.push(
            parse_prefix(prefix)
                .map_err(|why| ApiError::bad(format!("prefixes: {prefix:?}: {why}")))?,
        );
    }
    for host in &request.hosts {
        record.hosts.push(
            parse_host(host).map_err(|why| ApiError::bad(format!("hosts: {host:?}: {why}")))?,
        );
    }
    for tag in &request.tags {
        if tag.is_empty()
            || tag.len() > 1024
            || tag.contains(|c: char| c.is_whitespace() || c == ',')
        {
            return Err(ApiError::bad(format!(
                "tags: {tag:?}: a tag is 1 to 1024 characters without spaces or commas"
            )));
        }
        record.tags.push(tag.clone());
    }
    Ok(record)
}

/// Checks a purge forwarded by a peer as strictly as a client's, and
/// rebuilds what depends on this node's own settings (URL keys under its
/// key rules). The time is set by the caller.
pub fn check_forwarded(
    mut record: PurgeRecord,
    rules: &KeyRules,
    max_items: usize,
) -> Result<PurgeRecord, ApiError> {
    if record.id.is_empty()
        || record.id.len() > 64
        || !record
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::bad("forwarded purge: bad id"));
    }
    if record.all {
        return Err(ApiError::bad(
            "forwarded purge: purges of everything stay local",
        ));
    }
    let lists = [
        record.urls.len(),
        record.prefixes.len(),
        record.hosts.len(),
        record.tags.len(),
    ];
    if lists.iter().any(|n| *n > max_items) {
        return Err(ApiError::bad("forwarded purge: too many items"));
    }
    record.url_keys = record
        .urls
        .iter()
        .map(|url| url_key(url, rules).map(|k| k.to_hex()))
        .collect::<Result<_, _>>()
        .map_err(|why| ApiError::bad(format!("forwarded purge: {why}")))?;
    record.prefixes = record
        .prefixes
        .iter()
        .map(|(host, path)| parse_prefix(&format!("{host}{path}")))
        .collect::<Result<_, _>>()
        .map_err(|why| ApiError::bad(format!("forwarded purge: {why}")))?;
    record.hosts = record
        .hosts
        .iter()
        .map(|h| parse_host(h))
        .collect::<Result<_, _>>()
        .map_err(|why| ApiError::bad(format!("forwarded purge: {why}")))?;
    if record.tags.iter().any(|t| t.is_empty() || t.len() > 1024) {
        return Err(ApiError::bad("forwarded purge: bad tag"));
    }
    Ok(record)
}

/// The cache key of an absolute URL, derived as the stock `cache_key`
/// phase derives it (scheme, host with any non-default port, path and
/// query under the configured key rules).
pub fn url_key(url: &str, rules: &KeyRules) -> Result<CacheKey, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "not a URL")?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err("must be an absolute http:// or https:// URL"),
    };
    let authority = uri.authority().ok_or("no host")?;
    if authority.as_str().contains('@') {
        return Err("user info is not allowed");
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = match authority.port_u16() {
        Some(port) if port != default_port => authority.as_str().to_owned(),
        _ => authority.host().to_owned(),
    };
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    CacheKey::for_request(
        &Method::GET,
        rules.scheme(scheme),
        &host,
        &rules.normalize(pq),
    )
    .ok_or("no key")
}

/// `example.com/images`, `https://example.com/images/` or `example.com` →
/// `("example.com", "/images")`.
pub fn parse_prefix(prefix: &str) -> Result<(String, String), &'static str> {
    let rest = prefix
        .strip_prefix("https://")
        .or_else(|| prefix.strip_prefix("http://"))
        .unwrap_or(prefix);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if path.contains('?') || path.contains('#') {
        return Err("a prefix names a path; leave out the query");
    }
    let host = parse_host(host)?;
    // The same form `path_prefixes` produces for lookups.
    let path = path_prefixes(path).last().unwrap_or("/").to_owned();
    Ok((host, path))
}

/// A host name (a port, if given, is ignored: purges apply on every port).
pub fn parse_host(host: &str) -> Result<String, &'static str> {
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err("not a host name");
    }
    let authority: Authority = host.parse().map_err(|_| "not a host name")?;
    let name = authority.host();
    // `Authority` is lenient about the host part (`a[:1]` gives `a[`):
    // accept only what a request's Host can be, a bracketed IPv6 literal
    // or letters, digits, `-`, `.`, `_` and `~`.
    let valid = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(literal) => literal.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        }
    };
    if !valid {
        return Err("not a host name");
    }
    Ok(name.to_ascii_lowercase())
}

/// How a request to the purge API presents itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Granted,
    /// No `Authorization: Bearer` at all: 401.
    Missing,
    /// A token, but not ours: 403.
    Wrong,
    /// No token is configured: the API is off (403).
    Disabled,
}

/// Checks `Authorization: Bearer TOKEN` against `token` in constant time.
pub fn check_token(headers: &HeaderMap, token: Option<&str>) -> Auth {
    let Some(token) = token else {
        return Auth::Disabled;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
    else {
        return Auth::Missing;
    };
    if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        Auth::Granted
    } else {
        Auth::Wrong
    }
}

/// Equal slices, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<PurgeRecord, ApiError> {
        parse_request(body.as_bytes(), &KeyRules::default(), 3)
    }

    #[test]
    fn urls_hash_like_the_request_path() {
        let rules = KeyRules::default();
        let direct = CacheKey::for_request(&Method::GET, "https", "example.com", "/a?b=1").unwrap();
        assert_eq!(url_key("https://Example.com:443/a?b=1", &rules), Ok(direct));
        let port = CacheKey::for_request(&Method::GET, "http", "example.com:8080", "/").unwrap();
        assert_eq!(url_key("http://example.com:8080/", &rules), Ok(port));
        assert!(url_key("/relative", &rules).is_err());
        assert!(url_key("ftp://example.com/", &rules).is_err());
    }

    #[test]
    fn prefixes_and_hosts_normalise() {
        assert_eq!(
            parse_prefix("https://Example.com/img/"),
            Ok(("example.com".into(), "/img".into()))
        );
        assert_eq!(
            parse_prefix("example.com"),
            Ok(("example.com".into(), "/".into()))
        );
        assert!(parse_prefix("example.com/a?b").is_err());
        assert_eq!(
            parse_host("CDN.example.com:8080"),
            Ok("cdn.example.com".into())
        );
        assert!(parse_host("a b").is_err());
        // Found by fuzzing: `Authority` takes `a[:1]` with host `a[`.
        for bad in ["a[:1]", "a[", "[nope]", "a]b", "a%2fb"] {
            assert!(parse_host(bad).is_err(), "{bad}");
            assert!(parse_prefix(&format!("{bad}/img")).is_err(), "{bad}");
        }
        assert_eq!(parse_host("[::1]:8080"), Ok("[::1]".into()));
        assert_eq!(parse_host("cdn_1.example"), Ok("cdn_1.example".into()));
    }

    #[test]
    fn bad_requests_name_the_problem_and_apply_nothing() {
        let err = |body: &str| parse(body).unwrap_err().message;
        assert!(err("{").contains("invalid purge request"));
        assert!(err(r#"{"url": ["x"]}"#).contains("unknown field"));
        assert!(err("{}").contains("nothing to purge"));
        assert!(err(r#"{"tags": ["a","b","c","d"]}"#).contains("too many tags"));
        assert!(err(r#"{"urls": ["https://ok/", "nope"]}"#).contains("\"nope\""));
        assert!(err(r#"{"tags": ["two words"]}"#).contains("tags"));
        let ok = parse(r#"{"urls": ["https://a/x"], "tags": ["t"], "soft": true}"#).unwrap();
        assert!(ok.soft);
        assert_eq!(ok.url_keys.len(), 1);
    }

    #[test]
    fn tokens_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(check_token(&h, None), Auth::Disabled);
        assert_eq!(check_token(&h, Some("s3cret")), Auth::Missing);
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(check_token(&h, Some("s3cret")), Auth::Wrong);
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(check_token(&h, Some("s3cret")), Auth::Granted);
        h.insert(header::AUTHORIZATION, "Bearer s3cretX".parse().unwrap());
        assert_eq!(check_token(&h, Some("s3cret")), Auth::Wrong);
    }
}
