//! Slices of large objects, like nginx's slice module but chosen by the
//! cache itself: which slice holds a byte, the Range request that fetches
//! it, whether an origin's 206 really is that slice of the representation
//! already stored, and the heads of the whole object and of each slice.
//!
//! Pure: headers in, answers out. `edge` (`proxy/sliced_miss.rs` and
//! `proxy/slices.rs`) does the fetching; slices are stored as ordinary
//! objects under
//! [`CacheKey::slice`](crate::CacheKey::slice).
//!
//! Slices fetched at different times are only combined when they carry the
//! same validator as the whole object (RFC 9111 §3.4): a strong ETag, or
//! failing that `Last-Modified`. A response with neither is never sliced.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use crate::range::ByteRange;

/// The byte range of slice `index` of a `total`-byte object cut into
/// `slice_size`-byte slices (the last one may be shorter). `None` past the
/// end.
pub fn slice_range(index: u64, slice_size: u64, total: u64) -> Option<ByteRange> {
    let start = index.checked_mul(slice_size)?;
    if start >= total {
        return None;
    }
    let end = start.saturating_add(slice_size).min(total) - 1;
    Some(ByteRange { start, end })
}

/// The `Range` value that asks the origin for slice `index`, whatever the
/// object's length (an origin clamps the end to what it has).
pub fn range_request(index: u64, slice_size: u64) -> HeaderValue {
    let start = index.saturating_mul(slice_size);
    let end = start.saturating_add(slice_size) - 1;
    HeaderValue::from_str(&format!("bytes={start}-{end}"))
        .unwrap_or_else(|_| HeaderValue::from_static("bytes=0-0"))
}

/// `Content-Range: bytes a-b/total` of a 206, with the total known.
pub fn content_range(headers: &HeaderMap) -> Option<(ByteRange, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total: u64 = total.trim().parse().ok()?;
    (start <= end && end < total).then_some((ByteRange { start, end }, total))
}

/// The validator that ties slices to one representation: a strong ETag,
/// else a `Last-Modified` that is strong by RFC 9110 §8.8.2.2 (the
/// response's `Date` at least 60 s later: the file had not changed for a
/// minute when it was served, so two versions cannot share the second).
/// `None`: the response must not be sliced.
pub fn validator(headers: &HeaderMap) -> Option<&HeaderValue> {
    if let Some(etag) = headers
        .get(header::ETAG)
        .filter(|v| !v.as_bytes().starts_with(b"W/"))
    {
        return Some(etag);
    }
    let last_modified = headers.get(header::LAST_MODIFIED)?;
    let date = crate::date::from_header;
    let (modified, served) = (date(last_modified)?, date(headers.get(header::DATE)?)?);
    let strong = served
        .duration_since(modified)
        .is_ok_and(|gap| gap.as_secs() >= 60);
    strong.then_some(last_modified)
}

/// Whether a whole response (a 200) may be stored as slices: the origin
/// says it serves byte ranges and names its version.
pub fn can_slice(status: StatusCode, headers: &HeaderMap) -> bool {
    let ranges = headers
        .get(header::ACCEPT_RANGES)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"bytes"));
    status == StatusCode::OK && ranges && validator(headers).is_some()
}

/// Whether a response (`status`, `part`) is exactly slice `expected` of the
/// `total`-byte representation whose head is `whole`: a 206 for that range,
/// with the same validator. A `Content-Length` must be the range's length;
/// without one (a chunked 206, usual from HTTP/2 origins) the fill checks
/// the length the body really has before storing it.
pub fn is_slice_of(
    whole: &HeaderMap,
    total: u64,
    status: StatusCode,
    part: &HeaderMap,
    expected: ByteRange,
) -> bool {
    let declared = part
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if status != StatusCode::PARTIAL_CONTENT
        || content_range(part) != Some((expected, total))
        || declared.is_some_and(|declared| declared != expected.len())
    {
        return false;
    }
    let Some(version) = validator(whole) else {
        return false;
    };
    // Compare like with like: the whole object's validator decides which
    // field the slice must match.
    let name = if whole.get(header::ETAG) == Some(version) {
        header::ETAG
    } else {
        header::LAST_MODIFIED
    };
    part.get(name) == Some(version)
}

/// The head of the whole representation, from the 206 head of one slice:
/// the same fields, without `Content-Range`, with the full length.
pub fn whole_head(part: &HeaderMap, total: u64) -> HeaderMap {
    let mut headers = part.clone();
    headers.remove(header::CONTENT_RANGE);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    headers
}

/// The 206 head a slice is stored with when it was cut out of a whole
/// response.
pub fn part_head(whole: &HeaderMap, range: ByteRange, total: u64) -> HeaderMap {
    let mut headers = whole.clone();
    if let Ok(value) = HeaderValue::from_str(&range.content_range(total)) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
    headers
}

