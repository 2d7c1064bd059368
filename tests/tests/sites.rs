//! Several sites per node, each with its own origins and per-path rules
//! (issue 18), end to end: real origins, a real edge, `Host` choosing the
//! site.

use std::path::Path;
use std::time::Duration;

use edge::Config;
use edge::config::SiteConfig;
use edge_tests::client::{get, get_with};
use edge_tests::metrics::value;
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge};

/// `[[sites]]` tables parsed as the config file would be.
fn sites(toml: &str) -> Vec<SiteConfig> {
    let text = format!("origins = [\"http://127.0.0.1:9\"]\n{toml}");
    Config::from_toml(&text, Path::new("sites-test.toml"))
        .expect("a valid sites config")
        .sites
}

fn host(name: &str) -> [(&str, &str); 1] {
    [("host", name)]
}

#[tokio::test]
async fn each_host_reaches_its_own_site_and_unknown_hosts_the_default() {
    let default = MockOrigin::start().await;
    let shop = MockOrigin::start().await;
    let blog = MockOrigin::start().await;
    for (origin, body) in [(&default, "default"), (&shop, "shop"), (&blog, "blog")] {
        origin.route("/", Reply::ok(body).header("cache-control", "max-age=60"));
    }
    let list = sites(&format!(
        r#"
[[sites]]
name = "shop"
hosts = ["shop.example", "*.shop.example"]
origins = ["{}"]

[[sites]]
name = "blog"
hosts = ["blog.example"]
origins = ["{}"]
"#,
        shop.url(),
        blog.url()
    ));
    let edge = TestEdge::start_with(&default.url(), |c| c.sites = list).await;
    for (name, body) in [
        ("shop.example", "shop"),
        ("www.shop.example:8080", "shop"),
        ("a.b.shop.example", "shop"),
        ("BLOG.example", "blog"),
        ("other.example", "default"),
        ("shop.example.org", "default"),
    ] {
        let resp = get_with(&edge.url("/"), &host(name)).await;
        assert_eq!(resp.text(), body, "Host {name}");
    }
    // Cached per host: a second round is all hits, one fetch per host.
    let again = get_with(&edge.url("/"), &host("blog.example")).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(blog.hits("/"), 1);
    assert_eq!(shop.hits("/"), 3, "three shop host names, one object each");
}

#[tokio::test]
async fn without_a_default_site_an_unknown_host_is_misdirected() {
    let shop = MockOrigin::start().await;
    let list = sites(&format!(
        "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n",
        shop.url()
    ));
    let edge = TestEdge::start_with(&shop.url(), |c| {
        c.origins.clear();
        c.sites = list;
    })
    .await;
    let known = get_with(&edge.url("/"), &host("shop.example")).await;
    assert_eq!(known.status(), 200);
    let unknown = get_with(&edge.url("/"), &host("elsewhere.example")).await;
    assert_eq!(unknown.status(), 421);
    assert!(
        unknown.text().contains("elsewhere.example"),
        "{}",
        unknown.text()
    );
    assert_eq!(shop.total_hits(), 1, "the unknown host reached no origin");
}

/// One site in front of `origin` with these rules, for host `shop.example`.
async fn shop_with_rules(origin: &MockOrigin, rules: &str) -> TestEdge {
    let list = sites(&format!(
        "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n{rules}",
        origin.url()
    ));
    TestEdge::start_with(&origin.url(), |c| c.sites = list).await
}

async fn shop_get(edge: &TestEdge, path: &str) -> http::Response<bytes::Bytes> {
    get_with(&edge.url(path), &host("shop.example")).await
}

#[tokio::test]
async fn bypass_passes_every_request_to_the_origin() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/api/cart",
        Reply::ok("cart").header("cache-control", "max-age=600"),
    );
    origin.route(
        "/apix",
        Reply::ok("not the api").header("cache-control", "max-age=600"),
    );
    let edge = shop_with_rules(
        &origin,
        "[[sites.rules]]\npath = \"/api/\"\ncache = \"bypass\"\n",
    )
    .await;
    for _ in 0..3 {
        let resp = shop_get(&edge, "/api/cart").await;
        assert_eq!(resp.x_cache(), "PASS");
        assert_eq!(resp.text(), "cart");
    }
    assert_eq!(origin.hits("/api/cart"), 3);
    // Whole segments only: /apix is not under /api/.
    shop_get(&edge, "/apix").await;
    assert_eq!(shop_get(&edge, "/apix").await.x_cache(), "HIT");
}

