//! Streaming fills: a burst of misses costs the origin one fetch, readers
//! stream while the origin is still sending, and failures never leave a
//! partial object behind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::client::{self, get, get_request, send};
use edge_tests::{MockOrigin, Reply, ResponseExt, TestEdge, poll_until};
use http_body_util::BodyExt;
use tokio::sync::Notify;

/// 16 pieces of 64 KiB, each filled with a different byte.
fn pieces() -> Vec<Bytes> {
    (0..16u8)
        .map(|i| Bytes::from(vec![i.wrapping_mul(37); 64 * 1024]))
        .collect()
}

fn expected_hash() -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for piece in pieces() {
        h.update(&piece);
    }
    h.finalize()
}

#[tokio::test]
async fn a_thousand_concurrent_misses_cost_the_origin_one_request() {
    const CLIENTS: usize = 1000;
    let origin = MockOrigin::start().await;
    let gate = Arc::new(Notify::new());
    // 1 MiB: the first 64 KiB at once, the rest after the gate, 100 ms apart.
    origin.route(
        "/cold",
        Reply::streamed(pieces(), Duration::from_millis(100), Some(gate.clone()))
            .header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.server.h2_max_concurrent_streams = 2000;
    })
    .await;
    // One h2c connection carries every request: 1000 concurrent streams.
    let client = client::h2c();
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        let url = edge.url("/cold");
        let first_tx = first_tx.clone();
        tasks.push(tokio::spawn(async move {
            let resp = send(&client, get_request(&url)).await;
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let mut hasher = blake3::Hasher::new();
            let mut first = true;
            while let Some(frame) = body.frame().await {
                let frame = frame.expect("body completes");
                if let Some(data) = frame.data_ref() {
                    if first {
                        first = false;
                        let _ = first_tx.send(()).await;
                    }
                    hasher.update(data);
                }
            }
            hasher.finalize()
        }));
    }
    drop(first_tx);
    // Every client has its first bytes while the origin is held at the gate.
    for i in 0..CLIENTS {
        tokio::time::timeout(Duration::from_secs(30), first_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} clients got bytes before the origin finished"));
    }
    gate.notify_one();
    let expected = expected_hash();
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            expected,
            "a client got different bytes"
        );
    }
    assert_eq!(
        origin.hits("/cold"),
        1,
        "the burst reached the origin more than once"
    );
    // And it is stored: the next request is a hit.
    let again = get(&edge.url("/cold")).await;
    assert_eq!(again.x_cache(), "HIT");
    assert_eq!(blake3::hash(again.body()), expected);
}

#[tokio::test]
async fn the_fill_completes_when_its_first_client_leaves() {
    let origin = MockOrigin::start().await;
    let gate = Arc::new(Notify::new());
    origin.route(
        "/abandoned",
        Reply::streamed(pieces(), Duration::from_millis(20), Some(gate.clone()))
            .header("cache-control", "max-age=600"),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let resp = send(&client::http1(), get_request(&edge.url("/abandoned"))).await;
    let mut body = resp.into_body();
    body.frame().await.expect("first piece").expect("data");
    drop(body);
    gate.notify_one();
    // The fill goes on without any client and stores the object.
    let stored = poll_until(
        "the abandoned fill to be stored",
        Duration::from_secs(10),
        async || {
            let resp = get(&edge.url("/abandoned")).await;
            if resp.x_cache() == "HIT" {
                Ok(resp)
            } else {
                Err(resp.x_cache().to_owned())
            }
        },
    )
    .await;
    assert_eq!(blake3::hash(stored.body()), expected_hash());
    assert_eq!(origin.hits("/abandoned"), 1);
}

#[tokio::test]
async fn an_origin_closing_mid_body_fails_every_reader_and_caches_nothing() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/broken",
        Reply::truncated(100_000, "only the start")
            .header("cache-control", "max-age=600")
            .delay(Duration::from_millis(300)),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = edge.url("/broken");
        tasks.push(tokio::spawn(async move {
            let resp = send(&client::http1(), get_request(&url)).await;
            resp.into_body().collect().await.is_err()
        }));
    }
    for task in tasks {
        assert!(
            task.await.unwrap(),
            "a reader saw a clean end of a truncated body"
        );
    }
    assert_eq!(origin.hits("/broken"), 1, "the readers shared one fetch");
    origin.route(
        "/broken",
        Reply::ok("whole").header("cache-control", "max-age=600"),
    );
    let next = get(&edge.url("/broken")).await;
    assert_eq!(next.x_cache(), "MISS");
    assert_eq!(&next.body()[..], b"whole");
    assert_eq!(origin.hits("/broken"), 2);
}

/// `clients` concurrent requests to `url`, each with its own `x-user`, to
/// an origin echoing that header: each must get its own answer back.
async fn assert_each_client_gets_its_own(url: &str, clients: usize) {
    let mut tasks = Vec::new();
    for i in 0..clients {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let user = format!("user-{i}");
            let resp = client::get_with(&url, &[("x-user", &user)]).await;
            (user, resp.into_body())
        }));
    }
    for task in tasks {
        let (user, body) = task.await.expect("client task");
        assert_eq!(
            &body[..],
            user.as_bytes(),
            "{user} got someone else's response"
        );
    }
}

