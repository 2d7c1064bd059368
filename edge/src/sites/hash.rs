//! A fast hasher for the fixed tables of this module (host names, first
//! path segments), paid on every request.
//!
//! SipHash's flooding resistance buys nothing here: the tables are built
//! from the config and never grow, so a client choosing keys can at worst
//! make one lookup walk the entries already there. Words of eight bytes are
//! folded with a multiply and the result is finished with a full 64-bit mix,
//! so that hashbrown's top-bit tags and low-bit buckets both see every byte.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by config strings, hashed with [`FoldHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

const K: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FoldHasher(u64);

impl FoldHasher {
    fn fold(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.fold(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.fold(tail_word(rest));
        }
        // The length keeps "a" apart from "a\0" (and `str`'s 0xff
        // terminator arrives through `write_u8`).
        self.fold(bytes.len() as u64);
    }

    fn write_u8(&mut self, byte: u8) {
        self.fold(u64::from(byte));
    }

    fn write_usize(&mut self, n: usize) {
        self.fold(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// 1 to 7 bytes as one word, by overlapping reads rather than a copy (the
/// length, folded after, tells apart tails that read alike).
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    let at = |i: usize| u64::from(rest.get(i).copied().unwrap_or(0));
    if n >= 4 {
        let word = |from: usize| {
            rest.get(from..from + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u64::from(u32::from_le_bytes(b)))
        };
        word(0) | (word(n - 4) << 32)
    } else {
        at(0) | (at(n / 2) << 8) | (at(n - 1) << 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn distinct_keys_hash_apart_and_lookups_work() {
        let build = BuildHasherDefault::<FoldHasher>::default();
        let keys = [
            "",
            "a",
            "a\0",
            "ab",
            "abc",
            "abd",
            "abcd",
            "abce",
            "abcdefg",
            "bbcdefg",
            "12345678",
            "123456789",
            "shop.example",
            "shop.exampl",
            "hop.example",
        ];
        let hashes: std::collections::HashSet<u64> =
            keys.iter().map(|k| build.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        let mut map: FastMap<Box<str>, usize> = FastMap::default();
        for (i, k) in keys.iter().enumerate() {
            map.insert((*k).into(), i);
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(*k), Some(&i), "{k:?}");
        }
        assert_eq!(map.get("absent"), None);
    }
}
