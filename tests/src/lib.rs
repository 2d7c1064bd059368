//! End-to-end test harness: a scriptable mock origin ([`MockOrigin`]), an
//! in-process edge on ephemeral ports ([`TestEdge`]), small HTTP clients
//! ([`client`]), what tests read off responses ([`ResponseExt`]), waiting
//! without guessing ([`wait`], [`Gate`]) and the `edge` binary as a child
//! process ([`process`]). Every test owns its own origin and edge on
//! 127.0.0.1; cluster tests start their own `nats-server` ([`nats`]), trace tests an
//! OTLP/HTTP receiver ([`otlp`]). Time is a shared adjustable clock per test (`clocks.rs`):
//! [`TestEdge::advance`] ages stored objects instead of a sleep.

pub mod certs;
pub mod client;
mod clocks;
mod edge;
mod gate;
pub mod h3;
pub mod logs;
pub mod metrics;
pub mod nats;
mod origin;
pub mod otlp;
pub mod process;
mod response;
pub mod wait;

pub use edge::{TestEdge, test_config};
pub use gate::Gate;
pub use origin::{MockOrigin, RecordedRequest, Reply};
pub use response::ResponseExt;
pub use wait::{eventually, eventually_within, poll_until};

/// A `127.0.0.1` port on which nothing listens: free for a node the test
/// starts, or the address of a dead peer.
///
/// Taken below the kernel's ephemeral range (32768 and up on Linux), each
/// port at most once per process: a port from `bind(0)`, released, could
/// be handed by the kernel to another test's `bind(0)` before this test
/// binds it again (seen in CI as `AddrInUse`). Processes (test binaries run
/// side by side) start at different offsets.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(LOW + (offset + n) % SPAN).expect("below 32000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_never_ephemeral_nor_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port handed out twice");
        // The kernel's ephemeral range, where bind(0) ports come from.
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_else(|_| "32768 60999".into());
        let low: u16 = range
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32768);
        assert!(ports.iter().all(|p| *p < low), "{ports:?} reach {low}");
    }
}
