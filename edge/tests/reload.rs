//! Live reload of a running edge process: `POST /reload` and SIGHUP read
//! the config file again; a good file applies between two requests with
//! none failing, a bad one changes nothing and says which line is wrong.

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_tests::otlp::OtlpReceiver;
use edge_tests::process::{TOKEN, clean_command};
use edge_tests::{Gate, MockOrigin, Reply, client, eventually_within, free_port, metrics};
use http::Request;
use http_body_util::Full;

/// A node's config: site `shop` on `origin`, and whatever `extra` adds.
fn config_text(listen: u16, admin: u16, dir: &Path, origin: &str, extra: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:{listen}"
admin = "127.0.0.1:{admin}"
data_dir = "{data}"

[[sites]]
name = "shop"
hosts = ["shop.test"]
origins = ["{origin}"]
{extra}
"#,
        data = dir.join("data").display(),
    )
}

/// Origins that never let a response be stored, so every request shows
/// which origin it reached.
async fn origin(name: &'static str) -> MockOrigin {
    let origin = MockOrigin::start().await;
    origin.fallback(move |path| {
        Reply::ok(format!("{name} {path}")).header("cache-control", "no-store")
    });
    origin
}

struct Node {
    child: Child,
    listen: u16,
    admin: u16,
}

impl Node {
    async fn start(config: &Path, listen: u16, admin: u16) -> Node {
        let child = clean_command(env!("CARGO_BIN_EXE_edge"))
            .arg("--config")
            .arg(config)
            .env("EDGE_PURGE_TOKEN", TOKEN)
            .env("EDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("edge starts");
        let node = Node {
            child,
            listen,
            admin,
        };
        let client = client::http1();
        let url = format!("http://127.0.0.1:{admin}/healthz");
        eventually_within("the edge to listen", Duration::from_secs(30), async || {
            let req = Request::get(&url).body(Full::default()).expect("request");
            client::try_fetch(&client, req, Duration::from_secs(2))
                .await
                .is_some_and(|r| r.status() == 200)
        })
        .await;
        node
    }

    fn shop(&self, path: &str) -> Request<Full<Bytes>> {
        Request::get(format!("http://127.0.0.1:{}{path}", self.listen))
            .header("host", "shop.test")
            .body(Full::default())
            .expect("request")
    }

    async fn reload(&self, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = Request::post(format!("http://127.0.0.1:{}/reload", self.admin));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = client::fetch(
            &client::http1(),
            req.body(Full::default()).expect("request"),
        )
        .await;
        let body = serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null);
        (resp.status().as_u16(), body)
    }

    async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.admin);
        let resp = client::get(&url).await;
        String::from_utf8_lossy(resp.body()).into_owned()
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reloads(metrics: &str, result: &str) -> f64 {
    metrics::value(
        metrics,
        &format!("edge_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_moves_a_site_and_adds_a_rule_and_fails_no_request() {
    let (a, b) = (origin("a").await, origin("b").await);
    let held = Gate::new();
    a.route("/slow", Reply::ok("slow from a").held(&held));
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin) = (free_port(), free_port());
    std::fs::write(&file, config_text(listen, admin, dir.path(), &a.url(), ""))
        .expect("config written");
    let node = Arc::new(Node::start(&file, listen, admin).await);

    // Eight keep-alive clients, each on its own connection, until told to
    // stop (bounded in time and count).
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (node, stop, sent, failed) = (node.clone(), stop.clone(), sent.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let client = client::http1();
            let mut last = None;
            let mut longest = Duration::ZERO;
            for i in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let resp = client::try_fetch(
                    &client,
                    node.shop(&format!("/item/{c}/{i}")),
                    Duration::from_secs(10),
                )
                .await;
                longest = longest.max(started.elapsed());
                sent.fetch_add(1, Ordering::Relaxed);
                match resp {
                    Some(resp) if resp.status() == 200 => last = Some(resp),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (last, longest)
        }));
    }
    // A request in flight at the swap: its origin holds the head.
    let slow = {
        let node = node.clone();
        tokio::spawn(async move { client::fetch(&client::http1(), node.shop("/slow")).await })
    };
    a.wait_for_hits("/slow", 1).await;
    eventually_within("load to flow", Duration::from_secs(10), async || {
        sent.load(Ordering::Relaxed) > 200
    })
    .await;

    // Without the token the reload is refused.
    assert_eq!(node.reload(None).await.0, 401);

    let rule = r#"