#[tokio::test]
async fn private_responses_under_concurrency_go_to_each_client_alone() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/me",
        Reply::echo_header("x-user")
            .header("cache-control", "private, max-age=600")
            .delay(Duration::from_millis(300)),
    );
    let edge = TestEdge::start(&origin.url()).await;
    assert_each_client_gets_its_own(&edge.url("/me"), 10).await;
    assert_eq!(origin.hits("/me"), 10);
    // Hit-for-pass: the next request does not wait for anyone.
    let started = tokio::time::Instant::now();
    let resp = get(&edge.url("/me")).await;
    assert!(resp.cache_status().contains("detail=private"));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn no_cache_responses_are_not_shared_with_waiters() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/nc",
        Reply::echo_header("x-user")
            .header("cache-control", "no-cache, max-age=60")
            .delay(Duration::from_millis(300)),
    );
    let edge = TestEdge::start(&origin.url()).await;
    assert_each_client_gets_its_own(&edge.url("/nc"), 5).await;
    assert_eq!(origin.hits("/nc"), 5);
}

#[tokio::test]
async fn a_request_with_authorization_does_not_stop_others_sharing_a_fetch() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/shared",
        Reply::ok("for all")
            .header("cache-control", "max-age=60")
            .delay(Duration::from_millis(300)),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let alone = client::get_with(&edge.url("/shared"), &[("authorization", "Bearer a")]).await;
    assert!(alone.cache_status().contains("detail=authorization"));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = edge.url("/shared");
        tasks.push(tokio::spawn(async move { get(&url).await }));
    }
    for task in tasks {
        assert_eq!(&task.await.unwrap().body()[..], b"for all");
    }
    assert_eq!(
        origin.hits("/shared"),
        2,
        "the five anonymous misses shared one fetch"
    );
}

#[tokio::test]
async fn a_conditional_miss_gets_304_while_the_object_is_stored() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/etagged",
        Reply::ok("body")
            .header("cache-control", "max-age=60")
            .header("etag", "\"t1\""),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let resp = client::get_with(&edge.url("/etagged"), &[("if-none-match", "\"t1\"")]).await;
    assert_eq!(resp.status(), 304);
    assert!(resp.body().is_empty());
    let full = poll_until(
        "the object to be stored",
        Duration::from_secs(5),
        async || {
            let full = get(&edge.url("/etagged")).await;
            if full.x_cache() == "HIT" {
                Ok(full)
            } else {
                Err(full.x_cache().to_owned())
            }
        },
    )
    .await;
    assert_eq!(&full.body()[..], b"body");
    assert_eq!(origin.hits("/etagged"), 1);
}

#[tokio::test]
async fn a_leader_whose_client_leaves_before_the_head_hands_over_to_one_waiter() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/slow-head",
        Reply::ok("worth the wait")
            .header("cache-control", "max-age=600")
            .delay(Duration::from_millis(600)),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let url = edge.url("/slow-head");
    // The leader gives up while the origin is still thinking.
    let leader = tokio::spawn({
        let url = url.clone();
        async move { send(&client::http1(), get_request(&url)).await }
    });
    origin.wait_for_hits("/slow-head", 1).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    // The waiters join the leader's fill inside the edge, which shows
    // nowhere (no metric counts waiters, the origin sees nothing): give
    // them time to, so that the leader leaving hands the fetch over.
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    for waiter in waiters {
        let resp = waiter.await.expect("waiter");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), "worth the wait");
    }
    // The abandoned fetch, and one waiter's: not one per waiter.
    assert_eq!(origin.hits("/slow-head"), 2);
}

#[tokio::test]
async fn waiters_share_an_origin_failure_instead_of_repeating_it() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/stuck",
        Reply::ok("too late").delay(Duration::from_secs(3)),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| {
        c.upstream.header_timeout = Duration::from_millis(400);
    })
    .await;
    let url = edge.url("/stuck");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for c in clients {
        let resp = c.await.expect("client");
        assert_eq!(resp.status(), 504);
    }
    assert_eq!(origin.hits("/stuck"), 1, "one timeout, not eight");
}

#[tokio::test]
async fn a_changed_object_found_on_revalidation_is_shared_with_those_waiting() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/news",
        Reply::ok("old")
            .header("cache-control", "max-age=1")
            .header("etag", "\"v1\""),
    );
    let edge = TestEdge::start(&origin.url()).await;
    let url = edge.url("/news");
    assert_eq!(get(&url).await.body(), "old");
    edge.advance(Duration::from_millis(1100));

    // The new version arrives slowly: the requests that queued behind the
    // revalidation must stream it, not ask again.
    let gate = Arc::new(Notify::new());
    origin.route(
        "/news",
        Reply::streamed(pieces(), Duration::ZERO, Some(gate.clone()))
            .header("cache-control", "max-age=600")
            .header("etag", "\"v2\""),
    );
    const CLIENTS: usize = 10;
    let (head_tx, mut head_rx) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            let head_tx = head_tx.clone();
            tokio::spawn(async move {
                let resp = send(&client::http1(), get_request(&url)).await;
                let _ = head_tx.send(()).await;
                let status = resp.status();
                let body =
                    tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
                        .await
                        .expect("body within 20 s")
                        .expect("body");
                (status, body.to_bytes())
            })
        })
        .collect();
    drop(head_tx);
    // Every client has its answer under way while the origin holds the
    // rest of the new version.
    for i in 0..CLIENTS {
        tokio::time::timeout(Duration::from_secs(10), head_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} clients were answered before the body ended"));
    }
    gate.notify_one();
    let expected = expected_hash();
    for c in clients {
        let (status, body) = c.await.expect("client");
        assert_eq!(status, 200);
        assert_eq!(blake3::hash(&body), expected);
    }
    assert_eq!(origin.hits("/news"), 2, "one fill, one revalidation");
}
