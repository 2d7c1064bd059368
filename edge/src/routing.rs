//! Where this node sends a request that needs a peer (phase 6): the shield
//! that owns its cache key, else the origin pool; loop protection with
//! `CDN-Loop` (RFC 8586); active health probes; what `/peers` shows.
//!
//! The shield ring is the static `shields` plus the shields the cluster
//! discovered (`discovery.rs`), swapped whole when either changes: a
//! request loads the ring once, lock-free, and keeps it to its end.
//!
//! The choices themselves (ring, policies, health) live in `origin-shield`;
//! this file wires them to the request and to the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cache::CacheKey;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use origin_shield::balance::{Member, Pick, Policy, Pool};
use origin_shield::health::{HealthPolicy, RetryBudget};
use origin_shield::{Peer, ring};
use serde::Serialize;
use tracing::{info, warn};

use crate::body;
use crate::config::{Config, ShieldPeer};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// RFC 8586.
pub static CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// Origins, shields and the rules between them.
#[derive(Debug)]
pub struct Routing {
    pub origins: Pool,
    /// The shield ring now; replaced whole when the cluster's shields
    /// change (read once per request, never locked).
    tier: ArcSwap<Tier>,
    /// The configured shields, kept to rebuild the ring with.
    static_shields: Vec<ShieldPeer>,
    health: HealthPolicy,
    listen: SocketAddr,
    pub budget: RetryBudget,
    node_name: String,
    max_hops: usize,
}

/// Where a shield on the ring comes from, for `/peers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSource {
    /// `shields` (or `origins`) in the config.
    Static,
    /// A live `role = shield` member of the cluster.
    Cluster,
    /// Both: configured, and live in the cluster.
    Both,
}

impl PeerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerSource::Static => "static",
            PeerSource::Cluster => "cluster",
            PeerSource::Both => "static+cluster",
        }
    }
}

/// The shield ring at one moment.
#[derive(Debug)]
struct Tier {
    /// Shield peers on a consistent-hash ring, if this node has a tier.
    pool: Option<Pool>,
    /// This node's own address among the shields, if it is one.
    own: Option<Authority>,
    /// Each shield's source, by its `host:port`, in the pool's order.
    sources: Vec<(Authority, PeerSource)>,
}

impl Tier {
    /// The ring over `static_shields` and `discovered` (a shield in both
    /// counts once, as configured: its TLS settings are the config's);
    /// members of `before` keep their health, and an unchanged ring is
    /// reused rather than hashed again.
    fn build(
        static_shields: &[ShieldPeer],
        discovered: &[ShieldPeer],
        node_name: &str,
        listen: SocketAddr,
        health: &HealthPolicy,
        before: &[&Pool],
    ) -> Tier {
        let mut merged: Vec<(&ShieldPeer, PeerSource)> = static_shields
            .iter()
            .map(|s| (s, PeerSource::Static))
            .collect();
        for shield in discovered {
            let authority = shield.peer.authority();
            match merged
                .iter_mut()
                .find(|(s, _)| s.peer.authority() == authority)
            {
                Some((_, source)) => *source = PeerSource::Both,
                None => merged.push((shield, PeerSource::Cluster)),
            }
        }
        if merged.is_empty() {
            return Tier {
                pool: None,
                own: None,
                sources: Vec::new(),
            };
        }
        let listen = listen.to_string();
        let own = merged
            .iter()
            .find(|(s, _)| {
                s.name.as_deref() == Some(node_name) || s.peer.authority().as_str() == listen
            })
            .map(|(s, _)| s.peer.authority().clone());
        let sources = merged
            .iter()
            .map(|(s, source)| (s.peer.authority().clone(), *source))
            .collect();
        let peers = merged.iter().map(|(s, _)| s.peer.clone()).collect();
        Tier {
            pool: Some(Pool::keeping(peers, Policy::HashKey, health, before)),
            own,
            sources,
        }
    }

