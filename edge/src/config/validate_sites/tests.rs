//! The checks of `validate_sites`, each with the key and line it reports.

use std::path::Path;

use crate::config::Config;
use crate::config::lines::key_line;

/// The issue's example: two sites, rules of every kind.
const GOOD: &str = r#"
[[sites]]
name = "shop"
hosts = ["shop.example", "*.shop.example"]
origins = ["http://127.0.0.1:9001"]

[[sites.rules]]
path = "/api/"
methods = ["GET", "HEAD", "PURGE"]
cache = "bypass"

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
ttl = "1m"
redirect = { to = "https://shop.example/new/", status = 301, keep_path = true }

[[sites]]
name = "blog"
hosts = ["blog.example", "BLOG.other", "*.a.shop"]
origins = ["http://127.0.0.1:9002"]
[[sites.rules]]
path_regex = "^/v[0-9]+/"
redirect = { to = "/elsewhere", status = 308 }
"#;

/// `(line, key, message)` of the validation error of `text`.
fn invalid(text: &str) -> (Option<usize>, String, String) {
    let config = Config::from_toml(text, Path::new("edge.toml")).expect("parses");
    let (key, message) = config.validate().expect_err("refused");
    (key_line(text, &key), key, message)
}

/// GOOD with `from` replaced by `to` (once, and it must be there).
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from:?}");
    GOOD.replacen(from, to, 1)
}

/// The line of `edit(from, to)` with the last line of `to` on it.
fn edited_line(from: &str, to: &str) -> usize {
    let at = GOOD.find(from).expect("from in GOOD");
    GOOD[..at].matches('\n').count() + to.matches('\n').count() + 1
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle in text")
}

/// Each case: the edit of GOOD, the key and a piece of the message;
/// the line must be the edited one.
fn assert_refused(cases: &[(&str, &str, &str, &str)]) {
    for (from, to, key, why) in cases {
        let text = edit(from, to);
        let (line, got_key, message) = invalid(&text);
        assert_eq!(got_key, *key, "{to:?}: {message}");
        assert!(message.contains(why), "{to:?}: {message}");
        assert_eq!(line, Some(edited_line(from, to)), "{to:?}: {message}");
    }
}

#[test]
fn the_example_of_the_issue_is_valid_without_top_level_origins() {
    let config = Config::from_toml(GOOD, Path::new("edge.toml")).unwrap();
    assert!(config.origins.is_empty());
    config.validate().unwrap();
    let rule = &config.sites[0].rules[1];
    assert_eq!(rule.ttl_status.len(), 2);
    assert_eq!(rule.ttl_status[&404].as_secs(), 30);
}

#[test]
fn names_must_be_given_unique_and_label_safe() {
    assert_refused(&[
        (
            "name = \"shop\"",
            "name = \"\"",
            "sites[0].name",
            "must not be empty",
        ),
        (
            "name = \"blog\"",
            "name = \"shop\"",
            "sites[1].name",
            "already used by sites[0]",
        ),
        (
            "name = \"blog\"",
            "name = \"my blog\"",
            "sites[1].name",
            "metrics label",
        ),
    ]);
    let (_, _, message) = invalid(&edit("name = \"blog\"", "name = \"shop\""));
    assert!(message.starts_with("site \"shop\": "), "{message}");
}

#[test]
fn hosts_must_be_host_names() {
    assert_refused(&[
        (
            "hosts = [\"blog.example\", \"BLOG.other\", \"*.a.shop\"]",
            "hosts = []",
            "sites[1].hosts",
            "at least one host",
        ),
        (
            "\"BLOG.other\"",
            "\"blog.other:8080\"",
            "sites[1].hosts",
            "without a port",
        ),
        (
            "\"BLOG.other\"",
            "\"blog.*\"",
            "sites[1].hosts",
            "`*.` at the start",
        ),
        (
            "\"BLOG.other\"",
            "\"blog other\"",
            "sites[1].hosts",
            "not a valid host name",
        ),
    ]);
}

