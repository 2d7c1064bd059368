//! Benchmarks for `edge`.
//!
//! - `cargo bench -p edge-benches`: criterion micro-benchmarks, one file per
//!   hot path (`benches/key.rs`, `policy.rs`, `store.rs`).
//! - `benches/proxy-overhead.sh`: end-to-end load through edge beside nginx
//!   on this machine (wrk, pinned cores), using `../shared/bench/perf`.
