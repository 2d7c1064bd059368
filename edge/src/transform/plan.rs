//! What to do with one response's body for one client, as data: send it
//! as it is, compress it into an encoding the client prefers, or undo the
//! origin's coding for a client that does not accept it. Pure functions
//! of the request, the response head and the settings; and the head
//! edits each choice needs (RFC 9110 §8.4, §8.8.3, §12.5.5).

use cache::encoding::{Accepted, Encoding};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use super::Compression;

/// What happens to a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Sent as it is. `vary`: the response could have been transformed
    /// for another client, so it says `Vary: Accept-Encoding`.
    AsIs { vary: bool },
    /// Compressed into this encoding (or served from a stored one).
    Encode(Encoding),
    /// The origin's coding undone: the client does not accept it.
    Decode(Encoding),
}

impl Plan {
    pub const UNTOUCHED: Plan = Plan::AsIs { vary: false };

    /// Whether the body the client gets differs from the stored one.
    pub fn transforms(self) -> bool {
        !matches!(self, Plan::AsIs { .. })
    }
}

/// The facts about one response a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    /// The body's length when known.
    pub len: Option<u64>,
}

/// The plan for `response` to a request with `request` headers (any
/// method: passes are compressed too), under `settings` and the site
/// rule's switch (`enabled`).
pub fn plan(
    settings: &Compression,
    enabled: bool,
    request: &HeaderMap,
    response: Response<'_>,
) -> Plan {
    if !enabled || response.status != StatusCode::OK {
        return Plan::UNTOUCHED;
    }
    // `no-transform` in the response forbids changing the body (RFC 9111
    // §5.2.2.6); in the request it asks the same.
    if has_no_transform(response.headers) || has_no_transform(request) {
        return Plan::UNTOUCHED;
    }
    let accepted = Accepted::parse(request);
    match content_coding(response.headers) {
        Coding::Identity => {}
        Coding::One(encoding) => {
            return if accepted.accepts(encoding) {
                Plan::AsIs { vary: true }
            } else {
                Plan::Decode(encoding)
            };
        }
        // Several codings, or one the edge cannot undo: leave it to the
        // client (and the origin's own Vary).
        Coding::Other => return Plan::UNTOUCHED,
    }
    if !settings.compressible(response.headers) {
        return Plan::UNTOUCHED;
    }
    if response.len.is_some_and(|len| len < settings.min_size) {
        return Plan::UNTOUCHED;
    }
    // Ranges are answered from the identity body (byte offsets of a
    // compressed body would depend on the encoder), as Cloudflare does.
    if request.contains_key(header::RANGE) {
        return Plan::AsIs { vary: true };
    }
    match accepted.preferred(&Encoding::PRODUCED) {
        Some(encoding) => Plan::Encode(encoding),
        None => Plan::AsIs { vary: true },
    }
}

fn has_no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// The response's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    One(Encoding),
    Other,
}

fn content_coding(headers: &HeaderMap) -> Coding {
    let mut found = Coding::Identity;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Coding::Other;
        };
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("identity") {
                continue;
            }
            found = match (found, Encoding::from_token(token)) {
                (Coding::Identity, Some(e)) => Coding::One(e),
                _ => return Coding::Other,
            };
        }
    }
    found
}

/// Edits `headers` (a response head about to be sent) for `plan`: the
/// coding, `Vary`, a weak `ETag` for a changed body, and the length of
/// the body sent (`encoded_len`, when a stored encoding is known; else
/// none, and the body is chunked).
pub fn edit_head(plan: Plan, headers: &mut HeaderMap, encoded_len: Option<u64>) {
    let vary = match plan {
        Plan::AsIs { vary } => vary,
        Plan::Encode(_) | Plan::Decode(_) => true,
    };
    if vary {
        add_vary(headers);
    }
    match plan {
        Plan::AsIs { .. } => return,
        Plan::Encode(encoding) => {
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            );
        }
        Plan::Decode(_) => {
            headers.remove(header::CONTENT_ENCODING);
        }
    }
    match encoded_len {
        Some(len) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
    // Byte ranges of a transformed body are not offered.
    headers.remove(header::ACCEPT_RANGES);
    weaken_etag(headers);
}

