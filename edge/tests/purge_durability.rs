//! Purges survive `kill -9`: the `edge` binary as a subprocess caches
//! objects, takes a purge, is killed without warning, and restarts on the
//! same data directory: the purged objects are misses, the others hits.

use std::time::Duration;

use bytes::Bytes;
use edge_tests::client::{self, TestClient, try_fetch};
use edge_tests::process::{Node, TOKEN};
use edge_tests::{MockOrigin, ResponseExt, free_port};
use http::Request;
use http_body_util::Full;

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

/// GETs `path` from `node` and returns its `X-Cache`.
async fn x_cache_of(client: &TestClient, node: &Node, path: &str) -> String {
    let req = Request::get(format!("http://127.0.0.1:{}{path}", node.listen))
        .header("host", "cdn.test")
        .body(Full::default())
        .expect("test setup");
    let resp = try_fetch(client, req, Duration::from_secs(10))
        .await
        .expect("edge answers");
    assert_eq!(resp.status(), 200);
    resp.header("x-cache").expect("test setup").to_owned()
}

#[tokio::test]
async fn purged_objects_stay_purged_after_kill_9() {
    let site = MockOrigin::start_site().await;
    let origin = site.addr();
    let dir = tempfile::tempdir().expect("test setup");
    let client = client::http1();
    let (listen, admin) = (free_port(), free_port());

    let node = Node::spawn(EDGE, origin, dir.path(), listen, admin, &[]);
    node.wait_ready().await;
    let paths = [
        "/keep/1",
        "/keep/2",
        "/url/1",
        "/pfx/1",
        "/pfx/2",
        "/tagged/1",
    ];
    for path in paths {
        assert_eq!(x_cache_of(&client, &node, path).await, "MISS");
        assert_eq!(x_cache_of(&client, &node, path).await, "HIT");
    }
    // Give the disk tier time to write what it holds: an unflushed object
    // may be lost by a crash (that is a miss, never a wrong answer).
    tokio::time::sleep(Duration::from_secs(2)).await;
    // One purge of each kind; only the URL purge also evicts at once, so
    // the prefix and tag purges hold only through their durable rules.
    let body = r#"{"urls": ["http://cdn.test/url/1"], "prefixes": ["cdn.test/pfx"],
                  "tags": ["tag-tagged"]}"#;
    let req = Request::post(format!("http://127.0.0.1:{admin}/purge"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .expect("test setup");
    let resp = try_fetch(&client, req, Duration::from_secs(10))
        .await
        .expect("purge answered");
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    // Re-cached after the purge: this copy is legitimately new.
    assert_eq!(x_cache_of(&client, &node, "/url/1").await, "MISS");
    assert_eq!(x_cache_of(&client, &node, "/url/1").await, "HIT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.kill9();

    let node = Node::spawn(EDGE, origin, dir.path(), listen, admin, &[]);
    node.wait_ready().await;
    let before = site.total_hits();
    for path in ["/pfx/1", "/pfx/2", "/tagged/1"] {
        assert_eq!(
            x_cache_of(&client, &node, path).await,
            "MISS",
            "{path} was purged, and came back after kill -9"
        );
    }
    for path in ["/keep/1", "/keep/2", "/url/1"] {
        assert_eq!(x_cache_of(&client, &node, path).await, "HIT", "{path}");
    }
    assert_eq!(site.total_hits(), before + 3);
}
