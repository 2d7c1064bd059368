//! End-to-end test harness: a scriptable mock origin ([`MockOrigin`]), an
//! in-process edge on ephemeral ports ([`TestEdge`]) and small HTTP clients
//! ([`client`]). Every test owns its own origin and edge on 127.0.0.1.

pub mod certs;
pub mod client;
mod edge;
pub mod logs;
mod origin;

pub use edge::{TestEdge, test_config};
pub use origin::{MockOrigin, RecordedRequest, Reply};

/// A `127.0.0.1` port on which nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}
