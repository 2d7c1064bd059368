//! `kill -9` in the middle of heavy fills and purges, three times over on
//! the same data directory. After each restart the node serves, every body
//! is exactly the origin's (a fill cut off by the kill is never a partial
//! object), and every purge that was answered 200 still holds.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_tests::client::{self, ChannelBody, TestClient, try_fetch};
use edge_tests::process::{Node, TOKEN};
use edge_tests::{ResponseExt, free_port};
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

/// Tiers small enough that the load evicts, large enough to keep some.
const DISK_FLAGS: [&str; 4] = ["--memory", "64MiB", "--disk", "256MiB"];
/// Objects filled under load: sizes from 16 KiB to 4 MiB, so some live
/// inline in their head and others in many chunks.
const OBJECTS: usize = 24;
/// Objects cached first, then purged one by one while the fills run.
const PURGED: usize = 30;

fn size_of(path: &str) -> usize {
    if path.starts_with("/victim/") {
        return 8 << 10;
    }
    let n: usize = path
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    match n % 4 {
        0 => 16 << 10,
        1 => 300 << 10,
        2 => (2 << 20) + 12_345,
        _ => 4 << 20,
    }
}

/// The body of `path`: every 32 bytes depend on the path and their
/// offset. Made once per path (hashing megabytes is slow in debug builds).
fn body_of(path: &str) -> Bytes {
    static BODIES: Mutex<Option<HashMap<String, Bytes>>> = Mutex::new(None);
    let mut bodies = BODIES.lock().unwrap_or_else(|p| p.into_inner());
    let bodies = bodies.get_or_insert_with(HashMap::new);
    if let Some(body) = bodies.get(path) {
        return body.clone();
    }
    let seed = blake3::hash(path.as_bytes());
    let mut out = Vec::with_capacity(size_of(path) + 32);
    let mut xof = blake3::Hasher::new_keyed(seed.as_bytes()).finalize_xof();
    out.resize(size_of(path), 0);
    xof.fill(&mut out);
    let body = Bytes::from(out);
    bodies.insert(path.to_owned(), body.clone());
    body
}