/// The lowest byte a `Range` header asks for, when every range in it names
/// its first byte. `None` for suffix ranges (`bytes=-500`: where they start
/// depends on a length not yet known) and for syntax the cache ignores.
pub fn first_wanted(request: &HeaderMap) -> Option<u64> {
    let specs = request
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    let mut first: Option<u64> = None;
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (start, _) = spec.split_once('-')?;
        let start: u64 = start.trim().parse().ok()?;
        first = Some(first.map_or(start, |f| f.min(start)));
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn slices_cover_the_object_exactly() {
        let total = 10 * MIB + 5;
        assert_eq!(slice_range(0, 4 * MIB, total), Some(r(0, 4 * MIB - 1)));
        assert_eq!(
            slice_range(2, 4 * MIB, total),
            Some(r(8 * MIB, 10 * MIB + 4))
        );
        assert_eq!(slice_range(3, 4 * MIB, total), None);
        assert_eq!(slice_range(u64::MAX, 4 * MIB, total), None);
        assert_eq!(range_request(1, 4 * MIB), "bytes=4194304-8388607");
    }

    #[test]
    fn content_ranges_parse_only_when_complete() {
        let cr = |v: &'static str| content_range(&headers(&[("content-range", v)]));
        assert_eq!(cr("bytes 0-99/1000"), Some((r(0, 99), 1000)));
        assert_eq!(cr("bytes 0-99/*"), None);
        assert_eq!(cr("bytes 100-99/1000"), None);
        assert_eq!(cr("bytes 0-1000/1000"), None);
        assert_eq!(cr("bytes */1000"), None);
    }

    #[test]
    fn slices_must_carry_the_whole_objects_validator() {
        let whole = headers(&[("etag", "\"v1\""), ("content-length", "1000")]);
        let part = |etag: &'static str, cr: &'static str| {
            headers(&[
                ("etag", etag),
                ("content-range", cr),
                ("content-length", "100"),
            ])
        };
        let ok = part("\"v1\"", "bytes 0-99/1000");
        let partial = StatusCode::PARTIAL_CONTENT;
        assert!(is_slice_of(&whole, 1000, partial, &ok, r(0, 99)));
        assert!(!is_slice_of(&whole, 1000, StatusCode::OK, &ok, r(0, 99)));
        assert!(!is_slice_of(&whole, 1000, partial, &ok, r(0, 98)));
        assert!(!is_slice_of(&whole, 2000, partial, &ok, r(0, 99)));
        let changed = part("\"v2\"", "bytes 0-99/1000");
        assert!(!is_slice_of(&whole, 1000, partial, &changed, r(0, 99)));
        let short = headers(&[
            ("etag", "\"v1\""),
            ("content-range", "bytes 0-99/1000"),
            ("content-length", "50"),
        ]);
        assert!(!is_slice_of(&whole, 1000, partial, &short, r(0, 99)));
        // Found by the soak test: a chunked 206 (no Content-Length) was
        // taken for a changed object, dropped, and the client's answer cut.
        let chunked = headers(&[("etag", "\"v1\""), ("content-range", "bytes 0-99/1000")]);
        assert!(is_slice_of(&whole, 1000, partial, &chunked, r(0, 99)));
    }

    #[test]
    fn last_modified_ties_slices_only_when_strong() {
        // A weak ETag cannot tie bytes together; Last-Modified then decides,
        // if the file was already a minute old when served.
        let old = headers(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Tue, 01 Sep 2026 00:00:00 GMT"),
            ("date", "Tue, 01 Sep 2026 00:01:00 GMT"),
        ]);
        assert_eq!(
            validator(&old),
            Some(&HeaderValue::from_static("Tue, 01 Sep 2026 00:00:00 GMT"))
        );
        let fresh = headers(&[
            ("last-modified", "Tue, 01 Sep 2026 00:00:00 GMT"),
            ("date", "Tue, 01 Sep 2026 00:00:30 GMT"),
        ]);
        assert!(
            validator(&fresh).is_none(),
            "could change within the second"
        );
        let undated = headers(&[("last-modified", "Tue, 01 Sep 2026 00:00:00 GMT")]);
        assert!(validator(&undated).is_none());
        assert!(validator(&headers(&[("etag", "W/\"v1\"")])).is_none());
    }

    #[test]
    fn only_ranged_versioned_200s_are_sliced() {
        let good = headers(&[("accept-ranges", "bytes"), ("etag", "\"a\"")]);
        assert!(can_slice(StatusCode::OK, &good));
        assert!(!can_slice(StatusCode::NOT_FOUND, &good));
        assert!(!can_slice(
            StatusCode::OK,
            &headers(&[("accept-ranges", "none"), ("etag", "\"a\"")])
        ));
        assert!(!can_slice(
            StatusCode::OK,
            &headers(&[("accept-ranges", "bytes")])
        ));
    }

    #[test]
    fn heads_convert_both_ways() {
        let part = headers(&[
            ("content-range", "bytes 0-9/100"),
            ("content-length", "10"),
            ("etag", "\"a\""),
        ]);
        let whole = whole_head(&part, 100);
        assert!(whole.get("content-range").is_none());
        assert_eq!(whole["content-length"], "100");
        let back = part_head(&whole, r(10, 19), 100);
        assert_eq!(back["content-range"], "bytes 10-19/100");
        assert_eq!(back["content-length"], "10");
    }

    #[test]
    fn first_wanted_byte() {
        let ask = |v: &'static str| first_wanted(&headers(&[("range", v)]));
        assert_eq!(ask("bytes=100-199"), Some(100));
        assert_eq!(ask("bytes=500-, 20-30"), Some(20));
        assert_eq!(ask("bytes=-500"), None);
        assert_eq!(ask("items=0-1"), None);
        assert_eq!(first_wanted(&HeaderMap::new()), None);
    }
}
