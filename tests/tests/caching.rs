//! The cache end to end: RFC 9111 behaviour seen through the real proxy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::config::DiskAdmissionMode;
use edge_tests::client::{self, fetch, get, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, poll_until};
use http::Request;
use http_body_util::Full;

#[tokio::test]
async fn miss_then_hit_with_a_growing_age() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/cached",
        Reply::ok("cached body").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;

    let first = get(&edge.url("/cached")).await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(
        first.cache_status(),
        "edge; fwd=uri-miss; fwd-status=200; stored"
    );
    let second = get(&edge.url("/cached")).await;
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(&second.body()[..], b"cached body");
    assert!(second.cache_status().starts_with("edge; hit; ttl="));
    assert!(second.age() <= 1);
    edge.advance(Duration::from_millis(2100));
    let third = get(&edge.url("/cached")).await;
    assert_eq!(third.x_cache(), "HIT");
    assert!(third.age() >= 2, "age {} after 2 s", third.age());
    assert_eq!(origin.hits("/cached"), 1);
    // GET and HEAD share the object; HEAD gets headers only.
    let head = fetch(
        &client::http1(),
        Request::head(edge.url("/cached"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.x_cache(), "HIT");
    assert_eq!(head.headers()["content-length"], "11");
    assert!(head.body().is_empty());
    assert_eq!(origin.hits("/cached"), 1);
}

#[tokio::test]
async fn responses_without_freshness_or_for_one_user_are_not_reused() {
    let origin = MockOrigin::start().await;
    origin.route("/plain", Reply::ok("no freshness info"));
    origin.route(
        "/private",
        Reply::ok("mine").header("cache-control", "private, max-age=60"),
    );
    origin.route(
        "/no-store",
        Reply::ok("secret").header("cache-control", "no-store"),
    );
    origin.route(
        "/cookie",
        Reply::ok("c")
            .header("cache-control", "max-age=60")
            .header("set-cookie", "s=1"),
    );
    origin.route(
        "/auth",
        Reply::ok("for alice").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;

    for path in ["/plain", "/private", "/no-store", "/cookie"] {
        let a = get(&edge.url(path)).await;
        let b = get(&edge.url(path)).await;
        assert_eq!(a.x_cache(), "MISS", "{path}");
        assert_eq!(b.x_cache(), "MISS", "{path}");
        assert_eq!(origin.hits(path), 2, "{path} was reused");
    }
    let private = get(&edge.url("/private")).await;
    assert!(private.cache_status().contains("detail=private"));

    let alice = get_with(&edge.url("/auth"), &[("authorization", "Bearer alice")]).await;
    assert_eq!(&alice.body()[..], b"for alice");
    let bob = get_with(&edge.url("/auth"), &[("authorization", "Bearer bob")]).await;
    assert_eq!(
        bob.x_cache(),
        "MISS",
        "an Authorization response went to another user"
    );
    assert_eq!(origin.hits("/auth"), 2);
}

#[tokio::test]
async fn vary_variants_are_stored_and_served_to_the_right_clients() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    for (lang, body) in [("en", "hello"), ("fr", "bonjour")] {
        origin.route(
            "/greeting",
            Reply::ok(body)
                .header("cache-control", "max-age=60")
                .header("vary", "Accept-Language"),
        );
        let resp = get_with(&edge.url("/greeting"), &[("accept-language", lang)]).await;
        assert_eq!(resp.x_cache(), "MISS", "{lang}");
        assert_eq!(&resp.body()[..], body.as_bytes());
    }
    for (lang, body) in [("en", "hello"), ("fr", "bonjour"), ("en", "hello")] {
        let resp = get_with(&edge.url("/greeting"), &[("accept-language", lang)]).await;
        assert_eq!(resp.x_cache(), "HIT", "{lang}");
        assert_eq!(
            &resp.body()[..],
            body.as_bytes(),
            "{lang} got another variant"
        );
    }
    assert_eq!(origin.hits("/greeting"), 2);
}

#[tokio::test]
async fn an_expired_object_is_revalidated_with_a_304_and_its_headers_refreshed() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/etag",
        Reply::ok("version one")
            .header("cache-control", "max-age=1")
            .header("etag", "\"v1\"")
            .header("x-generation", "1"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    assert_eq!(get(&edge.url("/etag")).await.x_cache(), "MISS");
    edge.advance(Duration::from_millis(1100));
    origin.route(
        "/etag",
        Reply::ok("the origin would send this on a full fetch")
            .header("cache-control", "max-age=60")
            .header("etag", "\"v1\"")
            .header("x-generation", "2"),
    );
    let resp = get(&edge.url("/etag")).await;
    assert_eq!(resp.x_cache(), "REVALIDATED");
    assert_eq!(
        &resp.body()[..],
        b"version one",
        "body comes from the cache"
    );
    assert_eq!(
        resp.headers()["x-generation"],
        "2",
        "headers refreshed by the 304"
    );
    let conditional = origin.last_request("/etag").unwrap();
    assert_eq!(conditional.headers["if-none-match"], "\"v1\"");
    // The refreshed lifetime (max-age=60) now applies.
    let again = get(&edge.url("/etag")).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(again.headers()["x-generation"], "2");
    assert_eq!(origin.hits("/etag"), 2);
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once_in_the_background() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/swr",
        Reply::ok("old").header("cache-control", "max-age=1, stale-while-revalidate=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/swr")).await;
    edge.advance(Duration::from_millis(1100));
    origin.route(
        "/swr",
        Reply::ok("new")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let stale = get(&edge.url("/swr")).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "waited for the origin"
    );
    assert_eq!(stale.x_cache(), "STALE");
    assert_eq!(&stale.body()[..], b"old");
    // More stale requests while the refresh is in flight add no origin load.
    for _ in 0..5 {
        assert_eq!(&get(&edge.url("/swr")).await.body()[..], b"old");
    }
    origin.wait_for_hits("/swr", 2).await;
    // The background fetch takes the origin's 2 s.
    let fresh = poll_until("the refreshed body", Duration::from_secs(5), async || {
        let resp = get(&edge.url("/swr")).await;
        if &resp.body()[..] == b"new" {
            Ok(resp)
        } else {
            Err(resp.text())
        }
    })
    .await;
    assert_eq!(&fresh.body()[..], b"new");
    assert_eq!(fresh.x_cache(), "HIT");
    assert_eq!(origin.hits("/swr"), 2, "exactly one background request");
}