    fn source(&self, peer: &Authority) -> PeerSource {
        self.sources
            .iter()
            .find(|(a, _)| a == peer)
            .map_or(PeerSource::Static, |(_, s)| *s)
    }
}

impl Routing {
    /// `listen` is the address this node actually serves on, to recognise
    /// itself in the shield list.
    pub fn new(config: &Config, listen: SocketAddr) -> Self {
        Routing::for_peers(config, &config.origins, &config.shields, listen)
    }

    /// A site's routing: its own origins and shields, with the node's
    /// upstream settings (balance, health, retry budget, hop limit).
    pub fn for_peers(
        config: &Config,
        origins: &[Peer],
        shields: &[ShieldPeer],
        listen: SocketAddr,
    ) -> Self {
        Routing::keeping(config, origins, shields, listen, &[], &[])
    }

    /// [`for_peers`](Self::for_peers) after a reload, with the shields the
    /// cluster `discovered`: a peer that was a member of the same kind of
    /// pool in `previous` keeps its health (probes, failures, ejection),
    /// so a reload neither revives a dead peer nor forgets a live one.
    pub fn keeping(
        config: &Config,
        origins: &[Peer],
        shields: &[ShieldPeer],
        listen: SocketAddr,
        previous: &[Arc<Routing>],
        discovered: &[ShieldPeer],
    ) -> Self {
        let health = config.upstream.health_policy();
        let origin_pools: Vec<&Pool> = previous.iter().map(|r| &r.origins).collect();
        let tiers: Vec<Arc<Tier>> = previous.iter().map(|r| r.tier.load_full()).collect();
        let shield_pools: Vec<&Pool> = tiers.iter().filter_map(|t| t.pool.as_ref()).collect();
        let origins = Pool::keeping(
            origins.to_vec(),
            config.upstream.balance,
            &health,
            &origin_pools,
        );
        let tier = Tier::build(
            shields,
            discovered,
            &config.node_name,
            listen,
            &health,
            &shield_pools,
        );
        Routing {
            origins,
            tier: ArcSwap::from_pointee(tier),
            static_shields: shields.to_vec(),
            health,
            listen,
            budget: RetryBudget::new(config.upstream.retry_budget, 10),
            node_name: config.node_name.clone(),
            max_hops: config.upstream.max_hops as usize,
        }
    }

