//! What a check verified once, remembered until it expires: signed links
//! and bearer tokens, whose signature is the costly part of their check
//! (an HMAC, an Ed25519 or RSA verification) and which a client sends
//! again and again, byte for byte.
//!
//! Only what verified is inserted, and a lookup compares the whole string
//! as sent, so the memory can admit nothing the signature check would
//! refuse; the caller still checks the expiry (and any other claim) at
//! every request. Bounded: `capacity` strings of at most `max_len` bytes;
//! a full shard first drops what has expired, and if nothing had, all it
//! holds (those verify again at their next request). A reload compiles a
//! new check and so a new, empty memory: a secret or key removed stops
//! admitting anything at once.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Mutex, MutexGuard};

/// Hash of the string → (the string, what the check found, its expiry in
/// Unix seconds).
type Shard<V> = HashMap<u64, (Box<str>, V, u64), foldhash::fast::RandomState>;

const SHARDS: usize = 8;

#[derive(Debug)]
pub(crate) struct Verified<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    per_shard: usize,
    max_len: usize,
    /// Keyed per process: nobody can aim strings at one shard.
    hasher: foldhash::quality::RandomState,
}

impl<V: Clone> Verified<V> {
    pub(crate) fn new(capacity: usize, max_len: usize) -> Self {
        Verified {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            max_len,
            hasher: foldhash::quality::RandomState::default(),
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<V>> {
        // The low bits pick the map's bucket; the high ones the shard.
        let i = (hash >> 58) as usize % SHARDS;
        // A panic while held leaves a map that is still consistent.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the check found for `verified`, and its expiry, if it passed
    /// before.
    pub(crate) fn get(&self, verified: &str) -> Option<(V, u64)> {
        if verified.len() > self.max_len {
            return None;
        }
        let hash = self.hasher.hash_one(verified);
        let shard = self.shard(hash);
        // Two strings with one hash: the one held is compared whole, so
        // the other is a miss and goes through the signature check.
        shard.get(&hash).and_then(|(held, value, expires)| {
            (**held == *verified).then(|| (value.clone(), *expires))
        })
    }

    /// Remembers that `verified` passed, until `expires` (Unix seconds).
    pub(crate) fn insert(&self, verified: &str, value: V, expires: u64, now: u64) {
        if verified.len() > self.max_len {
            return;
        }
        let hash = self.hasher.hash_one(verified);
        let mut shard = self.shard(hash);
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, (_, _, e)| *e >= now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(hash, (verified.into(), value, expires));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_whole_strings_within_bounds() {
        let v: Verified<u8> = Verified::new(16, 8);
        v.insert("abc", 1, 100, 0);
        assert_eq!(v.get("abc"), Some((1, 100)));
        assert_eq!(v.get("abd"), None);
        v.insert("too long a string", 2, 100, 0);
        assert_eq!(v.get("too long a string"), None);
        for i in 0..1000 {
            v.insert(&format!("s{i}"), 3, 100, 0);
        }
        assert!(v.len() <= 16, "{}", v.len());
        // A full shard drops what has expired before anything else.
        let v: Verified<u8> = Verified::new(8, 8);
        for i in 0..200 {
            v.insert(&format!("old{i}"), 0, 5, 0);
        }
        v.insert("live", 1, 100, 10);
        assert_eq!(v.get("live"), Some((1, 100)));
    }
}
