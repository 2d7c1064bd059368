//! Tiers and pools: edges in front of shields chosen by consistent hashing,
//! fall-through when a shield stops, loop protection, origin pools with
//! passive ejection, active probes and least-connections.

use std::time::Duration;

use edge::config::ShieldPeer;
use edge_tests::client::{get, get_with};
use edge_tests::{
    Gate, MockOrigin, Reply, ResponseExt, TestEdge, eventually, eventually_within, free_port,
    metrics, poll_until,
};
use origin_shield::Role;

fn cacheable(body: &str) -> Reply {
    Reply::ok(body.to_owned()).header("cache-control", "max-age=600")
}

async fn shield(origin: &MockOrigin, name: &str) -> TestEdge {
    let name = name.to_owned();
    TestEdge::start_with(&origin.url(), move |c| c.node_name = name).await
}

fn shield_list(shields: &[&TestEdge]) -> Vec<ShieldPeer> {
    shields
        .iter()
        .map(|s| ShieldPeer {
            peer: format!("http://{}", s.addr())
                .parse::<origin_shield::Peer>()
                .expect("peer")
                .with_role(Role::Shield),
            name: None,
        })
        .collect()
}

async fn edge_behind(origin: &MockOrigin, name: &str, shields: Vec<ShieldPeer>) -> TestEdge {
    let name = name.to_owned();
    TestEdge::start_with(&origin.url(), move |c| {
        c.node_name = name;
        c.shields = shields;
    })
    .await
}

/// Which shield answered, from the `Via` chain (origin side first).
fn via_shield(resp: &http::Response<bytes::Bytes>) -> String {
    let via = resp.headers()["via"].to_str().expect("via").to_owned();
    via.split(',')
        .map(str::trim)
        .find_map(|hop| hop.strip_prefix("1.1 shield-"))
        .map(|s| format!("shield-{s}"))
        .unwrap_or_else(|| panic!("no shield in Via: {via}"))
}

#[tokio::test]
async fn a_tier_fetches_each_object_from_origin_once_and_spreads_objects_over_shields() {
    let origin = MockOrigin::start().await;
    let a = shield(&origin, "shield-a").await;
    let b = shield(&origin, "shield-b").await;
    let list = shield_list(&[&a, &b]);
    let mut edges = Vec::new();
    for i in 0..3 {
        edges.push(edge_behind(&origin, &format!("edge-{i}"), list.clone()).await);
    }
    let mut per_shield = std::collections::HashMap::<String, usize>::new();
    for n in 0..40 {
        let path = format!("/obj/{n}");
        origin.route(&path, cacheable(&format!("object {n}")));
        let mut served_by = Vec::new();
        for edge in &edges {
            // Every edge is reached under the site's name, as in production.
            let resp = get_with(&edge.url(&path), &[("host", "cdn.test")]).await;
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.body(), format!("object {n}").as_str());
            served_by.push(via_shield(&resp));
        }
        assert_eq!(
            origin.hits(&path),
            1,
            "{path} left the origin more than once"
        );
        served_by.dedup();
        assert_eq!(
            served_by.len(),
            1,
            "{path}: every edge asks the same shield"
        );
        *per_shield.entry(served_by.remove(0)).or_default() += 1;
    }
    assert_eq!(per_shield.len(), 2, "{per_shield:?}");
    assert!(per_shield.values().all(|&n| n >= 8), "{per_shield:?}");
    // The request reached the origin through exactly one shield, marked.
    let seen = origin.last_request("/obj/39").expect("request");
    let cdn_loop = seen.headers["cdn-loop"].to_str().unwrap().to_owned();
    assert!(
        cdn_loop.contains("edge-") && cdn_loop.contains("shield-"),
        "{cdn_loop}"
    );
}

