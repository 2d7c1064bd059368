//! systemd's notify protocol (`Type=notify`, `Type=notify-reload`): what
//! edge tells the service manager through `NOTIFY_SOCKET`. Without the
//! variable (not under systemd) every call does nothing.
//!
//! - [`ready`] once the listeners accept;
//! - [`reloading`] then [`ready`] around a configuration reload
//!   (`RELOADING=1` carries `MONOTONIC_USEC=`, as systemd 253's
//!   notify-reload protocol requires);
//! - [`main_pid`] when a binary upgrade hands the service to a new process,
//!   so that systemd follows it (the unit needs `NotifyAccess=all`: the new
//!   process also reports from its own pid before systemd knows it);
//! - [`stopping`] at shutdown.
//!
//! A failed notification is logged, never fatal: serving matters more than
//! the service manager's view of it.

use sd_notify::NotifyState;
use tracing::{debug, warn};

fn send(what: &str, states: &[NotifyState]) {
    match sd_notify::notify(states) {
        Ok(()) => debug!(what, "notified the service manager"),
        Err(err) => warn!(what, error = %err, "cannot notify the service manager"),
    }
}

/// `READY=1`: listening and serving (also: a reload finished).
pub fn ready() {
    send("READY=1", &[NotifyState::Ready]);
}

/// `READY=1` with `MAINPID=` of this process: the new process after a
/// binary upgrade.
pub fn ready_as_main() {
    send(
        "READY=1 MAINPID",
        &[NotifyState::MainPid(std::process::id()), NotifyState::Ready],
    );
}

/// `RELOADING=1` with `MONOTONIC_USEC=` now: a reload starts; follow it
/// with [`ready`].
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send("RELOADING=1", &[NotifyState::Reloading, now]),
        Err(err) => warn!(error = %err, "cannot read the monotonic clock for RELOADING=1"),
    }
}

/// `MAINPID=pid`: the service's main process is now `pid`.
pub fn main_pid(pid: u32) {
    send("MAINPID", &[NotifyState::MainPid(pid)]);
}

/// `STOPPING=1`: shutting down (not sent by the old process of an
/// upgrade: the service goes on in the new one).
pub fn stopping() {
    send("STOPPING=1", &[NotifyState::Stopping]);
}
