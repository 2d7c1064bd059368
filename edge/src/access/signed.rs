//! `signed_urls`: links that carry an expiry and an HMAC-SHA256 signature
//! in their query (`?expires=1767225600&sig=...`). The signed message is
//! the path and the query as sent, without the signature parameter; the
//! signature is base64url without padding. `edge sign` makes them.
//!
//! Both parameters leave the cache key (every signed link to one object
//! shares one copy) and, with `strip_from_origin`, the origin request.
//!
//! A link that verified once is remembered until it expires
//! ([`Verified`]): a popular link costs one HMAC, not one per hit.

use std::borrow::Cow;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use super::verified::Verified;

/// Links of at most 1 KiB are remembered, 4096 of them (~4.5 MiB at
/// worst); longer ones are verified on every request.
const REMEMBERED_LINKS: usize = 4096;
const MAX_REMEMBERED_LINK: usize = 1024;

/// The compiled setting: keys and parameter names.
#[derive(Debug)]
pub struct SignedUrls {
    keys: Vec<hmac::Key>,
    /// Links that verified → their expiry.
    verified: Verified<()>,
    pub(crate) expires_param: Box<str>,
    pub(crate) signature_param: Box<str>,
    pub(crate) strip_from_origin: bool,
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature or no expiry parameter.
    Missing,
    /// Not made with any configured secret (or the link was changed).
    Invalid,
    /// Signed, and past its expiry.
    Expired,
}

impl SignatureError {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Invalid => "signature_invalid",
            SignatureError::Expired => "signature_expired",
        }
    }
}

/// The value of `name` in a raw query (the first occurrence).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// `path_and_query` without the parameters named in `names` (no
/// allocation when none is there).
pub fn strip_params<'a>(path_and_query: &'a str, names: &[&str]) -> Cow<'a, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return Cow::Borrowed(path_and_query);
    };
    let named = |pair: &str| {
        names.iter().any(|n| {
            pair.strip_prefix(n)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
        })
    };
    // Where the first named pair starts in `query`, and whether only named
    // pairs follow it. A byte loop rather than `split('&')`: this runs for
    // the cache key of every hit on a site with signed links, and the
    // searcher's setup per pair cost more than the few bytes it scans.
    let bytes = query.as_bytes();
    let mut first = None;
    let mut suffix = true;
    let mut start = 0;
    while start <= bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(bytes.len(), |i| start + i);
        if named(&query[start..end]) {
            first.get_or_insert(start);
        } else if first.is_some() {
            suffix = false;
            break;
        }
        start = end + 1;
    }
    let Some(first) = first else {
        return Cow::Borrowed(path_and_query);
    };
    if suffix {
        // The named pairs end the query, as `edge sign` writes them: the
        // rest is a prefix (up to the `?` or `&` before the first of
        // them), with no copy on every signed request.
        return Cow::Borrowed(&path_and_query[..path.len() + first]);
    }
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(path);
    let mut sep = '?';
    for pair in query.split('&').filter(|p| !named(p)) {
        out.push(sep);
        out.push_str(pair);
        sep = '&';
    }
    Cow::Owned(out)
}

impl SignedUrls {
    pub fn new(
        secrets: &[&[u8]],
        expires_param: &str,
        signature_param: &str,
        strip_from_origin: bool,
    ) -> SignedUrls {
        SignedUrls {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s))
                .collect(),
            verified: Verified::new(REMEMBERED_LINKS, MAX_REMEMBERED_LINK),
            expires_param: expires_param.into(),
            signature_param: signature_param.into(),
            strip_from_origin,
        }
    }

    /// Checks a request's path and query at `now`. The signature is
    /// checked before the expiry, so that an expired link tells nothing
    /// about links that were never valid; `hmac::verify` compares in
    /// constant time.
    pub fn verify(&self, path_and_query: &str, now: SystemTime) -> Result<(), SignatureError> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expires = match self.verified.get(path_and_query) {
            Some(((), expires)) => expires,
            None => {
                let expires = self.check_signature(path_and_query)?;
                if now <= expires {
                    self.verified.insert(path_and_query, (), expires, now);
                }
                expires
            }
        };
        if now > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    /// The link's expiry, if its signature is one of ours.
    fn check_signature(&self, path_and_query: &str) -> Result<u64, SignatureError> {
        let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
        let (Some(sig), Some(expires)) = (
            param(query, &self.signature_param),
            param(query, &self.expires_param),
        ) else {
            return Err(SignatureError::Missing);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| SignatureError::Invalid)?;
        let message = strip_params(path_and_query, &[&self.signature_param]);
        if !self
            .keys
            .iter()
            .any(|k| hmac::verify(k, message.as_bytes(), &sig).is_ok())
        {
            return Err(SignatureError::Invalid);
        }
        expires.parse().map_err(|_| SignatureError::Invalid)
    }

    /// The parameters that leave the cache key.
    pub fn params(&self) -> [&str; 2] {
        [&self.expires_param, &self.signature_param]
    }
}

