//! Validation (RFC 9111 §4.3) and conditional requests answered from cache
//! (RFC 9110 §13), plus invalidation after unsafe requests (RFC 9111 §4.4).

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::cache_control::CacheControl;
use crate::meta::ObjectMeta;
use crate::policy::{self, Defaults, Exchange, NoCacheReason, PolicyOptions, StoredPolicy};

/// What a revalidation's answer makes of the stored response (RFC 9111
/// §4.3.3–§4.3.5, RFC 5861 §4).
#[derive(Debug)]
pub enum Revalidated {
    /// The origin confirmed the stored response: here it is with the new
    /// headers and exchange times. `kept` says whether it may still be
    /// stored (if not, it serves this request only and must be removed).
    Refreshed {
        meta: Box<ObjectMeta>,
        kept: Result<(), NoCacheReason>,
    },
    /// A 304 that names another representation (another validator), or
    /// answers a request that sent none: useless to the client, who never
    /// asked conditionally; fetch in full.
    Unusable,
    /// The origin answered 5xx; `serve_stale` when `stale-if-error` lets
    /// the stored response stand in for it.
    ServerError { serve_stale: bool },
    /// A new response that replaces the stored one.
    Replaced,
}

/// The origin's answer to a revalidation.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    pub exchange: Exchange,
}

/// The request a revalidation was made for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub directives: &'a CacheControl,
    /// Whether validators were sent (a 304 to a request without them is
    /// not ours).
    pub sent_validators: bool,
    /// The site rule's defaults the refreshed response is judged under.
    pub defaults: Defaults<'a>,
}

/// What the answer to a revalidation of `stored` comes to at `now`.
pub fn revalidated(
    stored: &ObjectMeta,
    asked: Asked<'_>,
    answer: Answer<'_>,
    opts: &PolicyOptions,
    now: SystemTime,
) -> Revalidated {
    // A 304 to our validators, or a HEAD response describing the same
    // representation (§4.3.5), refreshes the stored headers.
    let confirms = if answer.status == StatusCode::NOT_MODIFIED {
        asked.sent_validators && validators_match(&stored.headers, answer.headers)
    } else {
        *asked.method == Method::HEAD
            && answer.status == stored.status
            && head_confirms(&stored.headers, answer.headers)
    };
    if confirms {
        let (meta, policy) = refresh(stored, answer, &asked, opts);
        return Revalidated::Refreshed {
            meta: Box::new(meta),
            kept: policy.map(|_| ()),
        };
    }
    if answer.status.is_server_error() {
        let serve_stale = policy::stale_if_error_allows(
            &stored.policy,
            stored.response_time,
            asked.directives,
            now,
        );
        return Revalidated::ServerError { serve_stale };
    }
    if answer.status == StatusCode::NOT_MODIFIED {
        return Revalidated::Unusable;
    }
    Revalidated::Replaced
}

/// The stored response updated from a confirming answer (§4.3.4): its
/// headers merged, the new exchange's times, and the policy recomputed,
/// or why it may no longer be stored (the old policy is kept then).
fn refresh(
    stored: &ObjectMeta,
    answer: Answer<'_>,
    asked: &Asked<'_>,
    opts: &PolicyOptions,
) -> (ObjectMeta, Result<StoredPolicy, NoCacheReason>) {
    let mut headers = stored.headers.clone();
    // Date and Age describe the old exchange: the new one's (or none,
    // which means "now") must drive the age calculation.
    headers.remove(header::DATE);
    headers.remove(header::AGE);
    merge_not_modified(&mut headers, answer.headers);
    let response = policy::Response {
        status: stored.status,
        headers: &headers,
        exchange: answer.exchange,
    };
    let policy =
        policy::storable_with(&Method::GET, asked.headers, response, opts, &asked.defaults);
    let mut meta = stored.clone();
    meta.headers = headers;
    meta.request_time = answer.exchange.request_time;
    meta.response_time = answer.exchange.response_time;
    if let Ok(policy) = policy {
        meta.policy = policy;
    }
    (meta, policy)
}

