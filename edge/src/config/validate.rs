//! What serde cannot check: required values and cross-field limits; the
//! `[[sites]]` entries are checked by `validate_sites`.

use origin_shield::Peer;

use super::{ByteSize, Config, IpNet};

impl Config {
    /// Checks what serde cannot: required values and cross-field limits.
    /// The error is the dotted key (`cache.disk`,
    /// `sites[1].rules[0].path_regex`) and what is wrong with it.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        self.validate_top_level()
            .map_err(|(key, message)| (key.to_owned(), message))?;
        super::access::validate_access(&self.access)
            .map_err(|(key, message)| (format!("access.{key}"), message))?;
        if !self.access.is_empty() && self.origins.is_empty() {
            return Err((
                "access".into(),
                "`[access]` is the default site's (the top-level `origins`), and there is none: \
                 put the keys on a `[[sites]]` entry"
                    .into(),
            ));
        }
        super::validate_sites::validate_sites(&self.sites)
    }

    fn validate_top_level(&self) -> Result<(), (&'static str, String)> {
        // (Port 0 asks for any free port: two of those never clash.)
        if self.listen == self.admin && self.listen.port() != 0 {
            return Err((
                "admin",
                format!(
                    "{} is also the listen address: give the admin listener its own",
                    self.admin
                ),
            ));
        }
        self.compression.validate()?;
        self.tracing.validate()?;
        if self.tls.listen.is_some() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err((
                "tls.listen",
                "a TLS listener needs tls.cert and tls.key (--tls-cert, --tls-key)".into(),
            ));
        }
        if self.tls.h3_listen.is_some() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err((
                "tls.h3_listen",
                "HTTP/3 needs tls.cert and tls.key (--tls-cert, --tls-key)".into(),
            ));
        }
        if self.tls.h3_max_concurrent_streams == 0 {
            return Err(("tls.h3_max_concurrent_streams", "must be at least 1".into()));
        }
        // The top-level origins are the default site: optional when
        // `[[sites]]` serve the hosts.
        if self.origins.is_empty() && self.sites.is_empty() {
            return Err((
                "origins",
                "no origin configured: pass --origin http://HOST:PORT or set `origins`".into(),
            ));
        }
        if self.origins.is_empty() && !self.shields.is_empty() {
            return Err((
                "shields",
                "the top-level shields belong to the default site, which has no `origins`: \
                 set `shields` in each [[sites]] entry instead"
                    .into(),
            ));
        }
        if http::HeaderValue::from_str(&format!("1.1 {}", self.node_name)).is_err()
            || self.node_name.is_empty()
            || self.node_name.contains([' ', ','])
        {
            return Err((
                "node_name",
                format!(
                    "{:?} must be a non-empty token (no spaces or commas)",
                    self.node_name
                ),
            ));
        }
        if let Some(host) = &self.upstream.host_header
            && http::HeaderValue::from_str(host).is_err()
        {
            return Err((
                "upstream.host_header",
                format!("{host:?} is not a valid header value"),
            ));
        }
        if self.server.max_header_bytes < ByteSize::kib(8) {
            return Err(("server.max_header_bytes", "must be at least 8KiB".into()));
        }
        if self.server.max_connections == 0 {
            return Err(("server.max_connections", "must be at least 1".into()));
        }
        if self.server.max_headers == 0 {
            return Err(("server.max_headers", "must be at least 1".into()));
        }
        if self.server.h2_max_concurrent_streams == 0 {
            return Err((
                "server.h2_max_concurrent_streams",
                "must be at least 1".into(),
            ));
        }
        if let Some(bad) = self
            .server
            .upgrade_protocols
            .iter()
            .find(|p| !is_protocol_name(p))
        {
            return Err((
                "server.upgrade_protocols",
                format!("{bad:?} is not a protocol name (a token such as \"websocket\")"),
            ));
        }
        if self.cache.memory < ByteSize::mib(1) {
            return Err(("cache.memory", "must be at least 1MiB".into()));
        }
        if self.cache.disk < ByteSize::mib(64) {
            return Err(("cache.disk", "must be at least 64MiB".into()));
        }
        if self.cache.disk_admission_requests == 0 {
            return Err(("cache.disk_admission_requests", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.upstream.retry_budget) {
            return Err(("upstream.retry_budget", "must be between 0 and 1".into()));
        }
        if self.upstream.max_hops == 0 {
            return Err(("upstream.max_hops", "must be at least 1".into()));
        }
        if let Some(path) = &self.upstream.health.path
            && (!path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err())
        {
            return Err((
                "upstream.health.path",
                format!("{path:?} must be a path starting with /"),
            ));
        }
        if http::StatusCode::from_u16(self.upstream.health.expect_status).is_err() {
            return Err(("upstream.health.expect_status", "not an HTTP status".into()));
        }
        for net in &self.purge.allow_from {
            if let Err(why) = net.parse::<IpNet>() {
                return Err(("purge.allow_from", why));
            }
        }
        if let Some(peer) = self.purge.peers.iter().find(|p| p.parse::<Peer>().is_err()) {
            return Err((
                "purge.peers",
                format!("{peer:?} is not an http://HOST:PORT admin URL"),
            ));
        }
        if self.purge.token.as_ref().is_some_and(|t| t.0.len() < 8) {
            return Err(("purge.token", "must be at least 8 characters".into()));
        }
        let slice = self.cache.slice_size;
        if slice.as_u64() != 0 && (slice < ByteSize::kib(64) || slice > ByteSize::mib(64)) {
            return Err((
                "cache.slice_size",
                "must be 0 (off) or between 64KiB and 64MiB".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.cache.heuristic_fraction) {
            return Err(("cache.heuristic_fraction", "must be between 0 and 1".into()));
        }
        let timeouts = [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.idle_timeout", self.server.idle_timeout),
            (
                "server.tunnel_idle_timeout",
                self.server.tunnel_idle_timeout,
            ),
            ("server.send_timeout", self.server.send_timeout),
            (
                "server.client_body_timeout",
                self.server.client_body_timeout,
            ),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.header_timeout", self.upstream.header_timeout),
            ("upstream.read_timeout", self.upstream.read_timeout),
            ("upstream.fail_timeout", self.upstream.fail_timeout),
            ("purge.rule_ttl", self.purge.rule_ttl),
            ("purge.retry_max", self.purge.retry_max),
            ("tls.reload_interval", self.tls.reload_interval),
            ("upstream.health.interval", self.upstream.health.interval),
            ("upstream.health.timeout", self.upstream.health.timeout),
        ];
        if let Some((key, _)) = timeouts.iter().find(|(_, d)| d.is_zero()) {
            return Err((key, "must be greater than zero".into()));
        }
        Ok(())
    }
}

/// An `Upgrade` protocol name as the config lists it: an RFC 9110 token,
/// without the `/version` a request may add (the version is the origin's
/// business).
fn is_protocol_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("edge.toml"))
    }

    #[test]
    fn validation_requires_an_origin() {
        let c = parse("").unwrap();
        let (key, _) = c.validate().unwrap_err();
        assert_eq!(key, "origins");
        let c = parse("origins = [\"http://127.0.0.1:1\"]").unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn upgrade_protocols_are_tokens() {
        let with = |list: &str| {
            parse(&format!(
                "origins = [\"http://127.0.0.1:1\"]\n[server]\nupgrade_protocols = {list}\n"
            ))
            .unwrap()
            .validate()
        };
        assert!(with(r#"["websocket", "Custom-Proto"]"#).is_ok());
        assert!(with("[]").is_ok());
        for bad in [r#"[""]"#, r#"["web socket"]"#, r#"["websocket/13"]"#] {
            let (key, _) = with(bad).unwrap_err();
            assert_eq!(key, "server.upgrade_protocols", "{bad}");
        }
    }

    #[test]
    fn top_level_access_is_checked_and_needs_a_default_site() {
        let text = "origins = [\"http://127.0.0.1:9\"]\n[access]\ndeny = [\"10.0.0.0/33\"]\n";
        let (key, why) = parse(text).unwrap().validate().unwrap_err();
        assert_eq!(key, "access.deny", "{why}");
        assert_eq!(super::super::lines::key_line(text, &key), Some(3));
        let text = "[access]\nallow = [\"10.0.0.0/8\"]\n\
             [[sites]]\nname = \"a\"\nhosts = [\"a.example\"]\norigins = [\"http://127.0.0.1:9\"]\n";
        let (key, why) = parse(text).unwrap().validate().unwrap_err();
        assert_eq!(key, "access", "{why}");
        assert!(why.contains("[[sites]]"), "{why}");
        let ok = "origins = [\"http://127.0.0.1:9\"]\n[access]\nallow = [\"10.0.0.0/8\"]\n";
        assert!(parse(ok).unwrap().validate().is_ok());
    }
}