[[sites.rules]]
path = "/item/"
response_headers = { set = { "X-Rule" = "new" } }
"#;
    std::fs::write(
        &file,
        config_text(listen, admin, dir.path(), &b.url(), rule),
    )
    .expect("config rewritten");
    let b_before = b.total_hits();
    let (status, report) = node.reload(Some(TOKEN)).await;
    let swapped = Instant::now();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["generation"], 2);
    assert_eq!(report["sites_changed"], serde_json::json!(["shop"]));
    assert_eq!(report["peers_added"], serde_json::json!([b.url()]));
    assert_eq!(report["peers_removed"], serde_json::json!([a.url()]));
    assert_eq!(report["needs_restart"], serde_json::json!([]));
    eventually_within(
        "the new origin to get traffic",
        Duration::from_secs(1),
        async || b.total_hits() > b_before,
    )
    .await;
    println!(
        "reload took {} ms; new origin reached {:?} after the answer",
        report["took_ms"],
        swapped.elapsed()
    );

    // The request that started on the old generation completes there.
    held.open();
    let slow = slow.await.expect("slow request task");
    assert_eq!(slow.status(), 200);
    assert_eq!(&slow.body()[..], b"slow from a");

    let a_after = a.total_hits();
    eventually_within(
        "more load on the new config",
        Duration::from_secs(10),
        async || b.total_hits() > b_before + 200,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut longest = Duration::ZERO;
    for client in clients {
        let (last, wait) = client.await.expect("client task");
        longest = longest.max(wait);
        let last = last.expect("each client got answers");
        assert!(last.body().starts_with(b"b /item/"), "{:?}", last.body());
        assert_eq!(last.headers()["x-rule"], "new");
    }
    println!(
        "{} requests, {} failed, longest {longest:?}",
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    // Nothing new reaches the old origin once the swap is done (a request
    // already on its way may still land there).
    assert!(a.total_hits() <= a_after + 8);

    let metrics = node.metrics().await;
    assert_eq!(reloads(&metrics, "ok"), 1.0);
    assert_eq!(reloads(&metrics, "error"), 0.0);
    assert_eq!(
        metrics::value(&metrics, "edge_config_generation"),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_bad_file_changes_nothing_names_its_line_and_sighup_reloads_a_good_one() {
    let (a, b) = (origin("a").await, origin("b").await);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin) = (free_port(), free_port());
    std::fs::write(&file, config_text(listen, admin, dir.path(), &a.url(), ""))
        .expect("config written");
    let node = Node::start(&file, listen, admin).await;
    let client = client::http1();
    let body = |resp: http::Response<Bytes>| String::from_utf8_lossy(resp.body()).into_owned();

    // Line 12: a rule with a TTL that is not a duration.
    let broken = r#"
[[sites.rules]]
path = "/"
ttl = "ten minutes"
"#;
    std::fs::write(
        &file,
        config_text(listen, admin, dir.path(), &b.url(), broken),
    )
    .expect("config rewritten");
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 400);
    let error = report["error"].as_str().expect("an error message");
    assert!(error.contains("edge.toml:12"), "{error}");
    assert!(error.contains("ttl"), "{error}");
    assert_eq!(body(client::fetch(&client, node.shop("/x")).await), "a /x");

    // SIGHUP with the same bad file: counted, nothing changes.
    node.signal("HUP");
    eventually_within(
        "the failed SIGHUP reload to count",
        Duration::from_secs(10),
        async || reloads(&node.metrics().await, "error") == 2.0,
    )
    .await;
    assert_eq!(body(client::fetch(&client, node.shop("/x")).await), "a /x");
    let metrics = node.metrics().await;
    assert_eq!(
        metrics::value(&metrics, "edge_config_generation"),
        Some(1.0)
    );

    // A good file by SIGHUP: the site moves; a changed listen address is
    // reported and kept.
    let moved = config_text(free_port(), admin, dir.path(), &b.url(), "");
    std::fs::write(&file, moved).expect("config rewritten");
    node.signal("HUP");
    eventually_within(
        "the SIGHUP reload to apply",
        Duration::from_secs(10),
        async || metrics::value(&node.metrics().await, "edge_config_generation") == Some(2.0),
    )
    .await;
    assert_eq!(body(client::fetch(&client, node.shop("/x")).await), "b /x");
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["generation"], 3);
    assert_eq!(report["needs_restart"], serde_json::json!(["listen"]));
    assert_eq!(reloads(&node.metrics().await, "ok"), 2.0);
}

