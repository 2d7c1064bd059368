//! Response shaping, pure: what a phase hands back ([`Served`]), the
//! `X-Cache` / RFC 9211 `Cache-Status` marks ([`Mark`], written in one
//! place), the client's own conditionals (304/412), range heads (206/416)
//! and the head of a stored response.

use std::time::Duration;

use bytes::Bytes;
use cache::meta::ObjectMeta;
use cache::range::ByteRange;
use cache::{CacheStatus, NoCacheReason, validation};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, response};

use crate::body::ProxyBody;
use crate::hooks::Session;

/// What a cache phase hands back.
pub(crate) struct Served {
    pub head: response::Parts,
    pub body: ProxyBody,
    /// The origin's status, when the origin was asked.
    pub upstream_status: Option<StatusCode>,
    /// What the body is, for compression (`encode.rs`).
    pub body_of: BodyOf,
}

impl Served {
    pub fn new(
        head: response::Parts,
        body: ProxyBody,
        upstream_status: Option<StatusCode>,
    ) -> Self {
        Served {
            head,
            body,
            upstream_status,
            body_of: BodyOf::Other,
        }
    }

    /// The same, its body being `of`.
    pub fn of(self, of: BodyOf) -> Self {
        Served {
            body_of: of,
            ..self
        }
    }
}

/// What a response's body is, for the transform at the end of the
/// pipeline (`encode.rs`).
#[derive(Debug, Default)]
pub(crate) enum BodyOf {
    /// Not a stored object (a pass, a response not stored): transformed
    /// as it streams, nothing kept.
    #[default]
    Other,
    /// A stored object's, already transformed where it was read.
    Transformed,
    /// The body of an object being filled: an encoding made of it is
    /// stored beside it.
    Filling(std::sync::Arc<cache::fill::FillHead>),
}

/// RFC 9211 `fwd`: why the request went to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// Not in the cache.
    UriMiss,
    /// In the cache, but stale.
    Stale,
    /// The client asked for a fresh copy (`no-cache`).
    Request,
    /// Not cacheable: passed.
    Bypass,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Fwd::UriMiss => "fwd=uri-miss",
            Fwd::Stale => "fwd=stale",
            Fwd::Request => "fwd=request",
            Fwd::Bypass => "fwd=bypass",
        }
    }
}

/// RFC 9211 `detail`: the one remark a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Why the response was not stored.
    NotStored(NoCacheReason),
    MaxStale,
    StaleWhileRevalidate,
    StaleIfError,
    /// Stored, in slices.
    Slice,
    /// The request failed with this error (`ProxyError::as_str`).
    Error(&'static str),
}

impl Detail {
    fn as_str(self) -> &'static str {
        match self {
            Detail::NotStored(reason) => reason.as_str(),
            Detail::MaxStale => "max-stale",
            Detail::StaleWhileRevalidate => "stale-while-revalidate",
            Detail::StaleIfError => "stale-if-error",
            Detail::Slice => "slice",
            Detail::Error(err) => err,
        }
    }
}

/// How a response relates to the cache, as data until the header is
/// written: `X-Cache: STATUS` and `Cache-Status: node; hit|fwd=..;
/// fwd-status=..; stored; collapsed; detail=..; ttl=..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub status: CacheStatus,
    /// `None`: a hit.
    pub fwd: Option<Fwd>,
    pub fwd_status: Option<u16>,
    pub stored: bool,
    pub collapsed: bool,
    pub detail: Option<Detail>,
    pub ttl: Option<i64>,
}

impl Mark {
    /// Served from the cache.
    pub const fn hit(status: CacheStatus) -> Mark {
        Mark {
            status,
            fwd: None,
            fwd_status: None,
            stored: false,
            collapsed: false,
            detail: None,
            ttl: None,
        }
    }

    /// Went to the origin, for reason `fwd`.
    pub const fn forwarded(status: CacheStatus, fwd: Fwd) -> Mark {
        Mark {
            fwd: Some(fwd),
            ..Mark::hit(status)
        }
    }