/// The validator fields to send when revalidating a stored response:
/// `If-None-Match` from its `ETag`, `If-Modified-Since` from its
/// `Last-Modified`. Empty when it has neither (then a revalidation is a
/// plain fetch).
pub fn conditional_headers(stored: &HeaderMap) -> Vec<(header::HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(etag) = stored.get(header::ETAG) {
        out.push((header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some(lm) = stored.get(header::LAST_MODIFIED) {
        out.push((header::IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

/// Fields a 304 must not change in the stored response (RFC 9111 §3.2):
/// framing, and the connection-specific ones.
const NOT_UPDATED: [header::HeaderName; 7] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::CONTENT_RANGE,
];

/// Updates stored headers from a 304 (or HEAD) response (RFC 9111 §3.2,
/// §4.3.4): every field it carries replaces the stored one, except framing.
pub fn merge_not_modified(stored: &mut HeaderMap, fresh: &HeaderMap) {
    for name in fresh.keys() {
        if NOT_UPDATED.contains(name) || name.as_str() == "keep-alive" {
            continue;
        }
        stored.remove(name);
        for value in fresh.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// Whether a HEAD response describes the stored response closely enough
/// to refresh it (RFC 9111 §4.3.5): both carry a validator and they agree.
pub fn head_confirms(stored: &HeaderMap, fresh: &HeaderMap) -> bool {
    match (stored.get(header::ETAG), fresh.get(header::ETAG)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => matches!(
            (stored.get(header::LAST_MODIFIED), fresh.get(header::LAST_MODIFIED)),
            (Some(a), Some(b)) if a == b
        ),
        _ => false,
    }
}

/// Whether a 304 to the conditional request made for `stored` describes
/// it (RFC 9111 §4.3.4): the same ETag, else the same Last-Modified. A 304
/// that repeats no validator at all answers the validators we sent for
/// this very response (§4.3.3; RFC 9110 §15.4.5 lets an origin leave them
/// out), so it is trusted: refusing it would cost the origin a second,
/// unconditional request. A validator the stored response lacks, or a
/// different one, names another representation.
pub fn validators_match(stored: &HeaderMap, fresh: &HeaderMap) -> bool {
    match (stored.get(header::ETAG), fresh.get(header::ETAG)) {
        (Some(a), Some(b)) => a == b,
        (None, Some(_)) => false,
        (stored_etag, None) => match (
            stored.get(header::LAST_MODIFIED),
            fresh.get(header::LAST_MODIFIED),
        ) {
            (Some(a), Some(b)) => a == b,
            // A Last-Modified where we sent an ETag alone: not ours.
            (None, Some(_)) => stored_etag.is_none(),
            // No validator in the 304: the answer to our own conditional.
            (_, None) => true,
        },
    }
}

/// The answer a client's own conditional request gets from a stored
/// response (RFC 9110 §13.2.2 order), or `None` to send it in full.
pub fn evaluate_client_conditionals(
    method: &Method,
    req: &HeaderMap,
    stored_status: StatusCode,
    stored: &HeaderMap,
) -> Option<StatusCode> {
    // Preconditions apply to responses that represent the resource.
    if !stored_status.is_success() {
        return None;
    }
    // Most requests carry none: skip parsing the stored validators.
    let conditional = [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ];
    if !conditional.iter().any(|name| req.contains_key(name)) {
        return None;
    }
    let etag = stored.get(header::ETAG).and_then(|v| v.to_str().ok());
    let last_modified = date(stored.get(header::LAST_MODIFIED));
    if let Some(if_match) = req.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        if !etag_list_matches(if_match, etag, true) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if let Some(since) = date(req.get(header::IF_UNMODIFIED_SINCE))
        && last_modified.is_some_and(|lm| lm > since)
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    let safe = method == Method::GET || method == Method::HEAD;
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        if etag_list_matches(inm, etag, false) {
            return Some(if safe {
                StatusCode::NOT_MODIFIED
            } else {
                StatusCode::PRECONDITION_FAILED
            });
        }
        return None;
    }
    // Without a Last-Modified, the stored response's Date is when it was
    // last known to be unchanged (RFC 9110 §13.1.3, RFC 9111 §4.3.2).
    if safe
        && let Some(since) = date(req.get(header::IF_MODIFIED_SINCE))
        && let Some(lm) = last_modified.or_else(|| date(stored.get(header::DATE)))
        && lm <= since
    {
        return Some(StatusCode::NOT_MODIFIED);
    }
    None
}

/// Whether `list` (`*` or comma-separated entity tags) matches `etag`;
/// `strong` selects the strong comparison of RFC 9110 §8.8.3.2.
fn etag_list_matches(list: &str, etag: Option<&str>, strong: bool) -> bool {
    // `*` matches any current representation, with or without an ETag
    // (RFC 9110 §13.1.1); we only get here with one.
    if list.trim() == "*" {
        return true;
    }
    let Some(etag) = etag else {
        return false;
    };
    let opaque = |tag: &str| -> Option<(bool, String)> {
        let tag = tag.trim();
        let (weak, rest) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        (rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"'))
            .then(|| (weak, rest.to_owned()))
    };
    let Some((etag_weak, etag_value)) = opaque(etag) else {
        return false;
    };
    list.split(',')
        .filter_map(opaque)
        .any(|(weak, value)| value == etag_value && (!strong || (!weak && !etag_weak)))
}

fn date(v: Option<&HeaderValue>) -> Option<SystemTime> {
    v.and_then(crate::date::from_header)
}

/// Methods whose successful responses invalidate stored responses for the
/// target (RFC 9111 §4.4): every method that is not safe.
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    let unsafe_method = !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    unsafe_method && (status.is_success() || status.is_redirection())
}

/// The `Location` and `Content-Location` paths (with query) of a response
/// that point at the same host as the request, for invalidation. Absolute
/// URIs naming another host are ignored (§4.4: same origin only).
pub fn invalidation_targets(resp: &HeaderMap, request_host: &str) -> Vec<String> {
    [header::LOCATION, header::CONTENT_LOCATION]
        .iter()
        .filter_map(|name| resp.get(name)?.to_str().ok())
        .filter_map(|value| {
            let uri: http::Uri = value.trim().parse().ok()?;
            match uri.authority() {
                Some(a) if !a.host().eq_ignore_ascii_case(request_host) => None,
                _ => {
                    let pq = uri.path_and_query()?.as_str();
                    pq.starts_with('/').then(|| pq.to_owned())
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod outcome_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const OLD: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
    const NEW: &str = "Tue, 02 Jan 2024 00:00:00 GMT";

    #[test]
    fn conditionals_from_validators() {
        let h = headers(&[("etag", "\"v1\""), ("last-modified", OLD)]);
        let c = conditional_headers(&h);
        assert_eq!(
            c[0],
            (header::IF_NONE_MATCH, HeaderValue::from_static("\"v1\""))
        );
        assert_eq!(
            c[1],
            (header::IF_MODIFIED_SINCE, HeaderValue::from_static(OLD))
        );
        assert!(conditional_headers(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn not_modified_updates_all_but_framing() {
        let mut stored = headers(&[
            ("content-length", "100"),
            ("cache-control", "max-age=10"),
            ("x-old", "1"),
            ("etag", "\"v1\""),
        ]);
        let fresh = headers(&[
            ("content-length", "0"),
            ("cache-control", "max-age=99"),
            ("x-new", "2"),
            ("etag", "\"v1\""),
        ]);
        merge_not_modified(&mut stored, &fresh);
        assert_eq!(stored["content-length"], "100");
        assert_eq!(stored["cache-control"], "max-age=99");
        assert_eq!(stored["x-old"], "1");
        assert_eq!(stored["x-new"], "2");
    }

    #[test]
    fn validators_must_agree() {
        let v1 = headers(&[("etag", "\"v1\"")]);
        let v2 = headers(&[("etag", "\"v2\"")]);
        assert!(validators_match(&v1, &v1));
        assert!(!validators_match(&v1, &v2));
        // A 304 with no validator at all answers our own conditional
        // (RFC 9111 §4.3.3, issue 25); one with another kind does not.
        assert!(validators_match(&v1, &HeaderMap::new()));
        assert!(!validators_match(&v1, &headers(&[("last-modified", OLD)])));
        assert!(!validators_match(&HeaderMap::new(), &v1));
        let lm_old = headers(&[("last-modified", OLD)]);
        let lm_new = headers(&[("last-modified", NEW)]);
        assert!(!validators_match(&lm_old, &lm_new));
        assert!(validators_match(&lm_old, &HeaderMap::new()));
    }

    #[test]
    fn head_needs_agreeing_validators() {
        let v1 = headers(&[("etag", "\"v1\"")]);
        assert!(head_confirms(&v1, &v1));
        assert!(!head_confirms(&v1, &HeaderMap::new()));
        assert!(!head_confirms(&HeaderMap::new(), &HeaderMap::new()));
        let lm = headers(&[("last-modified", OLD)]);
        assert!(head_confirms(&lm, &lm));
        assert!(!head_confirms(&lm, &HeaderMap::new()));
    }

    #[test]
    fn client_conditionals_in_rfc_order() {
        let stored = headers(&[("etag", "W/\"v1\""), ("last-modified", OLD)]);
        let ok = StatusCode::OK;
        let get = Method::GET;
        let ask = |pairs| evaluate_client_conditionals(&get, &headers(pairs), ok, &stored);
        // If-None-Match uses the weak comparison.
        assert_eq!(
            ask(&[("if-none-match", "\"v1\"")]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            ask(&[("if-none-match", "\"x\", W/\"v1\"")]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            ask(&[("if-none-match", "*")]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(ask(&[("if-none-match", "\"v2\"")]), None);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            ask(&[("if-none-match", "\"v2\""), ("if-modified-since", NEW)]),
            None
        );
        assert_eq!(
            ask(&[("if-modified-since", NEW)]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            ask(&[("if-modified-since", OLD)]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            ask(&[("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT")]),
            None
        );
        // If-Match uses the strong comparison: a weak ETag never matches.
        assert_eq!(
            ask(&[("if-match", "W/\"v1\"")]),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(ask(&[("if-match", "*")]), None);
        // Without a Last-Modified, If-Unmodified-Since cannot fail.
        let no_lm = headers(&[("etag", "\"v1\"")]);
        assert_eq!(
            evaluate_client_conditionals(
                &get,
                &headers(&[("if-unmodified-since", OLD)]),
                ok,
                &no_lm
            ),
            None
        );
        // `*` matches a representation that has no ETag.
        let bare = HeaderMap::new();
        assert_eq!(
            evaluate_client_conditionals(&get, &headers(&[("if-none-match", "*")]), ok, &bare),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            evaluate_client_conditionals(&get, &headers(&[("if-match", "*")]), ok, &bare),
            None
        );
        assert_eq!(
            ask(&[("if-unmodified-since", "Sun, 31 Dec 2023 00:00:00 GMT")]),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        assert_eq!(ask(&[("if-unmodified-since", NEW)]), None);
        // Errors are not preconditions' business.
        assert_eq!(
            evaluate_client_conditionals(
                &get,
                &headers(&[("if-none-match", "*")]),
                StatusCode::NOT_FOUND,
                &stored
            ),
            None
        );
    }

    #[test]
    fn if_modified_since_falls_back_to_the_stored_date() {
        // RFC 9110 §13.1.3, RFC 9111 §4.3.2: without Last-Modified, the
        // stored response's Date is when it was last known unchanged.
        let stored = headers(&[("date", OLD), ("etag", "\"v1\"")]);
        let ok = StatusCode::OK;
        let get = Method::GET;
        let ask = |pairs| evaluate_client_conditionals(&get, &headers(pairs), ok, &stored);
        assert_eq!(
            ask(&[("if-modified-since", OLD)]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            ask(&[("if-modified-since", NEW)]),
            Some(StatusCode::NOT_MODIFIED)
        );
        assert_eq!(
            ask(&[("if-modified-since", "Sun, 31 Dec 2023 00:00:00 GMT")]),
            None
        );
        // Last-Modified, when there, still wins over Date.
        let both = headers(&[("date", NEW), ("last-modified", OLD)]);
        assert_eq!(
            evaluate_client_conditionals(
                &get,
                &headers(&[("if-modified-since", "Mon, 01 Jan 2024 12:00:00 GMT")]),
                ok,
                &both
            ),
            Some(StatusCode::NOT_MODIFIED)
        );
        // Obsolete and case-folded forms are read too.
        assert_eq!(
            ask(&[("if-modified-since", "monday, 01-jan-24 00:00:00 gmt")]),
            Some(StatusCode::NOT_MODIFIED)
        );
    }

    #[test]
    fn unsafe_successes_invalidate() {
        assert!(invalidates(&Method::POST, StatusCode::OK));
        assert!(invalidates(&Method::DELETE, StatusCode::NO_CONTENT));
        assert!(invalidates(&Method::PUT, StatusCode::SEE_OTHER));
        assert!(!invalidates(
            &Method::POST,
            StatusCode::INTERNAL_SERVER_ERROR
        ));
        assert!(!invalidates(&Method::GET, StatusCode::OK));
        let resp = headers(&[
            ("location", "http://Example.com/new?x=1"),
            ("content-location", "http://other.example/elsewhere"),
        ]);
        assert_eq!(invalidation_targets(&resp, "example.com"), ["/new?x=1"]);
        let resp = headers(&[("content-location", "/items/7")]);
        assert_eq!(invalidation_targets(&resp, "example.com"), ["/items/7"]);
    }
}
