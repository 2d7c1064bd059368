//! Access control (issue 23) end to end: rate limits, the client address
//! behind trusted proxies, IP rules; real origins, a real edge on an
//! adjustable clock. Signed URLs need a secret in the environment and are
//! tested against the binary (`edge/tests/signed_urls.rs`).

use std::path::Path;
use std::time::Duration;

use edge::Config;
use edge::config::SiteConfig;
use edge_tests::client::get_with;
use edge_tests::metrics::value;
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge};

/// `[[sites]]` tables parsed (and validated) as the config file would be.
fn sites(toml: &str) -> Vec<SiteConfig> {
    let text = format!("origins = [\"http://127.0.0.1:9\"]\n{toml}");
    Config::from_toml(&text, Path::new("access-test.toml"))
        .expect("parses")
        .sites
}

async fn site_edge(origin: &MockOrigin, keys: &str) -> TestEdge {
    let list = sites(&format!(
        "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n{keys}",
        origin.url()
    ));
    TestEdge::start_with(&origin.url(), |c| c.sites = list).await
}

async fn origin() -> MockOrigin {
    let origin = MockOrigin::start().await;
    origin.fallback(|_| Reply::ok("object").header("cache-control", "max-age=600"));
    origin
}

const SHOP: (&str, &str) = ("host", "shop.example");