    /// Rebuilds the shield ring over the static shields and `discovered`
    /// (the cluster's live shields). Shields that stay keep their health
    /// and, the ring being consistent, their keys; only a shield that
    /// joins or leaves moves keys. Returns whether the ring changed.
    pub fn set_discovered(&self, discovered: &[ShieldPeer]) -> bool {
        let now = self.tier.load_full();
        let before: Vec<&Pool> = now.pool.iter().collect();
        let next = Tier::build(
            &self.static_shields,
            discovered,
            &self.node_name,
            self.listen,
            &self.health,
            &before,
        );
        let same = next.sources == now.sources
            && match (&next.pool, &now.pool) {
                (Some(a), Some(b)) => {
                    let (a, b) = (a.members(), b.members());
                    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.peer == y.peer)
                }
                (None, None) => true,
                _ => false,
            };
        if same {
            return false;
        }
        self.tier.store(Arc::new(next));
        true
    }

    /// The shields on the ring now (their `host:port`), for logs.
    pub fn shield_names(&self) -> Vec<String> {
        self.tier
            .load()
            .sources
            .iter()
            .map(|(a, _)| a.to_string())
            .collect()
    }

    /// The peers to try for a request, in order. Cacheable requests (those
    /// with a key) go to the shield that owns the key, then down the ring,
    /// then to the origins; everything else, and requests that already
    /// passed this node, go to the origins.
    pub fn targets(
        &self,
        method: &Method,
        headers: &HeaderMap,
        key: Option<CacheKey>,
        client: IpAddr,
    ) -> Result<Vec<Arc<Member>>, ProxyError> {
        let hops = cdn_loop_entries(headers);
        if hops.len() >= self.max_hops {
            return Err(ProxyError::LoopDetected(hops.len()));
        }
        let passed_here = hops.iter().any(|h| h == &self.node_name);
        // (A client can claim to have passed here and so skip the shields;
        // it gains nothing a cache-busting query string would not give it.)
        let pick = Pick {
            key_hash: key.map(|k| ring::first_u64(k.as_bytes())),
            client_hash: ring::hash_bytes(client.to_string().as_bytes()),
        };
        let mut targets = Vec::new();
        let tier = self.tier.load();
        if let Some(shields) = &tier.pool
            && !passed_here
            && pick.key_hash.is_some()
            && matches!(*method, Method::GET | Method::HEAD)
        {
            let order = shields.order(&pick);
            let own = tier.own.as_ref();
            // A node that owns the key itself fetches it from the origins
            // (ownership by the ring alone: a node never sends its own keys
            // elsewhere because a probe of itself failed).
            let owner = pick.key_hash.and_then(|h| shields.owner(h));
            let owns_key = own.is_some_and(|own| owner.is_some_and(|m| m.peer.authority() == own));
            if !owns_key {
                targets.extend(
                    order
                        .into_iter()
                        .filter(|m| Some(m.peer.authority()) != own),
                );
            }
        }
        targets.extend(self.origins.order(&pick));
        Ok(targets)
    }

    /// Whether the request already passed through this node: it must not
    /// wait on this node's own fetch of the same key (that fetch is what
    /// brought it back here).
    pub fn passed_here(&self, headers: &HeaderMap) -> bool {
        cdn_loop_entries(headers)
            .iter()
            .any(|h| h == &self.node_name)
    }

    /// Appends this node to the request's `CDN-Loop`.
    /// One field line, as origins that read only the first line expect.
    pub fn mark_hop(&self, headers: &mut HeaderMap) {
        let mut hops: Vec<&str> = headers
            .get_all(&CDN_LOOP)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        hops.push(&self.node_name);
        if let Ok(value) = HeaderValue::from_str(&hops.join(", ")) {
            headers.insert(CDN_LOOP.clone(), value);
        }
    }

    /// Every member of every pool now, with its role, for probes,
    /// metrics and `/peers` (the shield ring as it is at this call).
    fn members(&self) -> Vec<(&'static str, Arc<Member>)> {
        let mut members: Vec<(&'static str, Arc<Member>)> = self
            .origins
            .members()
            .iter()
            .map(|m| ("origin", m.clone()))
            .collect();
        if let Some(pool) = &self.tier.load().pool {
            members.extend(pool.members().iter().map(|m| ("shield", m.clone())));
        }
        members
    }

    /// Sets the peer gauges (called when metrics are scraped).
    pub fn export(&self, metrics: &Metrics) {
        // Members that left (DNS) must not linger with their last value.
        metrics.peer_up.reset();
        metrics.peer_active.reset();
        for (role, member) in self.members() {
            let peer = member.peer.to_string();
            let health = member.health.snapshot();
            metrics
                .peer_up
                .with_label_values(&[&peer, role])
                .set(i64::from(health.up));
            metrics
                .peer_active
                .with_label_values(&[&peer, role])
                .set(i64::from(health.active));
            // Failure series exist (at 0) for every peer.
            metrics
                .peer_failures
                .with_label_values(&[&peer, role, "connect"]);
            metrics.peer_ejections.with_label_values(&[&peer, role]);
        }
    }

    /// What `/peers` shows.
    pub fn snapshot(&self) -> Vec<PeerView> {
        let tier = self.tier.load_full();
        let mut views = Vec::new();
        let pools = std::iter::once(("origin", &self.origins))
            .chain(tier.pool.iter().map(|p| ("shield", p)));
        for (role, pool) in pools {
            for m in pool.members().iter() {
                let h = m.health.snapshot();
                let shield = role == "shield";
                views.push(PeerView {
                    peer: m.peer.to_string(),
                    role,
                    source: if shield {
                        tier.source(m.peer.authority()).as_str()
                    } else {
                        PeerSource::Static.as_str()
                    },
                    weight: m.peer.weight(),
                    policy: pool.policy().as_str(),
                    this_node: shield && tier.own.as_ref() == Some(m.peer.authority()),
                    up: h.up,
                    probed_up: h.probed_up,
                    ejected_for_ms: h.ejected_for.map(|d| d.as_millis() as u64),
                    active: h.active,
                    failures_in_row: h.failures_in_row,
                    failures_total: h.failures_total,
                    ejections_total: h.ejections_total,
                });
            }
        }
        views
    }
}

