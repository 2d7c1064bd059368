//! The numbers behind `/stats.json`, the `/dashboard` page and `edge
//! stats`: totals read from the metrics registry (one source of truth with
//! `/metrics`) plus live state, as one JSON document.
//!
//! Hit ratios count responses whose body came out of the cache (`HIT`,
//! `STALE`, `REVALIDATED`) among all that could have (everything but
//! `PASS`), like Varnish's `cache_hit / (cache_hit + cache_miss)`.

use std::collections::BTreeMap;
use std::time::Instant;

use prometheus::Registry;
use prometheus::proto::{Metric, MetricFamily, MetricType};
use serde::{Deserialize, Serialize};

use crate::metrics::names;

/// Cache statuses whose body came from the cache.
const FROM_CACHE: [&str; 3] = ["HIT", "STALE", "REVALIDATED"];

/// One snapshot of a node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub node: String,
    pub uptime_seconds: f64,
    /// Requests answered, by cache status.
    pub requests: BTreeMap<String, u64>,
    /// Response body bytes sent, by cache status.
    pub bytes: BTreeMap<String, u64>,
    /// Responses by status class (`2xx` …).
    pub status_classes: BTreeMap<String, u64>,
    pub hit_ratio: Option<f64>,
    pub byte_hit_ratio: Option<f64>,
    pub memory: TierStats,
    pub disk: TierStats,
    pub open_connections: i64,
    pub fills_in_flight: i64,
    pub purge_rules: i64,
    pub purge_backlog: i64,
    pub peers: Vec<PeerStats>,
    /// Stale objects served, by reason (`origin_error`: the origin failed).
    #[serde(default)]
    pub stale_served: BTreeMap<String, u64>,
    /// Watchers of the live request log connected now.
    #[serde(default)]
    pub live_log_watchers: i64,
    /// Trace spans the OTLP collector accepted (`[tracing]`).
    #[serde(default)]
    pub trace_spans_exported: u64,
    /// Trace spans dropped, by reason (`queue_full`, `export_failed`).
    #[serde(default)]
    pub trace_spans_dropped: BTreeMap<String, u64>,
    /// The NATS cluster, on a node with `--cluster` (else absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// A node's view of the cluster, from the `edge_cluster_*` metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterStats {
    pub connected: bool,
    /// Live members, this node included.
    pub members: i64,
    /// Purges in the stream not yet applied here.
    pub stream_lag: i64,
    pub published: u64,
    /// Purges received from the stream (every outcome).
    pub applied: u64,
    /// Accepted here, waiting for JetStream.
    pub queued: i64,
    pub joins: u64,
    pub leaves: u64,
}

/// A cache tier's fill.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TierStats {
    /// Bytes held (memory), or written since start (disk).
    pub bytes: u64,
    pub capacity: u64,
    pub entries: u64,
}

/// A peer's state, as in `/peers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerStats {
    pub peer: String,
    pub role: String,
    pub up: bool,
    pub active: u32,
}

/// Ratio of `from_cache` among `counts` without `PASS`; `None` before any
/// cacheable request.
fn ratio(counts: &BTreeMap<String, u64>) -> Option<f64> {
    let cacheable: u64 = counts
        .iter()
        .filter(|(status, _)| *status != "PASS")
        .map(|(_, n)| *n)
        .sum();
    let hits: u64 = FROM_CACHE
        .iter()
        .map(|s| counts.get(*s).copied().unwrap_or(0))
        .sum();
    (cacheable > 0).then(|| hits as f64 / cacheable as f64)
}

/// A counter's or gauge's value.
fn value(family: &MetricFamily, metric: &Metric) -> f64 {
    if family.get_field_type() == MetricType::COUNTER {
        metric.get_counter().get_value()
    } else {
        metric.get_gauge().get_value()
    }
}

fn label<'a>(metric: &'a Metric, name: &str) -> &'a str {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Sums a family's values by one label.
fn sum_by(families: &[MetricFamily], name: &str, by: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for family in families.iter().filter(|f| f.name() == name) {
        for metric in family.get_metric() {
            let v = value(family, metric).max(0.0) as u64;
            *out.entry(label(metric, by).to_owned()).or_default() += v;
        }
    }
    out
}

