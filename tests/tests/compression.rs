//! Compression at the edge end to end: each encoding made once and then
//! served as a hit, what is never compressed, origin codings undone,
//! Vary, weak ETags and conditionals, ranges, purges.

use std::io::{Read, Write};

use bytes::Bytes;
use edge::config::{RuleConfig, Secret, SiteConfig};
use edge_tests::client::{self, get_with};
use edge_tests::metrics::value;
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge};
use http::{Request, Response};
use http_body_util::Full;

/// 100 KiB of HTML that compresses well but not absurdly.
fn page() -> Bytes {
    let mut out = String::from("<!doctype html><html><body><ul>\n");
    let mut i = 0u64;
    while out.len() < 100 << 10 {
        i += 1;
        out.push_str(&format!(
            "<li id=\"n{i}\">item {i}: {}</li>\n",
            (i * 2_654_435_761) % 1_000_003
        ));
    }
    Bytes::from(out)
}

fn html(body: Bytes) -> Reply {
    Reply::ok(body)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "max-age=600")
        .header("etag", "\"v1\"")
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        Some("zstd") => out = zstd::decode_all(body).expect("zstd"),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

async fn fetch_as(edge: &TestEdge, path: &str, accept: Option<&str>) -> Response<Bytes> {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-encoding", a)).into_iter().collect();
    get_with(&edge.url(path), &headers).await
}

async fn compressions(edge: &TestEdge, encoding: &str) -> f64 {
    let text = edge.metrics().await;
    value(
        &text,
        &format!("edge_compressions_total{{encoding=\"{encoding}\"}}"),
    )
    .unwrap_or(0.0)
}

async fn encoded_hits(edge: &TestEdge, encoding: &str) -> f64 {
    let text = edge.metrics().await;
    value(
        &text,
        &format!("edge_compressed_hits_total{{encoding=\"{encoding}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn each_encoding_is_made_once_then_every_client_gets_a_hit() {
    let origin = MockOrigin::start().await;
    let body = page();
    origin.route("/page.html", html(body.clone()));
    let edge = TestEdge::start(&origin.url()).await;

    // The miss streams br to its client while storing both forms.
    let first = fetch_as(&edge, "/page.html", Some("gzip, deflate, br, zstd")).await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("content-encoding"), Some("br"));
    assert_eq!(decode(Some("br"), first.body()), body);
    for (accept, coding) in [
        (Some("br;q=1.0, gzip;q=0.8"), Some("br")),
        (Some("zstd, gzip"), Some("zstd")),
        (Some("gzip"), Some("gzip")),
        (Some("identity"), None),
        (None, None),
    ] {
        for round in 0..2 {
            let resp = fetch_as(&edge, "/page.html", accept).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.x_cache(), "HIT", "{accept:?} round {round}");
            assert_eq!(resp.header("content-encoding"), coding, "{accept:?}");
            assert_eq!(
                decode(coding, resp.body()),
                body,
                "{accept:?} round {round}"
            );
            assert_eq!(resp.header("vary"), Some("Accept-Encoding"));
            if coding.is_some() {
                assert_eq!(resp.header("etag"), Some("W/\"v1\""));
                assert!(resp.body().len() < body.len() / 3, "{accept:?}");
            } else {
                assert_eq!(resp.header("etag"), Some("\"v1\""));
            }
            if round == 1 && coding.is_some() {
                // A stored encoding: its exact length, no compression.
                let len = resp.body().len().to_string();
                assert_eq!(resp.header("content-length"), Some(len.as_str()));
            }
        }
    }
    assert_eq!(origin.hits("/page.html"), 1);
    // br was made by the miss, zstd and gzip by their first hit; every
    // later response came from the stored encoding.
    for encoding in ["br", "zstd", "gzip"] {
        assert_eq!(compressions(&edge, encoding).await, 1.0, "{encoding}");
    }
    assert_eq!(encoded_hits(&edge, "br").await, 2.0);
    assert_eq!(encoded_hits(&edge, "zstd").await, 1.0);
    assert_eq!(encoded_hits(&edge, "gzip").await, 1.0);
}