/// One peer in `/peers`.
#[derive(Debug, Serialize)]
pub struct PeerView {
    pub peer: String,
    pub role: &'static str,
    /// `static` (the config), `cluster` (a live member) or both.
    pub source: &'static str,
    pub weight: u32,
    pub policy: &'static str,
    pub this_node: bool,
    pub up: bool,
    pub probed_up: bool,
    pub ejected_for_ms: Option<u64>,
    pub active: u32,
    pub failures_in_row: u32,
    pub failures_total: u64,
    pub ejections_total: u64,
}

/// The node names in `CDN-Loop` (parameters after `;` dropped).
fn cdn_loop_entries(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(&CDN_LOOP)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| entry.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Re-resolves origins given by host name every `upstream.resolve_interval`
/// until the routing is dropped: each address becomes a pool member of its
/// own (balanced, health-checked and ejected on its own), with the name's
/// weight. A lookup that fails keeps the addresses from the last one.
pub fn spawn_resolver(routing: &Arc<Routing>, origins: &[Peer], config: &Config) {
    let configured = origins.to_vec();
    let interval = config.upstream.resolve_interval;
    let named = configured.iter().any(|p| p.host_is_name());
    if !named || interval.is_zero() {
        return;
    }
    let weak = Arc::downgrade(routing);
    tokio::spawn(async move {
        let mut last: std::collections::HashMap<String, Vec<Peer>> = Default::default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut members = Vec::new();
            for peer in &configured {
                if !peer.host_is_name() {
                    members.push(peer.clone());
                    continue;
                }
                let name = peer.authority().to_string();
                let looked_up = tokio::net::lookup_host(name.clone()).await;
                match looked_up {
                    Ok(addrs) => {
                        let mut resolved: Vec<Peer> =
                            addrs.filter_map(|addr| peer.at_address(addr)).collect();
                        resolved.sort_by_key(ToString::to_string);
                        resolved.dedup();
                        last.insert(name, resolved.clone());
                        members.extend(resolved);
                    }
                    Err(err) => {
                        warn!(origin = %peer, error = %err, "cannot resolve origin; keeping its last addresses");
                        match last.get(&name) {
                            Some(known) => members.extend(known.iter().cloned()),
                            None => members.push(peer.clone()),
                        }
                    }
                }
            }
            let Some(routing) = weak.upgrade() else {
                return;
            };
            if routing.origins.replace(members) {
                let now: Vec<String> = routing
                    .origins
                    .members()
                    .iter()
                    .map(|m| m.peer.to_string())
                    .collect();
                info!(members = ?now, "origin pool updated from DNS");
            }
        }
    });
}