/// An origin that streams each body in 64 KiB pieces with a short pause
/// between them, so that a kill lands in the middle of fills.
async fn slow_origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = body_of(req.uri().path());
                    let len = body.len();
                    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
                    tokio::spawn(async move {
                        for piece in body.chunks(64 << 10) {
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            if tx.send(body.slice_ref(piece)).await.is_err() {
                                return;
                            }
                        }
                    });
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("cache-control", "max-age=3600")
                            .header("content-length", len)
                            .body(ChannelBody(rx))
                            .expect("test setup"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn get(client: &TestClient, node_port: u16, path: &str) -> Option<Response<Bytes>> {
    let req = Request::get(format!("http://127.0.0.1:{node_port}{path}"))
        .header("host", "cdn.test")
        .body(Full::default())
        .expect("test setup");
    try_fetch(client, req, Duration::from_secs(20)).await
}

async fn purge(client: &TestClient, admin: u16, path: &str) -> Option<u16> {
    let body = format!(r#"{{"urls": ["http://cdn.test{path}"]}}"#);
    let req = Request::post(format!("http://127.0.0.1:{admin}/purge"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .expect("test setup");
    let resp = try_fetch(client, req, Duration::from_secs(10)).await?;
    Some(resp.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_fills_and_purges_leaves_no_partial_or_purged_object() {
    let origin = slow_origin().await;
    let dir = tempfile::tempdir().expect("test setup");
    let client = client::http1();
    let (listen, admin) = (free_port(), free_port());
    let objects: Vec<String> = (0..OBJECTS).map(|i| format!("/obj/{i}")).collect();
    // Purged paths of every round, with the round's distinct names so a
    // later round's fill never re-caches an earlier round's purge.
    let mut purged_for_good: HashSet<String> = HashSet::new();
    let mut hits_after_restart = 0;

    for round in 0..3u64 {
        let node = Node::spawn(EDGE, origin, dir.path(), listen, admin, &DISK_FLAGS);
        node.wait_ready().await;

        // Everything served after a crash is whole and right, and nothing
        // purged before it is served from cache.
        for path in &objects {
            let resp = get(&client, listen, path).await.expect("edge answers");
            assert_eq!(resp.status(), 200, "{path}");
            assert!(
                resp.body() == &body_of(path),
                "round {round}: {path} served damaged ({}, {} of {} bytes)",
                resp.x_cache(),
                resp.body().len(),
                size_of(path)
            );
            if round > 0 && resp.x_cache() == "HIT" {
                hits_after_restart += 1;
            }
        }
        for path in &purged_for_good {
            let resp = get(&client, listen, path).await.expect("edge answers");
            assert_ne!(
                resp.x_cache(),
                "HIT",
                "round {round}: {path} was purged with a 200 and came back"
            );
            assert!(resp.body() == &body_of(path), "{path}");
        }
        // Those just fetched are cached again: re-purge so they stay
        // checkable (a 200 now makes them purged for good again).
        let recached: Vec<String> = purged_for_good.drain().collect();
        for path in recached {
            if purge(&client, admin, &path).await == Some(200) {
                purged_for_good.insert(path);
            }
        }

        // This round's purge victims, cached before the load starts.
        let victims: Vec<String> = (0..PURGED)
            .map(|i| format!("/victim/{round}/{i}"))
            .collect();
        for path in &victims {
            get(&client, listen, path).await.expect("edge answers");
        }

        // Heavy fills: 24 clients over the objects (a kill during a fill
        // of a 4 MiB object is very likely), and purges one by one.
        let stop_at = Instant::now() + Duration::from_millis(1000 + 500 * round);
        let mut load = tokio::task::JoinSet::new();
        for worker in 0..24usize {
            let client = client.clone();
            let objects = objects.clone();
            load.spawn(async move {
                let mut i = worker * 7;
                while Instant::now() < stop_at {
                    let path = &objects[i % objects.len()];
                    let _ = get(&client, listen, path).await;
                    i += 5;
                }
            });
        }
        let answered = Arc::new(Mutex::new(Vec::new()));
        {
            let client = client.clone();
            let answered = answered.clone();
            load.spawn(async move {
                for path in victims {
                    if Instant::now() >= stop_at {
                        break;
                    }
                    if purge(&client, admin, &path).await == Some(200) {
                        answered.lock().expect("lock").push(path);
                    }
                }
            });
        }
        tokio::time::sleep_until(stop_at.into()).await;
        node.kill9();
        load.shutdown().await;
        let answered = answered.lock().expect("lock").clone();
        assert!(!answered.is_empty(), "round {round}: no purge got through");
        eprintln!(
            "round {round}: killed after {} purges answered 200",
            answered.len()
        );
        purged_for_good.extend(answered);
    }

    // The last restart, checked the same way.
    let node = Node::spawn(EDGE, origin, dir.path(), listen, admin, &DISK_FLAGS);
    node.wait_ready().await;
    for path in &objects {
        let resp = get(&client, listen, path).await.expect("edge answers");
        assert!(resp.body() == &body_of(path), "{path} served damaged");
        if resp.x_cache() == "HIT" {
            hits_after_restart += 1;
        }
    }
    for path in &purged_for_good {
        let resp = get(&client, listen, path).await.expect("edge answers");
        assert_ne!(resp.x_cache(), "HIT", "{path} was purged and came back");
    }
    eprintln!(
        "{hits_after_restart} hits after restarts; {} purged objects checked",
        purged_for_good.len()
    );
    // Not vacuous: the disk tier did carry objects across the crashes.
    assert!(
        hits_after_restart > 0,
        "no object survived any crash: the disk tier was not exercised"
    );
}
