//! Where this node sends a request that needs a peer (phase 6): the shield
//! that owns its cache key, else the origin pool; loop protection with
//! `CDN-Loop` (RFC 8586); active health probes; what `/peers` shows.
//!
//! The choices themselves (ring, policies, health) live in `origin-shield`;
//! this file wires them to the request and to the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cache::CacheKey;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use origin_shield::balance::{Member, Pick, Policy, Pool};
use origin_shield::health::RetryBudget;
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
    /// Shield peers on a consistent-hash ring, if this node has a tier.
    pub shields: Option<Pool>,
    /// This node's own address among the shields, if it is one.
    own_shield: Option<Authority>,
    pub budget: RetryBudget,
    node_name: String,
    max_hops: usize,
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
        Routing::keeping(config, origins, shields, listen, &[])
    }

    /// [`for_peers`](Self::for_peers) after a reload: a peer that was a
    /// member of the same kind of pool in `previous` keeps its health
    /// (probes, failures, ejection), so a reload neither revives a dead
    /// peer nor forgets a live one.
    pub fn keeping(
        config: &Config,
        origins: &[Peer],
        shields: &[ShieldPeer],
        listen: SocketAddr,
        previous: &[Arc<Routing>],
    ) -> Self {
        let health = config.upstream.health_policy();
        let origin_pools: Vec<&Pool> = previous.iter().map(|r| &r.origins).collect();
        let shield_pools: Vec<&Pool> = previous.iter().filter_map(|r| r.shields.as_ref()).collect();
        let origins = Pool::keeping(
            origins.to_vec(),
            config.upstream.balance,
            &health,
            &origin_pools,
        );
        let (shields, own_shield) = if shields.is_empty() {
            (None, None)
        } else {
            let own = shields
                .iter()
                .find(|s| {
                    s.name.as_deref() == Some(config.node_name.as_str())
                        || s.peer.authority().as_str() == listen.to_string()
                })
                .map(|s| s.peer.authority().clone());
            let peers = shields.iter().map(|s| s.peer.clone()).collect();
            let pool = Pool::keeping(peers, Policy::HashKey, &health, &shield_pools);
            (Some(pool), own)
        };
        Routing {
            origins,
            shields,
            own_shield,
            budget: RetryBudget::new(config.upstream.retry_budget, 10),
            node_name: config.node_name.clone(),
            max_hops: config.upstream.max_hops as usize,
        }
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
        if let Some(shields) = &self.shields
            && !passed_here
            && pick.key_hash.is_some()
            && matches!(*method, Method::GET | Method::HEAD)
        {
            let order = shields.order(&pick);
            let own = self.own_shield.as_ref();
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

    /// Every pool with its role, for probes, metrics and `/peers`.
    fn pools(&self) -> impl Iterator<Item = (&'static str, &Pool)> {
        std::iter::once(("origin", &self.origins)).chain(self.shields.iter().map(|p| ("shield", p)))
    }

    /// Sets the peer gauges (called when metrics are scraped).
    pub fn export(&self, metrics: &Metrics) {
        // Members that left (DNS) must not linger with their last value.
        metrics.peer_up.reset();
        metrics.peer_active.reset();
        for (role, pool) in self.pools() {
            for member in pool.members().iter() {
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
    }

    /// What `/peers` shows.
    pub fn snapshot(&self) -> Vec<PeerView> {
        let mut views = Vec::new();
        for (role, pool) in self.pools() {
            for m in pool.members().iter() {
                let h = m.health.snapshot();
                views.push(PeerView {
                    peer: m.peer.to_string(),
                    role,
                    weight: m.peer.weight(),
                    policy: pool.policy().as_str(),
                    this_node: role == "shield"
                        && self.own_shield.as_ref() == Some(m.peer.authority()),
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
            let mut members: Vec<(&'static str, Arc<Member>)> = Vec::new();
            for (role, pool) in routing.pools() {
                members.extend(pool.members().iter().map(|m| (role, m.clone())));
            }
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
