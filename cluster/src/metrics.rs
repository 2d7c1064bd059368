//! The cluster's metrics, registered into the node's registry (names here,
//! in one place; no label carries more than a node name).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::error::Result;

pub const CONNECTED: &str = "edge_cluster_connected";
pub const STREAM_LAG: &str = "edge_cluster_stream_lag";
pub const PUBLISHED: &str = "edge_cluster_purges_published_total";
pub const APPLIED: &str = "edge_cluster_purges_applied_total";
pub const QUEUED: &str = "edge_cluster_purges_queued";
pub const MEMBERSHIP: &str = "edge_cluster_membership_changes_total";
pub const MEMBERS: &str = "edge_cluster_members";

/// Handles to the cluster's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// 1 while connected to a NATS server.
    pub connected: IntGauge,
    /// Purges in the stream this node's consumer has not acknowledged yet.
    pub stream_lag: IntGauge,
    pub published: IntCounter,
    /// Purges received from the stream, by outcome (`applied`, `known`,
    /// `refused`).
    pub applied: IntCounterVec,
    /// Purges accepted here still waiting for JetStream (in the outbox).
    pub queued: IntGauge,
    /// Members joining (`join`) and leaving (`leave`) as this node saw it.
    pub membership: IntCounterVec,
    pub members: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Metrics> {
        let metrics = Metrics {
            connected: IntGauge::new(CONNECTED, "1 while connected to NATS")?,
            stream_lag: IntGauge::new(
                STREAM_LAG,
                "Purges in the stream not yet applied and acknowledged by this node",
            )?,
            published: IntCounter::new(
                PUBLISHED,
                "Purges published to JetStream and acknowledged",
            )?,
            applied: IntCounterVec::new(
                Opts::new(APPLIED, "Purges received from the stream, by outcome"),
                &["outcome"],
            )?,
            queued: IntGauge::new(
                QUEUED,
                "Purges accepted here and not yet acknowledged by JetStream",
            )?,
            membership: IntCounterVec::new(
                Opts::new(
                    MEMBERSHIP,
                    "Members joining or leaving, as this node saw it",
                ),
                &["change"],
            )?,
            members: IntGauge::new(MEMBERS, "Live members of the cluster, this node included")?,
        };
        registry.register(Box::new(metrics.connected.clone()))?;
        registry.register(Box::new(metrics.stream_lag.clone()))?;
        registry.register(Box::new(metrics.published.clone()))?;
        registry.register(Box::new(metrics.applied.clone()))?;
        registry.register(Box::new(metrics.queued.clone()))?;
        registry.register(Box::new(metrics.membership.clone()))?;
        registry.register(Box::new(metrics.members.clone()))?;
        Ok(metrics)
    }
}