/// Signs `path_and_query` (which must not hold the two parameters yet)
/// with `secret`, to expire at `expires` (Unix seconds): the link to
/// hand out.
pub fn sign(
    secret: &[u8],
    path_and_query: &str,
    expires: u64,
    expires_param: &str,
    signature_param: &str,
) -> String {
    let sep = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let unsigned = format!("{path_and_query}{sep}{expires_param}={expires}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, unsigned.as_bytes());
    format!(
        "{unsigned}&{signature_param}={}",
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &[u8] = b"0123456789abcdef0123";
    const OLD: &[u8] = b"an older secret, rotated";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn signed_links_tampered_expired_and_rotated() {
        let s = SignedUrls::new(&[SECRET, OLD], "expires", "sig", true);
        let link = sign(SECRET, "/v/a.mp4?q=1", 2_000, "expires", "sig");
        assert!(link.starts_with("/v/a.mp4?q=1&expires=2000&sig="), "{link}");
        assert_eq!(s.verify(&link, at(1_999)), Ok(()));
        assert_eq!(s.verify(&link, at(2_000)), Ok(()));
        assert_eq!(s.verify(&link, at(2_001)), Err(SignatureError::Expired));
        let tampered = link.replace("/v/a.mp4", "/v/b.mp4");
        assert_eq!(s.verify(&tampered, at(1)), Err(SignatureError::Invalid));
        let later = link.replace("expires=2000", "expires=9000");
        assert_eq!(s.verify(&later, at(1)), Err(SignatureError::Invalid));
        assert_eq!(
            s.verify("/v/a.mp4?q=1", at(1)),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            s.verify("/v/a.mp4?expires=5&sig=%%%", at(1)),
            Err(SignatureError::Invalid)
        );
        let rotated = sign(OLD, "/v/a.mp4", 2_000, "expires", "sig");
        assert_eq!(s.verify(&rotated, at(1)), Ok(()));
        let other = sign(b"somebody else's key", "/v/a.mp4", 2_000, "expires", "sig");
        assert_eq!(s.verify(&other, at(1)), Err(SignatureError::Invalid));
    }

    #[test]
    fn verified_links_are_remembered_until_they_expire_and_bounded() {
        let s = SignedUrls::new(&[SECRET], "expires", "sig", true);
        let link = sign(SECRET, "/v/a.mp4", 2_000, "expires", "sig");
        assert_eq!(s.verify(&link, at(1)), Ok(()));
        assert_eq!(s.verified.get(&link), Some(((), 2_000)));
        // Held, and still refused once expired.
        assert_eq!(s.verify(&link, at(2_001)), Err(SignatureError::Expired));
        // A link that failed is never held; one byte off is not the held one.
        let tampered = link.replace("a.mp4", "b.mp4");
        assert_eq!(s.verify(&tampered, at(1)), Err(SignatureError::Invalid));
        assert_eq!(s.verified.get(&tampered), None);
        let expired = sign(SECRET, "/v/old", 5, "expires", "sig");
        assert_eq!(s.verify(&expired, at(6)), Err(SignatureError::Expired));
        assert_eq!(s.verified.get(&expired), None);
        // Another process's secret is not admitted by this one's memory.
        let other = SignedUrls::new(&[OLD], "expires", "sig", true);
        assert_eq!(other.verify(&link, at(1)), Err(SignatureError::Invalid));
        // Bounded, however many links verify.
        for i in 0..(REMEMBERED_LINKS * 3) {
            let l = sign(SECRET, &format!("/o/{i}"), 2_000, "expires", "sig");
            assert_eq!(s.verify(&l, at(1)), Ok(()));
        }
        assert!(s.verified.len() <= REMEMBERED_LINKS);
        let long = sign(
            SECRET,
            &format!("/{}", "x".repeat(MAX_REMEMBERED_LINK)),
            2_000,
            "expires",
            "sig",
        );
        assert_eq!(s.verify(&long, at(1)), Ok(()));
        assert_eq!(s.verified.get(&long), None);
    }

    #[test]
    fn params_leave_the_key() {
        let names = ["expires", "sig"];
        let cases = [
            ("/a?expires=1&sig=x", "/a"),
            ("/a?q=1&expires=1&sig=x&r=2", "/a?q=1&r=2"),
            ("/a?q=1", "/a?q=1"),
            ("/a", "/a"),
            ("/a?signal=1&sig", "/a?signal=1"),
        ];
        for (from, want) in cases {
            assert_eq!(strip_params(from, &names), want, "{from}");
        }
        assert!(matches!(strip_params("/a?q=1", &names), Cow::Borrowed(_)));
        // Signed links end with their two parameters: no copy.
        for from in [
            "/a?expires=1&sig=x",
            "/a?q=1&expires=1&sig=x",
            "/a?q=1&&sig=x",
        ] {
            assert!(
                matches!(strip_params(from, &names), Cow::Borrowed(_)),
                "{from}"
            );
        }
        assert_eq!(strip_params("/a?q=1&&sig=x", &names), "/a?q=1&");
        assert_eq!(strip_params("/a?sig=x&q=1", &names), "/a?q=1");
    }
}
