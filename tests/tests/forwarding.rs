//! Requests and responses pass through intact and streamed, with the header
//! rules of an intermediary applied.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::client::{self, fetch, get, get_request, send};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, eventually_within};
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

#[tokio::test]
async fn get_is_proxied_with_status_headers_and_body() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/hello",
        Reply::ok("hello world")
            .status(201)
            .header("x-origin", "yes"),
    );
    let edge = TestEdge::start(&origin.url()).await;

    let resp = get(&edge.url("/hello?x=1")).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-origin"], "yes");
    assert_eq!(resp.headers()["content-length"], "11");
    assert_eq!(&resp.body()[..], b"hello world");

    let seen = origin
        .last_request("/hello")
        .expect("origin saw the request");
    assert_eq!(seen.uri, "/hello?x=1");
    assert_eq!(
        seen.headers["host"],
        edge.addr().to_string(),
        "client's Host is kept"
    );
}

#[tokio::test]
async fn post_with_5_mib_body_is_proxied_intact() {
    let origin = MockOrigin::start().await;
    origin.route("/upload", Reply::echo());
    let edge = TestEdge::start(&origin.url()).await;

    let payload: Bytes = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into();
    let req = Request::post(edge.url("/upload"))
        .header("content-type", "application/octet-stream")
        .body(Full::new(payload.clone()))
        .unwrap();
    let resp = fetch(&client::http1(), req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().len(), payload.len());
    assert!(resp.body() == &payload, "echoed body differs");

    let seen = origin.last_request("/upload").unwrap();
    assert_eq!(seen.method, "POST");
    assert!(seen.body == payload, "origin received a different body");
    assert_eq!(seen.headers["content-length"], payload.len().to_string());
}

#[tokio::test]
async fn unknown_methods_pass_through() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    let client = client::http1();
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "BREW"] {
        let req = Request::builder()
            .method(method)
            .uri(edge.url("/m"))
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let resp = fetch(&client, req).await;
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(origin.last_request("/m").unwrap().method, method);
    }
    assert_eq!(origin.hits("/m"), 6);
}

#[tokio::test]
async fn slow_chunked_response_streams_before_the_origin_finishes() {
    let origin = MockOrigin::start().await;
    let gate = Arc::new(Notify::new());
    origin.route(
        "/slow",
        Reply::gated(&["first;", "second;", "third"], gate.clone()),
    );
    let edge = TestEdge::start(&origin.url()).await;

    let resp = send(&client::http1(), get_request(&edge.url("/slow"))).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The origin holds every chunk after the first until the gate opens, so
    // receiving the first proves the edge does not buffer the response.
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("first chunk arrives while the origin is still sending")
        .unwrap()
        .unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), b"first;");
    gate.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second;third");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/hop",
        Reply::ok("ok")
            .header("connection", "x-origin-hop")
            .header("x-origin-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-end-to-end", "kept"),
    );
    let edge = TestEdge::start(&origin.url()).await;

    let req = Request::get(edge.url("/hop"))
        .header("connection", "keep-alive, x-client-hop")
        .header("x-client-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("upgrade", "websocket")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let resp = fetch(&client::http1(), req).await;
    assert_eq!(resp.status(), 200);
    for gone in ["x-origin-hop", "keep-alive", "proxy-authenticate"] {
        assert!(
            !resp.headers().contains_key(gone),
            "{gone} reached the client"
        );
    }
    assert_eq!(resp.headers()["x-end-to-end"], "kept");

    let seen = origin.last_request("/hop").unwrap();
    for gone in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the origin"
        );
    }
    assert_eq!(seen.headers["x-end-to-end"], "kept");
}