/// `Vary: Accept-Encoding`, merged with what the origin said.
fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|n| {
                let n = n.trim();
                n == "*" || n.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A transformed body is not the origin's byte for byte: its validator
/// is weak (RFC 9110 §8.8.3), so `If-None-Match` (weak comparison) still
/// matches it and `If-Match` / `If-Range` (strong) do not.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(header::ETAG) else {
        return;
    };
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(bytes.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(bytes);
    if let Ok(value) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompressionConfig;

    fn settings() -> Compression {
        Compression::from_config(&CompressionConfig::default())
    }

    fn head(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn plan_for(
        req: &[(&'static str, &'static str)],
        resp: &[(&'static str, &'static str)],
        len: u64,
    ) -> Plan {
        let resp = head(resp);
        plan(
            &settings(),
            true,
            &head(req),
            Response {
                status: StatusCode::OK,
                headers: &resp,
                len: Some(len),
            },
        )
    }

    const HTML: (&str, &str) = ("content-type", "text/html; charset=utf-8");
    const BR_GZIP: (&str, &str) = ("accept-encoding", "gzip, deflate, br, zstd");

    #[test]
    fn compressible_text_is_encoded_for_clients_that_accept_it() {
        assert_eq!(
            plan_for(&[BR_GZIP], &[HTML], 100_000),
            Plan::Encode(Encoding::Brotli)
        );
        assert_eq!(
            plan_for(
                &[("accept-encoding", "gzip")],
                &[("content-type", "application/json")],
                5000
            ),
            Plan::Encode(Encoding::Gzip)
        );
        assert_eq!(
            plan_for(&[BR_GZIP], &[("content-type", "application/ld+json")], 5000),
            Plan::Encode(Encoding::Brotli)
        );
        assert_eq!(plan_for(&[], &[HTML], 100_000), Plan::AsIs { vary: true });
        assert_eq!(
            plan_for(&[("accept-encoding", "identity")], &[HTML], 100_000),
            Plan::AsIs { vary: true }
        );
    }

    #[test]
    fn never_compressed() {
        // Too small, not a compressible type, no-transform, a range.
        assert_eq!(plan_for(&[BR_GZIP], &[HTML], 200), Plan::UNTOUCHED);
        assert_eq!(
            plan_for(&[BR_GZIP], &[("content-type", "image/jpeg")], 100_000),
            Plan::UNTOUCHED
        );
        assert_eq!(plan_for(&[BR_GZIP], &[], 100_000), Plan::UNTOUCHED);
        assert_eq!(
            plan_for(
                &[BR_GZIP],
                &[HTML, ("cache-control", "max-age=60, No-Transform")],
                100_000
            ),
            Plan::UNTOUCHED
        );
        assert_eq!(
            plan_for(
                &[BR_GZIP, ("cache-control", "no-transform")],
                &[HTML],
                100_000
            ),
            Plan::UNTOUCHED
        );
        assert_eq!(
            plan_for(&[BR_GZIP, ("range", "bytes=0-10")], &[HTML], 100_000),
            Plan::AsIs { vary: true }
        );
        assert_eq!(
            plan_for(
                &[BR_GZIP],
                &[("content-type", "text/event-stream")],
                100_000
            ),
            Plan::UNTOUCHED
        );
        let resp = head(&[HTML]);
        let response = Response {
            status: StatusCode::NOT_FOUND,
            headers: &resp,
            len: Some(100_000),
        };
        let req = head(&[BR_GZIP]);
        assert_eq!(plan(&settings(), true, &req, response), Plan::UNTOUCHED);
        let ok = Response {
            status: StatusCode::OK,
            ..response
        };
        assert_eq!(plan(&settings(), false, &req, ok), Plan::UNTOUCHED);
    }

    #[test]
    fn origin_compressed_bodies_are_kept_or_undone() {
        let gz = ("content-encoding", "gzip");
        assert_eq!(
            plan_for(&[BR_GZIP], &[HTML, gz], 100),
            Plan::AsIs { vary: true }
        );
        assert_eq!(
            plan_for(&[], &[HTML, gz], 100),
            Plan::Decode(Encoding::Gzip)
        );
        assert_eq!(
            plan_for(
                &[("accept-encoding", "br")],
                &[("content-type", "image/png"), gz],
                100
            ),
            Plan::Decode(Encoding::Gzip)
        );
        assert_eq!(
            plan_for(&[], &[HTML, ("content-encoding", "gzip, br")], 100),
            Plan::UNTOUCHED
        );
        assert_eq!(
            plan_for(&[], &[HTML, ("content-encoding", "compress")], 100),
            Plan::UNTOUCHED
        );
        assert_eq!(
            plan_for(
                &[BR_GZIP],
                &[HTML, ("content-encoding", "identity")],
                100_000
            ),
            Plan::Encode(Encoding::Brotli)
        );
    }

    #[test]
    fn head_edits() {
        let mut h = head(&[
            HTML,
            ("etag", "\"v1\""),
            ("content-length", "100000"),
            ("accept-ranges", "bytes"),
            ("vary", "Accept-Language"),
        ]);
        edit_head(Plan::Encode(Encoding::Brotli), &mut h, Some(2000));
        assert_eq!(h["content-encoding"], "br");
        assert_eq!(h["content-length"], "2000");
        assert_eq!(h["etag"], "W/\"v1\"");
        assert!(h.get("accept-ranges").is_none());
        let vary: Vec<_> = h.get_all("vary").iter().collect();
        assert_eq!(vary, ["Accept-Language", "Accept-Encoding"]);

        let mut h = head(&[
            ("etag", "W/\"v1\""),
            ("content-length", "10"),
            ("vary", "accept-encoding"),
        ]);
        edit_head(Plan::Encode(Encoding::Gzip), &mut h, None);
        assert!(h.get("content-length").is_none());
        assert_eq!(h["etag"], "W/\"v1\"");
        assert_eq!(h.get_all("vary").iter().count(), 1);

        let mut h = head(&[
            ("content-encoding", "gzip"),
            ("etag", "\"z\""),
            ("content-length", "10"),
        ]);
        edit_head(Plan::Decode(Encoding::Gzip), &mut h, None);
        assert!(h.get("content-encoding").is_none());
        assert!(h.get("content-length").is_none());
        assert_eq!(h["etag"], "W/\"z\"");
        assert_eq!(h["vary"], "Accept-Encoding");

        let mut h = head(&[("etag", "\"v1\""), ("content-length", "10")]);
        edit_head(Plan::AsIs { vary: true }, &mut h, None);
        assert_eq!(h["etag"], "\"v1\"");
        assert_eq!(h["content-length"], "10");
        assert_eq!(h["vary"], "Accept-Encoding");
        let mut h = head(&[("vary", "*")]);
        edit_head(Plan::AsIs { vary: true }, &mut h, None);
        assert_eq!(h.get_all("vary").iter().count(), 1);
    }
}
