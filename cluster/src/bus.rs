//! Purges on JetStream: the stream (created if absent), the message
//! format, and [`JetStreamBus`], the purger's [`PurgeBus`].
//!
//! One subject per kind under the stream's name (`EDGE_PURGES.url`, …,
//! `EDGE_PURGES.mixed` for a purge naming several kinds), so an operator
//! can watch one kind with the `nats` tool. The message id is the purge
//! id (`Nats-Msg-Id`): a publication retried by the outbox within the
//! stream's duplicate window is stored once.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use purge_api::bus::Publish;
use purge_api::{BusError, PurgeBus, PurgeRecord};
use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Version of [`Envelope`]; a node skips (and terminates) what it cannot
/// read rather than guess.
pub const FORMAT: u32 = 1;

/// A purge on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// Who accepted it (for logs; receivers date it by their own clock).
    pub from: String,
    pub purge: PurgeRecord,
}

/// The subject a purge is published on.
pub fn subject(stream: &str, record: &PurgeRecord) -> String {
    let kinds = [
        ("url", record.urls.len()),
        ("prefix", record.prefixes.len()),
        ("host", record.hosts.len()),
        ("tag", record.tags.len()),
    ];
    let mut named = kinds.iter().filter(|(_, n)| *n > 0);
    let kind = match (named.next(), named.next()) {
        (Some((kind, _)), None) => kind,
        _ => "mixed",
    };
    format!("{stream}.{kind}")
}

/// Creates the purge stream if absent: every subject under its name, kept
/// for the rule TTL (older purges cover nothing a node still serves), on
/// file storage with the configured replicas. An existing stream is used
/// as it is (an operator may have tuned it).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &ClusterConfig,
) -> Result<stream::Stream> {
    // The duplicate window may not exceed the max age.
    let duplicate_window = Duration::from_secs(120).min(config.rule_ttl);
    js.get_or_create_stream(stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.stream)],
        max_age: config.rule_ttl,
        duplicate_window,
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| Error::Stream {
        stream: config.stream.clone(),
        source: Box::new(e),
    })
}

/// Publishes purges on the stream and waits for JetStream's ack.
#[derive(Debug)]
pub struct JetStreamBus {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    node: String,
    timeout: Duration,
    metrics: Metrics,
}

impl JetStreamBus {
    pub fn new(client: async_nats::Client, config: &ClusterConfig, metrics: Metrics) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.publish_timeout);
        JetStreamBus {
            client,
            js,
            stream: config.stream.clone(),
            node: config.node.name.clone(),
            timeout: config.publish_timeout,
            metrics,
        }
    }

    async fn send(&self, record: &PurgeRecord) -> Result<()> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            // Fail fast: the client would buffer it and the API would wait
            // the whole timeout for an answer it then gives as 202 anyway.
            return Err(Error::NotConnected);
        }
        let envelope = Envelope {
            v: FORMAT,
            from: self.node.clone(),
            purge: record.clone(),
        };
        let payload = Bytes::from(serde_json::to_vec(&envelope).map_err(Error::Encode)?);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, record.id.as_str());
        let ack = self
            .js
            .publish_with_headers(subject(&self.stream, record), headers, payload)
            .await
            .map_err(Error::Publish)?;
        tokio::time::timeout(self.timeout, ack)
            .await
            .map_err(|_| Error::AckTimeout(self.timeout))?
            .map_err(Error::Publish)?;
        self.metrics.published.inc();
        Ok(())
    }
}

impl PurgeBus for JetStreamBus {
    fn publish<'a>(&'a self, record: &'a PurgeRecord) -> Publish<'a> {
        Box::pin(async move { self.send(record).await.map_err(|e| BusError(Box::new(e))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PurgeRecord {
        PurgeRecord {
            id: "abc".into(),
            at: 1,
            soft: false,
            url_keys: vec![],
            urls: vec![],
            prefixes: vec![],
            hosts: vec![],
            tags: vec![],
            all: false,
        }
    }

    #[test]
    fn one_subject_per_kind_and_mixed_for_several() {
        let mut r = record();
        r.tags.push("t".into());
        assert_eq!(subject("EDGE_PURGES", &r), "EDGE_PURGES.tag");
        r.urls.push("http://a/b".into());
        assert_eq!(subject("EDGE_PURGES", &r), "EDGE_PURGES.mixed");
    }

    #[test]
    fn the_envelope_of_version_1_decodes() {
        let wire = r#"{"v":1,"from":"n1","purge":{"id":"abc","at":1,"soft":true,
            "url_keys":[],"urls":[],"prefixes":[["h","/p"]],"hosts":[],"tags":[]}}"#;
        let envelope: Envelope = serde_json::from_str(wire).expect("decodes");
        assert_eq!(envelope.v, 1);
        assert!(envelope.purge.soft);
        assert_eq!(envelope.purge.prefixes, [("h".to_owned(), "/p".to_owned())]);
    }
}
