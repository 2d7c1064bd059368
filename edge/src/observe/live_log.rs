//! The live request log, as `varnishlog` shows one: `GET /log?filter=…` on
//! the admin listener streams a record per request as Server-Sent Events,
//! and `edge log --follow` prints them.
//!
//! With nobody watching, a request pays one relaxed atomic load: records
//! are built only while a watcher is connected. A watcher reads from a
//! bounded broadcast ring; one that falls [`BACKLOG`] records behind (it
//! stopped reading, or reads slower than the traffic) is dropped with a
//! last comment saying so. Serving never waits for a watcher.
//!
//! A client that stops reading stops its HTTP server from polling the
//! stream, so nothing reading the ring would ever notice: [`Feed`] moves
//! a watcher's records from the ring into a queue of its own, from a task
//! that finds the queue full and drops the watcher there.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use prometheus::IntGauge;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::config::IpNet;
use crate::hooks::{RequestSummary, Session};

/// Records a watcher may fall behind before it is dropped.
pub const BACKLOG: usize = 1024;

/// One request, as watchers see it (the fields of the JSON access line).
#[derive(Debug, Clone, Serialize)]
pub struct LiveRecord {
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub client: IpAddr,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub cache: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

impl LiveRecord {
    fn of(session: &Session, summary: &RequestSummary) -> LiveRecord {
        LiveRecord {
            timestamp: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            client: session.client_addr.ip(),
            method: session.req.method.as_str().to_owned(),
            host: session.host().to_owned(),
            path: session.path_and_query().to_owned(),
            status: summary.status.as_u16(),
            bytes: summary.body_bytes,
            duration_ms: (summary.duration.as_secs_f64() * 1e6).round() / 1e3,
            cache: session.cache_status.as_str(),
            tier: session.cache_tier.map(|t| t.as_str()),
            peer: session.peer.as_ref().map(|p| p.authority().to_string()),
            error: summary.error,
        }
    }
}

/// The node's live log: where requests are published, and watchers
/// subscribe.
#[derive(Debug)]
pub struct LiveLog {
    tx: broadcast::Sender<Arc<LiveRecord>>,
    watchers: AtomicUsize,
    /// `edge_live_log_watchers`.
    gauge: IntGauge,
}

impl LiveLog {
    pub fn new(gauge: IntGauge) -> LiveLog {
        LiveLog {
            tx: broadcast::channel(BACKLOG).0,
            watchers: AtomicUsize::new(0),
            gauge,
        }
    }

    /// Publishes the request if anybody watches; never waits.
    #[inline]
    pub fn record(&self, session: &Session, summary: &RequestSummary) {
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(LiveRecord::of(session, summary)));
    }

    /// A new watcher of the records that match `filter`.
    pub fn watch(self: &Arc<Self>, filter: Filter) -> Watcher {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        self.gauge.inc();
        Watcher {
            rx: self.tx.subscribe(),
            filter,
            log: self.clone(),
        }
    }

    /// Watchers connected now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }
}

/// What a watcher gets next.
#[derive(Debug)]
pub enum Next {
    Record(Arc<LiveRecord>),
    /// It fell this many records behind: dropped.
    Dropped(u64),
    /// The node is stopping.
    Closed,
}

/// One watcher; leaving (drop) stops the node from building records once
/// it was the last.
#[derive(Debug)]
pub struct Watcher {
    rx: broadcast::Receiver<Arc<LiveRecord>>,
    filter: Filter,
    log: Arc<LiveLog>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.log.watchers.fetch_sub(1, Ordering::Relaxed);
        self.log.gauge.dec();
    }
}

impl Watcher {
    /// The next record that matches the filter.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.rx.recv().await {
                Ok(record) if self.filter.matches(&record) => return Next::Record(record),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Dropped(n),
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }

    /// The next record, or `None` after `idle` without one (for keep-alive
    /// comments that find a client gone).
    pub async fn next_within(&mut self, idle: Duration) -> Option<Next> {
        tokio::time::timeout(idle, self.next()).await.ok()
    }

    /// This watcher's records through a queue of [`BACKLOG`], filled by a
    /// task of its own (on the current runtime): the watcher is dropped
    /// once the queue is full, whether or not anything reads the feed.
    pub fn feed(mut self) -> Feed {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let behind = dropped.clone();
        let pump = tokio::spawn(async move {
            loop {
                match self.next().await {
                    Next::Record(record) => match tx.try_send(record) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            behind.store(BACKLOG as u64 + 1, Ordering::Relaxed);
                            return;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Next::Dropped(n) => {
                        behind.store(n.max(1), Ordering::Relaxed);
                        return;
                    }
                    Next::Closed => return,
                }
            }
        });
        Feed { rx, dropped, pump }
    }
}

