//! The clock each test node runs on. A mock origin starts its own
//! adjustable clock (for the `Date` it sends); an edge started in front of
//! a node of the same test (a mock origin, or a shield edge) shares that
//! node's clock, so `TestEdge::advance` ages every stored object and moves
//! the origin's `Date` with it, as real time would. Found by the address
//! the edge is pointed at; forgotten when the node stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};

use cache::Clock;

static CLOCKS: LazyLock<Mutex<HashMap<SocketAddr, Clock>>> = LazyLock::new(Default::default);

fn clocks() -> std::sync::MutexGuard<'static, HashMap<SocketAddr, Clock>> {
    CLOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remembers the clock of the node listening on `addr`.
pub(crate) fn register(addr: SocketAddr, clock: &Clock) {
    clocks().insert(addr, clock.clone());
}

/// Forgets the node on `addr` (it stopped; the port may be reused).
pub(crate) fn forget(addr: SocketAddr) {
    clocks().remove(&addr);
}

/// The clock of the node `url` points at, or a new adjustable one.
pub(crate) fn for_origin(url: &str) -> Clock {
    let addr = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.authority()?.as_str().parse::<SocketAddr>().ok());
    addr.and_then(|addr| clocks().get(&addr).cloned())
        .unwrap_or_else(Clock::adjustable)
}