fn single(families: &[MetricFamily], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for family in families.iter().filter(|f| f.name() == name) {
        for metric in family.get_metric() {
            if labels.iter().all(|(k, v)| label(metric, k) == *v) {
                sum += value(family, metric);
            }
        }
    }
    sum
}

/// Builds the snapshot from the registry (gauges refreshed by the caller).
pub fn snapshot(registry: &Registry, node: &str, started: Instant) -> Stats {
    let families = registry.gather();
    let requests = sum_by(&families, names::REQUESTS_TOTAL, "cache_status");
    let bytes = sum_by(&families, names::RESPONSE_BYTES_TOTAL, "cache_status");
    let mut peers = Vec::new();
    for family in families.iter().filter(|f| f.name() == names::PEER_UP) {
        for metric in family.get_metric() {
            let (peer, role) = (label(metric, "peer"), label(metric, "role"));
            let active = single(
                &families,
                names::PEER_ACTIVE,
                &[("peer", peer), ("role", role)],
            );
            peers.push(PeerStats {
                up: metric.get_gauge().get_value() > 0.0,
                active: active as u32,
                peer: peer.to_owned(),
                role: role.to_owned(),
            });
        }
    }
    let g = |name: &str, labels: &[(&str, &str)]| single(&families, name, labels);
    use cluster::metrics as c;
    // Registered only when the node joined a cluster.
    let cluster = families
        .iter()
        .any(|f| f.name() == c::CONNECTED)
        .then(|| ClusterStats {
            connected: g(c::CONNECTED, &[]) > 0.0,
            members: g(c::MEMBERS, &[]) as i64,
            stream_lag: g(c::STREAM_LAG, &[]) as i64,
            published: g(c::PUBLISHED, &[]) as u64,
            applied: g(c::APPLIED, &[]) as u64,
            queued: g(c::QUEUED, &[]) as i64,
            joins: g(c::MEMBERSHIP, &[("change", "join")]) as u64,
            leaves: g(c::MEMBERSHIP, &[("change", "leave")]) as u64,
        });
    Stats {
        node: node.to_owned(),
        uptime_seconds: started.elapsed().as_secs_f64(),
        hit_ratio: ratio(&requests),
        byte_hit_ratio: ratio(&bytes),
        status_classes: sum_by(&families, names::REQUESTS_TOTAL, "status_class"),
        requests,
        bytes,
        memory: TierStats {
            bytes: g(names::CACHE_BYTES, &[("tier", "memory")]) as u64,
            capacity: g(names::CACHE_CAPACITY_BYTES, &[("tier", "memory")]) as u64,
            entries: g(names::CACHE_ENTRIES, &[("tier", "memory")]) as u64,
        },
        disk: TierStats {
            bytes: g("foyer_storage_disk_io_bytes_total", &[("op", "write")]) as u64,
            capacity: g(names::CACHE_CAPACITY_BYTES, &[("tier", "disk")]) as u64,
            entries: 0,
        },
        open_connections: g(names::OPEN_CONNECTIONS, &[]) as i64,
        fills_in_flight: g(names::FILLS_IN_FLIGHT, &[]) as i64,
        purge_rules: g(names::PURGE_RULES, &[]) as i64,
        purge_backlog: g(names::PURGE_BACKLOG, &[]) as i64,
        peers,
        stale_served: sum_by(&families, names::STALE_SERVED_TOTAL, "reason"),
        live_log_watchers: g(names::LIVE_LOG_WATCHERS, &[]) as i64,
        trace_spans_exported: g(names::TRACE_SPANS_EXPORTED_TOTAL, &[]) as u64,
        trace_spans_dropped: sum_by(&families, names::TRACE_SPANS_DROPPED_TOTAL, "reason"),
        cluster,
    }
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit < UNITS.len() - 1 {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0} {}", UNITS[unit])
    } else {
        format!("{n:.1} {}", UNITS[unit])
    }
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// The `edge stats` text view of `now`; rates come from `before` (an
/// earlier snapshot), or are averages since start without one.
pub fn render(now: &Stats, before: Option<&Stats>, admin: &str) -> String {
    use std::fmt::Write as _;
    let elapsed = before.map_or(now.uptime_seconds, |b| {
        now.uptime_seconds - b.uptime_seconds
    });
    let rate = |now: u64, then: u64| {
        if elapsed > 0.0 {
            now.saturating_sub(then) as f64 / elapsed
        } else {
            0.0
        }
    };
    let then = |map: fn(&Stats) -> &BTreeMap<String, u64>, key: &str| {
        before.map_or(0, |b| map(b).get(key).copied().unwrap_or(0))
    };
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let per = if before.is_some() { "/s" } else { "/s avg" };
    let mut out = String::new();
    let up = now.uptime_seconds as u64;
    let _ = writeln!(
        out,
        "edge {} at {admin}, up {}h {:02}m {:02}s",
        now.node,
        up / 3600,
        up % 3600 / 60,
        up % 60
    );
    let _ = writeln!(
        out,
        "hit ratio     {} of requests, {} of bytes (since start)",
        percent(now.hit_ratio),
        percent(now.byte_hit_ratio)
    );
    let requests_then = before.map_or(0, |b| total(&b.requests));
    let _ = writeln!(
        out,
        "requests      {:>10}  {:>10.1}{per}",
        total(&now.requests),
        rate(total(&now.requests), requests_then)
    );
    for (status, n) in &now.requests {
        let _ = writeln!(
            out,
            "  {status:<11} {n:>10}  {:>10.1}{per}",
            rate(*n, then(|s| &s.requests, status))
        );
    }
    let bytes_then = before.map_or(0, |b| total(&b.bytes));
    let _ = writeln!(
        out,
        "bytes out     {:>10}  {:>10}{per}",
        human_bytes(total(&now.bytes) as f64),
        human_bytes(rate(total(&now.bytes), bytes_then))
    );
    let _ = writeln!(
        out,
        "memory        {} / {} ({} entries)",
        human_bytes(now.memory.bytes as f64),
        human_bytes(now.memory.capacity as f64),
        now.memory.entries
    );
    let _ = writeln!(
        out,
        "disk          {} written / {}",
        human_bytes(now.disk.bytes as f64),
        human_bytes(now.disk.capacity as f64)
    );
    let _ = writeln!(
        out,
        "connections   {}   misses in flight {}   purge rules {}   owed to peers {}",
        now.open_connections, now.fills_in_flight, now.purge_rules, now.purge_backlog
    );
    for peer in &now.peers {
        let _ = writeln!(
            out,
            "peer          {} {} {} ({} in flight)",
            peer.peer,
            peer.role,
            if peer.up { "up" } else { "DOWN" },
            peer.active
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_leave_out_passes() {
        let counts: BTreeMap<String, u64> = [("HIT", 6), ("STALE", 1), ("MISS", 3), ("PASS", 90)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(ratio(&counts), Some(0.7));
        assert_eq!(ratio(&BTreeMap::new()), None);
    }

    #[test]
    fn the_text_view_shows_ratios_and_rates() {
        let mut before = Stats {
            node: "n1".into(),
            uptime_seconds: 10.0,
            ..Stats::default()
        };
        before.requests.insert("HIT".into(), 10);
        let mut now = before.clone();
        now.uptime_seconds = 12.0;
        now.requests.insert("HIT".into(), 30);
        now.requests.insert("MISS".into(), 10);
        now.hit_ratio = ratio(&now.requests);
        let text = render(&now, Some(&before), "127.0.0.1:9090");
        assert!(text.contains("75.0% of requests"), "{text}");
        assert!(
            text.contains("HIT                 30        10.0/s"),
            "{text}"
        );
        let once = render(&now, None, "127.0.0.1:9090");
        assert!(once.contains("/s avg"), "{once}");
    }
}