#[tokio::test]
async fn when_a_shield_stops_only_its_keys_move_and_requests_keep_succeeding() {
    let origin = MockOrigin::start().await;
    let a = shield(&origin, "shield-a").await;
    let b = shield(&origin, "shield-b").await;
    let c = shield(&origin, "shield-c").await;
    let list = shield_list(&[&a, &b, &c]);
    let before = edge_behind(&origin, "edge-1", list.clone()).await;
    let mut owner = Vec::new();
    for n in 0..90 {
        let path = format!("/k/{n}");
        origin.route(&path, cacheable("x"));
        let resp = get_with(&before.url(&path), &[("host", "cdn.test")]).await;
        owner.push(via_shield(&resp));
    }
    for name in ["shield-a", "shield-b", "shield-c"] {
        assert!(owner.iter().any(|o| o == name), "{name} owns nothing");
    }
    b.stop().await;
    // A new edge (nothing cached) with the same list: B's keys fall
    // through down the ring; A's and C's keys stay where they were.
    let after = edge_behind(&origin, "edge-2", list).await;
    let mut moved_to = std::collections::HashSet::new();
    for (n, was) in owner.iter().enumerate() {
        let resp = get_with(&after.url(&format!("/k/{n}")), &[("host", "cdn.test")]).await;
        assert_eq!(resp.status(), 200, "key {n} after shield-b stopped");
        let now = via_shield(&resp);
        if was == "shield-b" {
            assert_ne!(now, "shield-b");
            moved_to.insert(now);
        } else {
            assert_eq!(&now, was, "key {n} moved though its shield is up");
        }
    }
    assert_eq!(moved_to.len(), 2, "B's keys spread over both others");
}

#[tokio::test]
async fn shields_that_share_one_list_fetch_their_own_keys_without_a_detour() {
    let origin = MockOrigin::start().await;
    let ports = [free_port(), free_port()];
    let list: Vec<ShieldPeer> = ports
        .iter()
        .map(|p| ShieldPeer {
            peer: format!("http://127.0.0.1:{p}").parse().expect("peer"),
            name: None,
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let list = list.clone();
        let port = *port;
        nodes.push(
            TestEdge::start_with(&origin.url(), move |c| {
                c.node_name = format!("shield-{i}");
                c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
                c.shields = list;
            })
            .await,
        );
    }
    let started = std::time::Instant::now();
    for n in 0..30 {
        let path = format!("/flat/{n}");
        origin.route(&path, cacheable("flat"));
        for node in &nodes {
            let resp = get_with(&node.url(&path), &[("host", "cdn.test")]).await;
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(origin.hits(&path), 1, "{path}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no request waited on itself: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_loop_between_two_misconfigured_shields_is_cut() {
    let origin = MockOrigin::start().await;
    origin.route("/loop", cacheable("no loop"));
    // Each names only the other as its shield.
    let (port_a, port_b) = (free_port(), free_port());
    let peer = |port: u16| ShieldPeer {
        peer: format!("http://127.0.0.1:{port}").parse().expect("peer"),
        name: None,
    };
    let start = |name: &'static str, port: u16, other: u16| {
        let url = origin.url();
        async move {
            TestEdge::start_with(&url, move |c| {
                c.node_name = name.to_owned();
                c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
                c.shields = vec![peer(other)];
            })
            .await
        }
    };
    let a = start("shield-a", port_a, port_b).await;
    let _b = start("shield-b", port_b, port_a).await;
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), get(&a.url("/loop")))
        .await
        .expect("no endless loop");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the loop was cut at once, not after a fill timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), "no loop");
    assert_eq!(origin.hits("/loop"), 1);
    // A request that claims too many hops already is refused.
    let looped = get_with(&a.url("/other"), &[("cdn-loop", "x1, x2, x3, x4")]).await;
    assert_eq!(looped.status(), 508);
}

