//! Invalidation: the purge HTTP API and durable purge rules.
//!
//! Not built yet: the purge issue fills this crate with `PurgeRule`s stored in
//! RocksDB, the admin API and fan-out to peers. Until then `edge` offers no
//! purge, and says so rather than pretending. The RocksDB dependency is linked
//! from the first commit so the build set-up (Debian's librocksdb) is proven.
