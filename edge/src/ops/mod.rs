//! Operating a running node without a restart: live configuration reload
//! (SIGHUP, `POST /reload`), binary upgrade with socket and data-directory
//! hand-over (SIGUSR2), and what systemd is told (`sd_notify`).

pub mod notify;
pub mod reload;
pub mod upgrade;
