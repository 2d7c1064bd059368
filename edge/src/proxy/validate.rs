//! Requests no origin should see, refused before any phase runs (RFC
//! 9112 §3.2 Host rules, user info, CONNECT but the extended CONNECT of
//! RFC 8441, transfer codings other than chunked).

use http::header;
use http::{Method, Version, request};

use crate::error::ProxyError;

/// Whether the request came with a body (framed by a non-zero length or
/// by chunks).
pub(crate) fn request_has_body(req: &request::Parts) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Refuses requests no origin should see (RFC 9112 §3.2: an HTTP/1.1
/// request needs exactly one valid `Host`; user info never travels).
pub(crate) fn validate(req: &request::Parts) -> Result<(), ProxyError> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    if req
        .uri
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(ProxyError::BadRequest("user info in the request target"));
    }
    match host {
        Some(h) if !valid_host(h.as_bytes()) => {
            return Err(ProxyError::BadRequest("invalid Host header"));
        }
        Some(_) => {}
        None if req.version == Version::HTTP_11 && req.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("missing Host header"));
        }
        None => {}
    }
    // CONNECT proxying is not ours to do; an extended CONNECT (RFC 8441,
    // HTTP/2 only) is a WebSocket, or refused by `h2_websocket::ask`.
    if req.method == Method::CONNECT && !is_extended_connect(req) {
        return Err(ProxyError::BadRequest("CONNECT is not supported"));
    }
    // Request smuggling (RFC 9112 §6.1): the only transfer coding we can
    // forward faithfully is chunked. (Content-Length beside it never gets
    // here: hyper drops it, reads the body as chunked and closes the
    // connection after the response, as §6.3 asks.)
    if let Some(te) = req.headers.get(header::TRANSFER_ENCODING) {
        let chunked_only = req
            .headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .count()
            == 1
            && te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked");
        if !chunked_only {
            return Err(ProxyError::UnsupportedCoding);
        }
    }
    Ok(())
}

/// Whether a CONNECT carries a `:protocol` (RFC 8441 §4): hyper only
/// reads one on HTTP/2, and only once the server offered
/// SETTINGS_ENABLE_CONNECT_PROTOCOL.
fn is_extended_connect(req: &request::Parts) -> bool {
    req.version == Version::HTTP_2 && req.extensions.get::<hyper::ext::Protocol>().is_some()
}

/// Whether a `Host` value is `host [":" port]` (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a bracketed IPv6 literal, or a non-empty reg-name or IPv4
/// address; never user info. Checked in place: parsing an `Authority`
/// copied the value on every request.
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        if literal.len() < 2
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (None, &rest[close + 1..])
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        (Some(&value[..end]), &value[end..])
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let host_ok = host.is_none_or(|name| !name.is_empty() && valid_reg_name(name));
    port_ok && host_ok
}

/// RFC 3986 reg-name: unreserved, sub-delims and percent-encoded octets.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        match name[i] {
            b'%' => {
                let escaped = name.get(i + 1..i + 3);
                if !escaped.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+'
            | b',' | b';' | b'=' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(build: http::request::Builder) -> request::Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_rules() {
        let ok = parts(Request::get("/").header("host", "example.com:8080"));
        assert!(validate(&ok).is_ok());
        let missing = parts(Request::get("/"));
        assert!(validate(&missing).is_err());
        let h10 = parts(Request::get("/").version(Version::HTTP_10));
        assert!(validate(&h10).is_ok(), "HTTP/1.0 may omit Host");
        let absolute = parts(Request::get("http://example.com/"));
        assert!(validate(&absolute).is_ok());
        let userinfo_target = parts(Request::get("http://u:p@example.com/"));
        assert!(validate(&userinfo_target).is_err());
        let twice = parts(Request::get("/").header("host", "a").header("host", "b"));
        assert!(validate(&twice).is_err());
        let bad = parts(Request::get("/").header("host", "a b"));
        assert!(validate(&bad).is_err());
        let userinfo = parts(Request::get("/").header("host", "u@a"));
        assert!(validate(&userinfo).is_err());
    }

    #[test]
    fn connect_only_as_an_extended_connect() {
        let plain = parts(Request::connect("example.com:443").version(Version::HTTP_2));
        assert!(validate(&plain).is_err());
        let plain_h1 = parts(Request::connect("example.com:443").header("host", "example.com"));
        assert!(validate(&plain_h1).is_err());
        let mut extended =
            parts(Request::connect("https://example.com/chat").version(Version::HTTP_2));
        extended
            .extensions
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert!(validate(&extended).is_ok());
        // Not a thing HTTP/1.1 can carry, whatever the extensions say.
        extended.version = Version::HTTP_11;
        assert!(validate(&extended).is_err());
    }

    #[test]
    fn host_values() {
        for good in [
            "example.com",
            "example.com:8080",
            "EXAMPLE.com.",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "[::ffff:10.0.0.1]",
            "xn--bcher-kva.example",
            "a_b.example",
            "caf%C3%A9.example",
            "host:",
        ] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "", ":80", "a b", "u@a", "u:p@a", "a:b:c", "a:8o", "[::1", "[]", "[::1]x", "[zz::1]",
            "a/b", "a?b", "a#b", "a%2", "a%zz", "a\\b", "{a}",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }
}
