//! The purge API end to end: URL, prefix, host and tag purges, hard and
//! soft; auth and bad input; the PURGE method; fan-out to peers, one of
//! them down during the purge.

use std::time::Duration;

use bytes::Bytes;
use edge::config::Secret;
use edge_tests::client::{self, get, get_with};
use edge_tests::{
    MockOrigin, Reply, ResponseExt, TestEdge, eventually, eventually_within, free_port, metrics,
    poll_until,
};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

const TOKEN: &str = "purge-token-for-tests";

fn cacheable(body: &str) -> Reply {
    Reply::ok(body.to_owned())
        .header("cache-control", "max-age=600")
        .header("etag", "\"v1\"")
}

async fn purging_edge(origin: &MockOrigin) -> TestEdge {
    TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
    })
    .await
}

async fn post(url: &str, token: Option<&str>, body: &str) -> Response<Bytes> {
    let mut req = Request::post(url).header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    client::fetch(&client::http1(), req).await
}

async fn purge(edge: &TestEdge, body: &str) -> serde_json::Value {
    let resp = post(&edge.admin_url("/purge"), Some(TOKEN), body).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    serde_json::from_slice(resp.body()).expect("json")
}

async fn status(edge: &TestEdge, path: &str, headers: &[(&str, &str)]) -> String {
    let resp = get_with(&edge.url(path), headers).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.header("x-cache").expect("x-cache").to_owned()
}

