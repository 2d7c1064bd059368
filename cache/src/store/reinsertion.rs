//! Which disk entries outlive the eviction of their block: those read from
//! disk since they were written (hits-based reinsertion, as CacheLib's
//! flash cache does it).
//!
//! foyer's block engine evicts a whole block at a time, oldest first, so
//! without reinsertion the disk tier is a FIFO: an object that is hot on
//! disk goes as readily as one never read since it was written. Under
//! [`DiskAdmission::Frequency`](super::DiskAdmission) a disk hit is not
//! copied into memory, so a disk hit means the disk is where the object is
//! wanted; only disk reads are counted (not every lookup), so that the disk
//! copies of objects memory also holds, whose lookups end in memory, are not
//! rewritten. A reinsertion takes the entry's hits: it must be read again
//! to survive its next eviction (without that, an entry read once would be
//! rewritten at every turn of the disk, and the disk's writes grew 4x on the
//! Zipf run). The count is a [`Frequency`] sketch of its own, halved as it
//! ages, keyed by foyer's hash of the key: the hash is all a reinsertion
//! filter is given.
//!
//! Offline (benches/zipf-tiers.py, Zipf 0.9 over 100 k objects, 10 240 in
//! each tier, S3-FIFO memory, on disk at the 3rd request): 73.9 % without
//! reinsertion, 75.1 % with it, for rewrites of 3 % of the requests.

use std::sync::Arc;

use foyer::{Statistics, StorageFilterCondition, StorageFilterResult};

use super::admission::Frequency;

/// Reinserts an entry read from disk at least `min_hits` times since it
/// was written, and takes those reads.
#[derive(Debug)]
pub struct DiskHits {
    pub hits: Arc<Frequency>,
    pub min_hits: u8,
}

impl StorageFilterCondition for DiskHits {
    fn filter(&self, _: &Arc<Statistics>, hash: u64, _: usize) -> StorageFilterResult {
        if self.hits.take(hash) >= self.min_hits {
            StorageFilterResult::Admit
        } else {
            StorageFilterResult::Reject
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_read_from_disk_are_reinserted() {
        let hits = Arc::new(Frequency::new(1 << 10));
        let filter = DiskHits {
            hits: hits.clone(),
            min_hits: 1,
        };
        let stats = Arc::new(Statistics::new(foyer::Throttle::default()));
        hits.record(42);
        assert_eq!(filter.filter(&stats, 42, 4096), StorageFilterResult::Admit);
        assert_eq!(filter.filter(&stats, 43, 4096), StorageFilterResult::Reject);
        // Reinserted once per read.
        assert_eq!(filter.filter(&stats, 42, 4096), StorageFilterResult::Reject);
    }
}