/// Probes every peer of every pool each `interval` until the routing is
/// dropped: a GET of the configured path, healthy when it answers the
/// expected status within the timeout.
pub fn spawn_probes(routing: &Arc<Routing>, upstream: &Arc<Upstream>, config: &Config) {
    let Some(path) = config.upstream.health.path.clone() else {
        return;
    };
    // Virtual-hosted origins answer the name they serve, not an address.
    let host = config.upstream.host_header.clone();
    let check = config.upstream.health.clone();
    let expect = StatusCode::from_u16(check.expect_status).unwrap_or(StatusCode::OK);
    let weak = Arc::downgrade(routing);
    let upstream = upstream.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(routing) = weak.upgrade() else {
                return;
            };
            let members = routing.members();
            drop(routing);
            let mut probes = tokio::task::JoinSet::new();
            for (role, member) in members {
                let upstream = upstream.clone();
                let path = path.clone();
                let host = host.clone();
                probes.spawn(async move {
                    let ok = probe(
                        &upstream,
                        &member,
                        &path,
                        host.as_deref(),
                        check.timeout,
                        expect,
                    )
                    .await;
                    if let Some(up) = member.health.probe(ok) {
                        let state = if up { "up" } else { "down" };
                        info!(peer = %member.peer, role, state, "health check changed state");
                    }
                });
            }
            while probes.join_next().await.is_some() {}
        }
    });
}

