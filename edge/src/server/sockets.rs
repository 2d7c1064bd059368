//! Where the listening sockets come from: handed over by the process being
//! upgraded (see [`crate::ops::upgrade`]), passed by systemd socket activation
//! (`LISTEN_FDS`), or bound here from the config's addresses.
//!
//! An inherited socket wins over the config's address for its role: the
//! listen addresses cannot change across an upgrade (they need a restart),
//! and under socket activation the `.socket` unit owns them.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::TcpListener;
use tracing::{info, warn};

use super::error::ServerError;

/// What a listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Client-facing HTTP (`listen`).
    Listen,
    /// The admin listener (`admin`).
    Admin,
    /// Client-facing HTTPS (`tls.listen`).
    Tls,
}

impl Role {
    /// In the order systemd's unnamed sockets are taken.
    pub const ALL: [Role; 3] = [Role::Listen, Role::Admin, Role::Tls];

    /// The name in `FileDescriptorName=` and in the upgrade protocol.
    pub fn name(self) -> &'static str {
        match self {
            Role::Listen => "listen",
            Role::Admin => "admin",
            Role::Tls => "tls",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The config key of its address, for error messages.
    fn config_key(self) -> &'static str {
        match self {
            Role::Listen => "listen",
            Role::Admin => "admin",
            Role::Tls => "tls.listen",
        }
    }
}

/// Where a process's sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Upgrade,
    Systemd,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Upgrade => "the upgraded process",
            Source::Systemd => "systemd",
        }
    }
}

/// Listening sockets received from outside, by role.
#[derive(Debug)]
pub struct Inherited {
    source: Source,
    sockets: Vec<(Role, std::net::TcpListener)>,
}

impl Inherited {
    pub fn new(source: Source, sockets: Vec<(Role, std::net::TcpListener)>) -> Self {
        Inherited { source, sockets }
    }

