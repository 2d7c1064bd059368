//! `jwt`: bearer JSON Web Tokens (RFC 7519) checked at the edge with ring:
//! RS256, ES256 and EdDSA against the keys of a JWKS file (RFC 7517), and
//! HS256 against a secret from the environment. `alg` is taken from the
//! token only to pick among the configured keys of that kind; `none` and
//! anything else are refused. Then `exp`, `nbf` (with a leeway), `iss` and
//! `aud`. The claims are kept for the hooks (`Session::jwt_claims`).
//!
//! A token whose signature verified is remembered with its claims
//! ([`Verified`]); its claims are checked again at every request, its
//! signature once.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName};
use ring::{hmac, signature};
use serde_json::{Map, Value};

use super::verified::Verified;

/// Tokens of at most 4 KiB are remembered, 2048 of them (~8.5 MiB at
/// worst); longer ones are verified on every request.
const REMEMBERED_TOKENS: usize = 2048;
const MAX_REMEMBERED_TOKEN: usize = 4096;

/// A token's claims, as the hooks see them.
pub type Claims = Arc<Map<String, Value>>;

#[derive(Debug)]
enum KeyKind {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed P-256 point, `04 || x || y`.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Debug)]
struct Jwk {
    kid: Option<String>,
    kind: KeyKind,
}

/// The compiled setting.
#[derive(Debug)]
pub struct Jwt {
    keys: Vec<Jwk>,
    hs256: Option<hmac::Key>,
    issuer: Option<Box<str>>,
    audience: Option<Box<str>>,
    pub(crate) header: HeaderName,
    leeway: u64,
    /// Tokens whose signature verified → their claims.
    verified: Verified<Claims>,
}

/// Why a token is refused (the `reason` label: `jwt_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No `Bearer` token in the header.
    Missing,
    /// Not three base64url parts of JSON.
    Malformed,
    /// `none`, an unknown `alg`, or one with no configured key.
    Algorithm,
    /// No configured key verifies it.
    Signature,
    /// Past `exp`.
    Expired,
    /// Before `nbf`, or the wrong `iss` or `aud`.
    Claims,
}

impl TokenError {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "jwt_missing",
            TokenError::Malformed => "jwt_malformed",
            TokenError::Algorithm => "jwt_algorithm",
            TokenError::Signature => "jwt_signature",
            TokenError::Expired => "jwt_expired",
            TokenError::Claims => "jwt_claims",
        }
    }
}

/// What reading a JWKS can refuse.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS (a JSON object with `keys`): {0}")]
    Json(#[from] serde_json::Error),
    #[error("no RS256, ES256 (P-256) or EdDSA (Ed25519) key in it")]
    NoKeys,
}

fn b64(field: Option<&Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field?.as_str()?).ok()
}