/// A watcher's records, queued by its own task (see [`Watcher::feed`]);
/// dropping it ends the task and the watcher.
#[derive(Debug)]
pub struct Feed {
    rx: mpsc::Receiver<Arc<LiveRecord>>,
    /// Records behind when the task dropped the watcher (0: it did not).
    dropped: Arc<std::sync::atomic::AtomicU64>,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl Feed {
    /// The next record (those queued before a drop first), or `None`
    /// after `idle` without one.
    pub async fn next_within(&mut self, idle: Duration) -> Option<Next> {
        let next = tokio::time::timeout(idle, self.rx.recv()).await.ok()?;
        Some(match next {
            Some(record) => Next::Record(record),
            None => match self.dropped.load(Ordering::Relaxed) {
                0 => Next::Closed,
                n => Next::Dropped(n),
            },
        })
    }
}

/// Which records a watcher wants: every term must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    status: Option<(u16, u16)>,
    cache: Option<String>,
    host: Option<String>,
    path: Option<String>,
    client: Option<IpNet>,
}

impl Filter {
    /// Parses terms separated by commas or spaces: `status:5xx`,
    /// `status:400-499`, `status:404`, `cache:MISS`, `host:shop.example`,
    /// `path:/api/` (a prefix), `client:203.0.113.7` or a CIDR.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for term in text.split([',', ' ']).filter(|t| !t.is_empty()) {
            let (key, value) = term
                .split_once(':')
                .ok_or_else(|| format!("{term:?}: a term is key:value"))?;
            match key {
                "status" => filter.status = Some(status_range(value)?),
                "cache" => filter.cache = Some(value.to_ascii_uppercase()),
                "host" => filter.host = Some(value.to_ascii_lowercase()),
                "path" => filter.path = Some(value.to_owned()),
                "client" => {
                    let net = if value.contains('/') {
                        value.parse::<IpNet>()
                    } else {
                        value
                            .parse::<IpAddr>()
                            .map_err(|e| e.to_string())
                            .and_then(|ip| {
                                let bits = if ip.is_ipv4() { 32 } else { 128 };
                                format!("{ip}/{bits}").parse::<IpNet>()
                            })
                    };
                    filter.client = Some(net.map_err(|e| format!("client:{value}: {e}"))?);
                }
                _ => {
                    return Err(format!(
                        "{key:?}: filter on status, cache, host, path or client"
                    ));
                }
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, r: &LiveRecord) -> bool {
        self.status
            .is_none_or(|(lo, hi)| (lo..=hi).contains(&r.status))
            && self.cache.as_deref().is_none_or(|c| c == r.cache)
            && self
                .host
                .as_deref()
                .is_none_or(|h| r.host.eq_ignore_ascii_case(h))
            && self.path.as_deref().is_none_or(|p| r.path.starts_with(p))
            && self.client.as_ref().is_none_or(|n| n.contains(r.client))
    }
}

/// `5xx`, `400-499` or `404`.
fn status_range(value: &str) -> Result<(u16, u16), String> {
    let bad = || format!("status:{value}: give 5xx, 400-499 or 404");
    if let Some(class) = value.strip_suffix("xx") {
        let c: u16 = class.parse().map_err(|_| bad())?;
        return (1..=5)
            .contains(&c)
            .then_some((c * 100, c * 100 + 99))
            .ok_or_else(bad);
    }
    if let Some((lo, hi)) = value.split_once('-') {
        let lo = lo.parse().map_err(|_| bad())?;
        let hi = hi.parse().map_err(|_| bad())?;
        return (lo <= hi).then_some((lo, hi)).ok_or_else(bad);
    }
    let one = value.parse().map_err(|_| bad())?;
    Ok((one, one))
}