#[tokio::test]
async fn a_dead_origin_is_ejected_then_probed_back_into_the_pool() {
    let live = MockOrigin::start().await;
    let dead_port = free_port();
    let dead_url = format!("http://127.0.0.1:{dead_port}");
    let edge = TestEdge::start_with(&live.url(), |c| {
        c.origins.push(dead_url.parse().expect("peer"));
        c.upstream.max_fails = 2;
        c.upstream.fail_timeout = Duration::from_secs(60);
        c.upstream.health.path = Some("/health".into());
        c.upstream.health.interval = Duration::from_millis(100);
        c.upstream.health.timeout = Duration::from_millis(500);
        c.upstream.health.rise = 2;
        c.upstream.health.fall = 2;
    })
    .await;
    // Uncacheable, so every request needs an origin.
    live.route(
        "/api",
        Reply::ok("live").header("cache-control", "no-store"),
    );
    for _ in 0..20 {
        let resp = get(&edge.url("/api")).await;
        assert_eq!(resp.status(), 200, "the dead origin never costs a client");
    }
    let peers: serde_json::Value =
        serde_json::from_slice(get(&edge.admin_url("/peers")).await.body()).expect("json");
    let dead = peers
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["peer"] == dead_url.as_str())
        .expect("dead peer listed");
    assert_eq!(dead["up"], false);
    assert!(
        dead["failures_total"].as_u64().unwrap() <= 3,
        "after ejection the dead origin is skipped: {dead}"
    );
    let text = edge.metrics().await;
    assert!(
        text.contains(&format!(
            "edge_peer_up{{peer=\"{dead_url}\",role=\"origin\"}} 0"
        )),
        "{text}"
    );

    // It comes back: probes see it answer, and it gets traffic again.
    let revived = MockOrigin::start_on(format!("127.0.0.1:{dead_port}").parse().unwrap()).await;
    revived.route(
        "/api",
        Reply::ok("revived").header("cache-control", "no-store"),
    );
    eventually_within(
        "the revived origin to be taken back",
        Duration::from_secs(10),
        async || {
            if revived.hits("/api") > 0 {
                return true;
            }
            let resp = get(&edge.url("/api")).await;
            assert_eq!(resp.status(), 200);
            false
        },
    )
    .await;
    assert!(revived.hits("/health") >= 2, "brought back by probes");
}