#[tokio::test]
async fn the_sixth_request_in_ten_seconds_gets_429_with_retry_after_and_ratelimit_fields() {
    let origin = origin().await;
    let edge = site_edge(
        &origin,
        "rate_limit = { requests = 5, per = \"10s\", burst = 0, key = \"header:X-Api-Key\" }\n",
    )
    .await;
    let as_key = |key: &'static str| [SHOP, ("x-api-key", key)];
    for i in 0..5 {
        let resp = get_with(&edge.url("/a"), &as_key("alice")).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let refused = get_with(&edge.url("/a"), &as_key("alice")).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"edge\";q=5;w=10")
    );
    assert!(
        refused
            .header("ratelimit")
            .is_some_and(|v| v.contains("r=0"))
    );
    assert!(refused.text().len() < 64, "a short body");
    // hits count too: these were one miss and four hits
    assert_eq!(origin.hits("/a"), 1);
    // another key is unaffected
    assert_eq!(
        get_with(&edge.url("/a"), &as_key("bob")).await.status(),
        200
    );
    // after the window the key passes again
    edge.advance(Duration::from_secs(10));
    assert_eq!(
        get_with(&edge.url("/a"), &as_key("alice")).await.status(),
        200
    );
    let metrics = edge.metrics().await;
    assert_eq!(
        value(
            &metrics,
            "edge_refused_total{reason=\"rate_limited\",site=\"shop\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn scope_misses_lets_hits_through_and_limits_origin_traffic() {
    let origin = origin().await;
    let edge = site_edge(
        &origin,
        "rate_limit = { requests = 1, per = \"1m\", scope = \"misses\" }\n",
    )
    .await;
    assert_eq!(get_with(&edge.url("/hot"), &[SHOP]).await.status(), 200);
    for _ in 0..5 {
        let hit = get_with(&edge.url("/hot"), &[SHOP]).await;
        assert_eq!(hit.status(), 200);
        assert_eq!(hit.x_cache(), "HIT");
    }
    let miss = get_with(&edge.url("/cold"), &[SHOP]).await;
    assert_eq!(miss.status(), 429);
    assert!(miss.header("retry-after").is_some());
    assert_eq!(origin.hits("/cold"), 0, "refused before the origin");
}

#[tokio::test]
async fn real_ip_from_a_trusted_proxy_feeds_ip_rules_and_x_forwarded_for() {
    let origin = origin().await;
    let edge = site_edge(
        &origin,
        "real_ip = { from = [\"127.0.0.0/8\"] }\ndeny = [\"203.0.113.0/24\"]\n",
    )
    .await;
    let from = |xff: &'static str| [SHOP, ("x-forwarded-for", xff)];
    let denied = get_with(&edge.url("/d"), &from("203.0.113.9")).await;
    assert_eq!(denied.status(), 403);
    // right-most untrusted hop: the left one is the client's own claim
    let ok = get_with(&edge.url("/d"), &from("203.0.113.9, 198.51.100.7")).await;
    assert_eq!(ok.status(), 200);
    let seen = origin.last_request("/d").expect("reached the origin");
    let xff = seen.headers["x-forwarded-for"].to_str().expect("ascii");
    assert!(xff.ends_with("198.51.100.7"), "{xff}");
    assert!(!xff.contains("127.0.0.1"), "{xff}");
    let metrics = edge.metrics().await;
    assert_eq!(
        value(
            &metrics,
            "edge_refused_total{reason=\"ip_denied\",site=\"shop\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn real_ip_from_an_untrusted_peer_is_ignored() {
    let origin = origin().await;
    let edge = site_edge(
        &origin,
        "real_ip = { from = [\"10.0.0.0/8\"] }\ndeny = [\"203.0.113.0/24\"]\n",
    )
    .await;
    let resp = get_with(&edge.url("/u"), &[SHOP, ("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(resp.status(), 200, "127.0.0.1 is not a trusted proxy");
    let seen = origin.last_request("/u").expect("reached the origin");
    let xff = seen.headers["x-forwarded-for"].to_str().expect("ascii");
    assert!(xff.ends_with("127.0.0.1"), "{xff}");
}

#[tokio::test]
async fn allow_and_deny_for_ipv4_and_ipv6_per_rule() {
    let origin = origin().await;
    let edge = site_edge(
        &origin,
        r#"real_ip = { from = ["127.0.0.1"] }
[[sites.rules]]
path = "/admin/"
allow = ["192.0.2.0/24", "2001:db8::/32"]
deny = ["2001:db8:bad::/48"]
"#,
    )
    .await;
    let cases = [
        ("/admin/x", "192.0.2.10", 200),
        ("/admin/x", "198.51.100.1", 403),
        ("/admin/x", "2001:db8::1", 200),
        ("/admin/x", "[2001:db8::2]:5000", 200),
        ("/admin/x", "2001:db8:bad::1", 403),
        ("/admin/x", "2001:db9::1", 403),
        // outside the rule: no IP rules
        ("/public", "198.51.100.1", 200),
    ];
    for (path, client, want) in cases {
        let resp = get_with(&edge.url(path), &[SHOP, ("x-forwarded-for", client)]).await;
        assert_eq!(resp.status(), want, "{path} from {client}");
    }
}

mod jwt {
    use super::*;
    use edge::access::jwt::testing::{ed25519, token};
    use serde_json::json;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    async fn jwt_edge(
        origin: &MockOrigin,
        jwk: &serde_json::Value,
    ) -> (TestEdge, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).expect("jwks");
        let keys = format!(
            r#"[[sites.rules]]
path = "/private/"
jwt = {{ jwks_file = "{0}", issuer = "https://id.example", audience = "edge" }}
[[sites.rules]]
path = "/shared/"
cache = "shared"
jwt = {{ jwks_file = "{0}", issuer = "https://id.example", audience = "edge" }}
"#,
            jwks.display()
        );
        (site_edge(origin, &keys).await, dir)
    }

    #[tokio::test]
    async fn valid_missing_bad_signature_and_wrong_audience() {
        let origin = origin().await;
        let (key, jwk) = ed25519("k1");
        let (edge, _dir) = jwt_edge(&origin, &jwk).await;
        let sign = |m: &[u8]| key.sign(m).as_ref().to_vec();
        let claims = |aud: &str| json!({ "sub": "u1", "iss": "https://id.example", "aud": aud, "exp": now() + 600 });
        let good = format!("Bearer {}", token("EdDSA", "k1", &claims("edge"), sign));
        let (other, _) = ed25519("k1");
        let forged = format!(
            "Bearer {}",
            token("EdDSA", "k1", &claims("edge"), |m| other
                .sign(m)
                .as_ref()
                .to_vec())
        );
        let audience = format!("Bearer {}", token("EdDSA", "k1", &claims("other"), sign));

        let ok = get_with(&edge.url("/private/a"), &[SHOP, ("authorization", &good)]).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.x_cache(), "PASS", "private: not from the shared cache");
        let again = get_with(&edge.url("/private/a"), &[SHOP, ("authorization", &good)]).await;
        assert_eq!(again.x_cache(), "PASS");
        assert_eq!(origin.hits("/private/a"), 2);

        let missing = get_with(&edge.url("/private/a"), &[SHOP]).await;
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.header("www-authenticate"),
            Some("Bearer realm=\"edge\"")
        );
        for bad in [&forged, &audience] {
            let resp = get_with(&edge.url("/private/a"), &[SHOP, ("authorization", bad)]).await;
            assert_eq!(resp.status(), 401);
            assert!(
                resp.header("www-authenticate")
                    .is_some_and(|v| v.contains("invalid_token"))
            );
        }
        assert_eq!(
            origin.hits("/private/a"),
            2,
            "refusals never reach the origin"
        );
        let metrics = edge.metrics().await;
        for (reason, n) in [
            ("jwt_missing", 1.0),
            ("jwt_signature", 1.0),
            ("jwt_claims", 1.0),
        ] {
            let series = format!("edge_refused_total{{reason=\"{reason}\",site=\"shop\"}}");
            assert_eq!(value(&metrics, &series), Some(n), "{series}");
        }
    }

    #[tokio::test]
    async fn cache_shared_stores_one_copy_and_keeps_the_token_from_the_origin() {
        let origin = origin().await;
        let (key, jwk) = ed25519("k1");
        let (edge, _dir) = jwt_edge(&origin, &jwk).await;
        let bearer = |sub: &str| {
            let claims = json!({ "sub": sub, "iss": "https://id.example", "aud": "edge", "exp": now() + 600 });
            format!(
                "Bearer {}",
                token("EdDSA", "k1", &claims, |m| key.sign(m).as_ref().to_vec())
            )
        };
        let first = get_with(
            &edge.url("/shared/a"),
            &[SHOP, ("authorization", &bearer("u1"))],
        )
        .await;
        assert_eq!(first.status(), 200);
        let second = get_with(
            &edge.url("/shared/a"),
            &[SHOP, ("authorization", &bearer("u2"))],
        )
        .await;
        assert_eq!(second.status(), 200);
        assert_eq!(second.x_cache(), "HIT");
        assert_eq!(origin.hits("/shared/a"), 1);
        let seen = origin.last_request("/shared/a").expect("fetched");
        assert!(seen.headers.get("authorization").is_none());
        // still checked on a hit
        let none = get_with(&edge.url("/shared/a"), &[SHOP]).await;
        assert_eq!(none.status(), 401);
    }
}

/// `edge --origin URL` with a top-level `[access]`: the default site's
/// checks, as a `[[sites]]` entry's own keys.
#[tokio::test]
async fn top_level_access_applies_to_the_default_site_only() {
    let origin = origin().await;
    let text = format!(
        "origins = [\"{}\"]\n\
         [access]\n\
         deny = [\"127.0.0.0/8\"]\n\
         [[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n",
        origin.url(),
        origin.url()
    );
    let config = Config::from_toml(&text, Path::new("access-test.toml")).expect("parses");
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.access = config.access.clone();
        c.sites = config.sites.clone();
    })
    .await;
    let refused = get_with(&edge.url("/a"), &[("host", "other.example")]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(origin.hits("/a"), 0);
    // A named site does not inherit the default site's keys.
    assert_eq!(get_with(&edge.url("/a"), &[SHOP]).await.status(), 200);
    let metrics = edge.metrics().await;
    assert_eq!(
        value(
            &metrics,
            "edge_refused_total{reason=\"ip_denied\",site=\"default\"}"
        ),
        Some(1.0)
    );
}