#[tokio::test]
async fn what_is_never_compressed() {
    let origin = MockOrigin::start().await;
    let body = page();
    origin.route(
        "/no-transform",
        html(body.clone()).header("cache-control", "max-age=600, no-transform"),
    );
    origin.route(
        "/photo.jpg",
        Reply::ok(body.clone())
            .header("content-type", "image/jpeg")
            .header("cache-control", "max-age=600")
            .header("etag", "\"v1\""),
    );
    origin.route("/small", html(Bytes::from(vec![b'a'; 200])));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let gzipped = Bytes::from(gz.finish().unwrap());
    origin.route(
        "/gzipped",
        html(gzipped.clone()).header("content-encoding", "gzip"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let all = Some("br, gzip, zstd");
    for path in ["/no-transform", "/photo.jpg", "/small"] {
        for _ in 0..2 {
            let resp = fetch_as(&edge, path, all).await;
            assert_eq!(resp.header("content-encoding"), None, "{path}");
            assert_eq!(resp.header("etag"), Some("\"v1\""), "{path}");
        }
    }
    // Already compressed by the origin: sent as it is to a client that
    // takes gzip, and decompressed for one that does not.
    for _ in 0..2 {
        let resp = fetch_as(&edge, "/gzipped", all).await;
        assert_eq!(resp.header("content-encoding"), Some("gzip"));
        assert_eq!(resp.body(), &gzipped);
        assert_eq!(resp.header("vary"), Some("Accept-Encoding"));
    }
    for accept in [None, Some("br")] {
        let resp = fetch_as(&edge, "/gzipped", accept).await;
        assert_eq!(resp.x_cache(), "HIT");
        assert_eq!(resp.header("content-encoding"), None, "{accept:?}");
        assert_eq!(resp.body(), &body, "{accept:?}: the origin's exact bytes");
        assert_eq!(resp.header("etag"), Some("W/\"v1\""));
    }
    assert_eq!(origin.hits("/gzipped"), 1);
    let text = edge.metrics().await;
    assert_eq!(
        value(&text, "edge_decompressions_total{encoding=\"gzip\"}"),
        Some(2.0)
    );
    for encoding in ["br", "zstd", "gzip"] {
        assert_eq!(compressions(&edge, encoding).await, 0.0, "{encoding}");
    }
}

#[tokio::test]
async fn vary_is_merged_and_conditionals_match_the_weak_etag() {
    let origin = MockOrigin::start().await;
    let body = page();
    origin.route(
        "/page",
        html(body.clone()).header("vary", "Accept-Language"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let headers = [("accept-encoding", "br"), ("accept-language", "en")];
    let resp = get_with(&edge.url("/page"), &headers).await;
    assert_eq!(resp.header("content-encoding"), Some("br"));
    let vary: Vec<_> = resp
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(vary, ["Accept-Language", "Accept-Encoding"]);
    assert_eq!(resp.header("etag"), Some("W/\"v1\""));
    // A client revalidating the br body it holds, and one holding the
    // identity body: both 304.
    for (accept, inm) in [("br", "W/\"v1\""), ("identity", "\"v1\""), ("br", "\"v1\"")] {
        let resp = get_with(
            &edge.url("/page"),
            &[
                ("accept-encoding", accept),
                ("accept-language", "en"),
                ("if-none-match", inm),
            ],
        )
        .await;
        assert_eq!(resp.status(), 304, "{accept} {inm}");
        assert!(resp.body().is_empty());
    }
    let changed = get_with(
        &edge.url("/page"),
        &[
            ("accept-encoding", "br"),
            ("accept-language", "en"),
            ("if-none-match", "W/\"v0\""),
        ],
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(decode(Some("br"), changed.body()), body);
    assert_eq!(origin.hits("/page"), 1);
}

#[tokio::test]
async fn ranges_are_answered_from_the_identity_body() {
    let origin = MockOrigin::start().await;
    let body = page();
    origin.route("/page", html(body.clone()));
    let edge = TestEdge::start(&origin.url()).await;
    // On the miss and on the hit.
    for expect in ["MISS", "HIT"] {
        let resp = get_with(
            &edge.url("/page"),
            &[("accept-encoding", "gzip, br"), ("range", "bytes=100-199")],
        )
        .await;
        assert_eq!(resp.status(), 206, "{expect}");
        assert_eq!(resp.x_cache(), expect);
        assert_eq!(resp.header("content-encoding"), None);
        assert_eq!(resp.body(), &body.slice(100..200));
    }
}

#[tokio::test]
async fn a_purge_removes_every_encoding() {
    let origin = MockOrigin::start().await;
    origin.route("/page", html(page()));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret("t".into()));
    })
    .await;
    for accept in ["br", "gzip"] {
        fetch_as(&edge, "/page", Some(accept)).await;
        assert_eq!(
            fetch_as(&edge, "/page", Some(accept)).await.x_cache(),
            "HIT"
        );
    }
    let mut newer = page().to_vec();
    newer.extend_from_slice(b"<p>new version</p>");
    let newer = Bytes::from(newer);
    origin.route("/page", html(newer.clone()));
    let url = edge.url("/page");
    let req = Request::post(edge.admin_url("/purge"))
        .header("authorization", "Bearer t")
        .body(Full::new(Bytes::from(format!(r#"{{"urls": ["{url}"]}}"#))))
        .unwrap();
    assert_eq!(client::fetch(&client::http1(), req).await.status(), 200);
    for (accept, coding) in [("br", "br"), ("gzip", "gzip")] {
        let resp = fetch_as(&edge, "/page", Some(accept)).await;
        assert_eq!(resp.header("content-encoding"), Some(coding));
        assert_eq!(decode(Some(coding), resp.body()), newer, "{accept}");
    }
}

#[tokio::test]
async fn request_spellings_of_accept_encoding_share_the_origins_variants() {
    // An origin that compresses itself and says Vary: Accept-Encoding.
    let origin = MockOrigin::start().await;
    origin.route(
        "/api",
        Reply::echo_header("accept-encoding")
            .header("cache-control", "max-age=600")
            .header("vary", "Accept-Encoding"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    assert_eq!(
        fetch_as(&edge, "/api", Some("gzip, br")).await.x_cache(),
        "MISS"
    );
    for spelling in ["br,gzip", "BR;q=0.9, gzip", "gzip , br, zstd;q=0"] {
        let resp = fetch_as(&edge, "/api", Some(spelling)).await;
        assert_eq!(resp.x_cache(), "HIT", "{spelling}");
        assert_eq!(resp.text(), "gzip, br");
    }
    assert_eq!(
        fetch_as(&edge, "/api", Some("gzip")).await.x_cache(),
        "MISS"
    );
    assert_eq!(origin.hits("/api"), 2);
}

#[tokio::test]
async fn compression_can_be_turned_off_for_a_site_or_a_rule() {
    let origin = MockOrigin::start().await;
    origin.route("/static/app.js", html(page()));
    origin.route("/api/list", html(page()));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        let mut site = SiteConfig {
            name: "shop".into(),
            hosts: vec!["127.0.0.1".into()],
            origins: c.origins.clone(),
            shields: Vec::new(),
            rules: Vec::new(),
            compression: Some(false),
            ..SiteConfig::default()
        };
        site.rules.push(RuleConfig {
            path: Some("/static/".into()),
            compression: Some(true),
            ..RuleConfig::default()
        });
        c.sites.push(site);
    })
    .await;
    let resp = fetch_as(&edge, "/static/app.js", Some("gzip")).await;
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    let resp = fetch_as(&edge, "/api/list", Some("gzip")).await;
    assert_eq!(resp.header("content-encoding"), None);
    assert_eq!(resp.header("vary"), None);

    let off = TestEdge::start_with(&origin.url(), |c| c.compression.enabled = false).await;
    let resp = fetch_as(&off, "/static/app.js", Some("gzip")).await;
    assert_eq!(resp.header("content-encoding"), None);
}

#[tokio::test]
async fn passes_and_uncacheable_responses_are_compressed_on_the_fly() {
    let origin = MockOrigin::start().await;
    let body = page();
    origin.route(
        "/private",
        Reply::ok(body.clone())
            .header("content-type", "application/json")
            .header("cache-control", "private"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    for _ in 0..2 {
        let resp = fetch_as(&edge, "/private", Some("zstd")).await;
        assert_eq!(resp.header("content-encoding"), Some("zstd"));
        assert_eq!(resp.header("content-length"), None);
        assert_eq!(decode(Some("zstd"), resp.body()), body);
    }
    let post = Request::post(edge.url("/private"))
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let resp = client::fetch(&client::http1(), post).await;
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(decode(Some("gzip"), resp.body()), body);
    assert_eq!(compressions(&edge, "zstd").await, 2.0);
}
