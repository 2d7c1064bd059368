//! A gate a test opens once: everything waiting on it, and everything that
//! comes to it later, goes through. Unlike a `Notify`, it cannot be opened
//! before anyone waits and then lose the wake-up, and it lets any number
//! through.

use std::sync::Arc;

use tokio::sync::watch;

/// Closed until [`open`](Gate::open); clones share one gate.
#[derive(Debug, Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(watch::Sender::new(false)))
    }

    /// Lets every waiter through, now and from now on.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    /// Returns once the gate is open.
    pub async fn wait(&self) {
        let mut open = self.0.subscribe();
        // Only fails if the sender is gone, and `self` holds it.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}
