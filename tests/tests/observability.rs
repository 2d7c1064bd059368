//! What operators watch: every metric moves under traffic, `/stats.json`
//! counts what was sent, the `/dashboard` page shows it in a real headless
//! Chromium, and the Grafana dashboard only queries metrics that exist.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use edge::config::Secret;
use edge_tests::client::{self, get, get_with};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, metrics, poll_until};
use http::Request;
use http_body_util::Full;

/// 4 objects fetched once and hit three times each: 4 MISS, 12 HIT (75%),
/// plus uncacheable POSTs that must not count.
async fn known_traffic(edge: &TestEdge, origin: &MockOrigin) {
    for i in 0..4 {
        let path = format!("/obj/{i}");
        origin.route(
            &path,
            Reply::ok(vec![b'x'; 1000]).header("cache-control", "max-age=600"),
        );
        for _ in 0..4 {
            assert_eq!(get(&edge.url(&path)).await.status(), 200);
        }
    }
    origin.route("/form", Reply::echo());
    for _ in 0..3 {
        let req = Request::post(edge.url("/form"))
            .body(Full::new(Bytes::from_static(b"data")))
            .expect("request");
        assert_eq!(client::fetch(&client::http1(), req).await.status(), 200);
    }
}

/// The value of the first metric line starting with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    metrics::value(text, prefix).unwrap_or_else(|| panic!("no metric line {prefix}"))
}

#[tokio::test]
async fn every_metric_moves_under_traffic() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.purge.token = Some(Secret("observability-token".into()));
    })
    .await;
    known_traffic(&edge, &origin).await;
    let req = Request::post(edge.admin_url("/purge"))
        .header("authorization", "Bearer observability-token")
        .body(Full::new(Bytes::from(format!(
            r#"{{"urls": ["{}"], "tags": ["t"]}}"#,
            edge.url("/obj/0")
        ))))
        .expect("request");
    assert_eq!(client::fetch(&client::http1(), req).await.status(), 200);
    let text = edge.metrics().await;
    let peer = origin.url();
    let moved = [
        "edge_requests_total{body_end=\"complete\",cache_status=\"HIT\",site=\"default\",status_class=\"2xx\"} 12",
        "edge_requests_total{body_end=\"complete\",cache_status=\"MISS\",site=\"default\",status_class=\"2xx\"} 4",
        "edge_requests_total{body_end=\"complete\",cache_status=\"PASS\",site=\"default\",status_class=\"2xx\"} 3",
        "edge_response_bytes_total{cache_status=\"HIT\",site=\"default\",source=\"memory\"} 12000",
        "edge_request_duration_seconds_count{cache_status=\"HIT\",status_class=\"2xx\"} 12",
        "edge_time_to_first_byte_seconds_count{cache_status=\"MISS\"} 4",
        "edge_cache_tier_hits_total{tier=\"memory\"} 12",
        "edge_purges_total{kind=\"url\"} 1",
        "edge_purges_total{kind=\"tag\"} 1",
        "edge_purge_rules 1",
        "edge_fills_in_flight 0",
        "edge_purge_backlog 0",
    ];
    for line in moved {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let origin_line =
        format!("edge_origin_requests_total{{peer=\"{peer}\",status_class=\"2xx\"}} 7");
    assert!(text.contains(&origin_line), "{origin_line}\n{text}");
    assert!(
        value(
            &text,
            &format!("edge_origin_response_header_seconds_count{{peer=\"{peer}\"}}")
        ) >= 7.0
    );
    assert!(
        value(
            &text,
            &format!("edge_peer_up{{peer=\"{peer}\",role=\"origin\"}}")
        ) == 1.0
    );
    assert!(value(&text, "edge_cache_bytes{tier=\"memory\"}") > 4000.0);
    assert!(value(&text, "edge_cache_entries{tier=\"memory\"}") >= 4.0);
    assert!(value(&text, "edge_cache_capacity_bytes{tier=\"disk\"}") > 0.0);
    // Each request above came on its own connection, closed since.
    assert_eq!(value(&text, "edge_open_connections"), 0.0);
    assert!(value(&text, "edge_connections_total") >= 19.0);
    assert!(
        value(
            &text,
            "foyer_memory_op_total{name=\"edge_cache\",op=\"insert\"}"
        ) >= 4.0
    );
}

