//! WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with
//! `:protocol = websocket` from a client, translated into the HTTP/1.1
//! handshake of RFC 6455 §4 towards the origin, and the origin's answer
//! translated back. An HTTP/2 client sends no `Sec-WebSocket-Key` and
//! expects `200`; an HTTP/1.1 origin needs a key and answers `101` with
//! `Sec-WebSocket-Accept`, so the edge makes the key up and checks the
//! accept itself. Pure functions but [`new_key`]; the tunnel after it is
//! `tunnel.rs`'s, the same as for an HTTP/1.1 switch.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version, request, response};
use ring::rand::SecureRandom;

/// The one `:protocol` translated, and its name in `server.upgrade_protocols`.
pub(crate) const WEBSOCKET: &str = "websocket";

/// RFC 6455 §1.3: appended to the key before hashing it into the accept.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a request is, by [`ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Not an extended CONNECT.
    Other,
    /// An extended CONNECT for WebSocket, which the config allows.
    WebSocket,
    /// An extended CONNECT for a protocol the config does not allow (a
    /// reload took `websocket` out after the connection was offered it, or
    /// a `:protocol` the edge cannot translate): refused, since a CONNECT
    /// cannot go on as a plain request.
    NotAllowed,
}

/// Whether `req` is an extended CONNECT (RFC 8441 §4) for a protocol in
/// `allowed` (lowercase names).
pub(crate) fn ask(req: &request::Parts, allowed: &[String]) -> Ask {
    if req.version != Version::HTTP_2 || req.method != Method::CONNECT {
        return Ask::Other;
    }
    let Some(protocol) = req.extensions.get::<hyper::ext::Protocol>() else {
        return Ask::Other;
    };
    if protocol.as_str().eq_ignore_ascii_case(WEBSOCKET) && allowed.iter().any(|a| a == WEBSOCKET) {
        Ask::WebSocket
    } else {
        Ask::NotAllowed
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
/// `None` only if the system's random source fails.
pub(crate) fn new_key() -> Option<HeaderValue> {
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut nonce).ok()?;
    Some(key_from(nonce))
}

fn key_from(nonce: [u8; 16]) -> HeaderValue {
    // base64 is always a valid field value.
    HeaderValue::from_str(&STANDARD.encode(nonce)).unwrap_or(HeaderValue::from_static(""))
}

/// The `Sec-WebSocket-Accept` an origin must answer `key` with (RFC 6455
/// §4.2.2): base64 of the SHA-1 of the key and the GUID.
fn accept_for(key: &HeaderValue) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID);
    STANDARD.encode(ctx.finish())
}

/// The fields that make the request an HTTP/1.1 WebSocket handshake
/// upstream; the client's `Sec-WebSocket-Protocol` and
/// `Sec-WebSocket-Extensions` go on as the end-to-end fields they are.
pub(crate) fn upstream_fields(key: &HeaderValue) -> [(HeaderName, HeaderValue); 4] {
    [
        (header::CONNECTION, HeaderValue::from_static("upgrade")),
        (header::UPGRADE, HeaderValue::from_static(WEBSOCKET)),
        (
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        ),
        (header::SEC_WEBSOCKET_KEY, key.clone()),
    ]
}

/// What the origin's answer to the translated handshake means, by
/// [`answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `101` to WebSocket with the right accept: the client gets `200`
    /// and a tunnel.
    Switched,
    /// Not a switch and not a success (a 403, a redirect): the client's
    /// answer to its CONNECT, status and body.
    Declined,
    /// A `2xx` without switching: passed on, it would tell the client its
    /// WebSocket is open (RFC 8441 §5), so 502.
    NotSwitched,
    /// `101` to another protocol, or without `Upgrade`: 502.
    WrongProtocol,
    /// `101` whose `Sec-WebSocket-Accept` is missing or not the one for our
    /// key: the origin did not read our handshake as WebSocket (RFC 6455
    /// §4.1 has the client fail the connection), 502.
    WrongAccept,
}

/// Reads the origin's answer to a handshake made with `key`.
pub(crate) fn answer(status: StatusCode, headers: &HeaderMap, key: &HeaderValue) -> Answer {
    if status.is_success() {
        return Answer::NotSwitched;
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Answer::Declined;
    }
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|v| v.trim().eq_ignore_ascii_case(WEBSOCKET)) {
        return Answer::WrongProtocol;
    }
    let accept = headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes().trim_ascii());
    if accept == Some(accept_for(key).as_bytes()) {
        Answer::Switched
    } else {
        Answer::WrongAccept
    }
}

