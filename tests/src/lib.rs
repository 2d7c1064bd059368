//! End-to-end test harness: a scriptable mock origin ([`MockOrigin`]), an
//! in-process edge on ephemeral ports ([`TestEdge`]), small HTTP clients
//! ([`client`]), what tests read off responses ([`ResponseExt`]), waiting
//! without guessing ([`wait`], [`Gate`]) and the `edge` binary as a child
//! process ([`process`]). Every test owns its own origin and edge on
//! 127.0.0.1. Time is a shared adjustable clock per test (`clocks.rs`):
//! [`TestEdge::advance`] ages stored objects instead of a sleep.

pub mod certs;
pub mod client;
mod clocks;
mod edge;
mod gate;
pub mod logs;
pub mod metrics;
mod origin;
pub mod process;
mod response;
pub mod wait;

pub use edge::{TestEdge, test_config};
pub use gate::Gate;
pub use origin::{MockOrigin, RecordedRequest, Reply};
pub use response::ResponseExt;
pub use wait::{eventually, eventually_within, poll_until};

/// A `127.0.0.1` port on which nothing listens (bound, then released): free
/// for a node the test starts, or the address of a dead peer.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}
