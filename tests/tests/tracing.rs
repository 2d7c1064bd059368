//! Distributed tracing end to end (`[tracing]`): a real OTLP/HTTP receiver
//! decodes what the edge exports; the mock origin shows the `traceparent`
//! it was sent. A dead or slow collector costs spans, never requests.

use std::time::Duration;

use edge_tests::client::{get, get_with};
use edge_tests::otlp::{OtlpReceiver, ReceivedSpan};
use edge_tests::{MockOrigin, Reply, TestEdge, eventually, free_port, metrics, poll_until};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent(flags: &str) -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-{flags}")
}

/// An edge exporting to `collector` at `sampling`, quickly.
async fn traced_edge(origin: &MockOrigin, collector: &str, sampling: f64) -> TestEdge {
    let collector = collector.to_owned();
    TestEdge::start_with(&origin.url(), move |c| {
        c.tracing.otlp_endpoint = Some(collector);
        c.tracing.sampling = sampling;
        c.tracing.export_interval = Duration::from_millis(20);
        c.tracing.export_timeout = Duration::from_millis(500);
    })
    .await
}

/// A collector, an origin with `path` cacheable, and an edge in front
/// exporting at `sampling`.
async fn traced(path: &str, sampling: f64) -> (OtlpReceiver, MockOrigin, TestEdge) {
    let receiver = OtlpReceiver::start().await;
    let origin = MockOrigin::start().await;
    cacheable(&origin, path);
    let edge = traced_edge(&origin, &receiver.url(), sampling).await;
    (receiver, origin, edge)
}

fn cacheable(origin: &MockOrigin, path: &str) {
    origin.route(
        path,
        Reply::ok("traced body").header("cache-control", "max-age=600"),
    );
}

