//! Pools of equivalent peers and the order in which a request tries them.
//!
//! A [`Pool`] puts its members in an order for each request: the policy's
//! choice first, then the rest (for falling through when one cannot be
//! reached), with members that are down last of all, so a request is only
//! sent to them when every live member has failed it.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::Peer;
use crate::health::{HealthPolicy, PeerHealth};
use crate::ring::Ring;

/// How a pool chooses among its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Each in turn.
    RoundRobin,
    /// Smooth weighted round robin (nginx's): shares follow the weights
    /// and heavy members are interleaved, not sent bursts.
    Weighted,
    /// The member with the fewest requests in flight (per unit of weight).
    LeastConn,
    /// Two members at random; the one with fewer requests in flight.
    PowerOfTwo,
    /// Consistent hash of the cache key: a key always goes to the same
    /// member while it is up (shield tiers).
    HashKey,
    /// Consistent hash of the client's address (sticky clients).
    HashClientIp,
}

impl Policy {
    pub const NAMES: &'static str = "round_robin, weighted, least_conn, p2c, hash_key, hash_ip";

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Weighted => "weighted",
            Policy::LeastConn => "least_conn",
            Policy::PowerOfTwo => "p2c",
            Policy::HashKey => "hash_key",
            Policy::HashClientIp => "hash_ip",
        }
    }
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "round_robin" => Policy::RoundRobin,
            "weighted" => Policy::Weighted,
            "least_conn" => Policy::LeastConn,
            "p2c" => Policy::PowerOfTwo,
            "hash_key" => Policy::HashKey,
            "hash_ip" => Policy::HashClientIp,
            other => {
                return Err(format!(
                    "unknown balancing policy {other:?} (one of {})",
                    Policy::NAMES
                ));
            }
        })
    }
}

/// A peer in a pool, with its health.
#[derive(Debug)]
pub struct Member {
    pub peer: Peer,
    pub health: Arc<PeerHealth>,
}

/// What a request offers the policy to choose by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pick {
    /// The cache key's hash (`ring::first_u64` of the key), if any.
    pub key_hash: Option<u64>,
    /// The client address's hash (`ring::hash_bytes`).
    pub client_hash: u64,
}

/// Equivalent peers and a policy.
#[derive(Debug)]
pub struct Pool {
    /// Swapped whole when DNS brings new addresses; read on every request
    /// (a read lock held only to clone the `Arc`, never across an await).
    membership: RwLock<Arc<Membership>>,
    policy: Policy,
    health: HealthPolicy,
    next: AtomicUsize,
    /// Smooth weighted round robin's current weights. A short critical
    /// section with no await inside.
    current: Mutex<Vec<i64>>,
}

/// The members of a pool at one moment, with their ring.
#[derive(Debug)]
struct Membership {
    members: Arc<Vec<Arc<Member>>>,
    /// Shared with an earlier pool of the same peers and weights: a ring
    /// costs `weight × 1024` hashes per peer to build, and a reload of a
    /// hundred sites would otherwise spend most of its time here.
    ring: Arc<Ring>,
    /// Who the ring was built for: each peer's identity and weight.
    shape: Vec<(String, u32)>,
}

impl Membership {
    fn new(members: Vec<Arc<Member>>, before: &[&Pool]) -> Self {
        let shape: Vec<(String, u32)> = members
            .iter()
            .map(|m| (m.peer.authority().to_string(), m.peer.weight()))
            .collect();
        let same = before
            .iter()
            .map(|p| p.membership())
            .find(|m| m.shape == shape);
        let ring = match same {
            Some(earlier) => earlier.ring.clone(),
            None => Arc::new(Ring::new(shape.iter().map(|(id, w)| (id.as_str(), *w)))),
        };
        Membership {
            members: Arc::new(members),
            ring,
            shape,
        }
    }
}

impl Pool {
    pub fn new(peers: Vec<Peer>, policy: Policy, health: &HealthPolicy) -> Self {
        Pool::keeping(peers, policy, health, &[])
    }

