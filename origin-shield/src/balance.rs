//! Spreading requests over a pool of equivalent peers.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Peer;

/// Plain round robin: each call returns the next peer in turn.
///
/// Lock-free (one atomic increment), so it can sit on the request path of
/// every worker thread.
#[derive(Debug)]
pub struct RoundRobin {
    peers: Vec<Peer>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(peers: Vec<Peer>) -> Self {
        RoundRobin {
            peers,
            next: AtomicUsize::new(0),
        }
    }

    /// The next peer, or `None` when the pool is empty.
    pub fn pick(&self) -> Option<&Peer> {
        if self.peers.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.peers.len();
        self.peers.get(i)
    }

    /// The peers in preference order starting at the next one in turn, so a
    /// caller can fall through to another peer when the first cannot be reached.
    pub fn pick_order(&self) -> impl Iterator<Item = &Peer> {
        let n = self.peers.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).filter_map(move |i| self.peers.get((start + i) % n))
    }

    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16) -> RoundRobin {
        RoundRobin::new(
            (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 8000 + i).parse().unwrap())
                .collect(),
        )
    }

    #[test]
    fn visits_every_peer_evenly() {
        let rr = pool(3);
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            let port = rr.pick().unwrap().authority().port_u16().unwrap();
            counts[usize::from(port - 8000)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn order_covers_all_peers_once() {
        let rr = pool(4);
        let order: Vec<_> = rr.pick_order().map(|p| p.to_string()).collect();
        assert_eq!(order.len(), 4);
        let mut sorted = order.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert!(RoundRobin::new(vec![]).pick().is_none());
    }
}