#[tokio::test]
async fn stats_json_counts_what_was_sent() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    known_traffic(&edge, &origin).await;
    let stats: edge::stats::Stats =
        serde_json::from_slice(get(&edge.admin_url("/stats.json")).await.body()).expect("json");
    assert_eq!(stats.requests["HIT"], 12);
    assert_eq!(stats.requests["MISS"], 4);
    assert_eq!(stats.requests["PASS"], 3);
    assert_eq!(stats.hit_ratio, Some(0.75));
    assert_eq!(stats.byte_hit_ratio, Some(0.75));
    assert!(stats.memory.bytes > 0 && stats.memory.capacity > 0);
    assert_eq!(stats.peers.len(), 1);
    assert!(stats.peers[0].up);
}

#[tokio::test]
async fn the_dashboard_shows_the_hit_ratio_in_headless_chromium() {
    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    known_traffic(&edge, &origin).await;
    let page = get(&edge.admin_url("/dashboard")).await;
    assert_eq!(page.status(), 200);
    let html = page.text();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );

    let url = edge.admin_url("/dashboard");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let run = move |extra: &[&str]| {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1100",
            "--virtual-time-budget=4000",
        ])
        .args(extra)
        .arg(&url);
        cmd
    };
    let run_dom = run.clone();
    let dom = tokio::task::spawn_blocking(move || run_dom(&["--dump-dom"]).output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}): run scripts/setup.sh --test"));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let shown = |id: &str| {
        let start = dom
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no #{id} in the rendered page:\n{dom}"));
        let rest = &dom[start + id.len() + 6..];
        rest[..rest.find('<').unwrap_or(0)].to_owned()
    };
    assert_eq!(shown("hit-ratio"), "75.0%", "request hit ratio as rendered");
    assert_eq!(shown("byte-hit-ratio"), "75.0%");
    assert_eq!(shown("hits"), "12");
    assert_eq!(shown("cacheable"), "16");
    // The cluster panel says there is none (tests/tests/cluster.rs checks
    // what /stats.json gives it on a cluster node).
    assert_eq!(shown("cluster-state"), "off");

    let target = shot.clone();
    let status = tokio::task::spawn_blocking(move || {
        run(&[&format!("--screenshot={}", target.display())]).output()
    })
    .await
    .expect("join")
    .expect("chromium");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    println!("dashboard screenshot: {}", shot.display());
}

