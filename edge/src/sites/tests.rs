//! `Sites` compiled from TOML as an operator writes it: site choice, rule
//! choice, the policies they stand for and the JSON of `GET /sites`.

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;
use crate::config::CacheMode;

const SHOP: &str = r#"
origins = ["http://127.0.0.1:9000"]

[[sites]]
name = "shop"
hosts = ["shop.example", "*.shop.example"]
origins = ["http://127.0.0.1:9001"]

[[sites.rules]]
path = "/api/"
methods = ["GET", "head"]
cache = "bypass"

[[sites.rules]]
path_regex = "^/v[0-9]+/"
ttl = "5m"

[[sites.rules]]
path = "/static/"
ttl = "1h"
ttl_override = true
ttl_status = { 404 = "30s", 410 = "5m" }
stale_if_error = "10m"
stale_while_revalidate = "30s"
request_headers  = { set = { "X-Site" = "shop" }, remove = ["X-Debug"] }
response_headers = { set = { "Strict-Transport-Security" = "max-age=31536000" }, remove = ["Server"] }

[[sites.rules]]
path = "/old/"
redirect = { to = "https://shop.example/new/", status = 301, keep_path = true }

[[sites]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:9002"]
"#;

fn compile(toml: &str) -> Sites {
    let config = Config::from_toml(toml, Path::new("test.toml")).expect("config");
    Sites::compile(&config).expect("sites")
}

#[test]
fn the_default_site_comes_first_and_catches_unknown_hosts() {
    let sites = compile(SHOP);
    let names: Vec<(&str, usize, bool)> = sites
        .all()
        .iter()
        .map(|s| (s.name.as_str(), s.index, s.is_default))
        .collect();
    assert_eq!(
        names,
        [("default", 0, true), ("shop", 1, false), ("blog", 2, false)]
    );
    // Host, site
    let cases = [
        ("shop.example", "shop"),
        ("www.shop.example:8080", "shop"),
        ("BLOG.example.", "blog"),
        ("www.blog.example", "default"),
        ("unknown.test", "default"),
        ("127.0.0.1:8080", "default"),
    ];
    for (host, want) in cases {
        let site = sites.site_for(host).expect(host);
        assert_eq!(site.name, want, "{host}");
        assert_eq!(sites.get(site.index).map(|s| &s.name), Some(&site.name));
    }
    assert_eq!(sites.default_site().map(|s| s.index), Some(0));
    assert_eq!(sites.by_name("blog").map(|s| s.index), Some(2));
    assert_eq!(
        sites.get(1).map(|s| s.origins[0].to_string()),
        Some("http://127.0.0.1:9001".to_owned())
    );
    assert!(sites.get(3).is_none());
}

#[test]
fn without_top_level_origins_there_is_no_default_site() {
    let sites = compile(&SHOP.replacen(r#"origins = ["http://127.0.0.1:9000"]"#, "", 1));
    assert_eq!(sites.all().len(), 2);
    assert_eq!(sites.all()[0].name, "shop");
    assert_eq!(sites.all()[0].index, 0);
    assert!(sites.default_site().is_none());
    assert!(sites.site_for("unknown.test").is_none());
    assert_eq!(sites.site_for("blog.example").map(|s| s.index), Some(1));
}

#[test]
fn a_node_without_sites_is_one_default_site_and_none_without_origins() {
    let sites = compile(r#"origins = ["http://127.0.0.1:9000"]"#);
    assert_eq!(sites.all().len(), 1);
    let site = sites.site_for("anything").expect("default");
    assert!(site.is_default && !site.has_rules());
    assert!(site.policy(&Method::GET, "/").is_default());
    assert!(compile("").all().is_empty());
}

#[test]
fn rules_select_policies() {
    let sites = compile(SHOP);
    let shop = sites.by_name("shop").expect("shop");
    // method, path, rule
    let cases: &[(Method, &str, Option<usize>)] = &[
        (Method::GET, "/api/cart", Some(0)),
        (Method::HEAD, "/api", Some(0)),
        (Method::POST, "/api/cart", None),
        (Method::GET, "/apis", None),
        (Method::GET, "/v2/items", Some(1)),
        (Method::POST, "/v2/items", Some(1)),
        (Method::GET, "/static/a.css", Some(2)),
        (Method::GET, "/old/a", Some(3)),
        (Method::GET, "/", None),
    ];
    for (method, path, want) in cases {
        let policy = shop.policy(method, path);
        assert_eq!(policy.rule, *want, "{method} {path}");
        assert_eq!(policy.is_default(), want.is_none(), "{method} {path}");
    }

    assert_eq!(shop.policy(&Method::GET, "/api/x").cache, CacheMode::Bypass);
    let s = shop.policy(&Method::GET, "/static/a.css");
    assert_eq!(s.cache, CacheMode::Default);
    assert_eq!(s.ttl, Some(Duration::from_secs(3600)));
    assert!(s.ttl_override);
    assert_eq!(
        s.ttl_status,
        [
            (404, Duration::from_secs(30)),
            (410, Duration::from_secs(300))
        ]
    );
    assert_eq!(s.ttl_for_status(404), Some(Duration::from_secs(30)));
    assert_eq!(s.stale_if_error, Some(Duration::from_secs(600)));
    assert_eq!(s.stale_while_revalidate, Some(Duration::from_secs(30)));

    let mut req = HeaderMap::new();
    req.insert("x-debug", HeaderValue::from_static("1"));
    s.request_headers.apply(&mut req);
    assert_eq!(req.get("x-site").map(|v| v.as_bytes()), Some(&b"shop"[..]));
    assert!(req.get("x-debug").is_none());

    let old = shop.policy(&Method::GET, "/old/a/b");
    let redirect = old.redirect.as_ref().expect("redirect");
    assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        redirect.location("/old/a/b?page=2"),
        "https://shop.example/new/a/b?page=2"
    );

    let blog = sites.by_name("blog").expect("blog");
    assert!(!blog.has_rules());
    assert!(blog.policy(&Method::GET, "/api/x").is_default());
}

#[test]
fn describe_prints_the_rules_as_configured() {
    let sites = compile(SHOP);
    let shop = sites.by_name("shop").expect("shop");
    let rules = shop.describe();
    assert_eq!(rules.as_array().map(Vec::len), Some(4));
    assert_eq!(rules[0]["path"], "/api/");
    assert_eq!(rules[0]["methods"], serde_json::json!(["GET", "head"]));
    assert_eq!(rules[0]["cache"], "bypass");
    assert_eq!(rules[1]["path_regex"], "^/v[0-9]+/");
    assert_eq!(rules[1]["path"], serde_json::Value::Null);
    assert_eq!(rules[2]["ttl"], "1h");
    assert_eq!(rules[2]["ttl_status"]["404"], "30s");
    assert_eq!(rules[2]["stale_if_error"], "10m");
    assert_eq!(rules[2]["request_headers"]["set"]["X-Site"], "shop");
    assert_eq!(rules[2]["response_headers"]["remove"][0], "Server");
    assert_eq!(rules[3]["redirect"]["status"], 301);
    assert_eq!(rules[3]["redirect"]["keep_path"], true);

    let all = sites.describe();
    assert_eq!(all[0]["name"], "default");
    assert_eq!(all[0]["default"], true);
    assert_eq!(all[1]["hosts"][1], "*.shop.example");
    assert_eq!(all[1]["origins"][0], "http://127.0.0.1:9001");
    assert_eq!(all[1]["rules"], rules);
    assert_eq!(all[2]["rules"], serde_json::json!([]));
}

#[test]
fn what_validation_should_catch_is_an_error_not_a_panic() {
    let site = |hosts: &str, rule: &str| {
        format!(
            "[[sites]]\nname = \"s\"\nhosts = {hosts}\norigins = [\"http://127.0.0.1:1\"]\n\
             [[sites.rules]]\n{rule}\n"
        )
    };
    // config, the start of the error
    let cases = [
        (site(r#"["a.*.example"]"#, ""), "site \"s\": host"),
        (
            site(r#"["s.example"]"#, r#"path_regex = "[""#),
            "site \"s\" rules[0]: path_regex",
        ),
        (
            site(r#"["s.example"]"#, r#"methods = ["G T"]"#),
            "site \"s\" rules[0]: method",
        ),
        (
            site(
                r#"["s.example"]"#,
                r#"request_headers = { remove = ["a b"] }"#,
            ),
            "site \"s\" rules[0]: \"a b\" is not a valid header name",
        ),
        (
            site(
                r#"["s.example"]"#,
                r#"redirect = { to = "/x", status = 200 }"#,
            ),
            "site \"s\" rules[0]: redirect",
        ),
    ];
    for (toml, want) in cases {
        let config = Config::from_toml(&toml, Path::new("t.toml")).expect("parses");
        let err = Sites::compile(&config).expect_err(want);
        assert!(err.to_string().starts_with(want), "{err} vs {want}");
    }
}

#[test]
fn a_reload_keeps_the_buckets_of_unchanged_limits_only() {
    let text = |rule_limit: u32| {
        format!(
            "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"http://127.0.0.1:9\"]\n\
             rate_limit = {{ requests = 5, per = \"10s\" }}\n\
             [[sites.rules]]\npath = \"/a/\"\n\
             [[sites.rules]]\npath = \"/b/\"\nrate_limit = {{ requests = {rule_limit} }}\n"
        )
    };
    let before = compile(&text(1));
    let limit = |sites: &Sites, path: &str| {
        let shop = sites.by_name("shop").expect("shop");
        shop.policy(&Method::GET, path)
            .access
            .rate_limit
            .clone()
            .expect("a limit")
    };
    // the site's limit is one set of buckets for the rules that inherit it
    assert!(Arc::ptr_eq(
        &limit(&before, "/a/x"),
        &limit(&before, "/other")
    ));
    let mut same = compile(&text(1));
    same.keep_limits_of(&before);
    assert!(Arc::ptr_eq(&limit(&same, "/a/x"), &limit(&before, "/a/x")));
    assert!(Arc::ptr_eq(
        &limit(&same, "/other"),
        &limit(&before, "/a/x")
    ));
    assert!(Arc::ptr_eq(&limit(&same, "/b/x"), &limit(&before, "/b/x")));
    let mut changed = compile(&text(2));
    changed.keep_limits_of(&before);
    assert!(Arc::ptr_eq(
        &limit(&changed, "/a/x"),
        &limit(&before, "/a/x")
    ));
    assert!(!Arc::ptr_eq(
        &limit(&changed, "/b/x"),
        &limit(&before, "/b/x")
    ));
}