#[tokio::test]
async fn via_and_forwarded_headers_are_added() {
    let origin = MockOrigin::start().await;
    origin.route("/via", Reply::ok("ok").header("via", "1.1 origin-cache"));
    let edge = TestEdge::start_with(&origin.url(), |c| c.node_name = "edge-test-1".into()).await;

    let req = Request::get(edge.url("/via"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .unwrap();
    let resp = fetch(&client::http1(), req).await;
    assert_eq!(resp.headers()["via"], "1.1 origin-cache, 1.1 edge-test-1");

    let seen = origin.last_request("/via").unwrap();
    assert_eq!(seen.headers["via"], "1.1 edge-test-1");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(
        seen.headers["x-forwarded-proto"], "http",
        "the client's claim is replaced"
    );
}

#[tokio::test]
async fn unkeyed_host_and_url_overrides_cannot_poison_the_cache() {
    // An origin that builds links from X-Forwarded-Host, as many do.
    let origin = MockOrigin::start().await;
    origin.route(
        "/page",
        Reply::echo_header("x-forwarded-host").header("cache-control", "max-age=60"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let attack = client::get_with(
        &edge.url("/page"),
        &[
            ("host", "site.test"),
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
        ],
    )
    .await;
    assert_eq!(attack.x_cache(), "MISS");
    assert_eq!(
        &attack.body()[..],
        b"site.test",
        "the origin saw the real host"
    );
    let seen = origin.last_request("/page").expect("request");
    assert!(seen.headers.get("x-original-url").is_none());

    let victim = client::get_with(&edge.url("/page"), &[("host", "site.test")]).await;
    assert_eq!(victim.x_cache(), "HIT");
    assert_eq!(&victim.body()[..], b"site.test");
}

#[tokio::test]
async fn host_header_can_be_rewritten_by_config() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.upstream.host_header = Some("origin.internal".into());
    })
    .await;
    get(&edge.url("/h")).await;
    assert_eq!(
        origin.last_request("/h").unwrap().headers["host"],
        "origin.internal"
    );
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let origin = MockOrigin::start().await;
    origin.route("/h2", Reply::ok("over h2"));
    let edge = TestEdge::start(&origin.url()).await;

    let resp = fetch(&client::h2c(), get_request(&edge.url("/h2"))).await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(&resp.body()[..], b"over h2");
    assert_eq!(resp.headers()["via"], "1.1 edge");
    let seen = origin.last_request("/h2").unwrap();
    assert_eq!(
        seen.version,
        http::Version::HTTP_11,
        "origin spoken to in HTTP/1.1"
    );
    assert_eq!(
        seen.headers["host"],
        edge.addr().to_string(),
        ":authority becomes Host"
    );
    assert_eq!(seen.headers["via"], "2 edge");
}

#[tokio::test]
async fn second_origin_serves_when_the_first_is_down() {
    let origin = MockOrigin::start().await;
    let dead = format!("http://127.0.0.1:{}", edge_tests::free_port());
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.origins = vec![dead.parse().unwrap(), origin.url().parse().unwrap()];
    })
    .await;
    for _ in 0..4 {
        assert_eq!(get(&edge.url("/rr")).await.status(), 200);
    }
    assert_eq!(origin.hits("/rr"), 4);
}

#[tokio::test]
async fn request_bodies_stream_to_the_origin() {
    use edge_tests::client::ChannelBody;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let origin = MockOrigin::start().await;
    origin.route("/stream-up", Reply::echo());
    let edge = TestEdge::start(&origin.url()).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let client: Client<_, ChannelBody> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(edge.url("/stream-up"))
        .body(ChannelBody(rx))
        .unwrap();
    let pending = tokio::spawn(async move { client.request(req).await });

    let part = Bytes::from(vec![b'a'; 256 * 1024]);
    tx.send(part.clone()).await.unwrap();
    // The origin sees the first part while the client still holds the rest:
    // the edge forwards request bodies as they arrive.
    eventually_within(
        "the origin to get the first part before the client finished",
        Duration::from_secs(10),
        async || origin.body_bytes_received() >= part.len() as u64,
    )
    .await;
    tx.send(part.clone()).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 2 * part.len());
}

#[tokio::test]
async fn chunked_bodies_on_get_and_delete_are_forwarded() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    for method in ["GET", "DELETE"] {
        let raw = format!(
            "{method} /with-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        );
        let resp =
            edge_tests::client::raw(edge.addr(), raw.as_bytes(), Duration::from_secs(5)).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let seen = origin.last_request("/with-body").unwrap();
        assert_eq!(seen.method, method);
        assert_eq!(&seen.body[..], b"hello world", "{method} body lost");
    }
}

#[tokio::test]
async fn a_slow_upload_is_not_a_slow_origin() {
    use edge_tests::client::ChannelBody;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let origin = MockOrigin::start().await;
    origin.route("/upload", Reply::echo());
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.upstream.header_timeout = Duration::from_millis(400);
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let client: Client<_, ChannelBody> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(edge.url("/upload"))
        .body(ChannelBody(rx))
        .unwrap();
    let pending = tokio::spawn(async move { client.request(req).await });
    // The upload takes 1.2 s, three times the head timeout.
    for _ in 0..6 {
        tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 60);
}
