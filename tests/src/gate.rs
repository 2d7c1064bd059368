//! A gate a test opens once, to release what it held (a mock origin's
//! response heads). Unlike a `Notify`, it stays open: every waiter goes
//! through, however many, including those that arrive after it opened.

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
