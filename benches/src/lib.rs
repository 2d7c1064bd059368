//! Benchmarks for `edge`.
//!
//! The end-to-end proxy comparison lives in `benches/proxy-overhead.sh` (wrk
//! against the origin directly and through edge). The side-by-side comparison
//! with nginx and Varnish, and criterion micro-benchmarks per hot path, arrive
//! with the performance issue.
