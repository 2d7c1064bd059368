//! Membership in a JetStream KV bucket: this node's [`Member`] under its
//! name, put again every third of the bucket's max age (the heartbeat),
//! deleted on a clean stop; every node watches the bucket and keeps the
//! live members. A crashed node's entry ages out of the bucket, but the KV
//! watch reports no event for that, so each node also forgets a member it
//! has not heard from for a TTL (on its own monotonic clock).
//!
//! The watch starts with the bucket's current entries (the last value of
//! each key), so a node that starts knows the members at once rather
//! than at their next heartbeat; the members are published only once that
//! initial load is done, so the first value a reader sees is complete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{ClusterConfig, Member, key_safe};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The live members, this node included, by name.
pub type Members = Arc<Vec<Member>>;

/// Opens the bucket, creating it if absent (one value per key, entries
/// living `member_ttl`).
///
/// The bucket's stream is created here with the settings async-nats'
/// `create_key_value` uses, rather than through it: that call first reads
/// the account's JetStream info, whose answer from a 2.9 server (Debian's)
/// async-nats 0.42 cannot decode.
pub async fn bucket(js: &jetstream::Context, config: &ClusterConfig) -> Result<kv::Store> {
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| Error::Bucket {
        bucket: config.bucket.clone(),
        source: e,
    };
    match js.get_key_value(&config.bucket).await {
        Ok(store) => return Ok(store),
        Err(err) if err.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {}
        Err(err) => return Err(wrap(Box::new(err))),
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{}", config.bucket),
        description: Some(
            "edge nodes: one key per node, a heartbeat per third of max_age".to_owned(),
        ),
        subjects: vec![format!("$KV.{}.>", config.bucket)],
        max_messages_per_subject: 1,
        max_age: config.member_ttl,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: config.replicas,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| wrap(Box::new(e)))?;
    js.get_key_value(&config.bucket)
        .await
        .map_err(|e| wrap(Box::new(e)))
}

