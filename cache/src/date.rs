//! HTTP-dates as a recipient must read them (RFC 9110 §5.6.7): the
//! IMF-fixdate, and the obsolete RFC 850 and asctime forms, with day and
//! month names and `GMT` matched case-insensitively. Every date the crate
//! reads (`Date`, `Expires`, `Last-Modified`, `If-Modified-Since`,
//! `If-Unmodified-Since`, the date form of `If-Range`, a slice's
//! `Last-Modified`) goes through [`parse`].
//!
//! `httpdate` parses the three forms but only in their canonical case;
//! [`canonical_case`] gives it that first, so the bytes it checks are
//! otherwise the sender's.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
//! assert_eq!(cache::date::parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
//! assert_eq!(cache::date::parse("sunday, 06-nov-94 08:49:37 gmt"), Some(t));
//! assert_eq!(cache::date::parse("Sun Nov  6 08:49:37 1994"), Some(t));
//! assert_eq!(cache::date::parse("0"), None);
//! ```

use std::borrow::Cow;
use std::time::SystemTime;

use http::HeaderValue;

/// The longest HTTP-date (RFC 850 with "Wednesday") is 32 bytes; anything
/// much longer is not one, and is not copied.
const MAX_LEN: usize = 40;

/// The time an HTTP-date names, or `None` when `text` (trimmed) is none
/// of the three forms or names no real day.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() > MAX_LEN || !text.is_ascii() {
        return None;
    }
    httpdate::parse_http_date(&canonical_case(text)).ok()
}

/// [`parse`] of a field value.
pub fn from_header(value: &HeaderValue) -> Option<SystemTime> {
    parse(value.to_str().ok()?)
}

/// `text` with every run of letters capitalised (`tUESDAY` → `Tuesday`,
/// `NOV` → `Nov`) and `GMT` upper-case: the spelling `httpdate` expects.
/// Borrowed when it is already so.
pub fn canonical_case(text: &str) -> Cow<'_, str> {
    let mut out: Option<Vec<u8>> = None;
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_alphabetic() {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .map_or(bytes.len(), |n| start + n);
        let word = &bytes[start..end];
        let gmt = word.eq_ignore_ascii_case(b"gmt");
        for (i, &b) in word.iter().enumerate() {
            let want = if gmt || i == 0 {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
            if want != b {
                out.get_or_insert_with(|| bytes.to_vec())[start + i] = want;
            }
        }
        start = end;
    }
    match out {
        // Only ASCII letters changed case: still UTF-8.
        Some(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn every_form_in_any_case() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "sun, 06 nov 1994 08:49:37 gmt",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 Gmt",
            "Sun Nov  6 08:49:37 1994",
            "sun nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse(text), Some(t), "{text:?}");
        }
        for text in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06 Nov 1994 08:49:37 GMT, and then some more text",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert!(matches!(
            canonical_case("Sun, 06 Nov 1994 08:49:37 GMT"),
            Cow::Borrowed(_)
        ));
    }
}
