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

/// A request's `Accept-Encoding`: which codings it accepts, with which
/// weight. Read in place (no allocation: it runs on every hit).
#[derive(Debug, Clone, Copy)]
pub struct Accepted<'a> {
    headers: &'a HeaderMap,
    /// The field was present (an absent field accepts any coding, §12.5.3,
    /// but a shared cache sends identity to such clients, as everyone does).
    present: bool,
    /// The first weight listed for br, zstd, gzip, deflate, x-gzip and
    /// `*`, read in one pass.
    weights: [Option<u16>; 6],
}

/// The tokens whose weights [`Accepted`] keeps, in `weights` order.
const KNOWN: [&str; 6] = ["br", "zstd", "gzip", "deflate", "x-gzip", "*"];

impl<'a> Accepted<'a> {
    pub fn parse(headers: &'a HeaderMap) -> Accepted<'a> {
        let mut accepted = Accepted {
            headers,
            present: headers.contains_key(ACCEPT_ENCODING),
            weights: [None; 6],
        };
        if accepted.present {
            for (coding, q) in accepted.items() {
                if let Some(i) = KNOWN.iter().position(|k| coding.eq_ignore_ascii_case(k)) {
                    accepted.weights[i].get_or_insert(q);
                }
            }
        }
        accepted
    }

    /// Each listed coding (trimmed, as written) with its weight in
    /// thousandths; items with a malformed weight are left out, and a
    /// value that is not text lists nothing.
    fn items(&self) -> impl Iterator<Item = (&'a str, u16)> + 'a {
        self.headers
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|text| text.split(','))
            .filter_map(|item| {
                let (coding, params) = item.split_once(';').unwrap_or((item, ""));
                let coding = coding.trim();
                if coding.is_empty() {
                    return None;
                }
                let q = if params.is_empty() {
                    Some(1000)
                } else {
                    params
                        .split(';')
                        .find_map(|p| {
                            let (name, value) = p.split_once('=')?;
                            name.trim().eq_ignore_ascii_case("q").then(|| qvalue(value))
                        })
                        .unwrap_or(Some(1000))
                }?;
                Some((coding, q))
            })
    }

    /// Whether a response in `encoding` is acceptable.
    pub fn accepts(&self, encoding: Encoding) -> bool {
        self.weight_of(encoding) > 0
    }

    /// The weight of `encoding`: its own entry, else (gzip) `x-gzip`'s,
    /// else `*`'s, else 0.
    fn weight_of(&self, encoding: Encoding) -> u16 {
        let [br, zstd, gzip, deflate, x_gzip, star] = self.weights;
        let own = match encoding {
            Encoding::Brotli => br,
            Encoding::Zstd => zstd,
            Encoding::Gzip => gzip.filter(|&q| q > 0).or(x_gzip).or(gzip),
            Encoding::Deflate => deflate,
        };
        own.or(star).unwrap_or(0)
    }

    /// The coding to answer with among `offered` (in the edge's order of
    /// preference): the highest weight wins, ties go to the earlier one;
    /// `None` when the client accepts none of them (identity then).
    pub fn preferred(&self, offered: &[Encoding]) -> Option<Encoding> {
        if !self.present {
            return None;
        }
        let mut best: Option<(Encoding, u16)> = None;
        for &encoding in offered {
            let q = self.weight_of(encoding);
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((encoding, q));
            }
        }
        best.map(|(e, _)| e)
    }

    /// The normal form that keys a variant varying on `Accept-Encoding`:
    /// the codings accepted (q > 0), lower-cased and sorted, so that
    /// spellings that differ in order, case, whitespace or weights share
    /// one variant. Two requests with the same form accept exactly the
    /// same codings, so a response chosen for one is acceptable to the
    /// other. An absent field and an empty one stay apart; a coding listed
    /// twice counts with its first weight.
    pub fn variant_form(&self) -> Vec<u8> {
        let mut seen: Vec<String> = Vec::new();
        let mut tokens: Vec<String> = Vec::new();
        for (coding, q) in self.items() {
            let mut c = coding.to_ascii_lowercase();
            if c == "x-gzip" {
                c = "gzip".to_owned();
            }
            if seen.contains(&c) {
                continue;
            }
            seen.push(c.clone());
            if q > 0 {
                tokens.push(c);
            }
        }
        tokens.sort_unstable();
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

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn preference_is_br_then_zstd_then_gzip_unless_weights_say_otherwise() {
        let all = Encoding::PRODUCED;
        assert_eq!(
            Accepted::parse(&headers(&["gzip, deflate, br, zstd"])).preferred(&all),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            Accepted::parse(&headers(&["gzip, zstd"])).preferred(&all),
            Some(Encoding::Zstd)
        );
        assert_eq!(
            Accepted::parse(&headers(&["br;q=0.5, gzip"])).preferred(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            Accepted::parse(&headers(&["br;q=0, gzip;q=0.1"])).preferred(&all),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            Accepted::parse(&headers(&["identity"])).preferred(&all),
            None
        );
        assert_eq!(Accepted::parse(&headers(&[])).preferred(&all), None);
        assert_eq!(
            Accepted::parse(&headers(&["*"])).preferred(&all),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            Accepted::parse(&headers(&["*, br;q=0"])).preferred(&all),
            Some(Encoding::Zstd)
        );
        assert_eq!(
            Accepted::parse(&headers(&["x-gzip"])).preferred(&all),
            Some(Encoding::Gzip)
        );
        // Case and whitespace do not matter; a bad weight voids its item.
        assert_eq!(
            Accepted::parse(&headers(&[" GZip ; Q=1.0 , br;q=2"])).preferred(&all),
            Some(Encoding::Gzip)
        );
    }

    #[test]
    fn spellings_of_the_same_codings_share_a_variant_form() {
        let form = |v: &[&'static str]| Accepted::parse(&headers(v)).variant_form();
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
