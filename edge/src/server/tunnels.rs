//! The tunnels open on this server (connections switched to another
//! protocol after a `101`), for graceful shutdown: hyper's graceful
//! watcher loses sight of a connection once hyper hands its socket over,
//! so the server counts tunnels here, waits for them within the grace
//! period, and then tells the rest to close.
//!
//! The connection cap is not here: a tunnel keeps its connection's
//! [`ConnSlot`](super::limits::ConnSlot).

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::watch;

/// Every tunnel of the server.
#[derive(Debug)]
pub struct Tunnels {
    open: watch::Sender<usize>,
    closing: watch::Sender<bool>,
    gauge: IntGauge,
}

impl Tunnels {
    /// `gauge`: `edge_open_tunnels`.
    pub fn new(gauge: IntGauge) -> Arc<Self> {
        Arc::new(Tunnels {
            open: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            gauge,
        })
    }

    /// Counts a tunnel until the guard drops.
    pub fn open(self: &Arc<Self>) -> TunnelGuard {
        self.open.send_modify(|n| *n += 1);
        self.gauge.inc();
        TunnelGuard {
            tunnels: self.clone(),
            closing: self.closing.subscribe(),
        }
    }

    /// Tunnels open now.
    pub fn count(&self) -> usize {
        *self.open.borrow()
    }

    /// Resolves once no tunnel is open.
    pub async fn drained(&self) {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|n| *n == 0).await;
    }

    /// Tells every tunnel, open now or opened later, to close.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// One open tunnel; dropping it uncounts it.
#[derive(Debug)]
pub struct TunnelGuard {
    tunnels: Arc<Tunnels>,
    closing: watch::Receiver<bool>,
}

impl TunnelGuard {
    /// Resolves when the server wants its tunnels closed.
    pub async fn closing(&mut self) {
        let _ = self.closing.wait_for(|closing| *closing).await;
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.tunnels.open.send_modify(|n| *n = n.saturating_sub(1));
        self.tunnels.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_drain_and_close() {
        let gauge = IntGauge::new("t", "t").unwrap();
        let tunnels = Tunnels::new(gauge.clone());
        tunnels.drained().await;
        let mut one = tunnels.open();
        let two = tunnels.open();
        assert_eq!((tunnels.count(), gauge.get()), (2, 2));
        drop(two);
        assert_eq!(tunnels.count(), 1);
        tunnels.close_all();
        one.closing().await;
        // A tunnel opened after the call is told at once.
        let mut late = tunnels.open();
        late.closing().await;
        drop((one, late));
        tunnels.drained().await;
        assert_eq!(gauge.get(), 0);
    }
}
