//! This node's durable consumer of the purge stream: each purge applied
//! (stored, synced, in force) before it is acknowledged, so a crash
//! between the two gets it again and a restart resumes where it acked.
//! A node whose consumer is new replays from `now − rule_ttl`: it never
//! serves an object purged before it joined.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use purge_api::{Purger, Replicated};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::bus::{Envelope, FORMAT, ensure_stream};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Consumes until `stop` turns true, reconnecting after any failure.
/// `caught_up` turns true once nothing is pending for this consumer: every
/// purge the stream held when it started is applied here.
pub async fn run(
    js: jetstream::Context,
    config: Arc<ClusterConfig>,
    purger: Arc<Purger>,
    metrics: Metrics,
    caught_up: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = tokio::select! {
            outcome = consume(&js, &config, &purger, &metrics, &caught_up) => outcome,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(err) = outcome {
            // NATS away or the stream not there yet: the client reconnects
            // on its own; this loop only has to subscribe again.
            debug!(error = %err, "purge stream consumer stopped; retrying");
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn consume(
    js: &jetstream::Context,
    config: &ClusterConfig,
    purger: &Arc<Purger>,
    metrics: &Metrics,
    caught_up: &watch::Sender<bool>,
) -> Result<()> {
    let stream = ensure_stream(js, config).await?;
    let name = config.durable_name();
    let consumer_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Consumer {
        name: name.clone(),
        source: e,
    };
    let start = SystemTime::now()
        .checked_sub(config.rule_ttl)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let start_secs = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start_time = time::OffsetDateTime::from_unix_timestamp(start_secs as i64)
        .map_err(|e| consumer_error(Box::new(e)))?;
    // An existing durable consumer is resumed as it is (its start time was
    // set when it was created); only a new one takes this start.
    let mut consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("purges applied by {}", config.node.name)),
                deliver_policy: DeliverPolicy::ByStartTime { start_time },
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| consumer_error(Box::new(e)))?;
    let info = consumer
        .info()
        .await
        .map_err(|e| consumer_error(Box::new(e)))?;
    if info.num_pending == 0 && info.num_ack_pending == 0 {
        caught_up.send_replace(true);
    }
    // Short pulls with a heartbeat every second: when the server this node
    // pulls through dies, or the consumer's leader moves, a pull request
    // can be lost with nothing to say so; the client's defaults (30 s
    // pulls, 15 s heartbeat) left purges waiting that long. Two missed
    // heartbeats end this stream and `run` subscribes again.
    let mut messages = consumer
        .stream()
        .expires(Duration::from_secs(5))
        .heartbeat(Duration::from_secs(1))
        .messages()
        .await
        .map_err(|e| consumer_error(Box::new(e)))?;
    info!(consumer = %name, stream = %config.stream, "consuming purges from JetStream");
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| consumer_error(Box::new(e)))?;
        let pending = message.info().ok().map(|info| info.pending);
        if let Some(pending) = pending {
            metrics
                .stream_lag
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        let (kind, outcome) = apply(purger, &message.payload).await;
        metrics.applied.with_label_values(&[outcome]).inc();
        // Acked only once the purge is stored here (or can never be).
        message.ack_with(kind).await.map_err(&consumer_error)?;
        if pending == Some(0) {
            caught_up.send_replace(true);
        }
    }
    Ok(())
}

/// Applies one message; says how to acknowledge it and what happened.
async fn apply(purger: &Arc<Purger>, payload: &[u8]) -> (AckKind, &'static str) {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(envelope) => envelope,
        Err(err) => {
            warn!(error = %err, "undecodable purge on the stream; dropped");
            return (AckKind::Term, "refused");
        }
    };
    if envelope.v != FORMAT {
        warn!(
            version = envelope.v,
            "purge of an unknown format on the stream; dropped"
        );
        return (AckKind::Term, "refused");
    }
    let id = envelope.purge.id.clone();
    match purger.apply_replicated(envelope.purge).await {
        Ok(Replicated::Applied) => {
            debug!(id, from = %envelope.from, "purge from the cluster applied");
            (AckKind::Ack, "applied")
        }
        Ok(Replicated::Known) => (AckKind::Ack, "known"),
        Err(err) if err.status.is_client_error() => {
            warn!(id, error = %err.message, "purge from the cluster refused; dropped");
            (AckKind::Term, "refused")
        }
        Err(err) => {
            // Not stored (disk full, an upgrade's hand-over): again soon.
            warn!(id, error = %err.message, "purge from the cluster not applied yet");
            (AckKind::Nak(Some(Duration::from_secs(1))), "retried")
        }
    }
}
