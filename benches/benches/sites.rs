//! Sites and rules: the host lookup and rule match every request pays
//! before the cache lookup (`Sites::site_for` + `Site::policy`), with two
//! sites of 50 rules each (prefixes, five regexes) beside a site of 50
//! prefix rules and a site without rules.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use edge::Config;
use edge::sites::Sites;
use http::Method;

/// As in the `edge` binary (a regex match allocates its result set).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `name` with 50 rules: `path = "/p{i}/"` (every third also limited to
/// GET/HEAD), and every tenth (5, 15, ..., 45) a `path_regex` instead:
/// `^/r{i}/[0-9]+\.json$`, and for 45 `\.(png|jpe?g|webp)$`.
fn site(toml: &mut String, name: &str, with_regexes: bool) {
    let _ = write!(
        toml,
        "[[sites]]\nname = \"{name}\"\nhosts = [\"{name}.example\", \"*.{name}.example\"]\n\
         origins = [\"http://127.0.0.1:9001\"]\n"
    );
    for i in 0..50 {
        toml.push_str("[[sites.rules]]\n");
        if with_regexes && i == 45 {
            // no literal to index by: the set runs for every path
            toml.push_str("path_regex = \"\\\\.(png|jpe?g|webp)$\"\n");
        } else if with_regexes && i % 10 == 5 {
            let _ = writeln!(toml, "path_regex = \"^/r{i}/[0-9]+\\\\.json$\"");
        } else {
            let _ = writeln!(toml, "path = \"/p{i}/\"");
        }
        if i % 3 == 0 {
            toml.push_str("methods = [\"GET\", \"HEAD\"]\n");
        }
        let _ = writeln!(
            toml,
            "ttl = \"{i}s\"\nresponse_headers = {{ set = {{ \"X-Rule\" = \"{i}\" }} }}"
        );
    }
}

fn sites() -> Sites {
    let mut toml = String::from("origins = [\"http://127.0.0.1:9000\"]\n");
    site(&mut toml, "shop", true);
    site(&mut toml, "media", true);
    site(&mut toml, "plain", false);
    toml.push_str(
        "[[sites]]\nname = \"blog\"\nhosts = [\"blog.example\"]\n\
         origins = [\"http://127.0.0.1:9002\"]\n",
    );
    let config = Config::from_toml(&toml, Path::new("bench.toml")).expect("config");
    Sites::compile(&config).expect("sites")
}

fn bench(c: &mut Criterion) {
    let sites = sites();
    let mut group = c.benchmark_group("sites");

    for (name, host) in [
        ("exact", "media.example"),
        ("exact_port_upper", "Media.Example:8080"),
        ("wildcard", "img.cdn.media.example"),
        ("unknown_to_default", "unknown.test"),
    ] {
        assert!(sites.site_for(host).is_some(), "{host}");
        group.bench_function(format!("site_for/{name}"), |b| {
            b.iter(|| sites.site_for(black_box(host)).map(|s| s.index))
        });
    }

    // (bench, host, method, path, the rule it must select)
    let requests: &[(&str, &str, Method, &str, Option<usize>)] = &[
        (
            "first_rule",
            "media.example",
            Method::GET,
            "/p0/a.js",
            Some(0),
        ),
        (
            "regex_rule",
            "media.example",
            Method::GET,
            "/r25/7.json",
            Some(25),
        ),
        (
            "unanchored_regex_rule",
            "media.example",
            Method::GET,
            "/img/a.png",
            Some(45),
        ),
        (
            "last_rule",
            "media.example",
            Method::GET,
            "/p49/a.js",
            Some(49),
        ),
        (
            "no_match",
            "media.example",
            Method::GET,
            "/assets/a.js",
            None,
        ),
        (
            "last_rule_prefixes_only",
            "plain.example",
            Method::GET,
            "/p49/a.js",
            Some(49),
        ),
        (
            "no_match_prefixes_only",
            "plain.example",
            Method::GET,
            "/assets/a.js",
            None,
        ),
        (
            "site_without_rules",
            "blog.example",
            Method::GET,
            "/p49/a.js",
            None,
        ),
        (
            "default_site",
            "unknown.test",
            Method::GET,
            "/p49/a.js",
            None,
        ),
    ];
    for (name, host, method, path, rule) in requests {
        let got = sites.site_for(host).map(|s| s.policy(method, path).rule);
        assert_eq!(got, Some(*rule), "{name}");
        group.bench_function(format!("request/{name}"), |b| {
            b.iter(|| {
                sites
                    .site_for(black_box(host))
                    .map(|s| s.policy(black_box(method), black_box(path)).rule)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