#[test]
fn a_host_belongs_to_one_site() {
    assert_refused(&[
        // The same name, in another case.
        (
            "\"BLOG.other\"",
            "\"Shop.Example\"",
            "sites[1].hosts",
            "also a host of site \"shop\"",
        ),
        (
            "\"BLOG.other\"",
            "\"*.SHOP.example\"",
            "sites[1].hosts",
            "also a host of site \"shop\"",
        ),
        // A wildcard of the first site covers a name of the second.
        (
            "\"BLOG.other\"",
            "\"a.shop.example\"",
            "sites[1].hosts",
            "overlapping host names",
        ),
        (
            "\"BLOG.other\"",
            "\"*.a.shop.example\"",
            "sites[1].hosts",
            "overlapping host names",
        ),
        // And the other way round.
        (
            "\"BLOG.other\"",
            "\"*.example\"",
            "sites[1].hosts",
            "overlapping host names",
        ),
    ]);
    let (_, _, message) = invalid(&edit("\"BLOG.other\"", "\"*.example\""));
    assert!(message.contains("cover \"shop.example\""), "{message}");
    // `*.shop.example` does not cover `shop.example` itself, and one
    // site may list both.
    let text = edit("\"BLOG.other\"", "\"x.blog.example\", \"*.blog.example\"");
    let text = text.replacen("\"shop.example\", ", "", 1);
    let text = text.replacen("\"blog.example\"", "\"shop.example\"", 1);
    let config = Config::from_toml(&text, Path::new("edge.toml")).unwrap();
    assert_eq!(config.sites[1].hosts[0], "shop.example");
    config.validate().unwrap();
}

#[test]
fn a_site_needs_origins() {
    let text = edit("origins = [\"http://127.0.0.1:9002\"]\n", "");
    let (line, key, message) = invalid(&text);
    assert_eq!(key, "sites[1].origins");
    assert!(message.starts_with("site \"blog\": no origin"), "{message}");
    // No `origins` line: the site's `[[sites]]` header.
    let header = text.match_indices("[[sites]]").nth(1).unwrap().0;
    assert_eq!(line, Some(text[..header].matches('\n').count() + 1));
    assert_refused(&[(
        "origins = [\"http://127.0.0.1:9002\"]",
        "origins = []",
        "sites[1].origins",
        "no origin",
    )]);
}

#[test]
fn paths_and_regexes() {
    assert_refused(&[
        (
            "path = \"/api/\"",
            "path = \"/api/\"\npath_regex = \"^/api\"",
            "sites[0].rules[0].path_regex",
            "not both",
        ),
        (
            "path = \"/api/\"",
            "path = \"api/\"",
            "sites[0].rules[0].path",
            "starting with /",
        ),
        (
            "path = \"/api/\"",
            "path = \"/api/?x=1\"",
            "sites[0].rules[0].path",
            "no query",
        ),
        (
            "path = \"/api/\"",
            "path = \"/a pi/\"",
            "sites[0].rules[0].path",
            "starting with /",
        ),
        (
            "path_regex = \"^/v[0-9]+/\"",
            "path_regex = \"^/v[0-9+/\"",
            "sites[1].rules[0].path_regex",
            "does not compile",
        ),
    ]);
}

#[test]
fn methods_are_tokens_in_their_case() {
    assert_refused(&[
        (
            "\"PURGE\"]",
            "\"GE T\"]",
            "sites[0].rules[0].methods",
            "not an HTTP method",
        ),
        (
            "\"PURGE\"]",
            "\"\"]",
            "sites[0].rules[0].methods",
            "not an HTTP method",
        ),
        (
            "\"PURGE\"]",
            "\"get\"]",
            "sites[0].rules[0].methods",
            "write \"GET\"",
        ),
    ]);
}

