//! The seam to a purge bus (the `cluster` crate's JetStream stream): what
//! the purger asks of one, so this crate knows no NATS. A bus publishes a
//! purge accepted here to every other node; the nodes' consumers hand what
//! they receive back through [`Purger::apply_replicated`](crate::Purger::apply_replicated).
//!
//! The outbox entry under [`BUS_PEER`] is written in the same synced batch
//! as the purge: a purge the bus did not acknowledge (NATS down, a crash
//! before the ack) is published again by the courier until it is.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use crate::rules::PurgeRecord;

/// The outbox's name for the bus (never a URL, so never an HTTP peer).
pub const BUS_PEER: &str = "bus:";

/// Why a publication was not acknowledged; the source is the bus's own.
#[derive(Debug, thiserror::Error)]
#[error("purge bus: {0}")]
pub struct BusError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A publication in flight.
pub type Publish<'a> = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>>;

/// A bus every node of the cluster reads.
pub trait PurgeBus: Send + Sync + Debug {
    /// Publishes `record` (its `url_keys` already cleared: receivers derive
    /// them under their own key rules) and resolves once the bus has stored
    /// it durably. Publishing the same id twice must be harmless (the bus
    /// deduplicates, receivers skip ids they hold). Bounded in time: an
    /// unreachable bus is an error, not a wait.
    fn publish<'a>(&'a self, record: &'a PurgeRecord) -> Publish<'a>;
}