/// The certificate a fresh handshake for `name` gets.
async fn presented(
    port: u16,
    trusted: &[&edge_tests::certs::Cert],
    name: &str,
) -> rustls::pki_types::CertificateDer<'static> {
    let config = edge_tests::certs::client_config(trusted, &[]);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificates")[0].clone()
}

#[tokio::test]
async fn a_reload_serves_the_certificates_the_new_file_names_and_keeps_them_when_one_is_bad() {
    let a = origin("a").await;
    let (first, second) = (
        edge_tests::certs::self_signed(&["edge.test"]),
        edge_tests::certs::self_signed(&["edge.test"]),
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin, https) = (free_port(), free_port(), free_port());
    let tls = |cert: &edge_tests::certs::Cert, key: &Path| {
        format!(
            "[tls]\nlisten = \"127.0.0.1:{https}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.cert_path.display(),
            key.display()
        )
    };
    let write = |extra: String| {
        std::fs::write(
            &file,
            config_text(listen, admin, dir.path(), &a.url(), &extra),
        )
        .expect("config written");
    };
    write(tls(&first, &first.key_path));
    let node = Node::start(&file, listen, admin).await;
    let both = [&first, &second];
    assert_eq!(presented(https, &both, "edge.test").await, first.der);

    write(tls(&second, &second.key_path));
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["sections_changed"], serde_json::json!(["tls"]));
    assert_eq!(presented(https, &both, "edge.test").await, second.der);

    // A key that does not exist: refused whole, the certificate stays.
    write(tls(&first, &dir.path().join("missing.pem")));
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 400, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or("")
            .contains("missing.pem"),
        "{report}"
    );
    assert_eq!(presented(https, &both, "edge.test").await, second.der);
}