async fn probe(
    upstream: &Upstream,
    member: &Member,
    path: &str,
    host: Option<&str>,
    timeout: Duration,
    expect: StatusCode,
) -> bool {
    let uri = member.peer.uri_for(path.parse().ok().as_ref());
    let host = host.unwrap_or(member.peer.authority().as_str());
    let req = match Request::get(uri)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "edge-health-check")
        .body(body::empty())
    {
        Ok(req) => req,
        Err(_) => return false,
    };
    let answer = tokio::time::timeout(timeout, async {
        let resp = upstream.probe(&member.peer, req).await?;
        let status = resp.status();
        // Read the body so the connection can be reused.
        let _ = resp.into_body().collect().await;
        Ok::<_, ProxyError>(status)
    })
    .await;
    match answer {
        Ok(Ok(status)) if status == expect => true,
        Ok(Ok(status)) => {
            warn!(peer = %member.peer, status = status.as_u16(), "health check: unexpected status");
            false
        }
        Ok(Err(err)) => {
            warn!(peer = %member.peer, error = %err, "health check failed");
            false
        }
        Err(_) => {
            warn!(peer = %member.peer, "health check timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node: &str, shields: &[&str]) -> Config {
        let mut c = Config {
            node_name: node.to_owned(),
            origins: vec!["http://127.0.0.1:9000".parse().unwrap()],
            ..Config::default()
        };
        c.shields = shields
            .iter()
            .map(|s| crate::config::ShieldPeer {
                peer: s.parse().unwrap(),
                name: None,
            })
            .collect();
        c
    }

    fn key(path: &str) -> CacheKey {
        CacheKey::for_request(&Method::GET, "http", "x", path).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_shield_fetches_its_own_keys_from_origin_and_others_from_their_owner() {
        let shields = ["http://127.0.0.1:7001", "http://127.0.0.1:7002"];
        let me: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let routing = Routing::new(&config("a", &shields), me);
        let (mut own, mut other) = (0, 0);
        for i in 0..200 {
            let t = routing
                .targets(
                    &Method::GET,
                    &HeaderMap::new(),
                    Some(key(&format!("/{i}"))),
                    CLIENT,
                )
                .unwrap();
            let first = t[0].peer.authority().port_u16();
            // Never this node itself.
            assert!(
                t.iter()
                    .all(|m| m.peer.authority().port_u16() != Some(7001))
            );
            match first {
                Some(9000) => own += 1,
                Some(7002) => other += 1,
                p => panic!("unexpected first target {p:?}"),
            }
        }
        assert!(own > 60 && other > 60, "own {own}, other {other}");
    }

    fn discovered(name: &str, url: &str) -> ShieldPeer {
        ShieldPeer {
            peer: url.parse().unwrap(),
            name: Some(name.to_owned()),
        }
    }

    fn first_port(routing: &Routing, path: &str) -> Option<u16> {
        routing
            .targets(&Method::GET, &HeaderMap::new(), Some(key(path)), CLIENT)
            .unwrap()[0]
            .peer
            .authority()
            .port_u16()
    }

    #[test]
    fn discovered_shields_join_the_static_ones_and_only_a_joiners_keys_move() {
        let routing = Routing::new(
            &config("edge-1", &["http://127.0.0.1:7001"]),
            "127.0.0.1:7999".parse().unwrap(),
        );
        let before: Vec<_> = (0..300)
            .map(|i| first_port(&routing, &format!("/{i}")))
            .collect();
        assert!(before.iter().all(|p| *p == Some(7001)));
        // 7001 is also in the cluster (listed once); 7002 only there.
        let found = [
            discovered("s-1", "http://127.0.0.1:7001"),
            discovered("s-2", "http://127.0.0.1:7002"),
        ];
        assert!(routing.set_discovered(&found));
        assert!(!routing.set_discovered(&found), "the same ring is kept");
        let sources: Vec<_> = routing
            .snapshot()
            .into_iter()
            .filter(|p| p.role == "shield")
            .map(|p| (p.peer, p.source))
            .collect();
        assert_eq!(
            sources,
            [
                ("http://127.0.0.1:7001".to_owned(), "static+cluster"),
                ("http://127.0.0.1:7002".to_owned(), "cluster"),
            ]
        );
        let after: Vec<_> = (0..300)
            .map(|i| first_port(&routing, &format!("/{i}")))
            .collect();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(after.iter().all(|p| matches!(p, Some(7001 | 7002))));
        assert!((100..=200).contains(&moved), "{moved} of 300 moved");
        // The cluster's shield leaves: the static one keeps every key.
        assert!(routing.set_discovered(&[]));
        let last: Vec<_> = (0..300)
            .map(|i| first_port(&routing, &format!("/{i}")))
            .collect();
        assert_eq!(last, before);
    }

    #[test]
    fn a_discovered_shield_recognises_itself_by_name() {
        let routing = Routing::new(&config("s-1", &[]), "127.0.0.1:7999".parse().unwrap());
        routing.set_discovered(&[
            discovered("s-1", "http://10.0.0.1:8080"),
            discovered("s-2", "http://10.0.0.2:8080"),
        ]);
        let (mut own, mut other) = (0, 0);
        for i in 0..200 {
            match first_port(&routing, &format!("/{i}")) {
                Some(9000) => own += 1,
                Some(8080) => other += 1,
                p => panic!("unexpected first target {p:?}"),
            }
        }
        assert!(own > 60 && other > 60, "own {own}, other {other}");
        assert!(
            routing
                .snapshot()
                .iter()
                .any(|p| p.this_node && p.peer == "http://10.0.0.1:8080")
        );
    }

    #[test]
    fn a_request_that_passed_here_goes_to_origin_and_too_many_hops_are_refused() {
        let shields = ["http://127.0.0.1:7001", "http://127.0.0.1:7002"];
        let routing = Routing::new(&config("b", &shields), "127.0.0.1:7999".parse().unwrap());
        let mut h = HeaderMap::new();
        h.insert(&CDN_LOOP, HeaderValue::from_static("a, b; v=1"));
        let t = routing
            .targets(&Method::GET, &h, Some(key("/x")), CLIENT)
            .unwrap();
        assert_eq!(t[0].peer.authority().port_u16(), Some(9000));
        h.insert(&CDN_LOOP, HeaderValue::from_static("a, c, d, e"));
        assert!(matches!(
            routing.targets(&Method::GET, &h, Some(key("/x")), CLIENT),
            Err(ProxyError::LoopDetected(4))
        ));
        // Passes (no key) never go through shields.
        let t = routing
            .targets(&Method::POST, &HeaderMap::new(), None, CLIENT)
            .unwrap();
        assert_eq!(t.len(), 1);
    }
}
