//! `Range`/`If-Range` answered from a stored object
//! (`cache::range::evaluate`), and the `Content-Range` parser of the slice
//! layer (`cache::slice::content_range`).
//!
//! The input is text lines: `Range`, `If-Range` (empty: absent), the
//! object's length in decimal, the stored `ETag`, the stored
//! `Last-Modified`. A line that is not a valid header value leaves that
//! header out.
//!
//! Properties:
//! - no `Range`, no partial answer;
//! - a partial answer has 1 to `MAX_RANGES` ranges, sorted, disjoint and
//!   not adjacent (merged), each within the object, together no longer
//!   than it;
//! - `If-Range` can only turn a partial answer into a full one;
//! - each range's `Content-Range` parses back to itself;
//! - a parsed `Content-Range` is a range within its total.
#![no_main]

use cache::range::{self, ByteRange, MAX_RANGES, RangeAnswer};
use cache::slice;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let mut next = || lines.next().unwrap_or_default();
    let (range_line, if_range_line, len_line, etag_line, lm_line) =
        (next(), next(), next(), next(), next());

    // Any length the fuzzer writes, else one derived from the input size,
    // so that both small and huge objects are tried.
    let len = std::str::from_utf8(len_line)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(data.len() as u64 * 37);

    let mut request = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(range_line) {
        request.insert(header::RANGE, v);
    }
    let without_if_range = request.clone();
    if !if_range_line.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(if_range_line)
    {
        request.insert(header::IF_RANGE, v);
    }
    let mut stored = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(etag_line) {
        stored.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(lm_line) {
        stored.insert(header::LAST_MODIFIED, v);
    }

    let answer = range::evaluate(&request, &stored, len);
    check_answer(&answer, len, request.contains_key(header::RANGE));
    let plain = range::evaluate(&without_if_range, &stored, len);
    if answer != RangeAnswer::Full {
        assert_eq!(answer, plain, "If-Range may only cancel a range request");
    }

    // The Content-Range parser on the raw Range line.
    let mut part = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(range_line) {
        part.insert(header::CONTENT_RANGE, v);
        if let Some((r, total)) = slice::content_range(&part) {
            assert!(r.start <= r.end && r.end < total, "{r:?} of {total}");
            assert_eq!(round_trip(r, total), Some((r, total)));
        }
    }
});

fn check_answer(answer: &RangeAnswer, len: u64, has_range: bool) {
    let RangeAnswer::Partial(ranges) = answer else {
        if !has_range {
            assert_eq!(*answer, RangeAnswer::Full, "no Range, whole object");
        }
        return;
    };
    assert!(has_range);
    assert!(
        !ranges.is_empty() && ranges.len() <= MAX_RANGES,
        "{ranges:?}"
    );
    let mut total: u64 = 0;
    for (i, r) in ranges.iter().enumerate() {
        assert!(r.start <= r.end && r.end < len, "{r:?} outside {len}");
        total = total.checked_add(r.len()).expect("lengths overflow");
        if i > 0 {
            let prev = ranges[i - 1];
            assert!(prev.end + 1 < r.start, "{prev:?} and {r:?} not merged");
        }
        assert_eq!(round_trip(*r, len), Some((*r, len)));
    }
    assert!(total <= len, "{total} bytes of {len}");
}

/// `Content-Range` written by `ByteRange::content_range`, read back by the
/// slice layer.
fn round_trip(r: ByteRange, total: u64) -> Option<(ByteRange, u64)> {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&r.content_range(total)).expect("ascii"),
    );
    slice::content_range(&h)
}
