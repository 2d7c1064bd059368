//! The cluster on NATS JetStream end to end (issue 22), against a real
//! `nats-server` each test starts: a purge at one node in force at the
//! others, NATS down (202, published when it is back), a node down during
//! a purge, a node joining after it, and membership in the KV bucket.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use edge::config::Secret;
use edge_tests::client::{self, get_with};
use edge_tests::nats::NatsServer;
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, eventually_within, metrics};
use http::{Request, Response};
use http_body_util::Full;

const TOKEN: &str = "purge-token-for-tests";
const HOST: (&str, &str) = ("host", "cdn.test");
/// The issue's bound for a purge to be in force everywhere is 1 s; the
/// tests allow more for a loaded CI box, and the bench measures the real
/// figure.
const PROPAGATION: Duration = Duration::from_secs(3);

fn cacheable(body: &str) -> Reply {
    Reply::ok(body.to_owned())
        .header("cache-control", "max-age=600")
        .header("etag", "\"v1\"")
        .header("surrogate-key", "shared-tag")
}

/// A node on `nats` (when given) with its own name and data directory.
async fn node(origin: &MockOrigin, dir: &Path, name: &str, nats: Option<&NatsServer>) -> TestEdge {
    let servers: Vec<String> = nats.map(NatsServer::url).into_iter().collect();
    let name = name.to_owned();
    TestEdge::start_in(&origin.url(), dir, move |c| {
        c.node_name = name;
        c.purge.token = Some(Secret(TOKEN.into()));
        c.purge.retry_max = Duration::from_millis(300);
        c.cluster.servers = servers;
        c.cluster.publish_timeout = Duration::from_millis(500);
        c.cluster.member_ttl = Duration::from_secs(3);
    })
    .await
}

async fn post(url: &str, body: &str) -> Response<Bytes> {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    client::fetch(&client::http1(), req).await
}

async fn cache_status(edge: &TestEdge, path: &str) -> String {
    let resp = get_with(&edge.url(path), &[HOST]).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.header("x-cache").expect("x-cache").to_owned()
}

async fn cached_at(edge: &TestEdge, path: &str) {
    cache_status(edge, path).await;
    assert_eq!(cache_status(edge, path).await, "HIT", "{path} cached");
}

async fn purged_within(edge: &TestEdge, path: &str, limit: Duration) {
    eventually_within(
        &format!("{path} purged at {}", edge.addr()),
        limit,
        async || cache_status(edge, path).await != "HIT",
    )
    .await;
}

async fn metric(edge: &TestEdge, name: &str) -> f64 {
    metrics::value(&edge.metrics().await, &format!("{name} ")).unwrap_or(-1.0)
}

fn dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().expect("dir")).collect()
}