#[tokio::test]
async fn peers_that_stay_keep_their_health_across_a_reload() {
    let a = origin("a").await;
    // Nothing listens there: connections are refused.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin) = (free_port(), free_port());
    let upstream = "[upstream]\nmax_fails = 1\nfail_timeout = \"5m\"\nbalance = \"round_robin\"\n";
    let text = |rule: &str| {
        config_text(
            listen,
            admin,
            dir.path(),
            &a.url(),
            &format!("{rule}\n{upstream}"),
        )
        .replace(
            &format!("origins = [\"{}\"]", a.url()),
            &format!("origins = [\"{dead}\", \"{}\"]", a.url()),
        )
    };
    std::fs::write(&file, text("")).expect("config written");
    let node = Node::start(&file, listen, admin).await;
    let client = client::http1();
    let peers = async || {
        let url = format!("http://127.0.0.1:{admin}/peers");
        let resp = client::get(&url).await;
        let peers: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
        peers
            .as_array()
            .expect("a list")
            .iter()
            .find(|p| p["peer"] == dead.as_str())
            .cloned()
            .expect("the dead origin is listed")
    };
    // Requests go round; the one sent to the dead origin is retried on
    // the live one and ejects the dead one.
    for i in 0..4 {
        let resp = client::fetch(&client, node.shop(&format!("/p/{i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    let before = peers().await;
    assert_eq!(before["up"], false, "{before}");
    assert_eq!(before["ejections_total"], 1, "{before}");

    let rule =
        "[[sites.rules]]\npath = \"/p/\"\nresponse_headers = { set = { \"X-Rule\" = \"1\" } }\n";
    std::fs::write(&file, text(rule)).expect("config rewritten");
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    let after = peers().await;
    assert_eq!(after["up"], false, "still ejected: {after}");
    assert_eq!(after["ejections_total"], 1, "{after}");
    assert_eq!(after["failures_total"], before["failures_total"], "{after}");
    // And it is still skipped: every request goes to the live origin at
    // once, with no new failure.
    for i in 0..4 {
        let resp = client::fetch(&client, node.shop(&format!("/p/after/{i}"))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-rule"], "1");
    }
    assert_eq!(peers().await["failures_total"], before["failures_total"]);
}

#[tokio::test]
async fn connection_limits_apply_to_connections_accepted_after_a_reload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = origin("a").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin) = (free_port(), free_port());
    let server = |idle: &str| format!("[server]\nidle_timeout = \"{idle}\"\n");
    std::fs::write(
        &file,
        config_text(listen, admin, dir.path(), &a.url(), &server("1h")),
    )
    .expect("config written");
    let node = Node::start(&file, listen, admin).await;
    // A connection accepted under the old settings.
    let mut before = tokio::net::TcpStream::connect(("127.0.0.1", listen))
        .await
        .expect("connect");
    std::fs::write(
        &file,
        config_text(listen, admin, dir.path(), &a.url(), &server("200ms")),
    )
    .expect("config rewritten");
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["sections_changed"], serde_json::json!(["server"]));
    assert_eq!(report["needs_restart"], serde_json::json!([]));

    // A new connection, idle after one answer, is closed by the new limit.
    let request = b"GET /x HTTP/1.1\r\nhost: shop.test\r\n\r\n";
    let mut after = tokio::net::TcpStream::connect(("127.0.0.1", listen))
        .await
        .expect("connect");
    after.write_all(request).await.expect("request sent");
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), after.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );

    // The connection from before keeps its hour: it still answers.
    before.write_all(request).await.expect("request sent");
    let mut head = [0u8; 12];
    before.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
}

/// Access rules come with a reload, and a JWKS file is read again on each
/// one, even when the config file itself did not change.
#[tokio::test]
async fn a_reload_brings_new_access_rules_and_reads_the_jwks_again() {
    use edge::access::jwt::testing::{ed25519, token};

    let origin = origin("one").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, admin) = (free_port(), free_port());
    let config = dir.path().join("edge.toml");
    let jwks = dir.path().join("jwks.json");
    let (old_key, old_jwk) = ed25519("k");
    let (new_key, new_jwk) = ed25519("k");
    let write_jwks = |jwk: &serde_json::Value| {
        std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).expect("jwks");
    };
    write_jwks(&old_jwk);
    std::fs::write(
        &config,
        config_text(listen, admin, dir.path(), &origin.url(), ""),
    )
    .expect("config");
    let node = Node::start(&config, listen, admin).await;
    let http = client::http1();
    let status = async |req| client::fetch(&http, req).await.status().as_u16();
    assert_eq!(status(node.shop("/a")).await, 200);

    let rules = format!(
        "deny = [\"127.0.0.2\"]\n[[sites.rules]]\npath = \"/api/\"\njwt = {{ jwks_file = \"{}\" }}\n",
        jwks.display()
    );
    std::fs::write(
        &config,
        config_text(listen, admin, dir.path(), &origin.url(), &rules),
    )
    .expect("config");
    assert_eq!(node.reload(Some(TOKEN)).await.0, 200);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "sub": "u", "exp": exp });
    let with = |key: &ring::signature::Ed25519KeyPair| {
        let t = token("EdDSA", "k", &claims, |m| key.sign(m).as_ref().to_vec());
        let mut req = node.shop("/api/x");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("value"),
        );
        req
    };
    assert_eq!(
        status(node.shop("/api/x")).await,
        401,
        "the new rule is in force"
    );
    assert_eq!(status(with(&old_key)).await, 200);
    assert_eq!(status(with(&new_key)).await, 401);

    // the keys rotate: the same config, a new JWKS, a reload
    write_jwks(&new_jwk);
    assert_eq!(node.reload(Some(TOKEN)).await.0, 200);
    assert_eq!(status(with(&new_key)).await, 200);
    assert_eq!(status(with(&old_key)).await, 401);
}