#[tokio::test]
async fn stale_if_error_serves_stale_when_the_origin_fails_or_is_down() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/sie",
        Reply::ok("last good").header("cache-control", "max-age=1, stale-if-error=300"),
    );
    origin.route(
        "/plain",
        Reply::ok("no sie").header("cache-control", "max-age=1"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/sie")).await;
    get(&edge.url("/plain")).await;
    edge.advance(Duration::from_millis(1100));

    origin.route("/sie", Reply::ok("boom").status(503));
    let resp = get(&edge.url("/sie")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.x_cache(), "STALE");
    assert_eq!(&resp.body()[..], b"last good");

    let origin_url = origin.url();
    drop(origin);
    let resp = get(&edge.url("/sie")).await;
    assert_eq!(resp.status(), 200, "origin down at {origin_url}");
    assert_eq!(&resp.body()[..], b"last good");
    // Without stale-if-error, a dead origin is a 502.
    assert_eq!(get(&edge.url("/plain")).await.status(), 502);
}

#[tokio::test]
async fn a_post_invalidates_the_cached_get() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/item",
        Reply::ok("v1").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/item")).await;
    assert_eq!(get(&edge.url("/item")).await.x_cache(), "HIT");

    let post = fetch(
        &client::http1(),
        Request::post(edge.url("/item"))
            .body(Full::new(Bytes::from_static(b"update")))
            .unwrap(),
    )
    .await;
    assert_eq!(post.x_cache(), "PASS");
    origin.route(
        "/item",
        Reply::ok("v2").header("cache-control", "max-age=60"),
    );
    let after = get(&edge.url("/item")).await;
    assert_eq!(after.x_cache(), "MISS");
    assert_eq!(&after.body()[..], b"v2");
}