#[tokio::test]
async fn ttl_caches_what_the_origin_leaves_silent_and_ttl_status_caches_404s_for_a_while() {
    let origin = MockOrigin::start().await;
    origin.route("/static/app.js", Reply::ok("js"));
    origin.route("/static/gone", Reply::ok("nothing here").status(404));
    origin.route("/elsewhere", Reply::ok("plain"));
    let edge = shop_with_rules(
        &origin,
        r#"
[[sites.rules]]
path = "/static/"
ttl = "1h"
ttl_status = { 404 = "30s" }
"#,
    )
    .await;
    assert_eq!(shop_get(&edge, "/static/app.js").await.x_cache(), "MISS");
    let hit = shop_get(&edge, "/static/app.js").await;
    assert_eq!(hit.x_cache(), "HIT");
    let ttl: i64 = hit
        .cache_status()
        .rsplit("ttl=")
        .next()
        .and_then(|t| t.parse().ok())
        .expect("a ttl");
    assert!((3599..=3600).contains(&ttl), "the rule's hour: {ttl}");
    // Outside the rule, the same silent response is not reused.
    shop_get(&edge, "/elsewhere").await;
    assert_eq!(shop_get(&edge, "/elsewhere").await.x_cache(), "MISS");

    let first = shop_get(&edge, "/static/gone").await;
    assert_eq!((first.status().as_u16(), first.x_cache()), (404, "MISS"));
    let cached = shop_get(&edge, "/static/gone").await;
    assert_eq!((cached.status().as_u16(), cached.x_cache()), (404, "HIT"));
    assert_eq!(origin.hits("/static/gone"), 1);
    edge.advance(Duration::from_secs(31));
    let later = shop_get(&edge, "/static/gone").await;
    assert_ne!(later.x_cache(), "HIT", "a 404 is kept 30 s, not longer");
    assert_eq!(origin.hits("/static/gone"), 2);
}

#[tokio::test]
async fn stale_if_error_serves_the_last_good_copy_while_the_origin_fails() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/page",
        Reply::ok("last good").header("cache-control", "max-age=1"),
    );
    let edge = shop_with_rules(
        &origin,
        "[[sites.rules]]\npath = \"/\"\nstale_if_error = \"10m\"\n",
    )
    .await;
    assert_eq!(shop_get(&edge, "/page").await.text(), "last good");
    origin.route("/page", Reply::ok("down").status(503));
    edge.advance(Duration::from_secs(5));
    let stale = shop_get(&edge, "/page").await;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.text(), "last good");
    assert_eq!(stale.x_cache(), "STALE");
    assert!(stale.cache_status().contains("detail=stale-if-error"));
    // Past the window the error shows.
    edge.advance(Duration::from_secs(600));
    let failed = shop_get(&edge, "/page").await;
    assert_eq!(failed.status(), 503);
}

#[tokio::test]
async fn header_rules_edit_requests_upstream_and_every_response() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/h",
        Reply::ok("h")
            .header("cache-control", "max-age=60")
            .header("server", "origin/1.0")
            .header("x-powered-by", "php"),
    );
    let edge = shop_with_rules(
        &origin,
        r#"
[[sites.rules]]
request_headers = { set = { "X-Site" = "shop" }, remove = ["X-Debug"] }
response_headers = { set = { "Strict-Transport-Security" = "max-age=31536000" }, remove = ["Server", "X-Powered-By"] }
"#,
    )
    .await;
    let req = [("host", "shop.example"), ("x-debug", "1")];
    let miss = get_with(&edge.url("/h"), &req).await;
    let hit = get_with(&edge.url("/h"), &req).await;
    for (resp, what) in [(&miss, "MISS"), (&hit, "HIT")] {
        assert_eq!(resp.x_cache(), what);
        assert_eq!(
            resp.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{what}"
        );
        assert_eq!(resp.header("server"), None, "{what}");
        assert_eq!(resp.header("x-powered-by"), None, "{what}");
    }
    let seen = origin.requests("/h");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-site"], "shop");
    assert!(!seen[0].headers.contains_key("x-debug"));
}