    /// A pool of `peers` where those already members of a pool `before`
    /// (a config reload) keep their health: the same member when the
    /// thresholds are unchanged, its state carried over when they changed.
    pub fn keeping(
        peers: Vec<Peer>,
        policy: Policy,
        health: &HealthPolicy,
        before: &[&Pool],
    ) -> Self {
        let known = |peer: &Peer| {
            before
                .iter()
                .find_map(|pool| pool.members().iter().find(|m| &m.peer == peer).cloned())
        };
        let members = peers
            .into_iter()
            .map(|peer| match known(&peer) {
                Some(member) if member.health.policy() == health => member,
                Some(member) => Arc::new(Member {
                    health: Arc::new(member.health.carried_to(health.clone())),
                    peer,
                }),
                None => Arc::new(Member {
                    peer,
                    health: Arc::new(PeerHealth::new(health.clone())),
                }),
            })
            .collect::<Vec<_>>();
        Pool {
            current: Mutex::new(vec![0; members.len()]),
            membership: RwLock::new(Arc::new(Membership::new(members, before))),
            policy,
            health: health.clone(),
            next: AtomicUsize::new(0),
        }
    }

    /// The members now.
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.membership().members.clone()
    }

    fn membership(&self) -> Arc<Membership> {
        self.membership
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets the members to `peers`: those already members keep their
    /// health and counters, new ones start healthy, the others leave.
    /// Returns whether anything changed.
    pub fn replace(&self, peers: Vec<Peer>) -> bool {
        let old = self.membership();
        let same = old.members.len() == peers.len()
            && old.members.iter().zip(&peers).all(|(m, p)| &m.peer == p);
        if same || peers.is_empty() {
            return false;
        }
        let members = peers
            .into_iter()
            .map(|peer| {
                old.members
                    .iter()
                    .find(|m| m.peer == peer)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Member {
                            peer,
                            health: Arc::new(PeerHealth::new(self.health.clone())),
                        })
                    })
            })
            .collect();
        let membership = Arc::new(Membership::new(members, &[]));
        *self.membership.write().unwrap_or_else(|p| p.into_inner()) = membership;
        true
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn is_empty(&self) -> bool {
        self.membership().members.is_empty()
    }

    /// The member the ring gives `hash` to, whatever its health (to know
    /// whose key it is, not where to send it).
    pub fn owner(&self, hash: u64) -> Option<Arc<Member>> {
        let membership = self.membership();
        let i = membership.ring.primary(hash)?;
        membership.members.get(i).cloned()
    }

    /// The members in the order a request should try them.
    pub fn order(&self, pick: &Pick) -> Vec<Arc<Member>> {
        let membership = self.membership();
        let members = &membership.members;
        let n = members.len();
        if n == 0 {
            return Vec::new();
        }
        let indices: Vec<usize> = match self.policy {
            Policy::RoundRobin => self.rotation(n),
            Policy::Weighted => {
                let first = self.smooth_weighted(members);
                let mut order = vec![first];
                order.extend(self.rotation(n).into_iter().filter(|&i| i != first));
                order
            }
            Policy::LeastConn => {
                let mut order = self.rotation(n);
                // Stable: ties keep the rotation, which spreads them.
                order.sort_by_key(|&i| load(members, i));
                order
            }
            Policy::PowerOfTwo => {
                let mut order = self.rotation(n);
                if n > 1 {
                    let r = splitmix(self.next.fetch_add(1, Ordering::Relaxed) as u64);
                    let a = (r % n as u64) as usize;
                    let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                    let (first, second) = if load(members, b) < load(members, a) {
                        (b, a)
                    } else {
                        (a, b)
                    };
                    order.retain(|&i| i != first && i != second);
                    order.insert(0, second);
                    order.insert(0, first);
                }
                order
            }
            Policy::HashKey => membership
                .ring
                .order(pick.key_hash.unwrap_or(pick.client_hash))
                .collect(),
            Policy::HashClientIp => membership.ring.order(pick.client_hash).collect(),
        };
        let (mut up, down): (Vec<_>, Vec<_>) = indices
            .into_iter()
            .filter_map(|i| members.get(i).cloned())
            .partition(|m| m.health.is_up());
        up.extend(down);
        up
    }

    /// All `n` members, starting at the next in turn.
    fn rotation(&self, n: usize) -> Vec<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|i| (start + i) % n).collect()
    }

    /// nginx's smooth weighted round robin over the live members (all of
    /// them if none is up).
    fn smooth_weighted(&self, members: &[Arc<Member>]) -> usize {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        // Membership changed (DNS): start the weights over.
        current.resize(members.len(), 0);
        let any_up = members.iter().any(|m| m.health.is_up());
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, member) in members.iter().enumerate() {
            if any_up && !member.health.is_up() {
                continue;
            }
            let weight = i64::from(member.peer.weight().max(1));
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best.unwrap_or(0);
        current[best] -= total;
        best
    }
}