#[tokio::test]
async fn client_conditionals_and_only_if_cached_are_answered_by_the_cache() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/cond",
        Reply::ok("body")
            .header("cache-control", "max-age=60")
            .header("etag", "\"abc\""),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let miss = get_with(
        &edge.url("/nothing-here"),
        &[("cache-control", "only-if-cached")],
    )
    .await;
    assert_eq!(miss.status(), 504);
    assert_eq!(origin.hits("/nothing-here"), 0);

    get(&edge.url("/cond")).await;
    let not_modified = get_with(&edge.url("/cond"), &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"], "\"abc\"");
    assert!(not_modified.body().is_empty());
    let failed = get_with(&edge.url("/cond"), &[("if-match", "\"other\"")]).await;
    assert_eq!(failed.status(), 412);
    let cached = get_with(&edge.url("/cond"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(cached.status(), 200);
    assert_eq!(origin.hits("/cond"), 1);
    // A stale object would need the origin: only-if-cached gets 504.
    origin.route(
        "/short",
        Reply::ok("short").header("cache-control", "max-age=1"),
    );
    get(&edge.url("/short")).await;
    edge.advance(Duration::from_millis(1100));
    let stale = get_with(&edge.url("/short"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(stale.status(), 504);
    assert_eq!(origin.hits("/short"), 1);
}

#[tokio::test]
async fn large_objects_stream_in_chunks_and_come_back_from_disk() {
    let origin = MockOrigin::start().await;
    // 24 objects of 512 KiB (3 chunks of 1 MiB would be larger than all of
    // memory): a working set of 12 MiB against 4 MiB of memory.
    let body = |i: u8| Bytes::from(vec![i; 512 * 1024]);
    for i in 0..24u8 {
        origin.route(
            &format!("/obj/{i}"),
            Reply::ok(body(i)).header("cache-control", "max-age=600"),
        );
    }
    origin.route(
        "/huge",
        Reply::ok(vec![5u8; 3 * 1024 * 1024 + 17]).header("cache-control", "max-age=600"),
    );
    // Every object to disk when stored: what comes back from disk here
    // was requested once (disk admission is tests/tests/inspect.rs's).
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.cache.memory = "4MiB".parse().unwrap();
        c.cache.disk_admission = DiskAdmissionMode::All;
    })
    .await;
    let huge = get(&edge.url("/huge")).await;
    assert_eq!(huge.body().len(), 3 * 1024 * 1024 + 17);
    for i in 0..24u8 {
        let resp = get(&edge.url(&format!("/obj/{i}"))).await;
        assert_eq!(resp.x_cache(), "MISS");
        // Give the disk writer time: foyer drops writes when its queue is full.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut from_disk = 0;
    for i in 0..24u8 {
        let resp = get(&edge.url(&format!("/obj/{i}"))).await;
        assert_eq!(resp.body(), &body(i), "object {i} corrupted");
        if resp.x_cache() == "HIT" {
            from_disk += 1;
        }
    }
    assert!(
        from_disk >= 20,
        "only {from_disk} of 24 objects came back from cache"
    );
    let text = edge.metrics().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("edge_cache_tier_hits_total{tier=\"disk\"}")),
        "no hit was served from disk:\n{text}"
    );
    let huge = get(&edge.url("/huge")).await;
    assert_eq!(huge.body().len(), 3 * 1024 * 1024 + 17);
    assert!(huge.body().iter().all(|b| *b == 5));
}

/// Every object to disk when stored, for tests of what the disk keeps
/// after one request.
fn all_to_disk(c: &mut edge::Config) {
    c.cache.disk_admission = DiskAdmissionMode::All;
}