/// Heartbeats and watches until `stop`, then deletes this node's entry.
pub async fn run(
    js: jetstream::Context,
    config: Arc<ClusterConfig>,
    members: watch::Sender<Members>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen: BTreeMap<String, (Member, Instant)> = BTreeMap::new();
    loop {
        let outcome = tokio::select! {
            outcome = session(&js, &config, &members, &metrics, &mut seen) => outcome,
            _ = stop.wait_for(|s| *s) => break,
        };
        if let Err(err) = outcome {
            debug!(error = %err, "membership session ended; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    leave(&js, &config).await;
}

/// Deletes this node's entry, so the others drop it at once.
async fn leave(js: &jetstream::Context, config: &ClusterConfig) {
    let key = key_safe(&config.node.name);
    let deleted = tokio::time::timeout(Duration::from_secs(2), async {
        bucket(js, config)
            .await?
            .delete(&key)
            .await
            .map_err(|e| Error::Bucket {
                bucket: config.bucket.clone(),
                source: Box::new(e),
            })
    })
    .await;
    match deleted {
        Ok(Ok(())) => info!(key, "left the cluster"),
        Ok(Err(err)) => warn!(key, error = %err, "cannot delete this node's membership entry"),
        Err(_) => warn!(key, "cannot delete this node's membership entry: timed out"),
    }
}

async fn session(
    js: &jetstream::Context,
    config: &ClusterConfig,
    members: &watch::Sender<Members>,
    metrics: &Metrics,
    seen: &mut BTreeMap<String, (Member, Instant)>,
) -> Result<()> {
    let store = bucket(js, config).await?;
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| Error::Bucket {
        bucket: config.bucket.clone(),
        source: e,
    };
    let key = key_safe(&config.node.name);
    let value = Bytes::from(serde_json::to_vec(&config.node).map_err(Error::Encode)?);
    store
        .put(&key, value.clone())
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    // With history: the current entries first (one per key), then changes.
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    // A new session's load replays what this node already knows: it
    // publishes once the load is done, whether or not anything changed.
    let mut loaded = false;
    let ttl = config.member_ttl;
    let mut beat = tokio::time::interval(ttl / 3);
    // Fine-grained, so a crashed member leaves within about a TTL of its
    // last heartbeat (a sweep is a walk over a few entries).
    let mut sweep = tokio::time::interval(ttl / 8);
    loop {
        tokio::select! {
            _ = beat.tick() => {
                store.put(&key, value.clone()).await.map_err(|e| wrap(Box::new(e)))?;
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let before = seen.len();
                seen.retain(|name, (_, at)| {
                    let live = now.duration_since(*at) < ttl;
                    if !live {
                        info!(member = %name, "member aged out");
                    }
                    live
                });
                if seen.len() != before {
                    metrics.membership.with_label_values(&["leave"]).inc_by((before - seen.len()) as u64);
                    if loaded {
                        publish(seen, members, metrics);
                    }
                }
            }
            entry = watch.next() => {
                let Some(entry) = entry else {
                    return Ok(());
                };
                let entry = entry.map_err(|e| wrap(Box::new(e)))?;
                let current = entry.delta == 0 || entry.seen_current;
                let changed = changed(seen, entry, (!loaded).then_some(ttl), metrics);
                if current && (changed || !loaded) {
                    loaded = true;
                    publish(seen, members, metrics);
                } else if changed && loaded {
                    publish(seen, members, metrics);
                }
            }
        }
    }
}

/// Applies one bucket event; true when the set of members changed.
fn changed(
    seen: &mut BTreeMap<String, (Member, Instant)>,
    entry: kv::Entry,
    replayed_within: Option<Duration>,
    metrics: &Metrics,
) -> bool {
    match entry.operation {
        kv::Operation::Put => match serde_json::from_slice::<Member>(&entry.value) {
            Ok(member) => {
                let heard = match replayed_within {
                    Some(ttl) => {
                        let heard = heard_at(&entry, ttl);
                        if heard.elapsed() >= ttl {
                            // An old entry the bucket has not expired yet:
                            // a member that stopped beating.
                            return false;
                        }
                        heard
                    }
                    None => Instant::now(),
                };
                let before = seen.insert(entry.key.clone(), (member.clone(), heard));
                match before {
                    None => {
                        info!(member = %member.name, role = member.role.as_str(), url = %member.url, "member joined");
                        metrics.membership.with_label_values(&["join"]).inc();
                        true
                    }
                    Some((old, _)) => old != member,
                }
            }
            Err(err) => {
                warn!(key = %entry.key, error = %err, "unreadable membership entry; ignored");
                false
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => {
            let gone = seen.remove(&entry.key).is_some();
            if gone {
                info!(member = %entry.key, "member left");
                metrics.membership.with_label_values(&["leave"]).inc();
            }
            gone
        }
    }
}

/// When the member of an entry replayed from the bucket (the watch's
/// initial load) was last heard from, on this node's monotonic clock: now
/// less the entry's age by the server's timestamp, clamped to `0..=ttl`
/// so a skewed clock can neither keep a dead member nor drop a live one
/// for longer than a TTL. Counting a replayed entry as a heartbeat now
/// would keep a member that just crashed for up to two TTLs. (Live events
/// are heartbeats now: no clock but this node's is read for them.)
fn heard_at(entry: &kv::Entry, ttl: Duration) -> Instant {
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let age_ns = (wall - entry.created.unix_timestamp_nanos()).clamp(0, ttl.as_nanos() as i128);
    now.checked_sub(Duration::from_nanos(age_ns as u64))
        .unwrap_or(now)
}

fn publish(
    seen: &BTreeMap<String, (Member, Instant)>,
    members: &watch::Sender<Members>,
    metrics: &Metrics,
) {
    let live: Vec<Member> = seen.values().map(|(m, _)| m.clone()).collect();
    metrics.members.set(live.len() as i64);
    members.send_replace(Arc::new(live));
}