/// The usable keys of a JWKS document; others (private parts, other
/// curves, `use = "enc"`) are skipped.
fn parse_jwks(text: &str) -> Result<Vec<Jwk>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Map<String, Value>>,
    }
    let set: Set = serde_json::from_str(text)?;
    let keys: Vec<Jwk> = set
        .keys
        .iter()
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter_map(|k| {
            let kind = match (
                k.get("kty").and_then(Value::as_str)?,
                k.get("crv").and_then(Value::as_str),
            ) {
                ("RSA", _) => KeyKind::Rsa {
                    n: b64(k.get("n"))?,
                    e: b64(k.get("e"))?,
                },
                ("EC", Some("P-256")) => {
                    let (x, y) = (b64(k.get("x"))?, b64(k.get("y"))?);
                    if x.len() != 32 || y.len() != 32 {
                        return None;
                    }
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    KeyKind::P256(point)
                }
                ("OKP", Some("Ed25519")) => KeyKind::Ed25519(b64(k.get("x"))?),
                _ => return None,
            };
            Some(Jwk {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_owned),
                kind,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

impl Jwt {
    /// From a JWKS document (if any) and an HS256 secret (if any).
    pub fn new(
        jwks: Option<&str>,
        hs256_secret: Option<&[u8]>,
        issuer: Option<&str>,
        audience: Option<&str>,
        header: HeaderName,
        leeway: std::time::Duration,
    ) -> Result<Jwt, JwksError> {
        Ok(Jwt {
            keys: jwks.map(parse_jwks).transpose()?.unwrap_or_default(),
            hs256: hs256_secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s)),
            issuer: issuer.map(Into::into),
            audience: audience.map(Into::into),
            header,
            leeway: leeway.as_secs(),
            verified: Verified::new(REMEMBERED_TOKENS, MAX_REMEMBERED_TOKEN),
        })
    }

    /// The token of a request, checked at `now`.
    pub fn verify(&self, headers: &HeaderMap, now: SystemTime) -> Result<Claims, TokenError> {
        let value = headers
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .ok_or(TokenError::Missing)?
            .trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(TokenError::Missing),
        };
        if let Some((claims, _)) = self.verified.get(token) {
            self.check_claims(&claims, now)?;
            return Ok(claims);
        }
        let claims = self.verify_token(token, now)?;
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Kept while `exp` (with the leeway) allows; without `exp`, until
        // pushed out.
        let until = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map_or(u64::MAX, |t| (t as u64).saturating_add(self.leeway));
        self.verified.insert(token, claims.clone(), until, secs);
        Ok(claims)
    }

    fn verify_token(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
        let header: Map<String, Value> =
            serde_json::from_slice(&decode(head)?).map_err(|_| TokenError::Malformed)?;
        let sig = decode(sig)?;
        let signed = &token.as_bytes()[..head.len() + 1 + body.len()];
        let kid = header.get("kid").and_then(Value::as_str);
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        let candidates = || {
            self.keys
                .iter()
                .filter(move |k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
        };
        let verified = match alg {
            "HS256" => {
                let key = self.hs256.as_ref().ok_or(TokenError::Algorithm)?;
                hmac::verify(key, signed, &sig).is_ok()
            }
            "RS256" | "ES256" | "EdDSA" => {
                let mut tried = false;
                let ok = candidates().any(|k| {
                    let result = match (&k.kind, alg) {
                        (KeyKind::Rsa { n, e }, "RS256") => {
                            signature::RsaPublicKeyComponents { n, e }.verify(
                                &signature::RSA_PKCS1_2048_8192_SHA256,
                                signed,
                                &sig,
                            )
                        }
                        (KeyKind::P256(point), "ES256") => signature::UnparsedPublicKey::new(
                            &signature::ECDSA_P256_SHA256_FIXED,
                            point,
                        )
                        .verify(signed, &sig),
                        (KeyKind::Ed25519(x), "EdDSA") => {
                            signature::UnparsedPublicKey::new(&signature::ED25519, x)
                                .verify(signed, &sig)
                        }
                        _ => return false,
                    };
                    tried = true;
                    result.is_ok()
                });
                if !tried {
                    return Err(TokenError::Algorithm);
                }
                ok
            }
            _ => return Err(TokenError::Algorithm),
        };
        if !verified {
            return Err(TokenError::Signature);
        }
        let claims: Map<String, Value> =
            serde_json::from_slice(&decode(body)?).map_err(|_| TokenError::Malformed)?;
        self.check_claims(&claims, now)?;
        Ok(Arc::new(claims))
    }

    /// `exp`, `nbf`, `iss`, `aud` (RFC 7519 §4.1).
    fn check_claims(&self, claims: &Map<String, Value>, now: SystemTime) -> Result<(), TokenError> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as u64);
        if claims.contains_key("exp") {
            let exp = time("exp").ok_or(TokenError::Claims)?;
            if now > exp.saturating_add(self.leeway) {
                return Err(TokenError::Expired);
            }
        }
        if let Some(nbf) = time("nbf")
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(TokenError::Claims);
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(&**issuer)
        {
            return Err(TokenError::Claims);
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => aud == &**audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err(TokenError::Claims);
            }
        }
        Ok(())
    }
}

/// Test and bench helpers: tokens signed the way issuers sign them.
pub mod testing {
    use super::*;

    /// `header.claims.signature` for `alg`, signed by `sign`.
    pub fn token(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let header = serde_json::json!({ "alg": alg, "typ": "JWT", "kid": kid });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A new Ed25519 key: its PKCS#8 document and its JWK.
    pub fn ed25519(kid: &str) -> (signature::Ed25519KeyPair, Value) {
        use signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("random");
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        });
        (pair, jwk)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use ring::signature::KeyPair as _;
    use serde_json::json;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claims() -> Value {
        json!({ "sub": "u1", "iss": "https://id.example", "aud": ["edge", "api"], "exp": NOW + 60 })
    }

    fn jwt(jwks: &Value, secret: Option<&[u8]>) -> Jwt {
        Jwt::new(
            Some(&jwks.to_string()),
            secret,
            Some("https://id.example"),
            Some("api"),
            HeaderName::from_static("authorization"),
            Duration::from_secs(30),
        )
        .expect("jwks")
    }