#[tokio::test]
async fn a_purge_at_one_node_is_in_force_at_all_three() {
    let nats = NatsServer::start();
    let origin = MockOrigin::start().await;
    origin.route("/url", cacheable("url"));
    origin.route("/dir/a", cacheable("prefix"));
    origin.route("/tagged", cacheable("tag"));
    origin.route("/soft", cacheable("soft"));
    let dirs = dirs(3);
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(node(&origin, dir.path(), &format!("n{i}"), Some(&nats)).await);
    }
    for n in &nodes {
        for path in ["/url", "/dir/a", "/tagged", "/soft"] {
            cached_at(n, path).await;
        }
    }
    let purges = [
        ("/url", r#"{"urls": ["http://cdn.test/url"]}"#),
        ("/dir/a", r#"{"prefixes": ["cdn.test/dir"]}"#),
        ("/tagged", r#"{"tags": ["shared-tag"]}"#),
    ];
    for (path, body) in purges {
        let resp = post(&nodes[0].admin_url("/purge"), body).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.body());
        let answer: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
        assert_eq!(answer["cluster"], "published", "{answer}");
        for n in &nodes {
            purged_within(n, path, PROPAGATION).await;
        }
    }
    let resp = post(
        &nodes[1].admin_url("/purge"),
        r#"{"urls": ["http://cdn.test/soft"], "soft": true}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    for n in &nodes {
        eventually_within(
            "soft purge: served stale or revalidated",
            PROPAGATION,
            async || {
                let resp = get_with(&n.url("/soft"), &[HOST]).await;
                resp.header("x-cache").is_some_and(|c| c != "HIT")
            },
        )
        .await;
    }
    assert!(metric(&nodes[0], "edge_cluster_purges_published_total").await >= 3.0);
    assert!(metric(&nodes[2], "edge_cluster_connected").await == 1.0);
}

#[tokio::test]
async fn with_nats_down_purges_get_202_and_reach_every_node_once_it_is_back() {
    let mut nats = NatsServer::start();
    let origin = MockOrigin::start().await;
    origin.route("/shared", cacheable("shared"));
    let dirs = dirs(2);
    let a = node(&origin, dirs[0].path(), "a", Some(&nats)).await;
    let b = node(&origin, dirs[1].path(), "b", Some(&nats)).await;
    cached_at(&a, "/shared").await;
    cached_at(&b, "/shared").await;
    nats.stop();
    eventually_within("A to see NATS gone", Duration::from_secs(5), async || {
        metric(&a, "edge_cluster_connected").await == 0.0
    })
    .await;
    let resp = post(
        &a.admin_url("/purge"),
        r#"{"urls": ["http://cdn.test/shared"]}"#,
    )
    .await;
    assert_eq!(resp.status(), 202, "{:?}", resp.body());
    let answer: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(answer["cluster"], "queued");
    // Applied here at once; the node keeps serving.
    assert_eq!(cache_status(&a, "/shared").await, "MISS");
    assert_eq!(
        cache_status(&b, "/shared").await,
        "HIT",
        "B cannot know yet"
    );
    eventually_within(
        "the purge to show as queued",
        Duration::from_secs(5),
        async || metric(&a, "edge_cluster_purges_queued").await >= 1.0,
    )
    .await;
    nats.restart();
    purged_within(&b, "/shared", Duration::from_secs(10)).await;
    eventually_within("the queue to drain", Duration::from_secs(5), async || {
        metric(&a, "edge_cluster_purges_queued").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_node_down_during_a_purge_applies_it_when_it_restarts() {
    let nats = NatsServer::start();
    let origin = MockOrigin::start().await;
    origin.route("/shared", cacheable("shared"));
    let dirs = dirs(2);
    let a = node(&origin, dirs[0].path(), "a", Some(&nats)).await;
    let c = node(&origin, dirs[1].path(), "c", Some(&nats)).await;
    cached_at(&a, "/shared").await;
    cached_at(&c, "/shared").await;
    // C stops with the object in its disk tier; its durable consumer stays.
    c.stop().await;
    let resp = post(
        &a.admin_url("/purge"),
        r#"{"urls": ["http://cdn.test/shared"]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let c = node(&origin, dirs[1].path(), "c", Some(&nats)).await;
    purged_within(&c, "/shared", PROPAGATION).await;
    eventually_within("C's consumer to catch up", PROPAGATION, async || {
        metric(&c, "edge_cluster_stream_lag").await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_node_joining_after_a_purge_never_serves_what_it_purged() {
    let nats = NatsServer::start();
    let origin = MockOrigin::start().await;
    origin.route("/old", cacheable("old"));
    let dirs = dirs(2);
    // D's disk tier holds the object from before (a restored image), and
    // D has never been part of the cluster.
    let d = node(&origin, dirs[1].path(), "d", None).await;
    cached_at(&d, "/old").await;
    d.stop().await;
    let a = node(&origin, dirs[0].path(), "a", Some(&nats)).await;
    let resp = post(
        &a.admin_url("/purge"),
        r#"{"urls": ["http://cdn.test/old"]}"#,
    )
    .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let d = node(&origin, dirs[1].path(), "d", Some(&nats)).await;
    // Its new consumer replays the stream from now − rule_ttl, and its
    // listeners accept only once that is done: the very first request
    // already misses (no wait here for the replay).
    assert_eq!(cache_status(&d, "/old").await, "MISS");
    assert!(
        metric(&d, "edge_cluster_purges_applied_total{outcome=\"applied\"}").await >= 1.0,
        "the replayed purge is counted"
    );
}

#[tokio::test]
async fn members_register_in_the_bucket_and_a_clean_stop_leaves_at_once() {
    let nats = NatsServer::start();
    let origin = MockOrigin::start().await;
    let dirs = dirs(2);
    let edge = node(&origin, dirs[0].path(), "edge-1", Some(&nats)).await;
    let shield = {
        let servers = vec![nats.url()];
        TestEdge::start_in(&origin.url(), dirs[1].path(), move |c| {
            c.node_name = "shield-1".into();
            c.cluster.servers = servers;
            c.cluster.role = cluster::Role::Shield;
            c.cluster.member_ttl = Duration::from_secs(3);
        })
        .await
    };
    eventually_within(
        "both members seen by the edge",
        Duration::from_secs(5),
        async || metric(&edge, "edge_cluster_members").await == 2.0,
    )
    .await;
    shield.stop().await;
    // Well under the 3 s TTL: the shield deleted its entry.
    eventually_within(
        "the shield gone from the edge's view",
        Duration::from_secs(2),
        async || metric(&edge, "edge_cluster_members").await == 1.0,
    )
    .await;
    assert!(
        metric(
            &edge,
            "edge_cluster_membership_changes_total{change=\"leave\"}"
        )
        .await
            >= 1.0
    );
}

/// Purge propagation across 5 nodes on loopback (issue 22's benchmark):
/// from the API's 200 to the purge being held at every node, polled on
/// each node's `GET /purge/{id}`. Run with
/// `cargo test -p edge-tests --test cluster --release -- --ignored --nocapture propagation`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn propagation_across_five_nodes() {
    let nats = NatsServer::start();
    let origin = MockOrigin::start().await;
    let dirs = dirs(5);
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(node(&origin, dir.path(), &format!("p{i}"), Some(&nats)).await);
    }
    let bearer = format!("Bearer {TOKEN}");
    let rounds: usize = std::env::var("PURGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let (mut api, mut everywhere) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let sent = std::time::Instant::now();
        let body = format!(r#"{{"urls": ["http://cdn.test/p{i}"]}}"#);
        let resp = post(&nodes[i % 5].admin_url("/purge"), &body).await;
        assert_eq!(resp.status(), 200);
        let acked = sent.elapsed();
        let answer: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
        let id = answer["id"].as_str().expect("id").to_owned();
        let start = std::time::Instant::now();
        for n in &nodes {
            let url = n.admin_url(&format!("/purge/{id}"));
            eventually_within("purge held", Duration::from_secs(5), async || {
                get_with(&url, &[("authorization", &bearer)]).await.status() == 200
            })
            .await;
        }
        api.push(acked);
        everywhere.push(start.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p) as usize]
    };
    eprintln!(
        "{rounds} purges, 5 nodes: API (with JetStream ack) p50 {:?} p99 {:?}; 200 → in force everywhere p50 {:?} p99 {:?}",
        pct(&mut api, 0.5),
        pct(&mut api, 0.99),
        pct(&mut everywhere, 0.5),
        pct(&mut everywhere, 0.99)
    );
}
