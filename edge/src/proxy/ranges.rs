//! Byte ranges of stored objects: 206 (single or `multipart/byteranges`)
//! and 416 heads and bodies, reading only the chunks a range touches.

use std::sync::Arc;

use cache::meta::BodyLayout;
use cache::object::Found;
use cache::range::ByteRange;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, response};
use tracing::warn;

use super::Proxy;
use super::bodies::{CachedBody, Chain, Ranged};
use crate::body::{self, ProxyBody};
use crate::hooks::{EdgeHooks, Session};

/// A 206 head for one range of a `total`-byte representation.
pub(super) fn single_range(parts: &mut response::Parts, range: &ByteRange, total: u64) {
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
pub(super) fn unsatisfiable(parts: &mut response::Parts, total: u64) {
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

pub(super) fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

impl<H: EdgeHooks> Proxy<H> {
    /// The bytes `start..start + len` of a stored object, or `None` if the
    /// chunk they start in is gone.
    pub(super) async fn stored_range(
        self: &Arc<Self>,
        session: &Session,
        found: &Found,
        start: u64,
        len: u64,
    ) -> Option<ProxyBody> {
        match &found.meta.body {
            BodyLayout::Sliced { .. } => self.sliced_range(session, found, start, len),
            BodyLayout::Inline(bytes) => {
                let from = usize::try_from(start).ok()?;
                let to = usize::try_from(start + len).ok()?;
                // A shared view of the stored bytes, not a copy per hit.
                (from <= to && to <= bytes.len()).then(|| body::full(bytes.slice(from..to)))
            }
            BodyLayout::Chunked {
                object_id,
                len: total,
                chunk_size,
            } => {
                if len == 0 {
                    return Some(body::empty());
                }
                let chunk_size = u64::from(*chunk_size).max(1);
                let index = start / chunk_size;
                let first = match self
                    .cache
                    .store
                    .get_chunk(&found.object_key, *object_id, index)
                    .await
                {
                    Ok(Some(first)) => first,
                    Ok(None) => return None,
                    Err(err) => {
                        warn!(error = %err, "cache read failed");
                        return None;
                    }
                };
                let from_chunk = index * chunk_size;
                let chunks = CachedBody::new(
                    self.cache.store.clone(),
                    found.object_key,
                    *object_id,
                    (index, found.meta.body.chunk_count()),
                    total - from_chunk,
                    first,
                );
                Some(if start == from_chunk && start + len == *total {
                    body::boxed(chunks)
                } else {
                    body::boxed(Ranged::new(chunks, start - from_chunk, len))
                })
            }
        }
    }

    /// A 206 body: one range as is, several as `multipart/byteranges`
    /// (RFC 9110 §14.6). Sets the range headers on `parts`.
    pub(super) async fn partial_body(
        self: &Arc<Self>,
        session: &Session,
        found: &Found,
        parts: &mut response::Parts,
        ranges: &[ByteRange],
    ) -> Option<ProxyBody> {
        let total = found.meta.body.len();
        if let [range] = ranges {
            single_range(parts, range, total);
            return self
                .stored_range(session, found, range.start, range.len())
                .await;
        }
        let boundary = format!("edge-{}", &found.object_key.to_hex()[..24]);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| format!("Content-Type: {ct}\r\n"))
            .unwrap_or_default();
        let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
        let mut len = 0u64;
        for range in ranges {
            let head = format!(
                "\r\n--{boundary}\r\n{content_type}Content-Range: {}\r\n\r\n",
                range.content_range(total)
            );
            len += head.len() as u64 + range.len();
            pieces.push(body::full(head));
            pieces.push(
                self.stored_range(session, found, range.start, range.len())
                    .await?,
            );
        }
        let tail = format!("\r\n--{boundary}--\r\n");
        len += tail.len() as u64;
        pieces.push(body::full(tail));
        set_header(
            &mut parts.headers,
            header::CONTENT_TYPE,
            &format!("multipart/byteranges; boundary={boundary}"),
        );
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        Some(body::boxed(Chain::new(pieces, len)))
    }
}