#[tokio::test]
async fn the_cache_survives_a_restart_on_the_same_data_dir() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/durable",
        Reply::ok("kept across restarts").header("cache-control", "max-age=600"),
    );
    origin.route(
        "/big",
        Reply::ok(vec![3u8; 2 * 1024 * 1024]).header("cache-control", "max-age=600"),
    );
    let dir = tempfile::tempdir().unwrap();

    // Ephemeral ports differ between the two runs, and a non-default port
    // is part of the key: name the site the way real clients would.
    let site = [("host", "site.test")];
    let edge = TestEdge::start_in(&origin.url(), dir.path(), all_to_disk).await;
    assert_eq!(
        get_with(&edge.url("/durable"), &site).await.x_cache(),
        "MISS"
    );
    assert_eq!(get_with(&edge.url("/big"), &site).await.x_cache(), "MISS");
    edge.stop().await;

    let edge = TestEdge::start_in(&origin.url(), dir.path(), all_to_disk).await;
    let resp = get_with(&edge.url("/durable"), &site).await;
    assert_eq!(resp.x_cache(), "HIT");
    assert_eq!(&resp.body()[..], b"kept across restarts");
    let big = get_with(&edge.url("/big"), &site).await;
    assert_eq!(big.x_cache(), "HIT");
    assert_eq!(big.body().len(), 2 * 1024 * 1024);
    assert_eq!(origin.hits("/durable"), 1);
    assert_eq!(origin.hits("/big"), 1);
}

#[tokio::test]
async fn a_non_default_port_is_part_of_the_key() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/p",
        Reply::echo_header("host").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let a = get_with(&edge.url("/p"), &[("host", "site.test:8080")]).await;
    let b = get_with(&edge.url("/p"), &[("host", "site.test:9090")]).await;
    assert_eq!(&a.body()[..], b"site.test:8080");
    assert_eq!(
        &b.body()[..],
        b"site.test:9090",
        "one port's response served for another"
    );
    // The scheme's default port is the same site as no port.
    get_with(&edge.url("/p"), &[("host", "plain.test")]).await;
    let same = get_with(&edge.url("/p"), &[("host", "plain.test:80")]).await;
    assert_eq!(same.x_cache(), "HIT");
}

#[tokio::test]
async fn a_body_cut_off_by_the_origin_is_never_cached() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/cut",
        Reply::truncated(1000, "only part").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let resp = client::send(&client::http1(), client::get_request(&edge.url("/cut"))).await;
    use http_body_util::BodyExt;
    assert!(resp.into_body().collect().await.is_err());
    origin.route(
        "/cut",
        Reply::ok("whole").header("cache-control", "max-age=60"),
    );
    let resp = get(&edge.url("/cut")).await;
    assert_eq!(resp.x_cache(), "MISS");
    assert_eq!(&resp.body()[..], b"whole");
}

#[tokio::test]
async fn configured_query_parameters_do_not_split_the_cache() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/page",
        Reply::ok("page").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.cache.key_ignore_query_params = vec!["utm_source".into()];
        c.cache.key_sort_query = true;
    })
    .await;
    assert_eq!(get(&edge.url("/page?a=1&b=2")).await.x_cache(), "MISS");
    assert_eq!(
        get(&edge.url("/page?b=2&a=1&utm_source=mail"))
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!(get(&edge.url("/page?a=1&b=3")).await.x_cache(), "MISS");
    assert_eq!(origin.hits("/page"), 2);
    // The origin still sees the query the client sent.
    assert_eq!(origin.requests("/page")[0].uri, "/page?a=1&b=2");
}