    /// A miss for a key not in the cache.
    pub const MISS: Mark = Mark::forwarded(CacheStatus::Miss, Fwd::UriMiss);

    pub const fn with_detail(self, detail: Detail) -> Mark {
        Mark {
            detail: Some(detail),
            ..self
        }
    }

    pub const fn with_fwd_status(self, status: StatusCode) -> Mark {
        Mark {
            fwd_status: Some(status.as_u16()),
            ..self
        }
    }

    pub const fn stored(self) -> Mark {
        Mark {
            stored: true,
            ..self
        }
    }

    pub const fn collapsed(self) -> Mark {
        Mark {
            collapsed: true,
            ..self
        }
    }

    /// The `Cache-Status` value. Built by hand: `format!` was a visible
    /// share of a hit's cost.
    fn value(&self, node: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(node.len() + 48);
        v.extend_from_slice(node.as_bytes());
        v.extend_from_slice(b"; ");
        let mut itoa = itoa::Buffer::new();
        match self.fwd {
            None => v.extend_from_slice(b"hit"),
            Some(fwd) => v.extend_from_slice(fwd.as_str().as_bytes()),
        }
        if let Some(status) = self.fwd_status {
            v.extend_from_slice(b"; fwd-status=");
            v.extend_from_slice(itoa.format(status).as_bytes());
        }
        if self.stored {
            v.extend_from_slice(b"; stored");
        }
        if self.collapsed {
            v.extend_from_slice(b"; collapsed");
        }
        if let Some(detail) = self.detail {
            v.extend_from_slice(b"; detail=");
            v.extend_from_slice(detail.as_str().as_bytes());
        }
        if let Some(ttl) = self.ttl {
            v.extend_from_slice(b"; ttl=");
            v.extend_from_slice(itoa.format(ttl).as_bytes());
        }
        v
    }
}

/// Why a stale object answers, for `edge_stale_served_total{reason}`;
/// `None` when `mark` is not a stale answer.
pub(crate) fn stale_reason(mark: &Mark) -> Option<&'static str> {
    if mark.status != CacheStatus::Stale {
        return None;
    }
    Some(match mark.detail {
        Some(Detail::StaleIfError) => "origin_error",
        Some(Detail::StaleWhileRevalidate) => "revalidating",
        Some(Detail::MaxStale) => "max_stale",
        _ => "other",
    })
}

/// Writes `mark` as `X-Cache` and `Cache-Status`. The only place these
/// headers (and the `detail=` texts) are produced.
pub(crate) fn write_mark(headers: &mut HeaderMap, node: &str, mark: &Mark) {
    headers.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(mark.status.as_str()),
    );
    // Handed over, not copied again as `from_str` would.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(mark.value(node))) {
        headers.insert(HeaderName::from_static("cache-status"), v);
    }
}

/// Marks a response for this request: records the status on the session
/// (for metrics and the access log) and writes the headers.
pub(crate) fn mark(session: &mut Session, headers: &mut HeaderMap, node: &str, mark: &Mark) {
    session.cache_status = mark.status;
    write_mark(headers, node, mark);
}

/// Fields a 304 carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
    header::AGE,
];

/// Answers the client's own conditionals (RFC 9110 §13.2.2) from the
/// response head in `parts`: turns it into a 304 (keeping the fields a 304
/// carries) or a 412 and returns true, or leaves it alone.
pub(crate) fn answer_conditionals(session: &Session, parts: &mut response::Parts) -> bool {
    let Some(answer) = validation::evaluate_client_conditionals(
        &session.req.method,
        &session.req.headers,
        parts.status,
        &parts.headers,
    ) else {
        return false;
    };
    parts.status = answer;
    let keep: Vec<_> = parts
        .headers
        .iter()
        .filter(|(n, _)| {
            answer == StatusCode::NOT_MODIFIED
                && (NOT_MODIFIED_FIELDS.contains(n) || *n == "x-cache" || *n == "cache-status")
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    parts.headers.clear();
    for (n, v) in keep {
        parts.headers.append(n, v);
    }
    true
}

/// The head of a stored response served at `age`: its status and headers,
/// `Age`, and the exact `Content-Length` (even if the origin sent the body
/// chunked).
pub(crate) fn stored_head(meta: &ObjectMeta, age: Duration) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = meta.status;
    parts.headers = meta.headers.clone();
    parts
        .headers
        .insert(header::AGE, HeaderValue::from(age.as_secs()));
    if meta.status != StatusCode::NO_CONTENT && meta.status != StatusCode::NOT_MODIFIED {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(meta.body.len()));
    }
    parts
}