#[tokio::test]
async fn redirect_rules_answer_without_the_origin() {
    let origin = MockOrigin::start().await;
    let edge = shop_with_rules(
        &origin,
        r#"
[[sites.rules]]
path = "/old/"
redirect = { to = "https://shop.example/new/", status = 301, keep_path = true }

[[sites.rules]]
path = "/promo"
redirect = { to = "/sale", status = 302 }
"#,
    )
    .await;
    let moved = shop_get(&edge, "/old/a/b?c=1").await;
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.header("location"),
        Some("https://shop.example/new/a/b?c=1")
    );
    let promo = shop_get(&edge, "/promo").await;
    assert_eq!(promo.status(), 302);
    assert_eq!(promo.header("location"), Some("/sale"));
    assert_eq!(origin.total_hits(), 0);
}

#[tokio::test]
async fn the_admin_listener_shows_the_sites_and_metrics_count_by_site() {
    let default = MockOrigin::start().await;
    let shop = MockOrigin::start().await;
    shop.route("/x", Reply::ok("x").header("cache-control", "max-age=60"));
    let list = sites(&format!(
        r#"
[[sites]]
name = "shop"
hosts = ["shop.example"]
origins = ["{}"]

[[sites.rules]]
path = "/api/"
cache = "bypass"
"#,
        shop.url()
    ));
    let edge = TestEdge::start_with(&default.url(), |c| c.sites = list).await;
    let described = get(&edge.admin_url("/sites")).await;
    assert_eq!(described.status(), 200);
    let json: serde_json::Value = serde_json::from_str(&described.text()).expect("JSON");
    let names: Vec<&str> = json["sites"]
        .as_array()
        .expect("a list of sites")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["default", "shop"]);
    assert!(described.text().contains("/api/"), "{}", described.text());

    shop_get(&edge, "/x").await;
    shop_get(&edge, "/x").await;
    let text = edge.metrics().await;
    let hits = value(
        &text,
        "edge_requests_total{body_end=\"complete\",cache_status=\"HIT\",site=\"shop\",status_class=\"2xx\"}",
    );
    assert_eq!(hits, Some(1.0), "{text}");
}

#[tokio::test]
async fn purges_address_a_sites_objects_by_host_and_prefix() {
    let default = MockOrigin::start().await;
    let shop = MockOrigin::start().await;
    for path in ["/a", "/img/1"] {
        shop.route(
            path,
            Reply::ok("shop").header("cache-control", "max-age=600"),
        );
    }
    default.route(
        "/a",
        Reply::ok("default").header("cache-control", "max-age=600"),
    );
    let list = sites(&format!(
        "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"{}\"]\n",
        shop.url()
    ));
    let token = "sites-purge-token";
    let edge = TestEdge::start_with(&default.url(), |c| {
        c.sites = list;
        c.purge.token = Some(edge::config::Secret(token.into()));
    })
    .await;
    let warm = |host: &'static str, path: &'static str| {
        let edge = &edge;
        async move {
            get_with(&edge.url(path), &[("host", host)]).await;
            get_with(&edge.url(path), &[("host", host)])
                .await
                .x_cache()
                .to_owned()
        }
    };
    assert_eq!(warm("shop.example", "/a").await, "HIT");
    assert_eq!(warm("shop.example", "/img/1").await, "HIT");
    assert_eq!(warm("other.example", "/a").await, "HIT");
    let purge = |body: &'static str| {
        let url = edge.admin_url("/purge");
        async move {
            let req = http::Request::post(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .expect("request");
            let resp = edge_tests::client::fetch(&edge_tests::client::http1(), req).await;
            assert_eq!(resp.status(), 200, "{}", resp.text());
        }
    };
    purge(r#"{"prefixes": ["shop.example/img"]}"#).await;
    let after = |host: &'static str, path: &'static str| {
        let edge = &edge;
        async move {
            get_with(&edge.url(path), &[("host", host)])
                .await
                .x_cache()
                .to_owned()
        }
    };
    assert_eq!(after("shop.example", "/img/1").await, "MISS");
    assert_eq!(after("shop.example", "/a").await, "HIT");
    purge(r#"{"hosts": ["shop.example"]}"#).await;
    assert_eq!(after("shop.example", "/a").await, "MISS");
    assert_eq!(
        after("other.example", "/a").await,
        "HIT",
        "another site's objects stay"
    );
}
