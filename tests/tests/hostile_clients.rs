//! Clients that try to trick the cache: path spellings that must not share
//! or split objects unexpectedly, a request target that names another host,
//! absurd `Range` headers, cookies and credentials whose responses must stay
//! with their owner, idle connection floods, and secrets that must never
//! reach the logs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::config::Secret;
use edge_tests::client::{self, get, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, logs};
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cacheable(body: &str) -> Reply {
    Reply::ok(body.to_owned()).header("cache-control", "max-age=600")
}

#[tokio::test]
async fn path_spellings_are_keyed_exactly_as_they_are_forwarded() {
    // The origin sees the raw target, so the key must be the raw target:
    // normalising only the key would let `/a/../b` (which an origin may
    // answer differently) be stored as `/b`, and decoding only the key would
    // do the same for `/a%2Fb`.
    let origin = MockOrigin::start().await;
    let spellings = [
        "/b",
        "/a/../b",
        "/a/%2e%2e/b",
        "/a%2Fb",
        "/a/b",
        "//b",
        "/%62",
    ];
    for path in spellings {
        origin.route(path, cacheable(&format!("origin answer for {path}")));
    }
    let edge = TestEdge::start(&origin.url()).await;
    for path in spellings {
        let first = get(&edge.url(path)).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(first.x_cache(), "MISS", "{path} shared another key");
        assert_eq!(
            first.body(),
            format!("origin answer for {path}").as_bytes(),
            "{path}"
        );
    }
    for path in spellings {
        let again = get(&edge.url(path)).await;
        assert_eq!(again.x_cache(), "HIT", "{path}");
        assert_eq!(
            again.body(),
            format!("origin answer for {path}").as_bytes(),
            "{path} was answered with another spelling's object"
        );
        assert_eq!(origin.hits(path), 1, "{path} forwarded as another spelling");
    }
}