    #[test]
    fn rs256_es256_eddsa_and_hs256() {
        let rng = ring::rand::SystemRandom::new();
        // A 2048-bit test key made with openssl for these tests only.
        let rsa = signature::RsaKeyPair::from_der(include_bytes!("testdata/rsa2048.der"))
            .expect("rsa key");
        let rsa_pub: signature::RsaPublicKeyComponents<Vec<u8>> = rsa.public().into();
        let ec_doc = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("ec");
        let ec = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            ec_doc.as_ref(),
            &rng,
        )
        .expect("ec key");
        let point = ec.public_key().as_ref();
        let (ed, ed_jwk) = ed25519("ed");
        let jwks = json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "n": URL_SAFE_NO_PAD.encode(&rsa_pub.n), "e": URL_SAFE_NO_PAD.encode(&rsa_pub.e) },
            { "kty": "EC", "crv": "P-256", "kid": "ec", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]) },
            ed_jwk,
        ]});
        let secret = b"an hs256 secret of 32 bytes long";
        let j = jwt(&jwks, Some(secret));
        let rs = |m: &[u8]| {
            let mut sig = vec![0; rsa.public().modulus_len()];
            rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, m, &mut sig)
                .expect("sign");
            sig
        };
        let es = |m: &[u8]| ec.sign(&rng, m).expect("sign").as_ref().to_vec();
        let eddsa = |m: &[u8]| ed.sign(m).as_ref().to_vec();
        let hs = |m: &[u8]| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), m)
                .as_ref()
                .to_vec()
        };
        let c = claims();
        let tokens = [
            token("RS256", "rsa", &c, rs),
            token("ES256", "ec", &c, es),
            token("EdDSA", "ed", &c, eddsa),
            token("HS256", "", &c, hs),
        ];
        for t in &tokens {
            let got = j.verify_token(t, at(NOW)).expect("valid");
            assert_eq!(got["sub"], "u1");
        }
        // a key of another kid does not verify it
        assert_eq!(
            j.verify_token(&token("EdDSA", "rsa", &c, eddsa), at(NOW)),
            Err(TokenError::Algorithm)
        );
        // a bit flipped in the claims
        let t = &tokens[2];
        let (head, rest) = t.split_once('.').expect("dots");
        let (body, sig) = rest.split_once('.').expect("dots");
        let other = URL_SAFE_NO_PAD
            .encode(json!({"sub": "admin", "aud": "api", "iss": "https://id.example"}).to_string());
        assert_ne!(other, body);
        assert_eq!(
            j.verify_token(&format!("{head}.{other}.{sig}"), at(NOW)),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn none_expired_audience_issuer_and_malformed() {
        let (ed, jwk) = ed25519("k");
        let j = jwt(&json!({ "keys": [jwk] }), None);
        let sign = |m: &[u8]| ed.sign(m).as_ref().to_vec();
        let with = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = claims();
            f(c.as_object_mut().expect("object"));
            token("EdDSA", "k", &c, sign)
        };
        let cases: Vec<(String, u64, Result<(), TokenError>)> = vec![
            (with(&|_| {}), NOW, Ok(())),
            (with(&|_| {}), NOW + 60 + 30, Ok(())),
            (with(&|_| {}), NOW + 60 + 31, Err(TokenError::Expired)),
            (
                with(&|c| {
                    c.insert("aud".into(), json!("other"));
                }),
                NOW,
                Err(TokenError::Claims),
            ),
            (
                with(&|c| {
                    c.insert("iss".into(), json!("https://evil"));
                }),
                NOW,
                Err(TokenError::Claims),
            ),
            (
                with(&|c| {
                    c.insert("nbf".into(), json!(NOW + 100));
                }),
                NOW,
                Err(TokenError::Claims),
            ),
            (
                token("none", "k", &claims(), |_| Vec::new()),
                NOW,
                Err(TokenError::Algorithm),
            ),
            (
                token("HS256", "k", &claims(), |_| vec![1; 32]),
                NOW,
                Err(TokenError::Algorithm),
            ),
            ("a.b".into(), NOW, Err(TokenError::Malformed)),
            ("!!.!!.!!".into(), NOW, Err(TokenError::Malformed)),
        ];
        for (t, now, want) in cases {
            assert_eq!(j.verify_token(&t, at(now)).map(drop), want, "{t}");
        }
        let mut headers = HeaderMap::new();
        assert_eq!(
            j.verify(&headers, at(NOW)).map(drop),
            Err(TokenError::Missing)
        );
        headers.insert("authorization", "Basic dTpw".parse().expect("value"));
        assert_eq!(
            j.verify(&headers, at(NOW)).map(drop),
            Err(TokenError::Missing)
        );
        let bearer = format!("Bearer {}", with(&|_| {}));
        headers.insert("authorization", bearer.parse().expect("value"));
        assert!(j.verify(&headers, at(NOW)).is_ok());
    }

    #[test]
    fn a_remembered_token_still_has_its_claims_checked_and_only_itself_admitted() {
        let (ed, jwk) = ed25519("k");
        let j = jwt(&json!({ "keys": [jwk] }), None);
        let good = token("EdDSA", "k", &claims(), |m| ed.sign(m).as_ref().to_vec());
        let mut headers = HeaderMap::new();
        let bearer = |t: &str| format!("Bearer {t}").parse().expect("value");
        headers.insert("authorization", bearer(&good));
        assert!(j.verify(&headers, at(NOW)).is_ok());
        assert!(j.verified.get(&good).is_some(), "remembered");
        assert!(j.verify(&headers, at(NOW)).is_ok());
        // Expiry is asked again of the remembered claims.
        assert_eq!(
            j.verify(&headers, at(NOW + 60 + 31)).map(drop),
            Err(TokenError::Expired)
        );
        // The same claims under another signature are not the held token.
        let (head, rest) = good.split_once('.').expect("parts");
        let (body, _) = rest.split_once('.').expect("parts");
        let forged = format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        headers.insert("authorization", bearer(&forged));
        assert_eq!(
            j.verify(&headers, at(NOW)).map(drop),
            Err(TokenError::Signature)
        );
        assert!(j.verified.get(&forged).is_none());
    }
}
