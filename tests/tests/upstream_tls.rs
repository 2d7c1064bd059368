//! The edge as a client: https origins verified against a test CA, a wrong
//! name refused with a 502 and a log line, HTTP/2 to peers multiplexed on
//! one connection, and connection reuse under steady load.

use std::time::Duration;

use edge_tests::certs::TestCa;
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, client, logs, metrics};
use http::Version;
use origin_shield::{Peer, Transport};

fn peer(url: &str, transport: Transport) -> Peer {
    url.parse::<Peer>()
        .expect("peer url")
        .with_transport(transport)
}

fn named(name: &str) -> Transport {
    Transport {
        tls_name: Some(name.into()),
        ..Transport::default()
    }
}

/// An edge whose one origin is `origin` over HTTPS, spoken to as
/// `transport` says and trusted through `ca`.
async fn edge_with_https_origin(
    origin: &MockOrigin,
    ca: &TestCa,
    transport: Transport,
) -> TestEdge {
    let (url, ca_file) = (origin.https_url(), ca.cert.cert_path.clone());
    let u = url.clone();
    TestEdge::start_with(&u, move |c| {
        c.origins = vec![peer(&url, transport)];
        c.upstream.tls_ca = Some(ca_file);
    })
    .await
}

/// HTTP/2 to a peer whose certificate names `origin.test`.
fn h2_named() -> Transport {
    Transport {
        http2: true,
        ..named("origin.test")
    }
}

async fn metric(edge: &TestEdge, line_start: &str) -> f64 {
    let text = edge.metrics().await;
    metrics::value(&text, line_start)
        .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
}

#[tokio::test]
async fn an_https_origin_signed_by_a_test_ca_is_verified_and_cached() {
    let ca = TestCa::new();
    let origin = MockOrigin::start_tls(ca.leaf(&["origin.test"]).server_config()).await;
    origin.route(
        "/tls",
        Reply::ok("from an https origin").header("cache-control", "max-age=600"),
    );
    let edge = edge_with_https_origin(&origin, &ca, named("origin.test")).await;

    let first = client::get(&edge.url("/tls")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(&first.body()[..], b"from an https origin");
    let again = client::get(&edge.url("/tls")).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(origin.hits("/tls"), 1);
    let seen = origin.last_request("/tls").expect("request");
    assert_eq!(seen.version, Version::HTTP_11, "no h2 unless configured");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_502_with_a_log_line() {
    logs::capture(tracing::Level::INFO);
    let ca = TestCa::new();
    let origin = MockOrigin::start_tls(ca.leaf(&["origin.test"]).server_config()).await;
    let edge = edge_with_https_origin(&origin, &ca, named("wrong.test")).await;

    let resp = client::get(&edge.url("/x")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        origin.hits("/x"),
        0,
        "nothing is sent to an unverified peer"
    );
    let line = logs::text()
        .lines()
        .find(|l| l.contains("TLS to peer refused") && l.contains("wrong.test"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no log line for the refused certificate:\n{}", logs::text()));
    assert!(line.contains("not valid for name"), "{line}");
    assert_eq!(
        metric(&edge, "edge_origin_errors_total{kind=\"tls\"}").await,
        1.0
    );
}

#[tokio::test]
async fn an_untrusted_ca_is_refused_unless_verification_is_turned_off() {
    // Signed by a CA the edge was not told about (system roots only).
    let stranger = TestCa::new();
    let origin = MockOrigin::start_tls(stranger.leaf(&["origin.test"]).server_config()).await;
    let url = origin.https_url();
    let u = url.clone();
    let strict = TestEdge::start_with(&url, move |c| {
        c.origins = vec![peer(&u, named("origin.test"))];
    })
    .await;
    assert_eq!(client::get(&strict.url("/lab")).await.status(), 502);

    let u = url.clone();
    let lab = TestEdge::start_with(&url, move |c| {
        let transport = Transport {
            insecure_skip_verify: true,
            ..Transport::default()
        };
        c.origins = vec![peer(&u, transport)];
    })
    .await;
    let resp = client::get(&lab.url("/lab")).await;
    assert_eq!(
        resp.status(),
        200,
        "tls_verify = false is the explicit opt-out"
    );
    assert_eq!(origin.hits("/lab"), 1);
}

#[tokio::test]
async fn http2_to_an_https_origin_carries_many_requests_on_one_connection() {
    let ca = TestCa::new();
    let origin = MockOrigin::start_tls(ca.leaf(&["origin.test"]).server_config()).await;
    for i in 0..50 {
        origin.route(
            &format!("/m{i}"),
            Reply::ok(format!("object {i}")).delay(Duration::from_millis(200)),
        );
    }
    let edge = edge_with_https_origin(&origin, &ca, h2_named()).await;

    // 50 misses at once, each held 200 ms by the origin: they overlap.
    let mut all = tokio::task::JoinSet::new();
    for i in 0..50 {
        let url = edge.url(&format!("/m{i}"));
        all.spawn(async move {
            let resp = client::get_with(&url, &[("host", "site.test")]).await;
            (i, resp)
        });
    }
    while let Some(done) = all.join_next().await {
        let (i, resp) = done.expect("task");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), &format!("object {i}")[..]);
    }
    assert_eq!(origin.connections(), 1, "one multiplexed connection");
    let seen = origin.last_request("/m7").expect("request");
    assert_eq!(seen.version, Version::HTTP_2);
    // hyper's server puts :authority in the URI; the client's host it is.
    assert!(
        seen.headers.get("host").is_none_or(|h| h == "site.test"),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn http2_prior_knowledge_to_a_cleartext_peer() {
    let origin = MockOrigin::start().await;
    let url = origin.url();
    let u = url.clone();
    let edge = TestEdge::start_with(&url, move |c| {
        let transport = Transport {
            http2: true,
            ..Transport::default()
        };
        c.origins = vec![peer(&u, transport)];
    })
    .await;
    for i in 0..5 {
        let resp = client::get(&edge.url(&format!("/c{i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        origin.last_request("/c4").expect("request").version,
        Version::HTTP_2
    );
    assert_eq!(origin.connections(), 1);
}

/// 4 clients × 250 misses each, back to back: the pool keeps one
/// connection per client busy and reuses it.
async fn steady_load(edge: &TestEdge) {
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let base = edge.url("");
        workers.spawn(async move {
            let http = client::http1();
            for i in 0..250 {
                let req = client::get_request(&format!("{base}/load/{w}/{i}"));
                let resp = client::fetch(&http, req).await;
                assert_eq!(resp.status(), 200);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.expect("worker");
    }
}

#[tokio::test]
async fn upstream_connections_are_reused_under_steady_load() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    steady_load(&edge).await;
    let ratio = metric(&edge, "edge_upstream_connection_reuse_ratio").await;
    assert!(ratio > 0.99, "reuse ratio {ratio}");
    assert!(
        origin.connections() <= 8,
        "{} connections",
        origin.connections()
    );
    let reused = metric(
        &edge,
        "edge_upstream_exchanges_total{connection=\"reused\"}",
    )
    .await;
    assert!(reused >= 990.0, "{reused}");
}

#[tokio::test]
async fn https_h2_connections_are_reused_under_steady_load() {
    let ca = TestCa::new();
    let origin = MockOrigin::start_tls(ca.leaf(&["origin.test"]).server_config()).await;
    let edge = edge_with_https_origin(&origin, &ca, h2_named()).await;
    steady_load(&edge).await;
    let ratio = metric(&edge, "edge_upstream_connection_reuse_ratio").await;
    assert!(ratio > 0.99, "reuse ratio {ratio}");
    assert_eq!(origin.connections(), 1);
}