#[tokio::test]
async fn an_absolute_form_target_cannot_poison_through_x_forwarded_host() {
    // RFC 9112 §3.2.2: with an absolute-form target the Host header is
    // ignored. The key uses the target's host, so the origin must be told
    // that same host, or it builds links for the attacker's Host into an
    // object every client of the real host then gets.
    let origin = MockOrigin::start().await;
    origin.route(
        "/page",
        Reply::echo_header("x-forwarded-host").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let attack = client::raw(
        edge.addr(),
        b"GET http://site.test/page HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(attack.starts_with("HTTP/1.1 200"), "{attack}");
    let seen = origin.last_request("/page").expect("forwarded");
    assert_eq!(seen.headers["host"], "site.test");
    assert_eq!(seen.headers["x-forwarded-host"], "site.test");

    let victim = get_with(&edge.url("/page"), &[("host", "site.test")]).await;
    assert_eq!(victim.x_cache(), "HIT");
    assert_eq!(&victim.body()[..], b"site.test");
}

#[tokio::test]
async fn absurd_range_headers_cost_no_more_than_the_whole_object() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let origin = MockOrigin::start().await;
    origin.route(
        "/big",
        Reply::ok(body.clone()).header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    assert_eq!(get(&edge.url("/big")).await.body().len(), body.len());

    // Thousands of one-byte ranges: a multipart answer would be many times
    // the object. The whole object is the RFC's cheap correct answer.
    let many: Vec<String> = (0..4000).map(|i| format!("{}-{}", i * 7, i * 7)).collect();
    let range = format!("bytes={}", many.join(","));
    let started = Instant::now();
    let resp = get_with(&edge.url("/big"), &[("range", &range)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().len(), body.len());
    assert!(started.elapsed() < Duration::from_secs(2));

    // The same huge range asked for sixteen times: coalesced into one.
    let overlapping = vec!["0-"; 16].join(",");
    let resp = get_with(
        &edge.url("/big"),
        &[("range", &format!("bytes={overlapping}"))],
    )
    .await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 0-{}/{}", body.len() - 1, body.len())
    );
    assert_eq!(resp.body().len(), body.len());

    // Overlapping small ranges merge; what is left stays a small multipart.
    let resp = get_with(
        &edge.url("/big"),
        &[("range", "bytes=0-9,5-19,100-109,105-119")],
    )
    .await;
    assert_eq!(resp.status(), 206);
    assert!(resp.body().len() < 1000, "{}", resp.body().len());

    // A range past any plausible length, and a garbage one.
    let resp = get_with(
        &edge.url("/big"),
        &[("range", "bytes=18446744073709551615-")],
    )
    .await;
    assert_eq!(resp.status(), 416);
    let resp = get_with(&edge.url("/big"), &[("range", "bytes=--5,x-y")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        origin.hits("/big"),
        1,
        "ranges were answered from the cache"
    );
}

#[tokio::test]
async fn responses_to_cookie_and_credential_requests_stay_with_their_owner() {
    let origin = MockOrigin::start().await;
    // An origin that personalises by cookie and forgot `private`.
    origin.route(
        "/account",
        Reply::echo_header("cookie").header("cache-control", "max-age=60"),
    );
    origin.route(
        "/logo",
        Reply::echo_header("cookie").header("cache-control", "public, max-age=60"),
    );
    origin.route(
        "/inbox",
        Reply::echo_header("authorization")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(300)),
    );
    origin.route(
        "/profile",
        Reply::echo_header("cookie")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(300)),
    );
    let edge = TestEdge::start(&origin.url()).await;

    let alice = get_with(&edge.url("/account"), &[("cookie", "session=alice")]).await;
    assert_eq!(&alice.body()[..], b"session=alice");
    let bob = get_with(&edge.url("/account"), &[("cookie", "session=bob")]).await;
    assert_eq!(&bob.body()[..], b"session=bob", "alice's page went to bob");
    let anonymous = get(&edge.url("/account")).await;
    assert_eq!(&anonymous.body()[..], b"");
    // What a cookie-less request stored is the anonymous page: anyone may
    // have it.
    let again = get_with(&edge.url("/account"), &[("cookie", "session=carol")]).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(&again.body()[..], b"");

    // `public` says the answer is for everyone, cookies or not.
    get_with(&edge.url("/logo"), &[("cookie", "session=alice")]).await;
    let shared = get(&edge.url("/logo")).await;
    assert_eq!(shared.x_cache(), "HIT");

    // Concurrent requests share one fetch when they can: never when the
    // response may be for one user only.
    for (path, header) in [("/inbox", "authorization"), ("/profile", "cookie")] {
        let users: [&'static str; 4] = ["user-1", "user-2", "user-3", "user-4"];
        let answers = futures_join(users.into_iter().map(|user| {
            let url = edge.url(path);
            async move { get_with(&url, &[(header, user)]).await }
        }))
        .await;
        for (user, answer) in users.iter().zip(&answers) {
            assert_eq!(
                &answer.body()[..],
                user.as_bytes(),
                "{path}: another user's answer"
            );
        }
        assert_eq!(origin.hits(path), users.len(), "{path}");
    }
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn an_idle_connection_flood_is_cut_off_and_others_are_served() {
    let origin = MockOrigin::start().await;
    origin.route("/ok", cacheable("ok"));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    // 600 connections that say nothing and 200 that trickle half a head.
    let mut flood = Vec::new();
    for i in 0..800 {
        let mut stream = TcpStream::connect(edge.addr()).await.expect("connect");
        if i % 4 == 0 {
            stream
                .write_all(b"GET /ok HTTP/1.1\r\nhost: a\r\nx-slow: ")
                .await
                .expect("write");
        }
        flood.push(stream);
    }
    let started = Instant::now();
    let resp = get(&edge.url("/ok")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a real client waited {:?} behind the flood",
        started.elapsed()
    );
    // Every flooding connection is closed by the header timeout, with at
    // most a 408 written: none is kept open by the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    for mut stream in flood {
        let mut buf = Vec::new();
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, stream.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "a flooding connection was still open after 10 s"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert_eq!(get(&edge.url("/ok")).await.status(), 200);
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    logs::capture(tracing::Level::DEBUG);
    const TOKEN: &str = "purge-token-3f9a1c77";
    const WRONG: &str = "guessed-token-5b2e90aa";
    let origin = MockOrigin::start().await;
    origin.route("/private", cacheable("private"));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
    })
    .await;
    get_with(
        &edge.url("/private"),
        &[
            ("authorization", "Bearer client-credential-41d8"),
            ("cookie", "session=cookie-secret-77aa"),
        ],
    )
    .await;
    for token in [TOKEN, WRONG] {
        let req = Request::post(edge.admin_url("/purge"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"urls": ["/private"]}"#)))
            .expect("request");
        client::fetch(&client::http1(), req).await;
    }
    let purge = Request::builder()
        .method("PURGE")
        .uri(edge.url("/private"))
        .header("authorization", format!("Bearer {WRONG}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    client::fetch(&client::http1(), purge).await;

    let text = logs::text();
    assert!(
        text.contains("/private"),
        "the requests were not logged at all:\n{text}"
    );
    for secret in [TOKEN, WRONG, "client-credential-41d8", "cookie-secret-77aa"] {
        assert!(!text.contains(secret), "{secret} is in the logs:\n{text}");
    }
}
