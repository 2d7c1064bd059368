//! Access checks (issue 23), each on its own: what a request pays for a
//! rule with `real_ip`, `allow`/`deny`, `rate_limit`, `signed_urls` or
//! `jwt`, and for a rule with none (the fast path every other request
//! takes).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use cache::Clock;
use criterion::{Criterion, criterion_group, criterion_main};
use edge::access::Access;
use edge::access::jwt::Jwt;
use edge::access::jwt::testing::{ed25519, token};
use edge::access::rate_limit::RateLimiter;
use edge::access::signed::{SignedUrls, sign};
use edge::config::{AccessConfig, LimitKey, LimitScope, RateLimitConfig, RealIpConfig};
use http::HeaderMap;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn limit(max_keys: usize) -> RateLimitConfig {
    RateLimitConfig {
        requests: 1_000_000,
        per: Duration::from_secs(1),
        burst: 0,
        key: LimitKey::ClientIp,
        scope: LimitScope::All,
        max_keys,
    }
}

fn bench(c: &mut Criterion) {
    let clock = Clock::system();
    let client: IpAddr = "203.0.113.7".parse().expect("ip");
    let headers = HeaderMap::new();
    let pq = "/static/app.js?v=3";

    let none = Access::default();
    c.bench_function("access/none", |b| {
        b.iter(|| {
            let a = black_box(&none);
            if !a.is_empty() {
                let _ = a.check(client, pq, &headers, &clock);
            }
        })
    });

    let nets: Vec<String> = (0..10).map(|i| format!("10.{i}.0.0/16")).collect();
    let ip = Access::compile(
        &AccessConfig {
            allow: Some(nets.clone()),
            deny: Some(vec!["2001:db8::/32".into()]),
            ..AccessConfig::default()
        },
        &Access::default(),
        None,
    )
    .expect("compiles");
    c.bench_function("access/ip_rules_11_nets", |b| {
        b.iter(|| black_box(ip.check(black_box(client), pq, &headers, &clock)))
    });

    let real = Access::compile(
        &AccessConfig {
            real_ip: Some(RealIpConfig {
                from: nets,
                header: "X-Forwarded-For".into(),
            }),
            ..AccessConfig::default()
        },
        &Access::default(),
        None,
    )
    .expect("compiles");
    let mut xff = HeaderMap::new();
    xff.insert(
        "x-forwarded-for",
        "198.51.100.1, 203.0.113.7, 10.1.0.1"
            .parse()
            .expect("value"),
    );
    let peer: IpAddr = "10.2.0.1".parse().expect("ip");
    c.bench_function("access/real_ip_3_hops", |b| {
        b.iter(|| black_box(real.client(black_box(peer), &xff)))
    });

    let one = RateLimiter::new(&limit(100_000));
    c.bench_function("access/rate_limit_one_key", |b| {
        b.iter(|| black_box(one.check(client, &headers, clock.now())))
    });
    let many = RateLimiter::new(&limit(100_000));
    let clients: Vec<IpAddr> = (0..50_000u32)
        .map(|i| IpAddr::from((0xc000_0000u32 + i).to_be_bytes()))
        .collect();
    let mut i = 0;
    c.bench_function("access/rate_limit_50k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(many.check(clients[i], &headers, clock.now()))
        })
    });

    let secret = b"0123456789abcdef0123456789abcdef";
    let signed = SignedUrls::new(&[secret], "expires", "sig", true);
    let expires = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let link = sign(secret, "/video/a.mp4?quality=hd", expires, "expires", "sig");
    // A link seen before: remembered, no HMAC.
    c.bench_function("access/signed_url", |b| {
        b.iter(|| black_box(signed.verify(black_box(&link), clock.now())))
    });
    // Every request a link not seen lately (100 000 links cycled, far more
    // than are remembered): the HMAC and the insertion each time.
    let first = SignedUrls::new(&[secret], "expires", "sig", true);
    let links: Vec<String> = (0..100_000)
        .map(|i| {
            sign(
                secret,
                &format!("/video/{i}.mp4"),
                expires,
                "expires",
                "sig",
            )
        })
        .collect();
    let mut i = 0;
    c.bench_function("access/signed_url_first_sight", |b| {
        b.iter(|| {
            i = (i + 1) % links.len();
            black_box(first.verify(black_box(&links[i]), clock.now()))
        })
    });

    let (key, jwk) = ed25519("k");
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let jwt = Jwt::new(
        Some(&jwks),
        None,
        Some("https://id.example"),
        Some("edge"),
        http::HeaderName::from_static("authorization"),
        Duration::from_secs(30),
    )
    .expect("jwks");
    let claims = serde_json::json!({ "sub": "u1", "iss": "https://id.example", "aud": "edge", "exp": expires });
    let bearer = format!(
        "Bearer {}",
        token("EdDSA", "k", &claims, |m| key.sign(m).as_ref().to_vec())
    );
    let mut auth = HeaderMap::new();
    auth.insert("authorization", bearer.parse().expect("value"));
    // A token seen before: its claims checked, its signature remembered.
    c.bench_function("access/jwt_eddsa", |b| {
        b.iter(|| black_box(jwt.verify(&auth, clock.now()).is_ok()))
    });
    // Every request a token not seen lately (10 000 users, more than are
    // remembered): the signature each time.
    let users: Vec<HeaderMap> = (0..10_000)
        .map(|i| {
            let claims = serde_json::json!({ "sub": format!("u{i}"), "iss": "https://id.example", "aud": "edge", "exp": expires });
            let bearer = format!(
                "Bearer {}",
                token("EdDSA", "k", &claims, |m| key.sign(m).as_ref().to_vec())
            );
            let mut auth = HeaderMap::new();
            auth.insert("authorization", bearer.parse().expect("value"));
            auth
        })
        .collect();
    let mut u = 0;
    c.bench_function("access/jwt_eddsa_first_sight", |b| {
        b.iter(|| {
            u = (u + 1) % users.len();
            black_box(jwt.verify(&users[u], clock.now()).is_ok())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
