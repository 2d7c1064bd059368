//! What a reload changes: the configuration in force and the one just read,
//! compared. Pure functions: the reload applies what [`live_part`] leaves
//! and logs what [`Changes`] says.
//!
//! A few keys cannot change in a running process (a socket is bound, the
//! data directory is open, the memory budget is allocated, the runtime's
//! threads exist, the log is set up, the NATS connection, consumer and
//! membership entry of `[cluster]` are made): those keep their running
//! value and are reported as needing a restart. Everything else applies.

use std::collections::BTreeSet;

use serde::Serialize;

use super::Config;

/// What differs between two configurations, as the log and `/reload` say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub sites_added: Vec<String>,
    pub sites_removed: Vec<String>,
    /// Sites whose hosts, peers or rules differ.
    pub sites_changed: Vec<String>,
    /// Origins and shields, of any site, by URL.
    pub peers_added: Vec<String>,
    pub peers_removed: Vec<String>,
    /// Sections (or top-level keys) whose values changed and applied:
    /// `cache`, `upstream`, `purge`, `tls`, `server`.
    pub sections_changed: Vec<&'static str>,
    /// Keys that changed in the file but keep their running value until a
    /// restart.
    pub needs_restart: Vec<&'static str>,
}

impl Changes {
    /// Whether the new configuration is the one in force.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// Copies each key in the list from `applied` into `next` when they
/// differ, noting its name: keys a running process cannot change.
macro_rules! keep_running {
    ($applied:expr, $next:expr, $kept:expr; $($key:literal => $($field:ident).+;)*) => {
        $(
            if $applied.$($field).+ != $next.$($field).+ {
                $next.$($field).+ = $applied.$($field).+.clone();
                $kept.push($key);
            }
        )*
    };
}

/// `next` with every key that needs a restart set back to its value in
/// `applied`, and the names of those keys (in file order).
pub fn live_part(applied: &Config, mut next: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    keep_running! { applied, next, kept;
        "listen" => listen;
        "admin" => admin;
        "data_dir" => data_dir;
        "node_name" => node_name;
        "log_format" => log_format;
        "access_log" => access_log;
        "access_log_flush" => access_log_flush;
        "access_log_buffer" => access_log_buffer;
        "cache.memory" => cache.memory;
        "cache.disk" => cache.disk;
        "cache.disk_admission" => cache.disk_admission;
        "cache.disk_admission_requests" => cache.disk_admission_requests;
        "server.worker_threads" => server.worker_threads;
        "server.upgrade_timeout" => server.upgrade_timeout;
        "tls.listen" => tls.listen;
        "tls.reload_interval" => tls.reload_interval;
        // The QUIC endpoint and its settings are made once, at start.
        "tls.h3_listen" => tls.h3_listen;
        "tls.h3_max_concurrent_streams" => tls.h3_max_concurrent_streams;
        "tls.h3_zero_rtt" => tls.h3_zero_rtt;
        "tls.h3_retry_threshold" => tls.h3_retry_threshold;
        "tls.alt_svc" => tls.alt_svc;
        "tls.alt_svc_max_age" => tls.alt_svc_max_age;
        "purge.rule_ttl" => purge.rule_ttl;
        // The cluster is joined once, at start: its connection, stream,
        // consumer and membership entry are made from these. (The ring's
        // shields from the cluster follow membership live.)
        "cluster.servers" => cluster.servers;
        "cluster.role" => cluster.role;
        "cluster.stream" => cluster.stream;
        "cluster.bucket" => cluster.bucket;
        "cluster.replicas" => cluster.replicas;
        "cluster.url" => cluster.url;
        "cluster.admin_url" => cluster.admin_url;
        "cluster.weight" => cluster.weight;
        "cluster.token" => cluster.token;
        "cluster.credentials" => cluster.credentials;
        "cluster.tls" => cluster.tls;
        "cluster.tls_ca" => cluster.tls_ca;
        "cluster.publish_timeout" => cluster.publish_timeout;
        "cluster.member_ttl" => cluster.member_ttl;
    }
    (next, kept)
}

/// A site as the diff sees it: its name and what it is made of.
fn sites(config: &Config) -> Vec<(String, String)> {
    let mut sites = Vec::new();
    if !config.origins.is_empty() {
        // The top-level origins are the default site.
        let shape = format!(
            "{:?} {:?} {:?}",
            config.origins, config.shields, config.access
        );
        sites.push((super::DEFAULT_SITE.to_owned(), shape));
    }
    for site in &config.sites {
        sites.push((site.name.clone(), format!("{site:?}")));
    }
    sites
}

/// Every origin and shield of every site, by URL.
fn peers(config: &Config) -> BTreeSet<String> {
    let shields = |s: &[super::ShieldPeer]| {
        s.iter()
            .map(|s| s.peer.to_string())
            .collect::<Vec<String>>()
    };
    let mut peers: BTreeSet<String> = config.origins.iter().map(ToString::to_string).collect();
    peers.extend(shields(&config.shields));
    for site in &config.sites {
        peers.extend(site.origins.iter().map(ToString::to_string));
        peers.extend(shields(&site.shields));
    }
    peers
}

/// What `next` changes against `applied`; `needs_restart` as
/// [`live_part`] found it.
pub fn between(applied: &Config, next: &Config, needs_restart: Vec<&'static str>) -> Changes {
    let (before, after) = (sites(applied), sites(next));
    let named = |list: &[(String, String)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, shape)| shape.clone())
    };
    let sites_added = after
        .iter()
        .filter(|(name, _)| named(&before, name).is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let sites_removed = before
        .iter()
        .filter(|(name, _)| named(&after, name).is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let sites_changed = after
        .iter()
        .filter(|(name, shape)| named(&before, name).is_some_and(|old| &old != shape))
        .map(|(name, _)| name.clone())
        .collect();
    let (peers_before, peers_after) = (peers(applied), peers(next));
    let mut sections_changed = Vec::new();
    let mut section = |name: &'static str, changed: bool| {
        if changed {
            sections_changed.push(name);
        }
    };
    section("cache", applied.cache != next.cache);
    section("upstream", applied.upstream != next.upstream);
    section("purge", applied.purge != next.purge);
    section("tls", applied.tls != next.tls);
    section("server", applied.server != next.server);
    section("tracing", applied.tracing != next.tracing);
    Changes {
        sites_added,
        sites_removed,
        sites_changed,
        peers_added: peers_after.difference(&peers_before).cloned().collect(),
        peers_removed: peers_before.difference(&peers_after).cloned().collect(),
        sections_changed,
        needs_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, std::path::Path::new("test.toml")).expect("valid config")
    }

    const BASE: &str = r#"
        listen = "127.0.0.1:8080"
        origins = ["http://127.0.0.1:9001"]
        [cache]
        memory = "64MiB"
        default_ttl = "10s"
        [[sites]]
        name = "shop"
        hosts = ["shop.example"]
        origins = ["http://127.0.0.1:9002"]
        [[sites]]
        name = "blog"
        hosts = ["blog.example"]
        origins = ["http://127.0.0.1:9003"]
    "#;

    #[test]
    fn the_same_file_changes_nothing() {
        let (live, kept) = live_part(&config(BASE), config(BASE));
        assert!(kept.is_empty());
        assert!(between(&config(BASE), &live, kept).is_empty());
    }

    #[test]
    fn restart_keys_keep_their_running_value_and_the_rest_applies() {
        let applied = config(BASE);
        let next = config(
            &BASE
                .replace("127.0.0.1:8080", "127.0.0.1:8081")
                .replace("64MiB", "128MiB")
                .replace("\"10s\"", "\"20s\""),
        );
        let (live, kept) = live_part(&applied, next);
        assert_eq!(kept, ["listen", "cache.memory"]);
        assert_eq!(live.listen, applied.listen);
        assert_eq!(live.cache.memory, applied.cache.memory);
        assert_eq!(
            live.cache.default_ttl,
            Some(std::time::Duration::from_secs(20))
        );
        let changes = between(&applied, &live, kept);
        assert_eq!(changes.sections_changed, ["cache"]);
        assert_eq!(changes.needs_restart, ["listen", "cache.memory"]);
    }

    #[test]
    fn cluster_settings_need_a_restart() {
        let cluster = "\n[cluster]\nservers = [\"nats://127.0.0.1:4222\"]\nrole = \"edge\"\n";
        let applied = config(&format!("{BASE}{cluster}"));
        let next = config(&format!(
            "{BASE}{}member_ttl = \"5s\"\n",
            cluster
                .replace("4222", "4223")
                .replace("\"edge\"", "\"shield\"")
        ));
        let (live, kept) = live_part(&applied, next);
        assert_eq!(
            kept,
            ["cluster.servers", "cluster.role", "cluster.member_ttl"]
        );
        assert_eq!(live.cluster, applied.cluster);
        let changes = between(&applied, &live, kept);
        assert!(changes.sections_changed.is_empty());
        assert_eq!(changes.needs_restart.len(), 3);
        // Adding a cluster to a node without one is a restart too.
        let (_, kept) = live_part(&config(BASE), config(&format!("{BASE}{cluster}")));
        assert_eq!(kept, ["cluster.servers"]);
    }

    #[test]
    fn sites_and_peers_added_removed_and_changed_are_named() {
        let applied = config(BASE);
        let text = BASE
            .replace("http://127.0.0.1:9002", "http://127.0.0.1:9012")
            .replace(
                "name = \"blog\"\n        hosts = [\"blog.example\"]\n        origins = [\"http://127.0.0.1:9003\"]",
                "name = \"docs\"\n        hosts = [\"docs.example\"]\n        origins = [\"http://127.0.0.1:9003\"]",
            );
        let next = config(&text);
        let (live, kept) = live_part(&applied, next);
        let changes = between(&applied, &live, kept);
        assert_eq!(changes.sites_added, ["docs"]);
        assert_eq!(changes.sites_removed, ["blog"]);
        assert_eq!(changes.sites_changed, ["shop"]);
        assert_eq!(changes.peers_added, ["http://127.0.0.1:9012"]);
        assert_eq!(changes.peers_removed, ["http://127.0.0.1:9002"]);
        assert!(changes.sections_changed.is_empty());
    }
}