/// Turns the origin's `101` into the client's `200` (RFC 8441 §5): the
/// origin's other fields stay (`Sec-WebSocket-Protocol`,
/// `Sec-WebSocket-Extensions`…); the accept, which answers our key and
/// not anything the client sent, and the switch's fields, which HTTP/2
/// forbids (RFC 9113 §8.2.2), go. No length: the stream is the tunnel.
pub(crate) fn client_head(parts: &mut response::Parts) {
    parts.status = StatusCode::OK;
    for name in [
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_ACCEPT,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        parts.headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};

    fn connect(version: Version, protocol: Option<&'static str>) -> request::Parts {
        let mut req = Request::connect("https://example.com/chat")
            .version(version)
            .body(())
            .unwrap();
        if let Some(p) = protocol {
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from_static(p));
        }
        req.into_parts().0
    }

    #[test]
    fn asks_as_a_table() {
        let ws = vec![WEBSOCKET.to_owned()];
        let h2 = Version::HTTP_2;
        #[rustfmt::skip]
        let table: Vec<(request::Parts, &[String], Ask)> = vec![
            (connect(h2, Some("websocket")), &ws, Ask::WebSocket),
            (connect(h2, Some("WebSocket")), &ws, Ask::WebSocket),
            (connect(h2, Some("websocket")), &[], Ask::NotAllowed),
            (connect(h2, Some("connect-udp")), &ws, Ask::NotAllowed),
            // Plain CONNECT is validate.rs's to refuse.
            (connect(h2, None), &ws, Ask::Other),
            (connect(Version::HTTP_11, Some("websocket")), &ws, Ask::Other),
            (Request::get("/").version(h2).body(()).unwrap().into_parts().0, &ws, Ask::Other),
        ];
        for (i, (req, allowed, want)) in table.into_iter().enumerate() {
            assert_eq!(ask(&req, allowed), want, "row {i}");
        }
    }

    #[test]
    fn the_rfc_6455_example_key_and_accept() {
        // RFC 6455 §1.3: the nonce "the sample nonce" and its accept.
        let key = key_from(*b"the sample nonce");
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(accept_for(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_are_fresh() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(STANDARD.decode(a.as_bytes()).unwrap().len(), 16);
    }

    #[test]
    fn answers_as_a_table() {
        let key = key_from(*b"the sample nonce");
        let right = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let fields = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        #[rustfmt::skip]
        let table: Vec<(u16, HeaderMap, Answer)> = vec![
            (101, fields(&[("upgrade", "websocket"), ("sec-websocket-accept", right)]), Answer::Switched),
            (101, fields(&[("upgrade", "WebSocket"), ("sec-websocket-accept", right)]), Answer::Switched),
            (101, fields(&[("upgrade", "websocket"), ("sec-websocket-accept", "AAAA")]), Answer::WrongAccept),
            (101, fields(&[("upgrade", "websocket")]), Answer::WrongAccept),
            (101, fields(&[("upgrade", "h2c"), ("sec-websocket-accept", right)]), Answer::WrongProtocol),
            (101, fields(&[]), Answer::WrongProtocol),
            (200, fields(&[]), Answer::NotSwitched),
            (204, fields(&[]), Answer::NotSwitched),
            (403, fields(&[]), Answer::Declined),
            (302, fields(&[("location", "/elsewhere")]), Answer::Declined),
            (426, fields(&[("upgrade", "websocket")]), Answer::Declined),
        ];
        for (i, (status, headers, want)) in table.into_iter().enumerate() {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(answer(status, &headers, &key), want, "row {i}");
        }
    }

    #[test]
    fn the_client_gets_200_without_the_switch() {
        let (mut parts, ()) = Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .header("sec-websocket-protocol", "chat")
            .header("sec-websocket-extensions", "permessage-deflate")
            .header("content-length", "0")
            .body(())
            .unwrap()
            .into_parts();
        client_head(&mut parts);
        assert_eq!(parts.status, StatusCode::OK);
        let names: Vec<&str> = parts.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            ["sec-websocket-protocol", "sec-websocket-extensions"]
        );
    }
}
