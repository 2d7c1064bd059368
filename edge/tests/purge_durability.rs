//! Purges survive `kill -9`: the `edge` binary as a subprocess caches
//! objects, takes a purge, is killed without warning, and restarts on the
//! same data directory: the purged objects are misses, the others hits.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod common;

use common::{free_port, origin};

const TOKEN: &str = "durable-purge-token";

struct Node {
    child: Child,
    listen: u16,
    admin: u16,
}

impl Node {
    fn spawn(origin: SocketAddr, dir: &std::path::Path, listen: u16, admin: u16) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
        for (key, _) in std::env::vars() {
            if key.starts_with("EDGE_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .arg("--origin")
            .arg(format!("http://{origin}"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin}"))
            .arg("--data-dir")
            .arg(dir)
            .env("EDGE_PURGE_TOKEN", TOKEN)
            .env("EDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("edge binary starts");
        Node {
            child,
            listen,
            admin,
        }
    }

    fn kill9(mut self) {
        // SIGKILL: no shutdown, no flush.
        self.child.kill().expect("kill");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Option<Response<Bytes>> {
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .ok()?
        .ok()?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some(Response::from_parts(parts, body))
}

async fn cache_status(client: &TestClient, node: &Node, path: &str) -> String {
    let req = Request::get(format!("http://127.0.0.1:{}{path}", node.listen))
        .header("host", "cdn.test")
        .body(Full::default())
        .expect("test setup");
    let resp = send(client, req).await.expect("edge answers");
    assert_eq!(resp.status(), 200);
    resp.headers()["x-cache"]
        .to_str()
        .expect("test setup")
        .to_owned()
}

async fn wait_ready(client: &TestClient, node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let req = Request::get(format!("http://127.0.0.1:{}/healthz", node.admin))
            .body(Full::default())
            .expect("test setup");
        if send(client, req).await.is_some_and(|r| r.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "edge never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn purged_objects_stay_purged_after_kill_9() {
    let (origin, hits) = origin().await;
    let dir = tempfile::tempdir().expect("test setup");
    let client: TestClient = Client::builder(TokioExecutor::new()).build_http();
    let (listen, admin) = (free_port(), free_port());

    let node = Node::spawn(origin, dir.path(), listen, admin);
    wait_ready(&client, &node).await;
    let paths = [
        "/keep/1",
        "/keep/2",
        "/url/1",
        "/pfx/1",
        "/pfx/2",
        "/tagged/1",
    ];
    for path in paths {
        assert_eq!(cache_status(&client, &node, path).await, "MISS");
        assert_eq!(cache_status(&client, &node, path).await, "HIT");
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
    let resp = send(&client, req).await.expect("purge answered");
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    // Re-cached after the purge: this copy is legitimately new.
    assert_eq!(cache_status(&client, &node, "/url/1").await, "MISS");
    assert_eq!(cache_status(&client, &node, "/url/1").await, "HIT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.kill9();

    let node = Node::spawn(origin, dir.path(), listen, admin);
    wait_ready(&client, &node).await;
    let before = hits.load(Ordering::Relaxed);
    for path in ["/pfx/1", "/pfx/2", "/tagged/1"] {
        assert_eq!(
            cache_status(&client, &node, path).await,
            "MISS",
            "{path} was purged, and came back after kill -9"
        );
    }
    for path in ["/keep/1", "/keep/2", "/url/1"] {
        assert_eq!(cache_status(&client, &node, path).await, "HIT", "{path}");
    }
    assert_eq!(hits.load(Ordering::Relaxed), before + 3);
}