#[test]
fn ttl_override_needs_a_ttl() {
    assert_refused(&[(
        "ttl = \"1h\"\nttl_override = true",
        "ttl_override = true",
        "sites[0].rules[1].ttl_override",
        "needs a `ttl`",
    )]);
}

#[test]
fn redirects() {
    let redirect = "redirect = { to = \"/elsewhere\", status = 308 }";
    assert_refused(&[
        (
            redirect,
            "redirect = { to = \"/elsewhere\", status = 200 }",
            "sites[1].rules[0].redirect.status",
            "not a redirect status",
        ),
        (
            redirect,
            "redirect = { to = \"\" }",
            "sites[1].rules[0].redirect.to",
            "must not be empty",
        ),
        (
            redirect,
            "redirect = { to = \"elsewhere\" }",
            "sites[1].rules[0].redirect.to",
            "absolute http(s) URL or a path",
        ),
        (
            redirect,
            "redirect = { to = \"ftp://x.example/\" }",
            "sites[1].rules[0].redirect.to",
            "absolute http(s) URL",
        ),
        (
            redirect,
            "redirect = { to = \"//x.example/\" }",
            "sites[1].rules[0].redirect.to",
            "absolute http(s) URL",
        ),
        (
            redirect,
            "redirect = { to = \"/a\\nb\" }",
            "sites[1].rules[0].redirect.to",
            "absolute http(s) URL",
        ),
        (
            redirect,
            "redirect = { to = \"/x\", keep_path = true }",
            "sites[1].rules[0].redirect.keep_path",
            "path_regex",
        ),
    ]);
    // In a table of its own, the line of the key itself.
    let text = edit(
        redirect,
        "[sites.rules.redirect]\nto = \"/x\"\nstatus = 304",
    );
    let (line, key, _) = invalid(&text);
    assert_eq!(key, "sites[1].rules[0].redirect.status");
    assert_eq!(line, Some(line_of(&text, "status = 304")));
}

#[test]
fn header_edits_are_valid_fields() {
    let request = "request_headers  = { set = { \"X-Site\" = \"shop\" }, remove = [\"X-Debug\"] }";
    let response = "remove = [\"Server\"] }";
    assert_refused(&[
        (
            request,
            "request_headers = { set = { \"X Site\" = \"shop\" } }",
            "sites[0].rules[1].request_headers.set.X Site",
            "not a valid header field name",
        ),
        (
            request,
            "request_headers = { set = { \"X-Site\" = \"a\\u0007\" } }",
            "sites[0].rules[1].request_headers.set.X-Site",
            "not a valid header value",
        ),
        (
            request,
            "request_headers = { remove = [\"X:Debug\"] }",
            "sites[0].rules[1].request_headers.remove",
            "not a valid header field name",
        ),
        (
            request,
            "request_headers = { set = { \"Content-Length\" = \"1\" } }",
            "sites[0].rules[1].request_headers.set.Content-Length",
            "managed by edge",
        ),
        (
            request,
            "request_headers = { set = { \"x-site\" = \"1\" }, remove = [\"X-SITE\"] }",
            "sites[0].rules[1].request_headers.remove",
            "both set and removed",
        ),
        (
            response,
            "remove = [\"Transfer-Encoding\"] }",
            "sites[0].rules[1].response_headers.remove",
            "managed by edge",
        ),
    ]);
    // Written as a sub-table, a header set is found on its own line.
    let text = edit(request, "").replacen(
        "remove = [\"Server\"] }\n",
        "remove = [\"Server\"] }\n[sites.rules.request_headers.set]\n\"X-Site\" = \"shop\"\n\"Content-Length\" = \"1\"\n",
        1,
    );
    let (line, key, _) = invalid(&text);
    assert_eq!(key, "sites[0].rules[1].request_headers.set.Content-Length");
    assert_eq!(line, Some(line_of(&text, "\"Content-Length\" = \"1\"")));
}

