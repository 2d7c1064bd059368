//! `[cluster]`: the cluster on NATS JetStream (issue 22). Unset `servers`
//! (the default) keeps the embedded HTTP fan-out of `[purge] peers`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::purge::Secret;
use super::units::de_duration;

/// A node's place in the cluster.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// NATS servers, `nats://HOST:PORT` (`--cluster`, repeatable). Default:
    /// none (no cluster: purges go to `purge.peers` over HTTP).
    pub servers: Vec<String>,
    /// `edge` or `shield` (`--role`): shields are the members of the
    /// edges' ring. Default: `edge`.
    pub role: cluster::Role,
    /// JetStream stream of purges. Default: `EDGE_PURGES`.
    pub stream: String,
    /// KV bucket of members. Default: `edge_nodes`.
    pub bucket: String,
    /// Replicas of the stream and the bucket (3 on a 3-server NATS
    /// cluster). Default: `1`.
    pub replicas: usize,
    /// URL the other nodes reach this one's listener at. Default:
    /// `http://` and the bound listen address.
    pub url: Option<String>,
    /// URL of this node's admin listener. Default: `http://` and the bound
    /// admin address.
    pub admin_url: Option<String>,
    /// This node's share of the ring, as a shield. Default: `1`.
    pub weight: u32,
    /// NATS token; prefer `EDGE_CLUSTER_TOKEN`, which stays out of files.
    /// Default: none.
    pub token: Option<Secret>,
    /// NATS `.creds` file (JWT and nkey seed). Default: none.
    pub credentials: Option<PathBuf>,
    /// Require TLS to NATS. Default: `false`.
    pub tls: bool,
    /// PEM CAs for NATS' certificate. Default: the system roots.
    pub tls_ca: Option<PathBuf>,
    /// How long a purge waits for JetStream's ack before the API answers
    /// 202 (the purge queued in the outbox). Default: `2s`.
    #[serde(deserialize_with = "de_duration")]
    pub publish_timeout: Duration,
    /// Lifetime of a membership entry without a heartbeat. Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub member_ttl: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            servers: Vec::new(),
            role: cluster::Role::Edge,
            stream: "EDGE_PURGES".to_owned(),
            bucket: "edge_nodes".to_owned(),
            replicas: 1,
            url: None,
            admin_url: None,
            weight: 1,
            token: None,
            credentials: None,
            tls: false,
            tls_ca: None,
            publish_timeout: Duration::from_secs(2),
            member_ttl: Duration::from_secs(10),
        }
    }
}

impl ClusterSettings {
    /// The cluster crate's settings for this node, `None` without servers.
    pub fn for_cluster(
        &self,
        node_name: &str,
        listen: std::net::SocketAddr,
        admin: std::net::SocketAddr,
        rule_ttl: Duration,
    ) -> Option<cluster::ClusterConfig> {
        if self.servers.is_empty() {
            return None;
        }
        let node = cluster::Member {
            name: node_name.to_owned(),
            role: self.role,
            url: self
                .url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}")),
            admin_url: self
                .admin_url
                .clone()
                .unwrap_or_else(|| format!("http://{admin}")),
            weight: self.weight,
        };
        let mut config = cluster::ClusterConfig::new(self.servers.clone(), node);
        config.stream = self.stream.clone();
        config.bucket = self.bucket.clone();
        config.replicas = self.replicas;
        config.token = self.token.as_ref().map(|t| t.0.clone());
        config.credentials = self.credentials.clone();
        config.tls = self.tls;
        config.tls_ca = self.tls_ca.clone();
        config.publish_timeout = self.publish_timeout;
        config.member_ttl = self.member_ttl;
        config.rule_ttl = rule_ttl;
        Some(config)
    }
}
