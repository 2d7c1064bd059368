//! The cluster's settings, as a plain struct the binary fills from
//! `--cluster`, `--role` and the `[cluster]` table (this crate parses no
//! files).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a node does in the tier: shields are the ring's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves clients; fetches misses through the shields. The default.
    #[default]
    Edge,
    /// Holds a share of the keys for the edges (a member of their ring).
    Shield,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Shield => "shield",
        }
    }
}

/// This node as the others see it in the membership bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub role: Role,
    /// Where the node serves clients (and shields serve edges).
    pub url: String,
    /// Its admin listener.
    pub admin_url: String,
    /// Its share in the ring. Default: 1.
    pub weight: u32,
}

/// How to reach NATS and what to use there.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `nats://host:port` (or `tls://`), one or more servers of one NATS
    /// cluster. Required.
    pub servers: Vec<String>,
    /// JetStream stream of purges. Default: `EDGE_PURGES`.
    pub stream: String,
    /// KV bucket of members. Default: `edge_nodes`.
    pub bucket: String,
    /// Replicas of the stream and the bucket (3 on a 3-server cluster).
    /// Default: 1.
    pub replicas: usize,
    /// Token auth. Default: none.
    pub token: Option<String>,
    /// User and password auth. Default: none.
    pub user: Option<(String, String)>,
    /// A `.creds` file (JWT + nkey seed). Default: none.
    pub credentials: Option<PathBuf>,
    /// Require TLS to NATS. Default: false (`tls://` URLs require it too).
    pub tls: bool,
    /// PEM bundle of CAs for NATS' certificate. Default: the system roots.
    pub tls_ca: Option<PathBuf>,
    /// How long a publication may wait for JetStream's ack before the API
    /// answers 202 and the outbox takes over. Default: `2s`.
    pub publish_timeout: Duration,
    /// Lifetime of a membership entry (bucket max age); heartbeats every
    /// third of it. Default: `10s`.
    pub member_ttl: Duration,
    /// Stream max age and how far back a new node replays: the purge rule
    /// TTL (older objects are refetched anyway).
    pub rule_ttl: Duration,
    /// This node.
    pub node: Member,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach a log.
        f.debug_struct("ClusterConfig")
            .field("servers", &self.servers)
            .field("stream", &self.stream)
            .field("bucket", &self.bucket)
            .field("replicas", &self.replicas)
            .field("tls", &self.tls)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// Defaults for `node` on `servers`.
    pub fn new(servers: Vec<String>, node: Member) -> Self {
        ClusterConfig {
            servers,
            stream: "EDGE_PURGES".to_owned(),
            bucket: "edge_nodes".to_owned(),
            replicas: 1,
            token: None,
            user: None,
            credentials: None,
            tls: false,
            tls_ca: None,
            publish_timeout: Duration::from_secs(2),
            member_ttl: Duration::from_secs(10),
            rule_ttl: Duration::from_secs(7 * 86_400),
            node,
        }
    }

    /// The node's durable consumer: its name with the characters NATS
    /// refuses in a consumer name (`.`, `*`, `>`, spaces) replaced.
    pub fn durable_name(&self) -> String {
        key_safe(&self.node.name)
    }
}

/// A name usable as a consumer name and a KV key.
pub fn key_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_names_have_no_characters_nats_refuses() {
        assert_eq!(key_safe("pop.fra 1*>"), "pop_fra_1__");
        assert_eq!(key_safe("edge-1_a"), "edge-1_a");
    }
}
