//! The cache inspector (`GET /cache/inspect?url=URL` on the admin
//! listener): a fresh, a stale, a Vary'd, a sliced, a purged and an absent
//! object, stored encodings; an unknown host; the purge token; never a
//! body nor a stored `Set-Cookie`.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use edge::Config;
use edge::config::Secret;
use edge_tests::client::{self, get, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, eventually};
use http::{Request, Response};
use http_body_util::Full;
use serde_json::Value;

const TOKEN: &str = "inspect-token-for-tests";

async fn edge_for(origin: &MockOrigin) -> TestEdge {
    TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.cache.allow_set_cookie = true;
        c.cache.slice_size = "64KiB".parse().expect("size");
    })
    .await
}

/// `url` as a percent-encoded query value.
fn encoded(url: &str) -> String {
    edge::inspect::query_value(url)
}

async fn ask(edge: &TestEdge, url: &str, token: Option<&str>) -> Response<Bytes> {
    let mut req = Request::get(edge.admin_url(&format!("/cache/inspect?url={}", encoded(url))));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    client::fetch(&client::http1(), req).await
}

/// The inspector's JSON for `url` (asserting a 200).
async fn inspect(edge: &TestEdge, url: &str) -> Value {
    let resp = ask(edge, url, Some(TOKEN)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    serde_json::from_slice(resp.body()).expect("json")
}

async fn purge(edge: &TestEdge, body: &str) {
    let req = Request::post(edge.admin_url("/purge"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = client::fetch(&client::http1(), req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
}

fn header_names(variant: &Value) -> Vec<String> {
    variant["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| pair[0].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn a_fresh_object_then_stale_as_the_clock_moves() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/a.css",
        Reply::ok("body-marker-never-shown")
            .header(
                "cache-control",
                "max-age=600, stale-while-revalidate=30, stale-if-error=300",
            )
            .header("etag", "\"v1\"")
            .header("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT")
            .header("surrogate-key", "css product-7"),
    );
    let edge = edge_for(&origin).await;
    let url = edge.url("/a.css");
    assert_eq!(get(&url).await.x_cache(), "MISS");

    let seen = inspect(&edge, &url).await;
    assert_eq!(seen["stored"], true, "{seen:#}");
    assert_eq!(seen["cacheable"], true);
    assert_eq!(seen["vary"], Value::Null);
    let variants = seen["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 1);
    let v = &variants[0];
    assert_eq!(v["status"], 200);
    assert_eq!(v["size"], "body-marker-never-shown".len());
    assert_eq!(v["layout"], "inline");
    assert!(
        v["tiers"].as_array().unwrap().contains(&"memory".into()),
        "{v:#}"
    );
    assert_eq!(v["sliced"], false);
    assert_eq!(v["servable"], true);
    assert_eq!(v["freshness_source"], "max-age");
    let f = &v["freshness"];
    assert_eq!(f["state"], "fresh");
    assert_eq!(f["lifetime_secs"], 600);
    assert!(f["age_secs"].as_u64().unwrap() <= 2, "{f:#}");
    assert!(f["fresh_for_secs"].as_u64().unwrap() >= 598, "{f:#}");
    assert_eq!(f["stale_while_revalidate"]["window_secs"], 30);
    assert_eq!(f["stale_while_revalidate"]["left_secs"], 30);
    assert_eq!(f["stale_if_error"]["window_secs"], 300);
    assert_eq!(v["validators"]["etag"], "\"v1\"");
    assert_eq!(
        v["validators"]["last_modified"],
        "Tue, 01 Dec 2026 10:00:00 GMT"
    );
    assert_eq!(v["tags"], serde_json::json!(["css", "product-7"]));
    assert_eq!(v["purge"]["verdict"], "valid");
    assert_eq!(v["purge"]["rules"], serde_json::json!([]));
    let text = serde_json::to_string(&seen).unwrap();
    assert!(!text.contains("body-marker"), "never a body: {text}");

    // 610 s later: stale, 10 s into its stale-while-revalidate window.
    edge.advance(Duration::from_secs(610));
    let seen = inspect(&edge, &url).await;
    let f = &seen["variants"][0]["freshness"];
    assert_eq!(f["state"], "stale-while-revalidate", "{f:#}");
    assert_eq!(f["fresh_for_secs"], 0);
    let stale_for = f["stale_for_secs"].as_u64().unwrap();
    assert!((10..=12).contains(&stale_for), "{f:#}");
    let left = f["stale_while_revalidate"]["left_secs"].as_u64().unwrap();
    assert!((18..=20).contains(&left), "{f:#}");
    // Past the window: the next request revalidates; stale-if-error
    // still has time left.
    edge.advance(Duration::from_secs(100));
    let seen = inspect(&edge, &url).await;
    let f = &seen["variants"][0]["freshness"];
    assert_eq!(f["state"], "revalidate", "{f:#}");
    assert_eq!(f["stale_while_revalidate"]["left_secs"], 0);
    assert!(f["stale_if_error"]["left_secs"].as_u64().unwrap() > 150);
    assert_eq!(origin.hits("/a.css"), 1, "inspecting never fetches");
}

#[tokio::test]
async fn vary_variants_are_listed_with_their_request_values() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/page",
        Reply::echo_header("accept-language")
            .header("cache-control", "max-age=600")
            .header("vary", "Accept-Language"),
    );
    let edge = edge_for(&origin).await;
    let url = edge.url("/page");
    for lang in ["en", "fr"] {
        let resp = get_with(&url, &[("accept-language", lang)]).await;
        assert_eq!(resp.x_cache(), "MISS");
    }
    let seen = inspect(&edge, &url).await;
    assert_eq!(seen["stored"], true, "{seen:#}");
    assert_eq!(
        seen["vary"]["fields"],
        serde_json::json!(["accept-language"])
    );
    let mut langs: Vec<String> = seen["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["freshness"]["state"], "fresh");
            v["selector"]["accept-language"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    langs.sort();
    assert_eq!(langs, ["en", "fr"]);
    let keys: Vec<&Value> = seen["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["object_key"])
        .collect();
    assert_ne!(keys[0], keys[1], "each variant has its own key");
}

#[tokio::test]
async fn stored_encodings_are_listed_with_their_sizes() {
    let origin = MockOrigin::start().await;
    let mut page = String::new();
    for i in 0..4000 {
        page.push_str(&format!("<li>item {i}</li>\n"));
    }
    let len = page.len();
    origin.route(
        "/list.html",
        Reply::ok(page)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "max-age=600")
            .header("etag", "\"l1\""),
    );
    let edge = edge_for(&origin).await;
    let url = edge.url("/list.html");
    for coding in ["br", "gzip"] {
        let resp = get_with(&url, &[("accept-encoding", coding)]).await;
        assert_eq!(resp.header("content-encoding"), Some(coding));
    }
    eventually("both encodings stored", async || {
        let seen = inspect(&edge, &url).await;
        seen["variants"][0]["encodings"]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    })
    .await;
    let seen = inspect(&edge, &url).await;
    let v = &seen["variants"][0];
    assert_eq!(v["size"], len);
    let encodings = v["encodings"].as_array().unwrap();
    let names: Vec<&str> = encodings
        .iter()
        .map(|e| e["encoding"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["br", "gzip"], "{v:#}");
    for e in encodings {
        let size = e["size"].as_u64().unwrap();
        assert!(size > 0 && size < len as u64 / 2, "{e}");
        assert!(e["tiers"].as_array().unwrap().contains(&"memory".into()));
    }
}

#[tokio::test]
async fn a_sliced_object_lists_the_slices_held() {
    let origin = MockOrigin::start().await;
    let body = Bytes::from(vec![b'x'; 512 << 10]);
    origin.route(
        "/movie.mp4",
        Reply::file(body)
            .header("cache-control", "max-age=600")
            .header("etag", "\"m1\""),
    );
    let edge = edge_for(&origin).await;
    let url = edge.url("/movie.mp4");
    // Slice 0, then slice 3 (64 KiB slices).
    for range in ["bytes=0-99", "bytes=200000-200099"] {
        let resp = get_with(&url, &[("range", range)]).await;
        assert_eq!(resp.status(), 206, "{range}");
    }
    let seen = inspect(&edge, &url).await;
    let v = &seen["variants"][0];
    assert_eq!(v["sliced"], true, "{seen:#}");
    assert_eq!(v["layout"], "sliced");
    assert_eq!(v["size"], 512 << 10);
    let slices = &v["slices"];
    assert_eq!(slices["slice_size"], 64 << 10);
    assert_eq!(slices["count"], 8);
    assert_eq!(slices["checked"], 8);
    assert_eq!(slices["held"], serde_json::json!([0, 3]), "{slices:#}");
}

#[tokio::test]
async fn purged_objects_show_the_rules_covering_them() {
    let origin = MockOrigin::start().await;
    for path in ["/img/a.png", "/img/b.png"] {
        origin.route(
            path,
            Reply::ok("png")
                .header("cache-control", "max-age=600")
                .header("cache-tag", "images"),
        );
    }
    let edge = edge_for(&origin).await;
    let (a, b) = (edge.url("/img/a.png"), edge.url("/img/b.png"));
    get(&a).await;
    get(&b).await;
    // A hard tag purge covers both; a soft prefix purge only matters for
    // what is not hard-purged, so b is refetched first.
    purge(&edge, r#"{"tags": ["images"]}"#).await;
    let seen = inspect(&edge, &a).await;
    let v = &seen["variants"][0];
    assert_eq!(seen["stored"], true, "the bytes are still there: {seen:#}");
    assert_eq!(v["servable"], false);
    assert_eq!(v["freshness"], Value::Null);
    assert_eq!(v["purge"]["verdict"], "purged");
    let rules = v["purge"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["kind"], "tag");
    assert_eq!(rules[0]["selector"], "images");
    assert_eq!(rules[0]["covers"], true);
    assert!(rules[0]["hard_at"].is_string());

    edge.advance(Duration::from_secs(1));
    assert_eq!(get(&b).await.x_cache(), "MISS");
    let authority = edge.addr().to_string();
    purge(
        &edge,
        &format!(r#"{{"prefixes": ["{authority}/img"], "soft": true}}"#),
    )
    .await;
    let seen = inspect(&edge, &b).await;
    let v = &seen["variants"][0];
    assert_eq!(v["servable"], true);
    assert_eq!(v["purge"]["verdict"], "soft-purged", "{v:#}");
    assert_eq!(v["freshness"]["state"], "revalidate");
    let rules = v["purge"]["rules"].as_array().unwrap();
    let tag = rules.iter().find(|r| r["kind"] == "tag").expect("tag rule");
    assert_eq!(tag["covers"], false, "stored after the tag purge");
    let prefix = rules
        .iter()
        .find(|r| r["kind"] == "prefix")
        .expect("prefix");
    assert_eq!(prefix["covers"], true);
    assert!(prefix["soft_at"].is_string());
}

#[tokio::test]
async fn a_url_purge_drops_the_object_and_names_the_url() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/gone",
        Reply::ok("x").header("cache-control", "max-age=600"),
    );
    let edge = edge_for(&origin).await;
    let url = edge.url("/gone");
    get(&url).await;
    assert_eq!(
        inspect(&edge, &url).await["url_rules"],
        serde_json::json!([])
    );
    purge(&edge, &format!(r#"{{"urls": ["{url}"]}}"#)).await;
    let seen = inspect(&edge, &url).await;
    assert_eq!(seen["stored"], false, "{seen:#}");
    let rules = seen["url_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["kind"], "url");
    assert_eq!(rules[0]["selector"], seen["key"]);
    assert!(rules[0]["hard_at"].is_string());
}

#[tokio::test]
async fn absent_objects_and_unknown_hosts() {
    let origin = MockOrigin::start().await;
    let edge = edge_for(&origin).await;
    let seen = inspect(&edge, &edge.url("/never-asked")).await;
    assert_eq!(seen["stored"], false);
    assert_eq!(seen["variants"], serde_json::json!([]));
    assert!(seen["key"].is_string());

    let resp = ask(&edge, "not a url", Some(TOKEN)).await;
    assert_eq!(resp.status(), 400, "{}", resp.text());
    let resp = client::fetch(
        &client::http1(),
        Request::get(edge.admin_url("/cache/inspect"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), 400, "no url: {}", resp.text());

    // A node whose sites all name their hosts: another host is no guess.
    let text = format!(
        "origins = [\"{}\"]\n[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n",
        origin.url(),
        origin.url()
    );
    let sites = Config::from_toml(&text, Path::new("inspect-test.toml"))
        .expect("config")
        .sites;
    let shop = TestEdge::start_with(&origin.url(), |c| {
        c.origins.clear();
        c.sites = sites;
        c.purge.token = Some(Secret(TOKEN.into()));
    })
    .await;
    let resp = ask(&shop, "http://elsewhere.example/a", Some(TOKEN)).await;
    assert_eq!(resp.status(), 404, "{}", resp.text());
    assert!(resp.text().contains("elsewhere.example"), "{}", resp.text());
    let known = inspect(&shop, "http://shop.example/a").await;
    assert_eq!(known["site"], "shop");
    assert_eq!(known["stored"], false);
}

#[tokio::test]
async fn the_purge_token_guards_it() {
    let origin = MockOrigin::start().await;
    let edge = edge_for(&origin).await;
    let url = edge.url("/a");
    assert_eq!(ask(&edge, &url, None).await.status(), 401);
    assert_eq!(
        ask(&edge, &url, Some("wrong-token-here")).await.status(),
        403
    );
    assert_eq!(ask(&edge, &url, Some(TOKEN)).await.status(), 200);
}

#[tokio::test]
async fn a_stored_set_cookie_is_never_shown() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/login",
        Reply::ok("welcome")
            .header("cache-control", "max-age=600")
            .header("set-cookie", "session=secret-session-id"),
    );
    let edge = edge_for(&origin).await;
    let url = edge.url("/login");
    get(&url).await;
    assert_eq!(get(&url).await.x_cache(), "HIT", "stored with its cookie");
    let seen = inspect(&edge, &url).await;
    let v = &seen["variants"][0];
    let names = header_names(v);
    assert!(names.contains(&"cache-control".to_owned()), "{names:?}");
    assert!(!names.contains(&"set-cookie".to_owned()), "{names:?}");
    let text = serde_json::to_string(&seen).unwrap();
    assert!(!text.contains("secret-session-id"), "{text}");
    assert!(!text.contains("welcome"), "never a body: {text}");
}

#[tokio::test]
async fn the_url_is_keyed_as_requests_are_query_rules_included() {
    let origin = MockOrigin::start().await;
    origin.fallback(|_| Reply::ok("q").header("cache-control", "max-age=600"));
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.cache.key_ignore_query_params = vec!["utm_source".into()];
        c.cache.key_sort_query = true;
    })
    .await;
    get(&edge.url("/q?b=2&utm_source=mail&a=1")).await;
    for same in ["/q?a=1&b=2", "/q?utm_source=x&b=2&a=1"] {
        let seen = inspect(&edge, &edge.url(same)).await;
        assert_eq!(seen["stored"], true, "{same}: {seen:#}");
    }
    let other = inspect(&edge, &edge.url("/q?a=1")).await;
    assert_eq!(other["stored"], false);
    // The port is part of the key unless it is the scheme's default.
    let port = edge.addr().port();
    let elsewhere = inspect(&edge, &format!("http://localhost:{port}/q?a=1&b=2")).await;
    assert_eq!(elsewhere["stored"], false, "another host is another object");
}

#[tokio::test]
async fn a_one_hit_object_stays_in_memory_and_a_second_request_writes_it_to_disk() {
    let origin = MockOrigin::start().await;
    for path in ["/once", "/twice"] {
        origin.route(path, Reply::ok("x").header("cache-control", "max-age=600"));
    }
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret(TOKEN.into()));
        c.cache.disk_admission = edge::config::DiskAdmissionMode::Frequency;
        c.cache.disk_admission_requests = 2;
    })
    .await;
    let tiers = async |path: &str| {
        let seen = inspect(&edge, &edge.url(path)).await;
        seen["variants"][0]["tiers"].clone()
    };
    assert_eq!(get(&edge.url("/once")).await.x_cache(), "MISS");
    assert_eq!(get(&edge.url("/twice")).await.x_cache(), "MISS");
    assert_eq!(get(&edge.url("/twice")).await.x_cache(), "HIT");
    eventually("the twice-requested object on disk", async || {
        tiers("/twice").await == serde_json::json!(["memory", "disk"])
    })
    .await;
    assert_eq!(tiers("/once").await, serde_json::json!(["memory"]));
}
