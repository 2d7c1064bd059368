//! Content codings (RFC 9110 §8.4.1) and `Accept-Encoding` (§12.5.3): which
//! codings a request accepts, which one a response should use, and the
//! normal form of the field that selects a stored variant.

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

/// The content codings the edge can produce or undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Brotli,
    Zstd,
    Gzip,
    /// Only undone, never produced: the zlib format of RFC 9110 §8.4.1.2.
    Deflate,
}

impl Encoding {
    /// What the edge produces, most preferred first (smallest output for
    /// text at comparable CPU: br, then zstd, then gzip).
    pub const PRODUCED: [Encoding; 3] = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];

    /// The token in `Content-Encoding` / `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }

    /// The coding named by a `Content-Encoding` token (`x-gzip` is gzip,
    /// RFC 9110 §8.4.1.3); `None` for any other.
    pub fn from_token(token: &str) -> Option<Encoding> {
        let token = token.trim();
        [
            Encoding::Brotli,
            Encoding::Zstd,
            Encoding::Gzip,
            Encoding::Deflate,
        ]
        .into_iter()
        .find(|e| token.eq_ignore_ascii_case(e.token()))
        .or_else(|| {
            token
                .eq_ignore_ascii_case("x-gzip")
                .then_some(Encoding::Gzip)
        })
    }
}

/// A request's `Accept-Encoding`, parsed: each coding with its weight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accepted {
    /// Lower-cased coding tokens (and `*`) with their q-value in
    /// thousandths; a coding listed twice keeps its first weight.
    items: Vec<(String, u16)>,
    /// The field was present (an absent field accepts any coding, §12.5.3,
    /// but a shared cache sends identity to such clients, as everyone does).
    present: bool,
}

impl Accepted {
    pub fn parse(headers: &HeaderMap) -> Accepted {
        let mut accepted = Accepted::default();
        for value in headers.get_all(ACCEPT_ENCODING) {
            accepted.present = true;
            // A value that is not text accepts nothing more.
            let Ok(text) = value.to_str() else { continue };
            for item in text.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                if coding.is_empty() {
                    continue;
                }
                let q = parts
                    .find_map(|p| {
                        let (name, value) = p.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("q").then(|| qvalue(value))
                    })
                    // A malformed weight makes the item unusable.
                    .unwrap_or(Some(1000));
                let Some(q) = q else { continue };
                if !accepted.items.iter().any(|(c, _)| *c == coding) {
                    accepted.items.push((coding, q));
                }
            }
        }
        accepted
    }

    /// The weight of `token` (thousandths): its own entry, else `*`'s,
    /// else 0.
    fn weight(&self, token: &str) -> u16 {
        let own = self.items.iter().find(|(c, _)| c == token);
        let star = || self.items.iter().find(|(c, _)| c == "*");
        own.or_else(star).map_or(0, |&(_, q)| q)
    }

    /// Whether a response in `encoding` is acceptable.
    pub fn accepts(&self, encoding: Encoding) -> bool {
        if encoding == Encoding::Gzip && self.items.iter().any(|(c, q)| c == "x-gzip" && *q > 0) {
            return true;
        }
        self.weight(encoding.token()) > 0
    }

    /// The coding to answer with among `offered` (in the edge's order of
    /// preference): the highest weight wins, ties go to the earlier one;
    /// `None` when the client accepts none of them (identity then).
    pub fn preferred(&self, offered: &[Encoding]) -> Option<Encoding> {
        let mut best: Option<(Encoding, u16)> = None;
        for &encoding in offered {
            let q = if self.accepts(encoding) {
                self.weight(encoding.token()).max(1)
            } else {
                0
            };
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((encoding, q));
            }
        }
        best.map(|(e, _)| e)
    }

    /// The normal form that keys a variant varying on `Accept-Encoding`:
    /// the codings accepted (q > 0), sorted, so that spellings that differ
    /// in order, case, whitespace or weights share one variant. Two
    /// requests with the same form accept exactly the same codings, so a
    /// response chosen for one is acceptable to the other. An absent field
    /// and an empty one stay apart.
    pub fn variant_form(&self) -> Vec<u8> {
        let mut tokens: Vec<&str> = self
            .items
            .iter()
            .filter(|(_, q)| *q > 0)
            .map(|(c, _)| if c == "x-gzip" { "gzip" } else { c.as_str() })
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        let mut out = Vec::with_capacity(tokens.iter().map(|t| t.len() + 1).sum::<usize>() + 1);
        out.push(u8::from(self.present));
        for token in tokens {
            out.extend_from_slice(token.as_bytes());
            out.push(b',');
        }
        out
    }
}

/// A q-value (RFC 9110 §12.4.2) in thousandths; `None` if malformed.
fn qvalue(text: &str) -> Option<u16> {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accepted(values: &[&'static str]) -> Accepted {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        Accepted::parse(&h)
    }

    #[test]
    fn preference_is_br_then_zstd_then_gzip_unless_weights_say_otherwise() {
        let all = Encoding::PRODUCED;
        assert_eq!(
            accepted(&["gzip, deflate, br, zstd"]).preferred(&all),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            accepted(&["gzip, zstd"]).preferred(&all),
            Some(Encoding::Zstd)
        );
        assert_eq!(
            accepted(&["br;q=0.5, gzip"]).preferred(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            accepted(&["br;q=0, gzip;q=0.1"]).preferred(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(accepted(&["identity"]).preferred(&all), None);
        assert_eq!(accepted(&[]).preferred(&all), None);
        assert_eq!(accepted(&["*"]).preferred(&all), Some(Encoding::Brotli));
        assert_eq!(
            accepted(&["*, br;q=0"]).preferred(&all),
            Some(Encoding::Zstd)
        );
        assert_eq!(accepted(&["x-gzip"]).preferred(&all), Some(Encoding::Gzip));
        // Case and whitespace do not matter; a bad weight voids its item.
        assert_eq!(
            accepted(&[" GZip ; Q=1.0 , br;q=2"]).preferred(&all),
            Some(Encoding::Gzip)
        );
    }

    #[test]
    fn spellings_of_the_same_codings_share_a_variant_form() {
        let form = |v: &[&'static str]| accepted(v).variant_form();
        assert_eq!(form(&["gzip, br"]), form(&["br,gzip"]));
        assert_eq!(form(&["gzip, br"]), form(&["BR;q=0.8 , Gzip"]));
        assert_eq!(form(&["gzip, br"]), form(&["gzip", "br"]));
        assert_eq!(form(&["gzip, br"]), form(&["gzip, br, zstd;q=0"]));
        assert_ne!(form(&["gzip"]), form(&["br"]));
        assert_ne!(form(&[""]), form(&[]));
        assert_ne!(form(&["gzip, br"]), form(&["gzip, br, zstd"]));
    }

    #[test]
    fn content_encoding_tokens() {
        assert_eq!(Encoding::from_token(" GZIP"), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_token("x-gzip"), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_token("br"), Some(Encoding::Brotli));
        assert_eq!(Encoding::from_token("compress"), None);
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.001"), Some(1));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("1.5"), None);
        assert_eq!(qvalue("0.0001"), None);
        assert_eq!(qvalue("x"), None);
    }
}
