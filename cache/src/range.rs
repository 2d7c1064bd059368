//! Byte ranges answered from a stored (or arriving) object: RFC 9110 §14.
//!
//! Pure: the request's `Range`/`If-Range`, the stored validators and the
//! length in, what to send out. Ranges the RFC lets a server ignore
//! (invalid syntax, a stale `If-Range`, too many pieces) are ignored: the
//! client gets the whole representation, which is always correct.

use http::{HeaderMap, header};

/// Most ranges served as one multipart response; more (after merging
/// overlaps) are answered with the whole representation, so a request of
/// thousands of tiny ranges costs no more than one full response.
pub const MAX_RANGES: usize = 16;

/// An inclusive byte range within a representation of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// `bytes 0-99/1000`, for `Content-Range`.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }
}

/// What to answer a request with, as far as ranges go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole representation.
    Full,
    /// 206 with these ranges (sorted, non-overlapping, at least one).
    Partial(Vec<ByteRange>),
    /// 416: none of the ranges overlaps the representation.
    Unsatisfiable,
}

/// Evaluates `Range` (and `If-Range`) of a GET against a representation of
/// `len` bytes whose stored headers are `stored`.
pub fn evaluate(request: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeAnswer {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if let Some(if_range) = request.get(header::IF_RANGE) {
        // An unreadable If-Range cannot match: send everything.
        let matches = if_range
            .to_str()
            .is_ok_and(|v| if_range_matches(v.trim(), stored));
        if !matches {
            return RangeAnswer::Full;
        }
    }
    let Some(specs) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    let mut ranges = Vec::new();
    let mut specs_seen = 0;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        specs_seen += 1;
        let Some((first, last)) = spec.split_once('-') else {
            return RangeAnswer::Full;
        };
        let parsed = match (first.trim(), last.trim()) {
            ("", "") => return RangeAnswer::Full,
            ("", suffix) => match suffix.parse::<u64>() {
                Ok(0) => None,
                Ok(n) if len > 0 => Some(ByteRange {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }),
                Ok(_) => None,
                Err(_) => return RangeAnswer::Full,
            },
            (first, last) => {
                let Ok(start) = first.parse::<u64>() else {
                    return RangeAnswer::Full;
                };
                let end = if last.is_empty() {
                    u64::MAX
                } else {
                    match last.parse::<u64>() {
                        Ok(end) if end >= start => end,
                        _ => return RangeAnswer::Full,
                    }
                };
                (start < len).then(|| ByteRange {
                    start,
                    end: end.min(len - 1),
                })
            }
        };
        ranges.extend(parsed);
        if ranges.len() > 4 * MAX_RANGES {
            // Merging could not bring this back under the limit cheaply.
            return RangeAnswer::Full;
        }
    }
    if specs_seen == 0 {
        // `bytes=` names no range at all: invalid, so ignored (§14.2).
        return RangeAnswer::Full;
    }
    if ranges.is_empty() {
        return RangeAnswer::Unsatisfiable;
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            // Overlapping or adjacent: one range (§14.2 allows coalescing).
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() > MAX_RANGES {
        return RangeAnswer::Full;
    }
    RangeAnswer::Partial(merged)
}

/// `If-Range` (RFC 9110 §13.1.5): a strong ETag equal to the stored one, or
/// an HTTP-date equal to the stored `Last-Modified`.
fn if_range_matches(if_range: &str, stored: &HeaderMap) -> bool {
    if if_range.starts_with('"') {
        return stored
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|etag| !etag.starts_with("W/") && etag == if_range);
    }
    if if_range.starts_with("W/") {
        return false;
    }
    let date = crate::date::parse(if_range);
    let last_modified = stored
        .get(header::LAST_MODIFIED)
        .and_then(crate::date::from_header);
    date.is_some() && date == last_modified
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ask(range: &str, len: u64) -> RangeAnswer {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        evaluate(&h, &HeaderMap::new(), len)
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn single_suffix_and_open_ranges() {
        assert_eq!(
            ask("bytes=0-99", 1000),
            RangeAnswer::Partial(vec![r(0, 99)])
        );
        assert_eq!(
            ask("bytes=900-", 1000),
            RangeAnswer::Partial(vec![r(900, 999)])
        );
        assert_eq!(
            ask("bytes=-100", 1000),
            RangeAnswer::Partial(vec![r(900, 999)])
        );
        assert_eq!(
            ask("bytes=-5000", 1000),
            RangeAnswer::Partial(vec![r(0, 999)])
        );
        assert_eq!(
            ask("bytes=990-5000", 1000),
            RangeAnswer::Partial(vec![r(990, 999)])
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(ask("bytes=1000-", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=0-0", 0), RangeAnswer::Unsatisfiable);
        // `bytes=` and `bytes=,` (found by fuzzing: they were 416) name
        // no range: invalid syntax, ignored.
        for ignored in [
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=",
            "bytes= , ",
        ] {
            assert_eq!(ask(ignored, 1000), RangeAnswer::Full, "{ignored}");
        }
    }

    #[test]
    fn several_ranges_are_sorted_and_merged() {
        assert_eq!(
            ask("bytes=500-599, 0-9, 5-20, 21-30", 1000),
            RangeAnswer::Partial(vec![r(0, 30), r(500, 599)])
        );
        let many: Vec<String> = (0..2000)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect();
        assert_eq!(
            ask(&format!("bytes={}", many.join(",")), 100_000),
            RangeAnswer::Full
        );
        let overlapping: Vec<String> = (0..40).map(|i| format!("{i}-{}", i + 5)).collect();
        assert_eq!(
            ask(&format!("bytes={}", overlapping.join(",")), 1000),
            RangeAnswer::Partial(vec![r(0, 44)])
        );
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let mut stored = HeaderMap::new();
        stored.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        stored.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
        );
        let with = |if_range: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
            h.insert(header::IF_RANGE, HeaderValue::from_static(if_range));
            evaluate(&h, &stored, 10)
        };
        assert_eq!(with("\"v1\""), RangeAnswer::Partial(vec![r(0, 1)]));
        assert_eq!(with("\"v2\""), RangeAnswer::Full);
        assert_eq!(with("W/\"v1\""), RangeAnswer::Full);
        assert_eq!(
            with("Mon, 01 Jan 2024 00:00:00 GMT"),
            RangeAnswer::Partial(vec![r(0, 1)])
        );
        assert_eq!(with("Tue, 02 Jan 2024 00:00:00 GMT"), RangeAnswer::Full);
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        h.insert(
            header::IF_RANGE,
            HeaderValue::from_bytes(b"\"v1\xff\"").unwrap(),
        );
        assert_eq!(evaluate(&h, &stored, 10), RangeAnswer::Full);
    }
}