/// The head of a response stored or being filled, as received.
pub(crate) fn head_of(meta: &ObjectMeta) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = meta.status;
    parts.headers = meta.headers.clone();
    parts
}

/// The remaining lifetime, negative once stale (`Cache-Status` `ttl=`).
pub(crate) fn signed_ttl(meta: &ObjectMeta, age: Duration) -> i64 {
    let lifetime = i64::try_from(meta.policy.lifetime.as_secs()).unwrap_or(i64::MAX);
    lifetime.saturating_sub(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))
}

/// A 206 head for one range of a `total`-byte representation.
pub(crate) fn single_range(parts: &mut response::Parts, range: &ByteRange, total: u64) {
    parts.status = StatusCode::PARTIAL_CONTENT;
    set_header(
        &mut parts.headers,
        header::CONTENT_RANGE,
        &range.content_range(total),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
}

/// A 416 head (RFC 9110 §15.5.17).
pub(crate) fn unsatisfiable(parts: &mut response::Parts, total: u64) {
    parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
    set_header(
        &mut parts.headers,
        header::CONTENT_RANGE,
        &format!("bytes */{total}"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
}

pub(crate) fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A declared `Content-Length`.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(mark: Mark) -> String {
        String::from_utf8(mark.value("edge")).expect("ascii")
    }

    #[test]
    fn marks_are_written_in_rfc_9211_order() {
        let hit = Mark {
            ttl: Some(42),
            ..Mark::hit(CacheStatus::Hit)
        };
        assert_eq!(text(hit), "edge; hit; ttl=42");
        let stale = Mark {
            ttl: Some(-3),
            ..Mark::hit(CacheStatus::Stale).with_detail(Detail::MaxStale)
        };
        assert_eq!(text(stale), "edge; hit; detail=max-stale; ttl=-3");
        let miss = Mark::MISS.with_fwd_status(StatusCode::OK).stored();
        assert_eq!(text(miss), "edge; fwd=uri-miss; fwd-status=200; stored");
        let sliced = Mark::MISS
            .with_fwd_status(StatusCode::PARTIAL_CONTENT)
            .stored()
            .with_detail(Detail::Slice);
        assert_eq!(
            text(sliced),
            "edge; fwd=uri-miss; fwd-status=206; stored; detail=slice"
        );
        let passed = Mark::MISS
            .with_fwd_status(StatusCode::OK)
            .with_detail(Detail::NotStored(NoCacheReason::Private));
        assert_eq!(
            text(passed),
            "edge; fwd=uri-miss; fwd-status=200; detail=private"
        );
        let collapsed = Mark::forwarded(CacheStatus::Revalidated, Fwd::Stale).collapsed();
        assert_eq!(text(collapsed), "edge; fwd=stale; collapsed");
        let joined = Mark::MISS
            .with_fwd_status(StatusCode::OK)
            .stored()
            .collapsed();
        assert_eq!(
            text(joined),
            "edge; fwd=uri-miss; fwd-status=200; stored; collapsed"
        );
        let failed = Mark::forwarded(CacheStatus::Pass, Fwd::Bypass)
            .with_detail(Detail::Error("upstream_timeout"));
        assert_eq!(text(failed), "edge; fwd=bypass; detail=upstream_timeout");
    }
}
