//! Shields discovered through the cluster (issue 22): watches the live
//! members `cluster::Cluster` keeps from the KV bucket and puts the
//! `role = shield` ones on every site's ring, beside the static `shields`
//! ([`Proxy::set_discovered`]). A member joining or leaving rebuilds the
//! rings; being consistent hashes, only that shield's keys move.
//!
//! Off the request path: a request reads the ring in force when it starts
//! (`routing.rs`), and a rebuild only swaps it.

use std::sync::Arc;

use origin_shield::{Peer, Role};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::ShieldPeer;
use crate::hooks::EdgeHooks;
use crate::proxy::Proxy;

/// Follows `members` until the cluster stops (its sender is dropped on a
/// clean leave), rebuilding `proxy`'s rings at each change.
pub fn spawn<H: EdgeHooks>(
    mut members: watch::Receiver<cluster::Members>,
    proxy: Arc<Proxy<H>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = members.borrow_and_update().clone();
            let shields = shields(&now);
            let names: Vec<&str> = shields.iter().filter_map(|s| s.name.as_deref()).collect();
            let names = names.join(", ");
            if proxy.set_discovered(shields) {
                info!(shields = %names, "shield ring rebuilt from cluster membership");
            }
            if members.changed().await.is_err() {
                return;
            }
        }
    })
}

/// The members that are shields, as ring peers named by their node name
/// (so a shield recognises itself), in name order.
pub fn shields(members: &[cluster::Member]) -> Vec<ShieldPeer> {
    let mut shields: Vec<ShieldPeer> = members
        .iter()
        .filter(|m| m.role == cluster::Role::Shield)
        .filter_map(|m| match m.url.parse::<Peer>() {
            Ok(peer) => Some(ShieldPeer {
                // The same bounds as a configured weight.
                peer: peer.with_weight(m.weight.clamp(1, 100)).with_role(Role::Shield),
                name: Some(m.name.clone()),
            }),
            Err(err) => {
                warn!(member = %m.name, url = %m.url, error = %err, "shield member with an unusable URL; left off the ring");
                None
            }
        })
        .collect();
    shields.sort_by(|a, b| a.name.cmp(&b.name));
    shields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: cluster::Role, url: &str, weight: u32) -> cluster::Member {
        cluster::Member {
            name: name.into(),
            role,
            url: url.into(),
            admin_url: "http://127.0.0.1:1".into(),
            weight,
        }
    }

    #[test]
    fn only_shields_with_usable_urls_join_the_ring() {
        let members = [
            member("s-b", cluster::Role::Shield, "http://127.0.0.1:7002", 2),
            member("e-1", cluster::Role::Edge, "http://127.0.0.1:7000", 1),
            member("s-a", cluster::Role::Shield, "http://127.0.0.1:7001", 0),
            member("s-x", cluster::Role::Shield, "not a url", 1),
        ];
        let shields = shields(&members);
        let names: Vec<_> = shields.iter().map(|s| s.name.as_deref()).collect();
        assert_eq!(names, [Some("s-a"), Some("s-b")]);
        assert_eq!(shields[0].peer.weight(), 1, "weight 0 counts as 1");
        assert_eq!(shields[1].peer.weight(), 2);
        assert_eq!(shields[1].peer.authority().as_str(), "127.0.0.1:7002");
    }
}