#[test]
fn errors_are_reported_with_the_site_name() {
    let (_, key, message) = invalid(&edit("path = \"/old/\"", "path = \"old\""));
    assert_eq!(key, "sites[0].rules[2].path");
    assert!(
        message.starts_with("site \"shop\": \"old\" must be"),
        "{message}"
    );
}

/// Errors found while parsing: the line of the key, and the site.
#[test]
fn parse_errors_inside_sites_name_line_key_and_site() {
    for (from, to, key, why) in [
        (
            "ttl_status = { 404 = \"30s\", 410 = \"5m\" }",
            "ttl_status = { 404 = \"30s\", 700 = \"5m\" }",
            "sites[0].rules[1].ttl_status.700",
            "\"700\" is not within 100-599",
        ),
        (
            "ttl_status = { 404 = \"30s\", 410 = \"5m\" }",
            "[sites.rules.ttl_status]\n404 = \"30s\"\n99 = \"5m\"",
            "sites[0].rules[1].ttl_status.99",
            "\"99\" is not within 100-599",
        ),
        (
            "ttl_status = { 404 = \"30s\", 410 = \"5m\" }",
            "ttl_status = { 404 = \"a while\" }",
            "sites[0].rules[1].ttl_status.404",
            "invalid duration",
        ),
        (
            "stale_if_error = \"10m\"",
            "stale_if_error = \"10 minuets\"",
            "sites[0].rules[1].stale_if_error",
            "invalid duration",
        ),
        (
            "cache = \"bypass\"",
            "cache = \"never\"",
            "sites[0].rules[0].cache",
            "unknown variant",
        ),
        (
            "cache = \"bypass\"",
            "cahce = \"bypass\"",
            "sites[0].rules[0].cahce",
            "unknown field `cahce`",
        ),
        (
            "remove = [\"X-Debug\"] }",
            "remov = [\"X-Debug\"] }",
            "sites[0].rules[1].request_headers.remov",
            "unknown field `remov`",
        ),
        (
            "status = 308 }",
            "code = 308 }",
            "sites[1].rules[0].redirect.code",
            "unknown field `code`",
        ),
        (
            "origins = [\"http://127.0.0.1:9002\"]",
            "origins = [\"ftp://x\"]",
            "sites[1].origins",
            "scheme",
        ),
        (
            "origins = [\"http://127.0.0.1:9002\"]",
            "origin = [\"http://127.0.0.1:9002\"]",
            "sites[1].origin",
            "unknown field `origin`",
        ),
    ] {
        let text = edit(from, to);
        let err = Config::from_toml(&text, Path::new("edge.toml"))
            .unwrap_err()
            .to_string();
        let line = edited_line(from, to);
        assert!(
            err.starts_with(&format!("edge.toml:{line}:")),
            "{to:?}: {err}"
        );
        assert!(
            err.contains(&format!("key `{key}`: site ")),
            "{to:?}: {err}"
        );
        assert!(err.contains(why), "{to:?}: {err}");
    }
}

#[test]
fn top_level_origins_are_optional_with_sites_only() {
    let config = Config::from_toml("", Path::new("edge.toml")).unwrap();
    let (key, message) = config.validate().unwrap_err();
    assert_eq!(key, "origins");
    assert!(message.starts_with("no origin configured"), "{message}");
    let text = format!("shields = [\"http://127.0.0.1:7000\"]\n{GOOD}");
    let (line, key, message) = invalid(&text);
    assert_eq!((line, key.as_str()), (Some(1), "shields"));
    assert!(message.contains("default site"), "{message}");
    let text = format!("origins = [\"http://127.0.0.1:7001\"]\n{text}");
    Config::from_toml(&text, Path::new("edge.toml"))
        .unwrap()
        .validate()
        .unwrap();
}