    /// The socket for `role`, if one was passed.
    pub fn take(&mut self, role: Role) -> Option<std::net::TcpListener> {
        let at = self.sockets.iter().position(|(r, _)| *r == role)?;
        Some(self.sockets.swap_remove(at).1)
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

/// Sockets from systemd, taken by [`capture_systemd`] before any thread
/// starts and handed to the first server that binds.
static SYSTEMD: Mutex<Option<Inherited>> = Mutex::new(None);

/// Takes the sockets of systemd socket activation, if `LISTEN_FDS` and
/// `LISTEN_PID` name this process. Call at the very start of `main`:
/// `listenfd` unsets the variables (so that children do not take the same
/// descriptors), which is only sound while the process has one thread.
/// Returns how many sockets were taken.
pub fn capture_systemd() -> usize {
    // Read before listenfd unsets the others; systemd leaves it set.
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let mut fds = listenfd::ListenFd::from_env();
    let roles = roles_of(names.as_deref(), fds.len());
    let mut sockets = Vec::new();
    for (index, role) in roles.into_iter().enumerate() {
        let Some(role) = role else {
            warn!(
                index,
                names = names.as_deref().unwrap_or(""),
                "systemd passed a socket edge has no use for; ignored"
            );
            continue;
        };
        match fds.take_tcp_listener(index) {
            Ok(Some(listener)) => sockets.push((role, listener)),
            Ok(None) => {}
            Err(err) => warn!(index, role = role.name(), error = %err, "not a TCP socket; ignored"),
        }
    }
    let taken = sockets.len();
    if taken > 0 {
        *SYSTEMD.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Inherited::new(Source::Systemd, sockets));
    }
    taken
}

/// The systemd sockets, the first time they are asked for.
pub(crate) fn take_systemd() -> Option<Inherited> {
    SYSTEMD.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// A `FileDescriptorName=`: a role's name, or its config key
/// (`tls.listen`).
fn role_named(name: &str) -> Option<Role> {
    Role::from_name(name).or_else(|| Role::ALL.into_iter().find(|r| r.config_key() == name))
}

/// Which role each of `count` passed descriptors has. With names
/// (`LISTEN_FDNAMES`, from `FileDescriptorName=`) that include a role's
/// name, by name, and other names have none; otherwise by order: listen,
/// admin, tls (systemd names unnamed sockets after their unit, which says
/// nothing about the role).
pub(crate) fn roles_of(names: Option<&str>, count: usize) -> Vec<Option<Role>> {
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    let named = names.iter().any(|n| role_named(n).is_some());
    (0..count)
        .map(|i| {
            if named {
                names.get(i).and_then(|n| role_named(n))
            } else {
                Role::ALL.get(i).copied()
            }
        })
        .collect()
}

/// The listener for `role`: the inherited one if there is one, else bound
/// on `addr`.
pub(crate) async fn listener(
    role: Role,
    addr: SocketAddr,
    inherited: Option<&mut Inherited>,
) -> Result<TcpListener, ServerError> {
    let err = |source| ServerError::Bind {
        addr,
        role: role.config_key(),
        source,
    };
    let source = inherited.as_ref().map(|i| i.source);
    match inherited.and_then(|i| i.take(role)) {
        Some(std) => {
            std.set_nonblocking(true).map_err(err)?;
            let listener = TcpListener::from_std(std).map_err(err)?;
            let local = listener.local_addr().map_err(err)?;
            if local != addr && addr.port() != 0 {
                info!(
                    role = role.name(),
                    socket = %local,
                    configured = %addr,
                    "using the socket passed by {} instead of the configured address",
                    source.map_or("?", Source::as_str)
                );
            }
            Ok(listener)
        }
        None => TcpListener::bind(addr).await.map_err(err),
    }
}

/// Drops sockets nobody asked for, saying so: a passed socket the config
/// has no listener for (a TLS socket without certificates) would otherwise
/// accept connections that are never served.
pub(crate) fn leftovers(inherited: Option<Inherited>) {
    if let Some(mut inherited) = inherited {
        for role in Role::ALL {
            if inherited.take(role).is_some() {
                warn!(
                    role = role.name(),
                    "a socket passed by {} has no listener in the config; closed",
                    inherited.source.as_str()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_sockets_are_listen_admin_tls_in_order() {
        assert_eq!(roles_of(None, 1), [Some(Role::Listen)]);
        assert_eq!(
            roles_of(Some("edge.socket:edge.socket"), 2),
            [Some(Role::Listen), Some(Role::Admin)]
        );
        assert_eq!(
            roles_of(None, 4),
            [Some(Role::Listen), Some(Role::Admin), Some(Role::Tls), None]
        );
    }

    #[test]
    fn named_sockets_go_by_name_whatever_the_order() {
        assert_eq!(
            roles_of(Some("admin:tls:listen"), 3),
            [Some(Role::Admin), Some(Role::Tls), Some(Role::Listen)]
        );
        assert_eq!(
            roles_of(Some("admin:metrics"), 2),
            [Some(Role::Admin), None],
            "an unknown name among known ones is not guessed"
        );
        assert_eq!(roles_of(Some("tls"), 2), [Some(Role::Tls), None]);
        assert_eq!(
            roles_of(Some("tls.listen:listen"), 2),
            [Some(Role::Tls), Some(Role::Listen)],
            "the config key names a role too"
        );
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("LISTEN"), None);
    }

    #[tokio::test]
    async fn an_inherited_socket_wins_over_the_address() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std.local_addr().expect("addr");
        let mut inherited = Inherited::new(Source::Upgrade, vec![(Role::Admin, std)]);
        let other: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let admin = listener(Role::Admin, other, Some(&mut inherited))
            .await
            .expect("inherited");
        assert_eq!(admin.local_addr().expect("addr"), addr);
        assert!(inherited.is_empty());
        let listen = listener(Role::Listen, other, Some(&mut inherited))
            .await
            .expect("bound");
        assert_ne!(listen.local_addr().expect("addr"), addr);
    }
}