/// The `traceparent` the origin got for `path`, split into its parts.
fn sent_upstream(origin: &MockOrigin, path: &str) -> (String, String, String) {
    let req = origin.last_request(path).expect("the origin was asked");
    let value = req
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("a traceparent upstream")
        .to_owned();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Waits for `n` spans of `trace_id` at the receiver.
async fn spans_of(receiver: &OtlpReceiver, trace_id: &str, n: usize) -> Vec<ReceivedSpan> {
    poll_until(
        "spans at the collector",
        Duration::from_secs(5),
        async || {
            let spans: Vec<ReceivedSpan> = receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.len() >= n {
                Ok(spans)
            } else {
                Err(format!("{spans:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_clients_trace_reaches_the_origin_and_the_collector() {
    let (receiver, origin, edge) = traced("/traced", 1.0).await;
    let parent = client_traceparent("01");
    let resp = get_with(
        &edge.url("/traced"),
        &[("traceparent", &parent), ("tracestate", "vendor=abc")],
    )
    .await;
    assert_eq!(resp.status(), 200);

    // The origin is in the client's trace, under the edge's upstream span.
    let (trace_id, parent_id, flags) = sent_upstream(&origin, "/traced");
    assert_eq!(trace_id, CLIENT_TRACE);
    assert_ne!(parent_id, CLIENT_SPAN, "the edge's own span is the parent");
    assert_eq!(flags, "01");
    let state = origin.last_request("/traced").expect("asked");
    assert_eq!(
        state.headers.get("tracestate").map(|v| v.as_bytes()),
        Some(&b"vendor=abc"[..])
    );

    let spans = spans_of(&receiver, CLIENT_TRACE, 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == "SPAN_KIND_SERVER")
        .expect("a server span");
    let client = spans
        .iter()
        .find(|s| s.kind == "SPAN_KIND_CLIENT")
        .expect("an upstream span");
    assert_eq!(server.parent_span_id, CLIENT_SPAN, "{server:?}");
    assert_eq!(client.parent_span_id, server.span_id, "{client:?}");
    assert_eq!(
        client.span_id, parent_id,
        "the origin's parent is the upstream span"
    );
    assert_eq!(server.name, "GET");
    assert_eq!(server.service, "edge");
    assert_eq!(server.attr("edge.cache.status"), Some("MISS"));
    assert_eq!(server.attr("edge.site"), Some("default"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("http.response.body.size"), Some("11"));
    assert_eq!(server.attr("url.path"), Some("/traced"));
    assert_eq!(server.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(server.attr("client.address"), Some("127.0.0.1"));
    let peer = origin.addr().to_string();
    assert_eq!(server.attr("edge.peer"), Some(peer.as_str()));
    assert_eq!(client.attr("server.address"), Some(peer.as_str()));
    assert_eq!(client.attr("http.response.status_code"), Some("200"));

    // A hit is a server span alone, with its tier.
    let hit_parent = "00-11111111111111111111111111111111-2222222222222222-01";
    let resp = get_with(&edge.url("/traced"), &[("traceparent", hit_parent)]).await;
    assert_eq!(resp.status(), 200);
    let spans = spans_of(&receiver, "11111111111111111111111111111111", 1).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].attr("edge.cache.status"), Some("HIT"));
    assert_eq!(spans[0].attr("edge.cache.tier"), Some("memory"));
    assert_eq!(origin.hits("/traced"), 1);
}

#[tokio::test]
async fn without_a_traceparent_the_edge_starts_the_trace() {
    let (receiver, origin, edge) = traced("/fresh", 1.0).await;
    assert_eq!(get(&edge.url("/fresh")).await.status(), 200);
    let (trace_id, parent_id, flags) = sent_upstream(&origin, "/fresh");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(flags, "01");
    let spans = spans_of(&receiver, &trace_id, 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == "SPAN_KIND_SERVER")
        .expect("a server span");
    assert_eq!(server.parent_span_id, "", "a root span");
    assert!(spans.iter().any(|s| s.span_id == parent_id));
}

#[tokio::test]
async fn sampling_zero_exports_nothing_and_passes_the_clients_ids_on() {
    let (receiver, origin, edge) = traced("/quiet", 0.0).await;
    let parent = client_traceparent("01");
    for _ in 0..5 {
        let resp = get_with(&edge.url("/quiet"), &[("traceparent", &parent)]).await;
        assert_eq!(resp.status(), 200);
    }
    origin.route("/other", Reply::ok("y"));
    assert_eq!(get(&edge.url("/other")).await.status(), 200);
    // Not taking part, the edge forwards the caller's ids unchanged; with
    // none, it still starts a trace id (not sampled) for the origin's logs.
    assert_eq!(
        sent_upstream(&origin, "/quiet"),
        (CLIENT_TRACE.into(), CLIENT_SPAN.into(), "01".into())
    );
    let (_, _, flags) = sent_upstream(&origin, "/other");
    assert_eq!(flags, "00");
    let text = edge.metrics().await;
    // Stopping flushes the queue: whatever was queued is sent now.
    edge.stop().await;
    assert_eq!(receiver.requests(), 0, "nothing exported");
    assert_eq!(
        metrics::value(&text, "edge_trace_spans_exported_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_dead_collector_never_fails_a_request() {
    let origin = MockOrigin::start().await;
    cacheable(&origin, "/up");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let edge = traced_edge(&origin, &dead, 1.0).await;
    for _ in 0..20 {
        assert_eq!(get(&edge.url("/up")).await.status(), 200);
    }
    eventually("spans counted as failed exports", async || {
        let text = edge.metrics().await;
        metrics::value(
            &text,
            "edge_trace_spans_dropped_total{reason=\"export_failed\"}",
        )
        .is_some_and(|v| v > 0.0)
    })
    .await;
    // The dashboard reads the same from /stats.json.
    let stats: serde_json::Value =
        serde_json::from_slice(get(&edge.admin_url("/stats.json")).await.body()).expect("json");
    assert!(
        stats["trace_spans_dropped"]["export_failed"].as_u64() > Some(0),
        "{stats}"
    );
    assert_eq!(stats["trace_spans_exported"], 0);
}

#[tokio::test]
async fn a_slow_collector_drops_spans_at_the_queue_and_counts_them() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_delay(Duration::from_secs(3));
    let origin = MockOrigin::start().await;
    cacheable(&origin, "/busy");
    let collector = receiver.url();
    let edge = TestEdge::start_with(&origin.url(), move |c| {
        c.tracing.otlp_endpoint = Some(collector);
        c.tracing.sampling = 1.0;
        c.tracing.queue = 4;
        c.tracing.batch = 2;
        c.tracing.export_interval = Duration::from_millis(10);
        c.tracing.export_timeout = Duration::from_secs(10);
    })
    .await;
    for _ in 0..40 {
        assert_eq!(get(&edge.url("/busy")).await.status(), 200);
    }
    let text = edge.metrics().await;
    let dropped = metrics::value(
        &text,
        "edge_trace_spans_dropped_total{reason=\"queue_full\"}",
    );
    assert!(dropped.is_some_and(|v| v >= 30.0), "{dropped:?}\n{text}");
}

#[tokio::test]
async fn one_trace_spans_the_edge_the_shield_and_the_origin() {
    let receiver = OtlpReceiver::start().await;
    let origin = MockOrigin::start().await;
    cacheable(&origin, "/tiered");
    let collector = receiver.url();
    let traced = |name: &'static str, collector: String| {
        move |c: &mut edge::config::Config| {
            c.node_name = name.to_owned();
            c.tracing.otlp_endpoint = Some(collector);
            c.tracing.sampling = 1.0;
            c.tracing.export_interval = Duration::from_millis(20);
        }
    };
    let shield = TestEdge::start_with(&origin.url(), traced("shield-1", collector.clone())).await;
    let shield_peer = edge::config::ShieldPeer {
        peer: format!("http://{}", shield.addr())
            .parse::<origin_shield::Peer>()
            .expect("peer")
            .with_role(origin_shield::Role::Shield),
        name: None,
    };
    let child_config = traced("edge-1", collector);
    let child = TestEdge::start_with(&origin.url(), move |c| {
        child_config(c);
        c.shields = vec![shield_peer];
    })
    .await;
    let parent = client_traceparent("01");
    let resp = get_with(&child.url("/tiered"), &[("traceparent", &parent)]).await;
    assert_eq!(resp.status(), 200);
    let (trace_id, origin_parent, _) = sent_upstream(&origin, "/tiered");
    assert_eq!(trace_id, CLIENT_TRACE);

    // client → edge server span → edge upstream span → shield server span
    // → shield upstream span → origin.
    let spans = spans_of(&receiver, CLIENT_TRACE, 4).await;
    let by = |kind: &str, instance_parent: &str| {
        spans
            .iter()
            .find(|s| s.kind == kind && s.parent_span_id == instance_parent)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} span under {instance_parent}: {spans:?}"))
    };
    let edge_server = by("SPAN_KIND_SERVER", CLIENT_SPAN);
    let edge_upstream = by("SPAN_KIND_CLIENT", &edge_server.span_id);
    let shield_server = by("SPAN_KIND_SERVER", &edge_upstream.span_id);
    let shield_upstream = by("SPAN_KIND_CLIENT", &shield_server.span_id);
    assert_eq!(shield_upstream.span_id, origin_parent);
    let shield_addr = shield.addr().to_string();
    assert_eq!(edge_server.attr("edge.peer"), Some(shield_addr.as_str()));
    assert_eq!(shield_server.attr("edge.cache.status"), Some("MISS"));
}
