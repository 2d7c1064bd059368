//! The vocabulary every part of the soak shares: the sizes of the
//! object population and of the edge's budgets, the timings the edge is
//! configured with and judged against, the resource bounds, and a small
//! seeded random generator.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

pub const HOST: &str = "soak.test";
/// Objects `/hot/0..HOT`, read again and again (skewed to the low numbers).
pub const HOT: u64 = 160;
/// Uncacheable objects `/nc/0..UNCACHEABLE` (`no-store` or `private`).
pub const UNCACHEABLE: u64 = 24;
/// POST targets `/api/0..API` (the origin answers the body's hash).
pub const API: u64 = 16;
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
/// The edge's budgets: small, so that both tiers evict all the time.
pub const MEMORY: u64 = 16 * MIB;
pub const DISK: u64 = 64 * MIB;
/// Objects over `MAX_OBJECT` are cut into `SLICE`s on the way through, and
/// a range miss fetches the slice holding it.
pub const MAX_OBJECT: u64 = MIB;
pub const SLICE: u64 = 256 * KIB;
/// Upstream connect, head and body-gap timeouts of the edge.
pub const UPSTREAM_TIMEOUT_MS: u64 = 1000;
/// How long a stalling origin says nothing: longer than the timeouts.
pub const STALL: Duration = Duration::from_millis(2500);
/// How long after the origin fails an exchange the edge may still let new
/// requests join it (the time for the failure to reach the edge under load).
pub const FAULT_GRACE: Duration = Duration::from_millis(100);
/// Idle upstream connections are closed after this.
pub const POOL_IDLE: Duration = Duration::from_secs(3);
/// Connections idle longer are not reused: the admin listener closes idle
/// keep-alive connections after 10 s, and a request sent as it does so is
/// lost (HTTP/1.1's keep-alive race, not the edge's fault).
pub const MAX_REUSE_IDLE: Duration = Duration::from_secs(5);
/// No exchange may take longer (a hang is a failure).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// RSS allowance over `MEMORY` and the idle process: the fill windows
/// (a quarter of `MEMORY`), a 1 MiB chunk in flight on each side of every
/// client connection (64 × 2 MiB), hyper's buffers, foyer's disk-tier write
/// buffers and RocksDB's memtable, with room for allocator slack. Measured:
/// 22 MiB idle, 120–160 MiB at 64 connections, flat over 120 s.
pub const RSS_MARGIN: u64 = 192 * MIB;
/// Descriptors the edge may have open per client connection over its idle
/// count: the client's socket, at most one upstream exchange for it, plus
/// slice fetches and background refreshes that outlive their client.
pub const FDS_PER_CLIENT: usize = 4;
/// Descriptors the edge may keep over its idle count once every client
/// is gone and the upstream pool has timed out (files opened lazily by the
/// disk tier and RocksDB as they grow).
pub const FDS_IDLE_SLACK: usize = 24;

/// splitmix64: enough randomness without a crate.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}
