//! Switching protocols (RFC 9110 §7.8, RFC 6455 §4): which requests ask
//! for an `Upgrade` the config allows, the fields that carry the ask to the
//! origin, and what the origin's answer means. Pure functions; the bytes
//! of a tunnel are `tunnel.rs`'s.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version, request};

/// What a request asks for, by [`ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ask {
    /// No protocol switch asked (or one HTTP/1.1 cannot carry).
    Plain,
    /// Protocols the config allows: forwarded with `Connection: upgrade`
    /// and `upgrade` (the client's list, narrowed to them), tunnelled if
    /// the origin switches to one of `protocols` (the config's names).
    Allowed {
        protocols: Vec<String>,
        upgrade: HeaderValue,
    },
    /// Only protocols the config does not list: the request goes on as a
    /// plain one, `Upgrade` dropped with the other hop-by-hop fields (what
    /// nginx does without `proxy_set_header Upgrade`).
    NotAllowed,
}

/// The metric label of a protocol the config does not list (a client's
/// spelling must not become a label value).
pub(crate) const OTHER: &str = "other";

/// Whether `req` asks to switch to a protocol in `allowed` (lowercase
/// names). Only HTTP/1.1 can: HTTP/2 forbids `Upgrade` (RFC 9113 §8.2.2),
/// and the ask needs `Connection: upgrade` beside `Upgrade` (§7.8).
pub(crate) fn ask(req: &request::Parts, allowed: &[String]) -> Ask {
    if req.version != Version::HTTP_11
        || !req.headers.contains_key(header::UPGRADE)
        || !lists_token(&req.headers, header::CONNECTION, "upgrade")
    {
        return Ask::Plain;
    }
    let mut protocols = Vec::new();
    let mut kept = Vec::new();
    for offer in list_items(&req.headers, header::UPGRADE) {
        let name = offer.split('/').next().unwrap_or_default().trim();
        if let Some(known) = allowed.iter().find(|a| a.eq_ignore_ascii_case(name)) {
            if !protocols.contains(known) {
                protocols.push(known.clone());
            }
            kept.push(offer);
        }
    }
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(upgrade) if !protocols.is_empty() => Ask::Allowed { protocols, upgrade },
        _ => Ask::NotAllowed,
    }
}

/// The fields that carry an allowed ask upstream (the rest of the request
/// lost them as hop-by-hop).
pub(crate) fn upstream_fields(upgrade: &HeaderValue) -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CONNECTION, HeaderValue::from_static("upgrade")),
        (header::UPGRADE, upgrade.clone()),
    ]
}

/// What the origin's answer to a request means, by [`answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A response like any other (the origin declined the switch, or none
    /// was asked).
    Response,
    /// `101` to one of the protocols asked: the config's name for it.
    Switched(String),
    /// `101` to a protocol nobody asked for, or to a request that asked
    /// none: the bytes after it cannot be relayed as HTTP (502).
    Bogus,
}

/// Reads the origin's status and `Upgrade` against what was asked
/// (`asked`: the config's names, empty for a plain request).
pub(crate) fn answer(
    asked: &[String],
    status: StatusCode,
    upgrade: Option<&HeaderValue>,
) -> Answer {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Answer::Response;
    }
    let chosen = upgrade
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.split('/').next().unwrap_or_default().trim());
    match chosen.and_then(|c| asked.iter().find(|a| a.eq_ignore_ascii_case(c))) {
        Some(protocol) => Answer::Switched(protocol.clone()),
        None => Answer::Bogus,
    }
}

/// Whether a comma-separated field lists `token` (without case).
fn lists_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token))
}

/// The trimmed, non-empty items of every line of a list field.
fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn allowed() -> Vec<String> {
        vec!["websocket".to_owned(), "custom".to_owned()]
    }

    fn req(version: Version, fields: &[(&str, &str)]) -> request::Parts {
        let mut b = Request::get("/chat").version(version);
        for (k, v) in fields {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn allowed_ask(protocols: &[&str], upgrade: &'static str) -> Ask {
        Ask::Allowed {
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
            upgrade: HeaderValue::from_static(upgrade),
        }
    }

    type Fields = Vec<(&'static str, &'static str)>;

    #[test]
    fn asks_as_a_table() {
        let h11 = Version::HTTP_11;
        #[rustfmt::skip]
        let table: Vec<(Version, Fields, Ask)> = vec![
            (h11, vec![], Ask::Plain),
            (h11, vec![("connection", "Upgrade"), ("upgrade", "websocket")],
                allowed_ask(&["websocket"], "websocket")),
            (h11, vec![("connection", "keep-alive, upgrade"), ("upgrade", "WebSocket")],
                allowed_ask(&["websocket"], "WebSocket")),
            // Connection on two lines.
            (h11, vec![("connection", "keep-alive"), ("connection", "upgrade"), ("upgrade", "websocket")],
                allowed_ask(&["websocket"], "websocket")),
            // Upgrade without Connection: upgrade is no ask (RFC 9110 §7.8).
            (h11, vec![("upgrade", "websocket")], Ask::Plain),
            (h11, vec![("connection", "upgrade")], Ask::Plain),
            (h11, vec![("connection", "upgrade"), ("upgrade", "h2c")], Ask::NotAllowed),
            // The list narrowed to what the config allows, versions kept.
            (h11, vec![("connection", "upgrade"), ("upgrade", "h2c, custom/2, websocket")],
                allowed_ask(&["custom", "websocket"], "custom/2, websocket")),
            (Version::HTTP_10, vec![("connection", "upgrade"), ("upgrade", "websocket")], Ask::Plain),
            (Version::HTTP_2, vec![("connection", "upgrade"), ("upgrade", "websocket")], Ask::Plain),
        ];
        for (i, (version, fields, want)) in table.into_iter().enumerate() {
            assert_eq!(ask(&req(version, &fields), &allowed()), want, "row {i}");
        }
        let nothing_allowed = req(h11, &[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert_eq!(ask(&nothing_allowed, &[]), Ask::NotAllowed);
    }

    #[test]
    fn answers_as_a_table() {
        let ws = vec!["websocket".to_owned()];
        let v = HeaderValue::from_static;
        #[rustfmt::skip]
        let table: Vec<(&[String], u16, Option<HeaderValue>, Answer)> = vec![
            (&ws, 101, Some(v("websocket")), Answer::Switched("websocket".into())),
            (&ws, 101, Some(v("WebSocket")), Answer::Switched("websocket".into())),
            (&ws, 101, Some(v("h2c")), Answer::Bogus),
            (&ws, 101, None, Answer::Bogus),
            (&[], 101, Some(v("websocket")), Answer::Bogus),
            (&ws, 400, None, Answer::Response),
            (&ws, 200, Some(v("websocket")), Answer::Response),
            (&[], 200, None, Answer::Response),
        ];
        for (i, (asked, status, upgrade, want)) in table.into_iter().enumerate() {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(answer(asked, status, upgrade.as_ref()), want, "row {i}");
        }
    }
}
