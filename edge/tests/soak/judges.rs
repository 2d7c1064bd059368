//! The verdicts: each kind of answer (whole GET, range, multipart range,
//! HEAD, POST, error status, cut-off body) checked against the
//! catalogue's bytes and versions.

use http::{StatusCode, header};

use crate::catalogue::{Catalogue, etag_version, size_of};
use crate::conn::Got;
use crate::model::SLICE;
use crate::outcome::{Outcome, Verdict, ok};

/// Statuses other than the expected success.
fn judge_error(got: &Got) -> Verdict {
    let chaos = got.headers.contains_key("x-chaos");
    let outcome = match got.status.as_u16() {
        500 | 503 if chaos => Outcome::OriginError,
        502 if !chaos => Outcome::Edge502,
        503 if !chaos => Outcome::Edge503,
        504 if !chaos => Outcome::Edge504,
        _ => Outcome::WrongStatus,
    };
    (outcome, got.describe())
}

/// The ETag's version, checked against the origin's history.
fn judge_version(cat: &Catalogue, path: &str, got: &Got) -> Result<u32, Verdict> {
    let Some(version) = etag_version(path, &got.headers) else {
        return Err((Outcome::WrongBody, format!("bad ETag: {}", got.describe())));
    };
    if version > cat.version(path) {
        return Err((
            Outcome::WrongBody,
            format!("future version: {}", got.describe()),
        ));
    }
    Ok(version)
}

/// A cut-off body: documented if its bytes are the object's from `start`.
fn judge_cut(cat: &Catalogue, path: &str, version: u32, start: u64, got: &Got) -> Verdict {
    if !got.body.is_empty() {
        let end = start + got.body.len() as u64 - 1;
        if end >= size_of(path) || cat.bytes(path, version, start, end) != got.body {
            return (Outcome::BadPrefix, got.describe());
        }
    }
    let whole_in_store = size_of(path) <= SLICE;
    if got.x_cache() == "HIT" && whole_in_store {
        return (Outcome::TruncatedHit, got.describe());
    }
    (Outcome::Truncated, String::new())
}

/// A GET of the whole object.
pub fn judge_full(cat: &Catalogue, path: &str, got: &Got) -> Verdict {
    if got.status != StatusCode::OK {
        return judge_error(got);
    }
    let version = match judge_version(cat, path, got) {
        Ok(v) => v,
        Err(verdict) => return verdict,
    };
    let size = size_of(path);
    if let Some(declared) = got.content_length()
        && declared != size
    {
        let kind = if declared < size && got.complete {
            Outcome::ShortComplete
        } else {
            Outcome::WrongBody
        };
        return (kind, format!("object is {size} bytes: {}", got.describe()));
    }
    if !got.complete {
        return judge_cut(cat, path, version, 0, got);
    }
    if (got.body.len() as u64) < size {
        return (
            Outcome::ShortComplete,
            format!("object is {size} bytes: {}", got.describe()),
        );
    }
    if blake3::hash(&got.body) != cat.hash(path, version) {
        return (
            Outcome::WrongBody,
            format!("hash differs: {}", got.describe()),
        );
    }
    ok()
}

/// A range request: `(start, end)` inclusive, as the client resolves them.
#[derive(Debug, Clone)]
pub struct RangeAsk {
    pub header: String,
    pub ranges: Vec<(u64, u64)>,
}

fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some((start.parse().ok()?, end.parse().ok()?, total.parse().ok()?))
}