#[tokio::test]
async fn a_changed_cluster_section_is_reported_as_needing_a_restart() {
    let a = origin("a").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin) = (free_port(), free_port());
    // A NATS address where nothing listens: the node serves as a lone one
    // (purges queue) and joins when it is there.
    let nats = free_port();
    let cluster = |role: &str| {
        format!("\n[cluster]\nservers = [\"nats://127.0.0.1:{nats}\"]\nrole = \"{role}\"\n")
    };
    let write = |role: &str| {
        std::fs::write(
            &file,
            config_text(listen, admin, dir.path(), &a.url(), &cluster(role)),
        )
        .expect("config written");
    };
    write("edge");
    let node = Node::start(&file, listen, admin).await;
    write("shield");
    let (status, report) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["needs_restart"], serde_json::json!(["cluster.role"]));
    // The cluster it started with is still the one running.
    let metrics = node.metrics().await;
    assert_eq!(
        metrics::value(&metrics, "edge_cluster_connected "),
        Some(0.0)
    );
    let resp = client::fetch(&client::http1(), node.shop("/x")).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_reload_turns_sampling_up_and_spans_reach_the_collector() {
    let receiver = OtlpReceiver::start().await;
    let a = origin("a").await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("edge.toml");
    let (listen, admin) = (free_port(), free_port());
    let tracing = |sampling: &str| {
        format!(
            "[tracing]\notlp_endpoint = \"{}\"\nsampling = {sampling}\nexport_interval = \"20ms\"\n",
            receiver.url()
        )
    };
    std::fs::write(
        &file,
        config_text(listen, admin, dir.path(), &a.url(), &tracing("0.0")),
    )
    .expect("config written");
    let node = Node::start(&file, listen, admin).await;
    let resp = client::fetch(&client::http1(), node.shop("/before")).await;
    assert_eq!(resp.status(), 200);
    let sent = a.last_request("/before").expect("asked");
    assert!(
        sent.headers.contains_key("traceparent"),
        "ids go upstream at 0"
    );

    std::fs::write(
        &file,
        config_text(listen, admin, dir.path(), &a.url(), &tracing("1.0")),
    )
    .expect("config rewritten");
    let (status, body) = node.reload(Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let changed = body["sections_changed"].to_string();
    assert!(changed.contains("tracing"), "{body}");
    let resp = client::fetch(&client::http1(), node.shop("/after")).await;
    assert_eq!(resp.status(), 200);
    eventually_within("the spans of /after", Duration::from_secs(5), async || {
        receiver
            .spans()
            .iter()
            .any(|s| s.attr("url.path") == Some("/after") && s.attr("edge.site") == Some("shop"))
    })
    .await;
    assert!(
        !receiver
            .spans()
            .iter()
            .any(|s| s.attr("url.path") == Some("/before")),
        "sampling 0 exported /before"
    );
}