#[tokio::test]
async fn a_stale_head_is_refreshed_by_a_matching_head_response() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/h",
        Reply::ok("body")
            .header("cache-control", "max-age=1")
            .header("etag", "\"h1\"")
            .header("x-rev", "1"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/h")).await;
    edge.advance(Duration::from_millis(1100));
    origin.route(
        "/h",
        Reply::ok("body")
            .header("cache-control", "max-age=60")
            .header("etag", "\"h1\"")
            .header("x-rev", "2"),
    );
    // A HEAD revalidation: the origin's answer carries the same ETag.
    let head = fetch(
        &client::http1(),
        Request::head(edge.url("/h")).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(head.headers()["x-rev"], "2");
    let resp = get(&edge.url("/h")).await;
    assert_eq!(resp.x_cache(), "HIT");
    assert_eq!(resp.headers()["x-rev"], "2");
    assert_eq!(&resp.body()[..], b"body");
    assert_eq!(origin.hits("/h"), 2);
}

#[tokio::test]
async fn bytes_are_counted_by_cache_status_and_source() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/m",
        Reply::ok("0123456789").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/m")).await;
    get(&edge.url("/m")).await;
    // Bytes are counted as a body ends, just after the client has them.
    poll_until("the byte counters", Duration::from_secs(5), async || {
        let text = edge.metrics().await;
        let hit =
            text.contains("edge_response_bytes_total{cache_status=\"HIT\",site=\"default\",source=\"memory\"} 10");
        let miss =
            text.contains("edge_response_bytes_total{cache_status=\"MISS\",site=\"default\",source=\"origin\"} 10");
        if hit && miss { Ok(()) } else { Err(text) }
    })
    .await;
}

#[tokio::test]
async fn concurrent_revalidations_of_one_object_are_coalesced() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/reval",
        Reply::ok("same body")
            .header("cache-control", "max-age=1")
            .header("etag", "\"e1\""),
    );
    let edge = TestEdge::start(&origin.url()).await;
    get(&edge.url("/reval")).await;
    edge.advance(Duration::from_millis(1100));
    // The origin is slow to confirm: everyone arrives while it thinks.
    origin.route(
        "/reval",
        Reply::ok("same body")
            .header("cache-control", "max-age=60")
            .header("etag", "\"e1\"")
            .delay(Duration::from_millis(400)),
    );
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = edge.url("/reval");
        tasks.push(tokio::spawn(async move { get(&url).await }));
    }
    for task in tasks {
        let resp = task.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.body()[..], b"same body");
        assert_eq!(resp.x_cache(), "REVALIDATED");
    }
    assert_eq!(
        origin.hits("/reval"),
        2,
        "one fetch, then one revalidation for all"
    );
}

#[tokio::test]
async fn conditionals_on_uncacheable_responses_are_still_answered() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/mine",
        Reply::ok("private data")
            .header("cache-control", "private")
            .header("etag", "\"p1\""),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let resp = get_with(&edge.url("/mine"), &[("if-none-match", "\"p1\"")]).await;
    assert_eq!(
        resp.status(),
        304,
        "a private resource must still answer 304"
    );
    assert_eq!(resp.headers()["etag"], "\"p1\"");
    assert!(resp.body().is_empty());
    let changed = get_with(&edge.url("/mine"), &[("if-none-match", "\"old\"")]).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(&changed.body()[..], b"private data");
}

/// An origin that answers every request with one chunked response that
/// ends in trailers (HTTP/1.1 §7.1.2), on a fresh connection each time.
async fn origin_with_trailers() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                              Trailer: x-checksum\r\nCache-Control: max-age=60\r\n\
                              Connection: close\r\n\r\n\
                              5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n";
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_cacheable_response_with_trailers_is_stored_and_served_whole() {
    let addr = origin_with_trailers().await;
    let edge = TestEdge::start(&format!("http://{addr}")).await;
    // Over HTTP/1.1 and HTTP/2 (where the end of a body is a frame flag,
    // and a response without trailers must still end).
    for (client, path) in [(client::http1(), "/t1"), (client::h2c(), "/t2")] {
        for want in ["MISS", "HIT"] {
            let req = Request::get(edge.url(path)).body(Full::default()).unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(10), fetch(&client, req))
                .await
                .expect("the response ends");
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.x_cache(), want, "{path}");
            assert_eq!(&resp.body()[..], b"hello world");
        }
    }
}