/// One Server-Sent Event of `/log` as `edge log` prints it: a `data:`
/// record as a line (`time client method host path status bytes ms cache
/// tier peer`), or its JSON when `raw`; a `dropped` comment as a notice;
/// other comments (keep-alives) as nothing.
pub fn render_event(event: &str, raw: bool) -> Option<String> {
    let event = event.trim_end();
    if let Some(comment) = event.strip_prefix(": dropped") {
        return Some(format!(
            "edge log: dropped by the node{comment} (reading too slowly)"
        ));
    }
    let json = event.strip_prefix("data: ")?;
    if raw {
        return Some(json.to_owned());
    }
    let r: serde_json::Value = serde_json::from_str(json).ok()?;
    let s = |k: &str| match &r[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let mut line = format!(
        "{} {} {} {} {} {} {} {}ms {} {}",
        s("timestamp"),
        s("client"),
        s("method"),
        s("host"),
        s("path"),
        s("status"),
        s("bytes"),
        s("duration_ms"),
        s("cache"),
        s("tier"),
    );
    for key in ["peer", "error"] {
        if r[key].is_string() {
            line.push_str(&format!(" {key}={}", s(key)));
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16, cache: &'static str, path: &str, client: &str) -> LiveRecord {
        LiveRecord {
            timestamp: String::new(),
            client: client.parse().expect("ip"),
            method: "GET".into(),
            host: "shop.example".into(),
            path: path.into(),
            status,
            bytes: 0,
            duration_ms: 0.0,
            cache,
            tier: None,
            peer: None,
            error: None,
        }
    }

    #[test]
    fn events_render_as_lines() {
        let json = serde_json::to_string(&record(503, "MISS", "/a", "192.0.2.1")).expect("json");
        let line = render_event(&format!("data: {json}\n\n"), false).expect("a line");
        assert_eq!(line, " 192.0.2.1 GET shop.example /a 503 0 0.0ms MISS -");
        assert_eq!(render_event(&format!("data: {json}"), true), Some(json));
        assert_eq!(render_event(": keep-alive\n\n", false), None);
        assert!(
            render_event(": dropped: 7 records behind", false)
                .is_some_and(|l| l.contains("7 records"))
        );
    }

    #[test]
    fn filters_match_every_term() {
        let f = Filter::parse("status:5xx,cache:miss path:/api/").expect("filter");
        assert!(f.matches(&record(503, "MISS", "/api/x", "192.0.2.1")));
        assert!(!f.matches(&record(200, "MISS", "/api/x", "192.0.2.1")));
        assert!(!f.matches(&record(503, "HIT", "/api/x", "192.0.2.1")));
        assert!(!f.matches(&record(503, "MISS", "/web", "192.0.2.1")));
        let f = Filter::parse("status:400-404,client:192.0.2.0/24,host:SHOP.example").expect("f");
        assert!(f.matches(&record(404, "HIT", "/", "192.0.2.9")));
        assert!(!f.matches(&record(404, "HIT", "/", "198.51.100.1")));
        assert!(!f.matches(&record(405, "HIT", "/", "192.0.2.9")));
        let f = Filter::parse("client:2001:db8::1").expect("v6 address");
        assert!(f.matches(&record(200, "HIT", "/", "2001:db8::1")));
        assert!(
            Filter::parse("")
                .expect("empty")
                .matches(&record(1, "X", "", "::1"))
        );
        for bad in ["status:6xx", "status:9-1", "size:1", "cache", "client:nope"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nothing_is_built_unwatched_and_a_slow_watcher_is_dropped() {
        let gauge = IntGauge::new("w", "w").expect("gauge");
        let log = Arc::new(LiveLog::new(gauge.clone()));
        assert_eq!(log.watchers(), 0);
        let w = log.watch(Filter::default());
        assert_eq!(log.watchers(), 1);
        assert_eq!(gauge.get(), 1);
        drop(w);
        assert_eq!(log.watchers(), 0);
        assert_eq!(gauge.get(), 0);
        let mut slow = log.watch(Filter::default());
        for i in 0..(BACKLOG + 10) {
            let _ = log
                .tx
                .send(Arc::new(record(200, "HIT", &format!("/{i}"), "::1")));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        assert!(matches!(rt.block_on(slow.next()), Next::Dropped(n) if n >= 10));
    }

    #[tokio::test]
    async fn a_feed_nobody_reads_drops_its_watcher_by_itself() {
        let gauge = IntGauge::new("w", "w").expect("gauge");
        let log = Arc::new(LiveLog::new(gauge.clone()));
        let mut feed = log
            .watch(Filter::parse("cache:MISS").expect("filter"))
            .feed();
        // Records the filter turns away never fill the queue.
        for i in 0..(2 * BACKLOG) {
            let _ = log
                .tx
                .send(Arc::new(record(200, "HIT", &format!("/{i}"), "::1")));
            tokio::task::yield_now().await;
        }
        assert_eq!(log.watchers(), 1);
        let mut sent = 0;
        while log.watchers() == 1 && sent < 4 * BACKLOG {
            let _ = log.tx.send(Arc::new(record(200, "MISS", "/m", "::1")));
            sent += 1;
            tokio::task::yield_now().await;
        }
        assert_eq!(log.watchers(), 0, "dropped without being read");
        assert_eq!(gauge.get(), 0);
        assert!(sent > BACKLOG, "{sent}");
        // What was queued is still read, then the notice.
        let mut records = 0;
        loop {
            match feed.next_within(Duration::from_secs(1)).await {
                Some(Next::Record(_)) => records += 1,
                Some(Next::Dropped(n)) => {
                    assert!(n > BACKLOG as u64, "{n}");
                    break;
                }
                other => panic!("{other:?} after {records} records"),
            }
        }
        assert_eq!(records, BACKLOG);
    }
}