/// The commented sites at the end of `examples/edge.toml`, uncommented,
/// are a valid config, and they show every key.
#[test]
fn the_sites_of_the_shipped_example_are_valid_and_complete() {
    let example = include_str!("../../../../examples/edge.toml");
    let start = example
        .find("\n# [[sites]]\n")
        .expect("sites in the example");
    let code = regex::Regex::new(r"^# (\[\[sites|[a-z_]+ = )").unwrap();
    let mut text = example[..start].to_owned();
    for line in example[start..].lines().filter(|l| code.is_match(l)) {
        text.push('\n');
        text.push_str(&line[2..]);
    }
    let config = Config::from_toml(&text, Path::new("edge.toml")).unwrap();
    config.validate().unwrap();
    assert_eq!(config.sites.len(), 2);
    assert_eq!(config.sites[0].rules.len(), 3);
    let block = &example[start..];
    for key in [
        "real_ip",
        "rate_limit",
        "signed_urls",
        "jwt",
        "allow",
        "deny",
        "name",
        "hosts",
        "origins",
        "shields",
        "[[sites.rules]]",
        "path",
        "path_regex",
        "methods",
        "cache",
        "ttl",
        "ttl_override",
        "ttl_status",
        "stale_if_error",
        "stale_while_revalidate",
        "request_headers",
        "response_headers",
        "set",
        "remove",
        "redirect",
        "to",
        "status",
        "keep_path",
    ] {
        let shown = regex::Regex::new(&format!(r"(?m)^#\s+{}(\s|$)", regex::escape(key))).unwrap();
        let named = block.contains(&format!("{key}:")) || block.contains(&format!("{key} = "));
        assert!(shown.is_match(block) || named, "{key} is not documented");
    }
}

/// The guide's first example is a valid config.
#[test]
fn the_first_example_of_the_guide_is_valid() {
    let guide = include_str!("../../../../docs/sites.md");
    let start = guide.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + guide[start..].find("```").expect("its end");
    let config = Config::from_toml(&guide[start..end], Path::new("sites.md")).unwrap();
    config.validate().unwrap();
    assert_eq!(config.sites.len(), 2);
}

#[test]
fn access_keys_are_checked_with_their_line() {
    let base = "[[sites]]\nname = \"shop\"\nhosts = [\"shop.example\"]\norigins = [\"http://127.0.0.1:9\"]\n[[sites.rules]]\npath = \"/a/\"\n";
    // (the rule's access line, key, a piece of the message)
    let cases = [
        (
            "deny = [\"10.0.0.0/33\"]",
            "sites[0].rules[0].deny",
            "prefix length",
        ),
        (
            "allow = [\"nope\"]",
            "sites[0].rules[0].allow",
            "not an address",
        ),
        (
            "rate_limit = { requests = 0, per = \"1s\" }",
            "sites[0].rules[0].rate_limit.requests",
            "at least 1",
        ),
        (
            "rate_limit = { requests = 1, key = \"header:bad name\" }",
            "sites[0].rules[0].rate_limit.key",
            "header field name",
        ),
        (
            "real_ip = { from = [] }",
            "sites[0].rules[0].real_ip.from",
            "at least one",
        ),
        (
            "signed_urls = { secret_env = \"EDGE_TEST_UNSET_SECRET_23\" }",
            "sites[0].rules[0].signed_urls.secret_env",
            "is not set",
        ),
    ];
    for (line, key, why) in cases {
        let text = format!("{base}{line}\n");
        let (at, got, message) = invalid(&text);
        assert_eq!(got, key, "{line}: {message}");
        assert!(
            message.contains(why) && message.contains("site \"shop\""),
            "{message}"
        );
        assert_eq!(at, Some(7), "{line}");
    }
    let bad_key = format!("{base}rate_limit = {{ requests = 1, key = \"cookie\" }}\n");
    let err = Config::from_toml(&bad_key, Path::new("edge.toml")).expect_err("bad key");
    assert!(err.to_string().contains("edge.toml:7"), "{err}");
}
