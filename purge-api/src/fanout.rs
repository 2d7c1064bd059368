//! Forwarding purges to the other nodes of the cluster from the durable
//! outbox: each `(peer, purge)` entry is retried with backoff until the
//! peer acknowledges it, across restarts of either side. Peers apply a
//! forwarded purge by id (idempotent) and never forward it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::bus::BUS_PEER;
use crate::rules::PurgeRecord;
use crate::{Purger, forwarded};

/// The path peers accept forwarded purges on.
pub const REPLICATE_PATH: &str = "/purge/replicate";

/// Why a delivery failed.
#[derive(Debug)]
enum Failure {
    /// Worth trying again later (peer down, timeout, 5xx).
    Retry(String),
    /// The peer will never take it (4xx): given up.
    Refused(String),
}

/// Delivery attempts so far, for backoff and for `GET /purge/{id}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Attempts {
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The peer refused it for good.
    #[serde(skip)]
    pub refused: bool,
    #[serde(skip)]
    next: Option<Instant>,
}

/// The outbox courier.
pub struct Fanout {
    client: Client<HttpConnector, Full<Bytes>>,
    attempts: Mutex<HashMap<(String, String), Attempts>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").finish_non_exhaustive()
    }
}

impl Fanout {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Fanout {
            client: Client::builder(TokioExecutor::new()).build(connector),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    pub fn attempts(&self, peer: &str, id: &str) -> Attempts {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(peer.to_owned(), id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// One pass over the outbox: sends what is due, returns how long until
    /// the next entry is due (if any is left).
    pub(crate) async fn deliver_due(&self, purger: &Arc<Purger>) -> Option<Duration> {
        let owed = match purger.outbox().await {
            Ok(owed) => owed,
            Err(err) => {
                warn!(error = %err, "cannot read the purge outbox");
                return Some(Duration::from_secs(1));
            }
        };
        let to_bus = owed.iter().filter(|(peer, _)| peer == BUS_PEER).count();
        purger.set_backlog(owed.len(), to_bus);
        // Delivery backoff is a timer, not cache semantics: monotonic.
        let now = Instant::now();
        let mut next_due: Option<Duration> = None;
        for (peer, id) in owed {
            let due = self
                .attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&(peer.clone(), id.clone()))
                .and_then(|a| a.next)
                .filter(|next| *next > now);
            if let Some(due) = due {
                let wait = due - now;
                next_due = Some(next_due.map_or(wait, |n| n.min(wait)));
                continue;
            }
            let Some(record) = purger.record(&id).await else {
                // Expired or gone: nothing left to deliver.
                let _ = purger.delivered(&peer, &id).await;
                continue;
            };
            match self.send(purger, &peer, &record).await {
                Err(Failure::Refused(why)) => {
                    warn!(peer, id, error = %why, "purge refused by peer; not retried");
                    {
                        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                        let entry = attempts.entry((peer.clone(), id.clone())).or_default();
                        entry.attempts += 1;
                        entry.refused = true;
                        entry.last_error = Some(why);
                    }
                    if purger.delivered(&peer, &id).await.is_ok() {
                        purger.delivered_one(&peer);
                    }
                }
                Ok(()) => {
                    debug!(peer, id, "purge delivered");
                    self.attempts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(peer.clone(), id.clone()));
                    match purger.delivered(&peer, &id).await {
                        Ok(()) => purger.delivered_one(&peer),
                        Err(err) => warn!(error = %err, "cannot update the purge outbox"),
                    }
                }
                Err(Failure::Retry(why)) => {
                    let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                    let entry = attempts.entry((peer.clone(), id.clone())).or_default();
                    entry.attempts += 1;
                    let backoff = purger
                        .config()
                        .retry_base
                        .saturating_mul(1 << entry.attempts.min(10))
                        .min(purger.config().retry_max);
                    // A retry timer: monotonic, like `now` above.
                    entry.next = Some(Instant::now() + backoff);
                    if entry.attempts == 1 || entry.attempts.is_multiple_of(10) {
                        warn!(peer, id, attempts = entry.attempts, error = %why, "purge not delivered yet; retrying");
                    }
                    entry.last_error = Some(why);
                    next_due = Some(next_due.map_or(backoff, |n| n.min(backoff)));
                }
            }
        }
        next_due
    }

    async fn send(&self, purger: &Purger, peer: &str, record: &PurgeRecord) -> Result<(), Failure> {
        // The peer derives URL keys under its own key rules.
        let forwarded = forwarded(record);
        if peer == BUS_PEER {
            return match purger.bus() {
                Some(bus) => bus
                    .publish(&forwarded)
                    .await
                    .map_err(|e| Failure::Retry(e.to_string())),
                // Queued by a run with a cluster, restarted without one:
                // kept for when the bus is back.
                None => Err(Failure::Retry("no purge bus attached".to_owned())),
            };
        }
        let body = serde_json::to_vec(&forwarded).map_err(|e| Failure::Retry(e.to_string()))?;
        let mut req = Request::post(format!("{}{REPLICATE_PATH}", peer.trim_end_matches('/')))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = &purger.config().token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.client.request(req))
            .await
            .map_err(|_| Failure::Retry("timed out".to_owned()))?
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        let detail = body.map_or_else(
            |_| String::new(),
            |b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned(),
        );
        if status.is_success() {
            if status != http::StatusCode::OK {
                info!(peer, status = status.as_u16(), "peer accepted purge");
            }
            Ok(())
        } else if status.is_client_error()
            && status != http::StatusCode::REQUEST_TIMEOUT
            && status != http::StatusCode::TOO_MANY_REQUESTS
        {
            // Sending it again cannot change the answer (wrong token,
            // refused content): reported, not retried for ever.
            Err(Failure::Refused(format!(
                "peer refused it: {status} {detail}"
            )))
        } else {
            Err(Failure::Retry(format!("peer answered {status}")))
        }
    }
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout::new()
    }
}