/// Requests in flight per unit of weight, scaled to stay an integer.
fn load(members: &[Arc<Member>], i: usize) -> u64 {
    members.get(i).map_or(u64::MAX, |m| {
        u64::from(m.health.active()) * 1000 / u64::from(m.peer.weight().max(1))
    })
}

/// A cheap, well-mixed hash of a counter: randomness for power-of-two
/// choices without a random-number crate.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::hash_bytes;

    #[test]
    fn a_rebuilt_pool_keeps_the_health_of_peers_that_stay() {
        let health = HealthPolicy {
            max_fails: 1,
            ..HealthPolicy::default()
        };
        let peer = |port: u16| format!("http://127.0.0.1:{port}").parse::<Peer>().unwrap();
        let old = Pool::new(vec![peer(8000), peer(8001)], Policy::RoundRobin, &health);
        let ejected = old.members()[0].clone();
        assert!(ejected.health.record_failure());

        // Same thresholds: the very member, ejection and all; a new peer
        // starts healthy; a peer that left is gone.
        let same = Pool::keeping(
            vec![peer(8000), peer(8002)],
            Policy::RoundRobin,
            &health,
            &[&old],
        );
        let members = same.members();
        assert!(Arc::ptr_eq(&members[0], &ejected));
        assert!(!members[0].health.is_up());
        assert!(members[1].health.is_up());
        assert_eq!(members.len(), 2);

        // New thresholds: the state carries over to a new member.
        let stricter = HealthPolicy {
            max_conns: 5,
            ..health.clone()
        };
        let changed = Pool::keeping(vec![peer(8000)], Policy::RoundRobin, &stricter, &[&old]);
        let carried = &changed.members()[0];
        assert!(!Arc::ptr_eq(carried, &ejected));
        assert!(!carried.health.is_up(), "the ejection carries over");
        assert_eq!(carried.health.policy().max_conns, 5);
        assert_eq!(carried.health.snapshot().ejections_total, 1);

        // The same peers and weights share the ring; others get their own.
        let again = Pool::keeping(
            vec![peer(8000), peer(8001)],
            Policy::HashKey,
            &health,
            &[&same, &old],
        );
        assert!(Arc::ptr_eq(
            &again.membership().ring,
            &old.membership().ring
        ));
        assert!(!Arc::ptr_eq(
            &same.membership().ring,
            &old.membership().ring
        ));
    }

    fn pool(weights: &[u32], policy: Policy) -> Pool {
        let peers = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                format!("http://127.0.0.1:{}", 8000 + i)
                    .parse::<Peer>()
                    .unwrap()
                    .with_weight(w)
            })
            .collect();
        Pool::new(peers, policy, &HealthPolicy::default())
    }

    fn first(pool: &Pool, pick: &Pick) -> usize {
        let port = pool.order(pick)[0].peer.authority().port_u16().unwrap();
        usize::from(port - 8000)
    }

    fn counts(pool: &Pool, rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; pool.members().len()];
        for _ in 0..rounds {
            counts[first(pool, &Pick::default())] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_visits_each_in_turn() {
        assert_eq!(
            counts(&pool(&[1, 1, 1], Policy::RoundRobin), 300),
            [100, 100, 100]
        );
        let order = pool(&[1, 1, 1, 1], Policy::RoundRobin).order(&Pick::default());
        assert_eq!(order.len(), 4, "every member, once");
    }

    #[test]
    fn smooth_weighted_follows_weights_and_interleaves() {
        let p = pool(&[5, 1, 1], Policy::Weighted);
        let seq: Vec<usize> = (0..7).map(|_| first(&p, &Pick::default())).collect();
        assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 5);
        // nginx's sequence for 5,1,1: a a b a c a a — never five in a row.
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn least_conn_avoids_busy_members() {
        let p = pool(&[1, 1, 1], Policy::LeastConn);
        let busy = p.members()[0].health.try_acquire().unwrap();
        let _busy2 = p.members()[1].health.try_acquire().unwrap();
        for _ in 0..10 {
            assert_eq!(first(&p, &Pick::default()), 2);
        }
        drop(busy);
        let picks: Vec<_> = (0..10).map(|_| first(&p, &Pick::default())).collect();
        assert!(picks.contains(&0) && !picks.contains(&1));
    }

    #[test]
    fn power_of_two_prefers_the_idler_of_two() {
        let p = pool(&[1, 1], Policy::PowerOfTwo);
        let _busy = p.members()[0].health.try_acquire().unwrap();
        for _ in 0..20 {
            assert_eq!(first(&p, &Pick::default()), 1);
        }
        let spread = counts(&pool(&[1, 1, 1, 1], Policy::PowerOfTwo), 4000);
        assert!(spread.iter().all(|&c| c > 700), "{spread:?}");
    }

    #[test]
    fn hashing_is_sticky_and_falls_through() {
        let p = pool(&[1, 1, 1], Policy::HashKey);
        let pick = Pick {
            key_hash: Some(hash_bytes(b"/video.mp4")),
            client_hash: 0,
        };
        let owner = first(&p, &pick);
        for _ in 0..10 {
            assert_eq!(first(&p, &pick), owner);
        }
        let ip = pool(&[1, 1, 1], Policy::HashClientIp);
        let client = Pick {
            key_hash: None,
            client_hash: hash_bytes(b"192.0.2.7"),
        };
        assert_eq!(first(&ip, &client), first(&ip, &client));
    }

    #[test]
    fn members_that_are_down_come_last() {
        let p = pool(&[1, 1, 1], Policy::RoundRobin);
        for _ in 0..3 {
            p.members()[1].health.record_failure();
        }
        for _ in 0..6 {
            let order = p.order(&Pick::default());
            assert_eq!(order.len(), 3);
            assert_eq!(order[2].peer.authority().port_u16(), Some(8001));
        }
    }

    #[test]
    fn replacing_members_keeps_the_health_of_those_that_stay() {
        let p = pool(&[1, 1], Policy::RoundRobin);
        for _ in 0..3 {
            p.members()[1].health.record_failure();
        }
        let kept = p.members()[1].peer.clone();
        let new: Peer = "http://127.0.0.1:9999".parse().unwrap();
        assert!(p.replace(vec![kept.clone(), new.clone()]));
        let members = p.members();
        assert_eq!(members[0].peer, kept);
        assert!(!members[0].health.is_up(), "its ejection survives");
        assert!(members[1].health.is_up());
        assert!(!p.replace(vec![kept, new]), "no change, no swap");
        assert!(!p.replace(Vec::new()), "never emptied by a failed lookup");
    }

    #[test]
    fn policies_parse_by_name() {
        for name in Policy::NAMES.split(", ") {
            assert_eq!(name.parse::<Policy>().unwrap().as_str(), name);
        }
        assert!("random".parse::<Policy>().is_err());
    }
}