/// Metric names an expression uses (`edge_…`, `foyer_…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if at_word_start && (rest.starts_with("edge_") || rest.starts_with("foyer_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "expr" {
                    if let Some(e) = v.as_str() {
                        out.push(e.to_owned());
                    }
                } else {
                    exprs(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dashboards/edge-grafana.json"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("dashboard file"))
            .expect("valid JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 6));
    let datasource = json["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus");
    assert!(datasource, "a Prometheus datasource variable");
    let mut all = Vec::new();
    exprs(&json, &mut all);
    assert!(all.len() >= 8, "{all:?}");

    let origin = MockOrigin::start().await;
    let edge = TestEdge::start(&origin.url()).await;
    known_traffic(&edge, &origin).await;
    let _ = get_with(&edge.url("/obj/0"), &[("cache-control", "no-cache")]).await;
    // A request is counted as its body ends, just after the client has it:
    // wait for all 20 (16 GETs, 3 POSTs, the no-cache GET).
    let text = poll_until(
        "every request to be counted",
        Duration::from_secs(5),
        async || {
            let text = edge.metrics().await;
            let counted = metrics::sum(&text, "edge_requests_total");
            if counted >= 20.0 {
                Ok(text)
            } else {
                Err(counted)
            }
        },
    )
    .await;
    let mut exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    // The cluster's metrics exist only on a node with `--cluster` (this
    // one has none): their names are checked against the cluster crate's.
    use cluster::metrics as m;
    exported.extend([
        m::CONNECTED,
        m::STREAM_LAG,
        m::PUBLISHED,
        m::APPLIED,
        m::QUEUED,
        m::MEMBERSHIP,
        m::MEMBERS,
    ]);
    // Stale answers are counted only once one was served (this traffic has
    // none); `stale_served_for_a_failed_origin_is_counted_apart` reads it.
    exported.insert(edge::metrics::names::STALE_SERVED_TOTAL);
    // Dropped spans are counted by reason once one was dropped (this edge
    // has no `[tracing]`); tests/tracing.rs reads them.
    exported.insert(edge::metrics::names::TRACE_SPANS_DROPPED_TOTAL);
    for expr in &all {
        for name in metric_names(expr) {
            assert!(
                exported.contains(name.as_str()),
                "the dashboard queries {name}, which edge does not export ({expr})"
            );
        }
    }
}

#[tokio::test]
async fn evictions_and_the_disk_tier_show_in_the_metrics() {
    let origin = MockOrigin::start().await;
    // A 1 MiB memory tier in front of the disk: 40 objects of 100 KB must
    // evict from memory and come back from disk.
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.cache.memory = "1MiB".parse().expect("size");
    })
    .await;
    for i in 0..40 {
        let path = format!("/big/{i}");
        origin.route(
            &path,
            Reply::ok(vec![b'd'; 100_000]).header("cache-control", "max-age=600"),
        );
        assert_eq!(get(&edge.url(&path)).await.status(), 200);
    }
    // Let the disk tier write, then read the first objects back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut from_disk = 0;
    for i in 0..10 {
        let resp = get(&edge.url(&format!("/big/{i}"))).await;
        assert!(
            resp.header("x-cache").is_some(),
            "every answer says X-Cache"
        );
        if resp.x_cache() == "HIT" {
            from_disk += 1;
        }
    }
    assert!(from_disk > 0, "nothing came back from the disk tier");
    let text = edge.metrics().await;
    assert!(
        value(
            &text,
            "foyer_memory_op_total{name=\"edge_cache\",op=\"evict\"}"
        ) > 0.0
    );
    assert!(
        value(
            &text,
            "foyer_storage_disk_io_bytes_total{name=\"edge_cache\",op=\"write\"}"
        ) > 0.0
    );
    assert!(
        value(&text, "edge_cache_tier_hits_total{tier=\"disk\"}") > 0.0,
        "{text}"
    );
    let disk_reads = text
        .lines()
        .filter(|l| {
            l.starts_with("foyer_storage_disk_io_duration_count") && l.contains("op=\"read\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(disk_reads > 0.0, "disk read latency recorded");
}

/// Stale served because the origin failed is counted apart from stale
/// served while revalidating: an outage does not look like hits.
#[tokio::test]
async fn stale_served_for_a_failed_origin_is_counted_apart() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/swr",
        Reply::ok("old").header("cache-control", "max-age=1, stale-while-revalidate=60"),
    );
    origin.route(
        "/sie",
        Reply::ok("last good").header("cache-control", "max-age=1, stale-if-error=300"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let stale =
        |reason: &str| format!("edge_stale_served_total{{reason=\"{reason}\",site=\"default\"}}");
    get(&edge.url("/swr")).await;
    get(&edge.url("/sie")).await;
    edge.advance(Duration::from_millis(1100));

    let resp = get(&edge.url("/swr")).await;
    assert_eq!(resp.x_cache(), "STALE");
    let metrics = edge.metrics().await;
    assert_eq!(metrics::value(&metrics, &stale("revalidating")), Some(1.0));
    assert_eq!(
        metrics::value(&metrics, &stale("origin_error")),
        None,
        "the origin is up: {metrics}"
    );

    origin.route("/sie", Reply::ok("boom").status(503));
    let resp = get(&edge.url("/sie")).await;
    assert_eq!(resp.x_cache(), "STALE");
    assert_eq!(&resp.body()[..], b"last good");
    let metrics = edge.metrics().await;
    assert_eq!(metrics::value(&metrics, &stale("origin_error")), Some(1.0));
    assert_eq!(metrics::value(&metrics, &stale("revalidating")), Some(1.0));
    // The dashboard reads the same from /stats.json.
    let stats: serde_json::Value =
        serde_json::from_slice(get(&edge.admin_url("/stats.json")).await.body()).expect("json");
    assert_eq!(stats["stale_served"]["origin_error"], 1);
    assert_eq!(stats["stale_served"]["revalidating"], 1);
    assert_eq!(stats["live_log_watchers"], 0);
}