pub fn judge_range(cat: &Catalogue, path: &str, ask: &RangeAsk, got: &Got) -> Verdict {
    match got.status {
        // Ignoring a Range is always allowed; the whole must be right.
        StatusCode::OK => return judge_full(cat, path, got),
        StatusCode::PARTIAL_CONTENT => {}
        _ => return judge_error(got),
    }
    let version = match judge_version(cat, path, got) {
        Ok(v) => v,
        Err(verdict) => return verdict,
    };
    let size = size_of(path);
    let content_type = got
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(boundary) = content_type
        .strip_prefix("multipart/byteranges")
        .and_then(|rest| rest.split_once("boundary="))
        .map(|(_, b)| b.trim_matches('"').to_owned())
    {
        if !got.complete {
            return (Outcome::Truncated, String::new());
        }
        return match parse_multipart(&got.body, &boundary) {
            Some(parts) if parts.len() == ask.ranges.len() => {
                for ((start, end, total, bytes), (want_start, want_end)) in
                    parts.iter().zip(&ask.ranges)
                {
                    if (start, end, total) != (want_start, want_end, &size)
                        || cat.bytes(path, version, *start, *end) != *bytes
                    {
                        return (
                            Outcome::WrongRange,
                            format!("multipart part differs: {}", got.describe()),
                        );
                    }
                }
                ok()
            }
            _ => (
                Outcome::WrongRange,
                format!("multipart unreadable: {}", got.describe()),
            ),
        };
    }
    let Some((start, end, total)) = got
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
    else {
        return (
            Outcome::WrongRange,
            format!("no Content-Range: {}", got.describe()),
        );
    };
    // One part answering several ranges must cover them all.
    let covers = ask.ranges.iter().all(|(s, e)| start <= *s && *e <= end);
    let exact = ask.ranges.len() > 1 || ask.ranges == [(start, end)];
    if total != size || end >= size || !covers || !exact {
        return (
            Outcome::WrongRange,
            format!("asked {}: {}", ask.header, got.describe()),
        );
    }
    let len = end + 1 - start;
    if got.content_length().is_some_and(|cl| cl != len) {
        return (
            Outcome::WrongRange,
            format!("length differs: {}", got.describe()),
        );
    }
    if !got.complete {
        return judge_cut(cat, path, version, start, got);
    }
    if got.body.len() as u64 != len {
        return (
            Outcome::ShortComplete,
            format!("asked {}: {}", ask.header, got.describe()),
        );
    }
    if cat.bytes(path, version, start, end) != got.body {
        return (
            Outcome::WrongRange,
            format!("bytes differ: {}", got.describe()),
        );
    }
    ok()
}

/// One part of a `multipart/byteranges` body: start, end, total, bytes.
type Part = (u64, u64, u64, Vec<u8>);

fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0)?;
    loop {
        at += delimiter.len();
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = std::str::from_utf8(&body[at..head_end]).ok()?;
        let range = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-range")
                .then(|| parse_content_range(value))
                .flatten()
        })?;
        let start = head_end + 4;
        let end = start + usize::try_from(range.1 + 1 - range.0).ok()?;
        parts.push((range.0, range.1, range.2, body.get(start..end)?.to_vec()));
        at = find(body, delimiter.as_bytes(), end)?;
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

pub enum Judge {
    Full,
    Range(RangeAsk),
    Head,
    Post(String),
}

pub fn judge_head(cat: &Catalogue, path: &str, got: &Got) -> Verdict {
    if got.status != StatusCode::OK {
        return judge_error(got);
    }
    if let Err(verdict) = judge_version(cat, path, got) {
        return verdict;
    }
    // Without Content-Length is allowed: the GET it stands for (the one
    // the edge filled with) may have been chunked (RFC 9110 §9.3.2).
    if got.content_length().is_some_and(|cl| cl != size_of(path)) || !got.body.is_empty() {
        return (Outcome::WrongBody, format!("HEAD: {}", got.describe()));
    }
    ok()
}

pub fn judge_post(want: &str, got: &Got) -> Verdict {
    if got.status != StatusCode::OK {
        return judge_error(got);
    }
    if !got.complete {
        // The origin cut its answer: a prefix of the hash, or nothing.
        return if want.as_bytes().starts_with(&got.body) {
            (Outcome::Truncated, String::new())
        } else {
            (Outcome::BadPrefix, got.describe())
        };
    }
    if got.body != want.as_bytes() {
        return (
            Outcome::WrongBody,
            format!("POST answer differs: {}", got.describe()),
        );
    }
    ok()
}
