//! Consistent hashing over weighted peers, ketama-style: every peer owns
//! `weight × POINTS_PER_WEIGHT` points on a 64-bit circle, and a key belongs
//! to the first point at or after its hash. Walking on from there yields the
//! other peers in a stable preference order, so a request whose first choice
//! is down falls through to the same second choice on every node.
//!
//! Why ketama and not Maglev: Maglev's lookup table balances a little more
//! evenly, but it has no natural "next peer" (a fallback order needs a second
//! permutation walk), and rebuilding it after one peer leaves moves a few
//! percent more keys than the ideal 1/N. Ketama gives the fallback order for
//! free, moves only the departed peer's keys, and with 1024 points per weight
//! unit stays within a few percent of perfect balance (see the tests); a
//! lookup is one binary search over a few thousand `u64`s.

/// Points per unit of weight. Enough that equal peers get equal shares
/// within about ±3% (standard deviation); fewer points drift past ±10%.
pub const POINTS_PER_WEIGHT: u32 = 1024;

/// A hash ring over peers `0..n`, named by the identities they were built
/// from.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Sorted by hash: (point, peer index).
    points: Vec<(u64, u32)>,
    peers: usize,
}

impl Ring {
    /// A ring over `(identity, weight)` pairs; a peer's index is its
    /// position in the list. The identity (e.g. `host:port`) must be the
    /// same on every node so that every node agrees on the owner of a key.
    pub fn new<'a>(peers: impl IntoIterator<Item = (&'a str, u32)>) -> Ring {
        let mut points = Vec::new();
        let mut count = 0;
        for (index, (identity, weight)) in peers.into_iter().enumerate() {
            count += 1;
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            for i in 0..weight.max(1).saturating_mul(POINTS_PER_WEIGHT) {
                let mut h = blake3::Hasher::new();
                h.update(identity.as_bytes());
                h.update(b"#");
                h.update(&i.to_le_bytes());
                points.push((first_u64(h.finalize().as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            peers: count,
        }
    }

    /// Number of peers on the ring.
    pub fn len(&self) -> usize {
        self.peers
    }

    pub fn is_empty(&self) -> bool {
        self.peers == 0
    }

    /// The peer that owns `hash`.
    pub fn primary(&self, hash: u64) -> Option<usize> {
        let at = self.position(hash)?;
        self.points.get(at).map(|&(_, peer)| peer as usize)
    }

    /// Every peer once, in preference order for `hash`.
    pub fn order(&self, hash: u64) -> RingOrder<'_> {
        RingOrder {
            ring: self,
            at: self.position(hash).unwrap_or(0),
            steps: 0,
            found: 0,
            seen: Seen::new(self.peers),
        }
    }

    fn position(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|&(point, _)| point < hash);
        Some(if at == self.points.len() { 0 } else { at })
    }
}

/// A key's hash for the ring: its first eight bytes, for keys that are
/// already uniform digests (cache keys are blake3).
pub fn first_u64(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = digest.len().min(8);
    bytes[..n].copy_from_slice(&digest[..n]);
    u64::from_le_bytes(bytes)
}

/// A hash of arbitrary bytes (a client address) for the ring.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    first_u64(blake3::hash(bytes).as_bytes())
}

/// Peers already yielded: a bit mask for small rings, a vector beyond.
#[derive(Debug)]
enum Seen {
    Small(u128),
    Large(Vec<bool>),
}

impl Seen {
    fn new(peers: usize) -> Seen {
        if peers <= 128 {
            Seen::Small(0)
        } else {
            Seen::Large(vec![false; peers])
        }
    }

    /// Marks `peer`; false if it was already marked.
    fn insert(&mut self, peer: usize) -> bool {
        match self {
            Seen::Small(mask) => {
                let bit = 1u128 << peer;
                let new = *mask & bit == 0;
                *mask |= bit;
                new
            }
            Seen::Large(seen) => match seen.get_mut(peer) {
                Some(slot) if !*slot => {
                    *slot = true;
                    true
                }
                _ => false,
            },
        }
    }
}

/// Iterator over a ring's peers in preference order for one key.
#[derive(Debug)]
pub struct RingOrder<'a> {
    ring: &'a Ring,
    at: usize,
    steps: usize,
    found: usize,
    seen: Seen,
}

impl Iterator for RingOrder<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let points = &self.ring.points;
        while self.found < self.ring.peers && self.steps < points.len() {
            let (_, peer) = points[(self.at + self.steps) % points.len()];
            self.steps += 1;
            if self.seen.insert(peer as usize) {
                self.found += 1;
                return Some(peer as usize);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
    }

    fn ring(names: &[String]) -> Ring {
        Ring::new(names.iter().map(|n| (n.as_str(), 1)))
    }

    fn keys(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| hash_bytes(&i.to_le_bytes()))
    }

    #[test]
    fn equal_weights_balance_within_ten_percent() {
        for peers in [2, 3, 5, 8] {
            let ring = ring(&names(peers));
            let mut counts = vec![0u64; peers];
            for key in keys(100_000) {
                counts[ring.primary(key).unwrap()] += 1;
            }
            let mean = 100_000.0 / peers as f64;
            for (i, &c) in counts.iter().enumerate() {
                let off = (c as f64 - mean).abs() / mean;
                assert!(
                    off < 0.10,
                    "{peers} peers: peer {i} has {c} keys ({off:.3} off)"
                );
            }
        }
    }

    #[test]
    fn weights_scale_shares() {
        let names = names(2);
        let ring = Ring::new([(names[0].as_str(), 1), (names[1].as_str(), 3)]);
        let heavy = keys(100_000)
            .filter(|&k| ring.primary(k) == Some(1))
            .count();
        let share = heavy as f64 / 100_000.0;
        assert!((share - 0.75).abs() < 0.05, "weight 3 of 4 got {share:.3}");
    }

    #[test]
    fn removing_a_peer_moves_only_its_keys() {
        let all = names(5);
        let before = ring(&all);
        let after = ring(&all[..4]);
        let mut moved = 0;
        for key in keys(100_000) {
            let (b, a) = (before.primary(key).unwrap(), after.primary(key).unwrap());
            if b != a {
                assert_eq!(b, 4, "a key moved between two peers that stayed");
                moved += 1;
            }
        }
        let share = moved as f64 / 100_000.0;
        assert!((share - 0.2).abs() < 0.03, "{share:.3} of keys moved");
    }

    #[test]
    fn fallback_order_is_the_ring_without_the_dead_peer() {
        // The second choice with all peers is the first choice once the
        // first is gone: nodes agree on where a key goes during an outage.
        let all = names(4);
        let full = ring(&all);
        for key in keys(2_000) {
            let order: Vec<_> = full.order(key).collect();
            assert_eq!(order.len(), 4);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            if order[0] == 3 {
                let without: Ring = ring(&all[..3]);
                assert_eq!(without.primary(key), Some(order[1]));
            }
        }
    }

    #[test]
    fn empty_and_large_rings() {
        let empty = Ring::new(std::iter::empty());
        assert_eq!(empty.primary(7), None);
        assert_eq!(empty.order(7).count(), 0);
        let many = names(200);
        let ring = Ring::new(many.iter().map(|n| (n.as_str(), 1)));
        assert_eq!(ring.order(42).count(), 200);
    }
}