#[tokio::test]
async fn least_connections_steers_new_requests_away_from_a_busy_origin() {
    let slow = MockOrigin::start().await;
    let fast = MockOrigin::start().await;
    let reply = |body: &str| Reply::ok(body.to_owned()).header("cache-control", "no-store");
    let busy = Gate::new();
    slow.route("/work", reply("slow").held(&busy));
    fast.route("/work", reply("fast"));
    let fast_active = format!(
        "edge_peer_active_requests{{peer=\"{}\",role=\"origin\"}}",
        fast.url()
    );
    let fast_url = fast.url();
    let edge = TestEdge::start_with(&slow.url(), move |c| {
        c.origins.push(fast_url.parse().expect("peer"));
        c.upstream.balance = origin_shield::balance::Policy::LeastConn;
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        // Distinct URLs: none waits for another's fetch.
        let url = edge.url(&format!("/work?i={i}"));
        tasks.push(tokio::spawn(async move { get(&url).await }));
        // One at a time: this request reaches an origin, and is done with
        // the fast one, before the next arrives.
        eventually("the request to reach an origin", async || {
            slow.hits("/work") + fast.hits("/work") > i
        })
        .await;
        eventually("the fast origin to be idle", async || {
            metrics::value(&edge.metrics().await, &fast_active) == Some(0.0)
        })
        .await;
    }
    busy.open();
    for task in tasks {
        assert_eq!(task.await.expect("client").status(), 200);
    }
    // While the slow origin held a request, every new one went elsewhere.
    assert!(
        slow.hits("/work") <= 2,
        "slow origin got {}",
        slow.hits("/work")
    );
    assert!(fast.hits("/work") >= 18);
}

#[tokio::test]
async fn an_origin_named_by_host_name_becomes_its_addresses() {
    let origin = MockOrigin::start().await;
    origin.route(
        "/dns",
        Reply::ok("resolved").header("cache-control", "no-store"),
    );
    let named = format!("http://localhost:{}", origin.addr().port());
    let edge = TestEdge::start_with(&named, |c| {
        c.upstream.resolve_interval = Duration::from_millis(100);
    })
    .await;
    let ip_member = format!("http://127.0.0.1:{}", origin.addr().port());
    let names = poll_until("the name to resolve", Duration::from_secs(5), async || {
        let peers: serde_json::Value =
            serde_json::from_slice(get(&edge.admin_url("/peers")).await.body()).expect("json");
        let names: Vec<String> = peers
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p["peer"].as_str().unwrap_or_default().to_owned())
            .collect();
        if names.contains(&ip_member) {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    assert!(
        !names.contains(&named),
        "the name itself is no member: {names:?}"
    );
    for _ in 0..5 {
        let resp = get(&edge.url("/dns")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), "resolved");
    }
}

#[tokio::test]
async fn age_accumulates_across_the_tier() {
    let origin = MockOrigin::start().await;
    origin.route("/aged", cacheable("old news"));
    let a = shield(&origin, "shield-a").await;
    let edge = edge_behind(&origin, "edge-1", shield_list(&[&a])).await;
    let host = [("host", "cdn.test")];
    // Warm the shield only.
    let warm = get_with(&a.url("/aged"), &host).await;
    assert_eq!(warm.x_cache(), "MISS");
    // Ages the origin's, the shield's and the edge's copies alike.
    a.advance(Duration::from_millis(2100));
    let first = get_with(&edge.url("/aged"), &host).await;
    assert_eq!(first.x_cache(), "MISS");
    let age: u64 = first.age();
    assert!(age >= 2, "the shield's age is carried: {age}");
    let hit = get_with(&edge.url("/aged"), &host).await;
    assert_eq!(hit.x_cache(), "HIT");
    let hit_age: u64 = hit.age();
    assert!(hit_age >= age, "{hit_age} < {age}");
    assert_eq!(origin.hits("/aged"), 1);
}

#[tokio::test]
async fn the_concurrency_cap_turns_excess_requests_away_with_503() {
    let origin = MockOrigin::start().await;
    let busy = Gate::new();
    origin.route(
        "/slow",
        Reply::ok("slow")
            .header("cache-control", "no-store")
            .held(&busy),
    );
    let edge = TestEdge::start_with(&origin.url(), |c| c.upstream.max_conns = 1).await;
    let first = tokio::spawn({
        let url = edge.url("/slow?a");
        async move { get(&url).await }
    });
    // At the origin, the first request holds the only slot until released.
    origin.wait_for_hits("/slow", 1).await;
    let second = get(&edge.url("/slow?b")).await;
    assert_eq!(second.status(), 503, "the only origin is full");
    busy.open();
    assert_eq!(first.await.expect("first").status(), 200);
    // The slot is free again once the first response is done.
    assert_eq!(get(&edge.url("/slow?c")).await.status(), 200);
    let text = edge.metrics().await;
    assert!(text.contains("kind=\"circuit_open\""), "{text}");
}

#[tokio::test]
async fn an_origin_answering_503_is_passed_over_for_the_next() {
    let sick = MockOrigin::start().await;
    let well = MockOrigin::start().await;
    sick.route("/page", Reply::ok("busy").status(503));
    well.route(
        "/page",
        Reply::ok("fine").header("cache-control", "no-store"),
    );
    let well_url = well.url();
    let edge = TestEdge::start_with(&sick.url(), move |c| {
        c.origins.push(well_url.parse().expect("peer"));
        c.upstream.max_fails = 0;
    })
    .await;
    for _ in 0..6 {
        let resp = get(&edge.url("/page")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), "fine");
    }
    assert!(
        sick.hits("/page") >= 1,
        "round robin tried the sick one too"
    );
    // A POST is never sent twice: it gets the 503 when it lands there.
    sick.route("/form", Reply::ok("busy").status(503));
    well.route("/form", Reply::echo());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = http::Request::post(edge.url("/form"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"once",
            )))
            .expect("request");
        statuses.push(
            edge_tests::client::fetch(&edge_tests::client::http1(), req)
                .await
                .status(),
        );
    }
    assert!(
        statuses.contains(&http::StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert_eq!(
        sick.hits("/form") + well.hits("/form"),
        4,
        "each POST sent once"
    );
    let text = edge.metrics().await;
    assert!(
        !text.contains("edge_upstream_retries_total{reason=\"status\"} 0"),
        "{text}"
    );
}