#[tokio::test]
async fn url_purges_evict_the_object_and_every_variant() {
    let origin = MockOrigin::start().await;
    origin.route("/page", cacheable("page").header("vary", "accept-language"));
    origin.route("/other", cacheable("other"));
    let edge = purging_edge(&origin).await;
    for lang in ["en", "fr"] {
        assert_eq!(
            status(&edge, "/page", &[("accept-language", lang)]).await,
            "MISS"
        );
        assert_eq!(
            status(&edge, "/page", &[("accept-language", lang)]).await,
            "HIT"
        );
    }
    assert_eq!(status(&edge, "/other", &[]).await, "MISS");
    let url = edge.url("/page");
    let answer = purge(&edge, &format!(r#"{{"urls": ["{url}"]}}"#)).await;
    assert_eq!(answer["accepted"]["urls"], 1);
    for lang in ["en", "fr"] {
        assert_eq!(
            status(&edge, "/page", &[("accept-language", lang)]).await,
            "MISS",
            "variant {lang}"
        );
    }
    assert_eq!(status(&edge, "/other", &[]).await, "HIT", "untouched");
    // The purge is on record.
    let id = answer["id"].as_str().expect("id");
    let shown = get_with(
        &edge.admin_url(&format!("/purge/{id}")),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    assert_eq!(shown.status(), 200);
    let shown: serde_json::Value = serde_json::from_slice(shown.body()).expect("json");
    assert_eq!(shown["urls"][0], url.as_str());
}

#[tokio::test]
async fn prefix_and_host_purges_cover_what_they_name() {
    let origin = MockOrigin::start().await;
    for path in ["/img/a.png", "/img/b/c.png", "/imgs/d.png", "/css/site.css"] {
        origin.route(path, cacheable(path));
    }
    let edge = purging_edge(&origin).await;
    let paths = ["/img/a.png", "/img/b/c.png", "/imgs/d.png", "/css/site.css"];
    for path in paths {
        status(&edge, path, &[("host", "cdn.test")]).await;
        status(&edge, path, &[("host", "other.test")]).await;
    }
    purge(&edge, r#"{"prefixes": ["cdn.test/img"]}"#).await;
    assert_eq!(
        status(&edge, "/img/a.png", &[("host", "cdn.test")]).await,
        "MISS"
    );
    assert_eq!(
        status(&edge, "/img/b/c.png", &[("host", "cdn.test")]).await,
        "MISS"
    );
    assert_eq!(
        status(&edge, "/imgs/d.png", &[("host", "cdn.test")]).await,
        "HIT"
    );
    assert_eq!(
        status(&edge, "/img/a.png", &[("host", "other.test")]).await,
        "HIT"
    );

    purge(&edge, r#"{"hosts": ["other.test"]}"#).await;
    for path in paths {
        assert_eq!(
            status(&edge, path, &[("host", "other.test")]).await,
            "MISS",
            "{path}"
        );
    }
    assert_eq!(
        status(&edge, "/css/site.css", &[("host", "cdn.test")]).await,
        "HIT"
    );
}

#[tokio::test]
async fn tag_purges_use_surrogate_key_and_cache_tag() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/p/7",
        cacheable("product 7").header("surrogate-key", "product-7 catalog"),
    );
    origin.route(
        "/p/8",
        cacheable("product 8").header("cache-tag", "product-8,catalog"),
    );
    origin.route(
        "/p/9",
        cacheable("product 9").header("surrogate-key", "product-9"),
    );
    let edge = purging_edge(&origin).await;
    let first = get(&edge.url("/p/7")).await;
    assert!(
        first.headers().get("surrogate-key").is_none(),
        "Surrogate-Key is for the CDN, not the client"
    );
    for p in ["/p/7", "/p/8", "/p/9"] {
        status(&edge, p, &[]).await;
        assert_eq!(status(&edge, p, &[]).await, "HIT");
    }
    purge(&edge, r#"{"tags": ["catalog"]}"#).await;
    assert_eq!(status(&edge, "/p/7", &[]).await, "MISS");
    assert_eq!(status(&edge, "/p/8", &[]).await, "MISS");
    assert_eq!(status(&edge, "/p/9", &[]).await, "HIT");
}

#[tokio::test]
async fn soft_purges_make_objects_stale_not_gone() {
    let origin = MockOrigin::start().await;
    origin.route("/plain", cacheable("plain"));
    origin.route(
        "/swr",
        Reply::ok("swr")
            .header("cache-control", "max-age=600, stale-while-revalidate=60")
            .header("etag", "\"s\""),
    );
    let edge = purging_edge(&origin).await;
    for p in ["/plain", "/swr"] {
        status(&edge, p, &[]).await;
        assert_eq!(status(&edge, p, &[]).await, "HIT");
    }
    let urls = format!(
        r#"{{"urls": ["{}", "{}"], "soft": true}}"#,
        edge.url("/plain"),
        edge.url("/swr")
    );
    purge(&edge, &urls).await;
    // Revalidated with the origin (a 304 here), not fetched anew.
    assert_eq!(status(&edge, "/plain", &[]).await, "REVALIDATED");
    let last = origin.last_request("/plain").expect("revalidation");
    assert_eq!(last.headers["if-none-match"], "\"v1\"");
    assert_eq!(status(&edge, "/plain", &[]).await, "HIT");
    // With stale-while-revalidate: served stale at once, refreshed behind.
    assert_eq!(status(&edge, "/swr", &[]).await, "STALE");
    eventually("the background refresh", async || {
        status(&edge, "/swr", &[]).await == "HIT"
    })
    .await;
}

#[tokio::test]
async fn purge_needs_the_token_and_refuses_bad_input_whole() {
    let origin = MockOrigin::start().await;
    origin.route("/keep", cacheable("keep"));
    let edge = purging_edge(&origin).await;
    status(&edge, "/keep", &[]).await;
    let api = edge.admin_url("/purge");
    let keep = edge.url("/keep");
    let body = format!(r#"{{"urls": ["{keep}"]}}"#);
    assert_eq!(post(&api, None, &body).await.status(), 401);
    assert_eq!(post(&api, Some("wrong-token-x"), &body).await.status(), 403);
    let bad = [
        "{",
        "[]",
        r#"{"urls": "not a list"}"#,
        r#"{"url": ["x"]}"#,
        "{}",
        // One bad URL: nothing is applied, not even the good one.
        &format!(r#"{{"urls": ["{keep}", "no-scheme/x"]}}"#),
        r#"{"prefixes": ["host/path?query"]}"#,
        r#"{"tags": ["two words"]}"#,
        "\u{0}\u{1}binary",
    ];
    for body in bad {
        let resp = post(&api, Some(TOKEN), body).await;
        assert_eq!(resp.status(), 400, "{body:?}: {:?}", resp.body());
        let err: serde_json::Value = serde_json::from_slice(resp.body()).expect("json error");
        assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let many: Vec<String> = (0..1001).map(|i| format!("\"t{i}\"")).collect();
    let too_many = post(
        &api,
        Some(TOKEN),
        &format!(r#"{{"tags": [{}]}}"#, many.join(",")),
    )
    .await;
    assert_eq!(too_many.status(), 400);
    assert!(too_many.text().contains("too many tags"));
    let huge = format!(r#"{{"tags": ["{}"]}}"#, "x".repeat(2 << 20));
    assert_eq!(post(&api, Some(TOKEN), &huge).await.status(), 413);
    assert_eq!(
        status(&edge, "/keep", &[]).await,
        "HIT",
        "nothing was applied"
    );

    // No token configured: the API is off.
    let closed = TestEdge::start(&origin.url()).await;
    assert_eq!(
        post(&closed.admin_url("/purge"), Some(TOKEN), &body)
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn the_purge_method_works_from_allowed_networks_or_with_the_token() {
    let origin = MockOrigin::start().await;
    origin.route("/m", cacheable("m"));
    let edge = purging_edge(&origin).await;
    status(&edge, "/m", &[]).await;
    assert_eq!(status(&edge, "/m", &[]).await, "HIT");
    let req = Request::builder()
        .method("PURGE")
        .uri(edge.url("/m"))
        .body(Full::default())
        .expect("request");
    let resp = client::fetch(&client::http1(), req).await;
    assert_eq!(resp.status(), 200, "127.0.0.1 may purge by default");
    assert_eq!(status(&edge, "/m", &[]).await, "MISS");
    let wrong = Request::builder()
        .method("PURGE")
        .uri(edge.url("/m"))
        .header("authorization", "Bearer not-the-token")
        .body(Full::default())
        .expect("request");
    let resp = client::fetch(&client::http1(), wrong).await;
    assert_eq!(
        resp.status(),
        403,
        "a wrong token is refused even from 127.0.0.1"
    );

    let strict = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.purge.allow_from = Vec::new();
    })
    .await;
    let purge_m = |token: Option<&str>| {
        let mut req = Request::builder().method("PURGE").uri(strict.url("/m"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.body(Full::default()).expect("request")
    };
    status(&strict, "/m", &[]).await;
    assert_eq!(status(&strict, "/m", &[]).await, "HIT");
    let refused = client::fetch(&client::http1(), purge_m(None)).await;
    assert_eq!(refused.status(), 403);
    let wrong = client::fetch(&client::http1(), purge_m(Some("not-the-token"))).await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(
        status(&strict, "/m", &[]).await,
        "HIT",
        "refused purges change nothing"
    );
    let allowed = client::fetch(&client::http1(), purge_m(Some(TOKEN))).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(status(&strict, "/m", &[]).await, "MISS");
}

#[tokio::test]
async fn purges_reach_every_peer_even_one_that_was_down() {
    let origin = MockOrigin::start().await;
    origin.route("/shared", cacheable("shared"));
    let admins: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let listens: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let start = |i: usize| {
        let url = origin.url();
        let dir = dirs[i].path().to_owned();
        let peers: Vec<String> = (0..3)
            .filter(|j| *j != i)
            .map(|j| format!("http://127.0.0.1:{}", admins[j]))
            .collect();
        let (admin, listen) = (admins[i], listens[i]);
        async move {
            TestEdge::start_in(&url, &dir, move |c| {
                c.admin = format!("127.0.0.1:{admin}").parse().expect("addr");
                c.listen = format!("127.0.0.1:{listen}").parse().expect("addr");
                c.node_name = format!("node-{i}");
                c.purge.token = Some(Secret(TOKEN.into()));
                c.purge.peers = peers;
                c.purge.retry_max = Duration::from_millis(500);
            })
            .await
        }
    };
    let a = start(0).await;
    let b = start(1).await;
    let c = start(2).await;
    for node in [&a, &b, &c] {
        status(node, "/shared", &[("host", "cdn.test")]).await;
        assert_eq!(
            status(node, "/shared", &[("host", "cdn.test")]).await,
            "HIT"
        );
    }
    // C goes down (its cache kept on disk), then the purge arrives at A.
    c.stop().await;
    let answer = purge(&a, r#"{"urls": ["http://cdn.test/shared"]}"#).await;
    let id = answer["id"].as_str().expect("id").to_owned();
    assert_eq!(status(&a, "/shared", &[("host", "cdn.test")]).await, "MISS");
    eventually_within("B to be purged", Duration::from_secs(10), async || {
        status(&b, "/shared", &[("host", "cdn.test")]).await == "MISS"
    })
    .await;
    let shown = get_with(
        &a.admin_url(&format!("/purge/{id}")),
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await;
    let shown: serde_json::Value = serde_json::from_slice(shown.body()).expect("json");
    let states: Vec<&str> = shown["fanout"]
        .as_array()
        .expect("fanout")
        .iter()
        .map(|p| p["state"].as_str().unwrap_or(""))
        .collect();
    assert!(states.contains(&"pending"), "C is owed the purge: {shown}");
    let backlog =
        metrics::value(&a.metrics().await, "edge_purge_backlog ").expect("backlog metric");
    assert!(backlog >= 1.0, "the metric shows what C is owed: {backlog}");

    // C comes back on the same data dir and is purged by the outbox.
    let c = start(2).await;
    let on_c = c.admin_url(&format!("/purge/{id}"));
    let bearer = format!("Bearer {TOKEN}");
    eventually_within(
        &format!("C to receive purge {id}"),
        Duration::from_secs(15),
        async || {
            get_with(&on_c, &[("authorization", &bearer)])
                .await
                .status()
                == 200
        },
    )
    .await;
    poll_until(
        "C to apply the purge",
        Duration::from_secs(15),
        async || {
            let cache = status(&c, "/shared", &[("host", "cdn.test")]).await;
            if cache == "MISS" {
                return Ok(());
            }
            // Each probe may itself have re-cached nothing: HIT means the old
            // object is still there.
            assert_eq!(cache, "HIT");
            Err(cache)
        },
    )
    .await;
}

#[tokio::test]
async fn a_purge_body_that_trickles_is_cut_off() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.server.client_body_timeout = Duration::from_millis(300);
    })
    .await;
    let head = format!(
        "POST /purge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 100\r\n\r\n{{\"urls\": ["
    );
    let answer = client::raw(edge.admin_addr(), head.as_bytes(), Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The admin listener still serves.
    assert_eq!(get(&edge.admin_url("/healthz")).await.status(), 200);
}

/// A request that arrives after a purge's 200 never gets bytes fetched
/// before it, even from a fill still streaming them. It used to join that
/// fill and get the old body.
#[tokio::test]
async fn a_request_after_a_purge_does_not_join_a_fill_from_before_it() {
    let origin = MockOrigin::start().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    origin.route(
        "/live",
        Reply::gated(&["old ", "body"], gate.clone()).header("cache-control", "max-age=600"),
    );
    let edge = purging_edge(&origin).await;
    // The first client's fill: head and first bytes, then held at the gate.
    let url = edge.url("/live");
    let first = client::send(&client::http1(), client::get_request(&url)).await;
    let mut first_body = first.into_body();
    let first_bytes = tokio::time::timeout(Duration::from_secs(5), first_body.frame())
        .await
        .expect("the fill starts within 5 s")
        .expect("the first bytes")
        .expect("the fill streams")
        .into_data()
        .expect("a data frame");
    origin.route("/live", cacheable("new body"));
    purge(&edge, &format!(r#"{{"urls": ["{}"]}}"#, edge.url("/live"))).await;
    let after = tokio::spawn({
        let url = url.clone();
        async move { get(&url).await }
    });
    // The request after the purge fetches for itself while the old fill is
    // still held (joining that fill, it would wait at the gate instead).
    origin.wait_for_hits("/live", 2).await;
    gate.notify_one();
    let after = after.await.expect("request after the purge");
    assert_eq!(after.body(), "new body", "bytes from before the purge");
    // The first client, which asked before the purge, gets the old bytes whole.
    let rest = tokio::time::timeout(Duration::from_secs(20), first_body.collect())
        .await
        .expect("the old body ends within 20 s")
        .expect("the old body ends");
    assert_eq!([first_bytes, rest.to_bytes()].concat(), b"old body");
    // What is kept is the new body.
    let again = get(&edge.url("/live")).await;
    assert_eq!(again.body(), "new body");
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(origin.hits("/live"), 2);
}
