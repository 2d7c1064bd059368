//! `Policy`: what one rule changes about a request, compiled once from its
//! `RuleConfig` (header names and values parsed, durations sorted by status,
//! the redirect's status checked) so that a request borrows it as is.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::SitesError;
use crate::access::Access;
use crate::config::{CacheMode, HeaderEdits, RuleConfig};

/// The outcome of the rules for one request: cache mode, TTL defaults,
/// header edits, redirect. `Policy::default()` is a request no rule matched.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Index of the matching rule in the site; `None`: no rule matched.
    pub rule: Option<usize>,
    pub cache: CacheMode,
    /// Freshness for storable responses that carry none (with
    /// `ttl_override`, in place of the origin's).
    pub ttl: Option<Duration>,
    pub ttl_override: bool,
    /// Negative caching, sorted by status.
    pub ttl_status: Vec<(u16, Duration)>,
    pub stale_if_error: Option<Duration>,
    pub stale_while_revalidate: Option<Duration>,
    /// Edits of the request sent upstream.
    pub request_headers: HeaderOps,
    /// Edits of every response, hits included.
    pub response_headers: HeaderOps,
    pub redirect: Option<RedirectTo>,
    /// The rule's (or else the site's) `compression` switch; unset:
    /// `compression.enabled` decides.
    pub compression: Option<bool>,
    /// The access checks (`crate::access`): the rule's keys over the
    /// site's. Empty when neither sets any.
    pub access: Access,
}

impl Policy {
    /// Compiles rule `index` of `site`; `prefix` is the rule's normalised
    /// path prefix (what a redirect with `keep_path` strips).
    pub(crate) fn compile(
        site: &str,
        index: usize,
        rule: &RuleConfig,
        prefix: Option<&[u8]>,
    ) -> Result<Policy, SitesError> {
        let redirect = match &rule.redirect {
            None => None,
            Some(r) => {
                let bad = |reason: &'static str| SitesError::Redirect {
                    site: site.to_owned(),
                    rule: index,
                    reason,
                };
                let status = StatusCode::from_u16(r.status)
                    .ok()
                    .filter(StatusCode::is_redirection)
                    .filter(|s| s.as_u16() != 304 && s.as_u16() != 305 && s.as_u16() != 306)
                    .ok_or_else(|| bad("status is not 301, 302, 303, 307 or 308"))?;
                if r.to.is_empty() || HeaderValue::from_str(&r.to).is_err() {
                    return Err(bad("`to` is empty or not a valid Location value"));
                }
                Some(RedirectTo {
                    status,
                    to: r.to.clone().into_boxed_str(),
                    keep_path: r.keep_path,
                    strip: prefix
                        .and_then(|p| std::str::from_utf8(p).ok())
                        .map(Into::into),
                })
            }
        };
        Ok(Policy {
            rule: Some(index),
            cache: rule.cache,
            ttl: rule.ttl,
            ttl_override: rule.ttl_override,
            ttl_status: rule.ttl_status.iter().map(|(&s, &d)| (s, d)).collect(),
            stale_if_error: rule.stale_if_error,
            stale_while_revalidate: rule.stale_while_revalidate,
            request_headers: HeaderOps::compile(site, index, &rule.request_headers)?,
            response_headers: HeaderOps::compile(site, index, &rule.response_headers)?,
            redirect,
            compression: rule.compression,
            access: Access::default(),
        })
    }

    /// The `ttl_status` entry for `status`, if any.
    pub fn ttl_for_status(&self, status: u16) -> Option<Duration> {
        self.ttl_status
            .binary_search_by_key(&status, |&(s, _)| s)
            .ok()
            .map(|i| self.ttl_status[i].1)
    }

    /// No rule matched and nothing is set: the request goes as it would on
    /// a node without rules.
    pub fn is_default(&self) -> bool {
        self.rule.is_none()
            && self.cache == CacheMode::Default
            && self.ttl.is_none()
            && !self.ttl_override
            && self.ttl_status.is_empty()
            && self.stale_if_error.is_none()
            && self.stale_while_revalidate.is_none()
            && self.request_headers.is_empty()
            && self.response_headers.is_empty()
            && self.redirect.is_none()
            && self.compression.is_none()
            && self.access.is_empty()
    }
}

/// Header edits, parsed: `remove` drops every value of each name, then
/// `set` replaces every value of each name with its one value.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    fn compile(site: &str, rule: usize, edits: &HeaderEdits) -> Result<HeaderOps, SitesError> {
        let name = |raw: &str| {
            HeaderName::from_bytes(raw.trim().as_bytes()).map_err(|_| SitesError::HeaderName {
                site: site.to_owned(),
                rule,
                name: raw.to_owned(),
            })
        };
        let set = edits
            .set
            .iter()
            .map(|(n, v)| {
                let value = HeaderValue::from_str(v).map_err(|_| SitesError::HeaderValue {
                    site: site.to_owned(),
                    rule,
                    name: n.clone(),
                })?;
                Ok((name(n)?, value))
            })
            .collect::<Result<_, SitesError>>()?;
        let remove = edits
            .remove
            .iter()
            .map(|n| name(n))
            .collect::<Result<_, _>>()?;
        Ok(HeaderOps { set, remove })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Removes, then sets (a set field replaces every existing value).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// A rule's redirect: the status and how to build the `Location`.
#[derive(Debug, Clone)]
pub struct RedirectTo {
    pub status: StatusCode,
    to: Box<str>,
    keep_path: bool,
    /// The rule's path prefix without trailing slashes; `None` for a rule
    /// without `path` (or `/`), whose whole path is kept.
    strip: Option<Box<str>>,
}

impl RedirectTo {
    /// The configured target.
    pub fn to(&self) -> &str {
        &self.to
    }

    pub fn keep_path(&self) -> bool {
        self.keep_path
    }

    /// The `Location` for a request to `path_and_query`: `to`, plus (with
    /// `keep_path`) the part of the path after the rule's `path` prefix and
    /// the query. A rule matched by `path_regex` alone keeps the whole path.
    /// One slash joins `to` and the kept path; a query or fragment of `to`
    /// stays in place (the request's query joins `to`'s with `&`).
    pub fn location(&self, path_and_query: &str) -> String {
        if !self.keep_path {
            return self.to.to_string();
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, query),
            None => (path_and_query, ""),
        };
        let rest = match &self.strip {
            Some(prefix) => path.strip_prefix(&**prefix).unwrap_or(path),
            None => path,
        };
        let (to, fragment) = match self.to.split_once('#') {
            Some((to, fragment)) => (to, Some(fragment)),
            None => (&*self.to, None),
        };
        let (base, to_query) = match to.split_once('?') {
            Some((base, q)) => (base, q),
            None => (to, ""),
        };

        let mut out = String::with_capacity(self.to.len() + path_and_query.len() + 2);
        out.push_str(base);
        match (base.ends_with('/'), rest.strip_prefix('/')) {
            (true, Some(tail)) => out.push_str(tail),
            _ => out.push_str(rest),
        }
        let mut sep = '?';
        for q in [to_query, query] {
            if !q.is_empty() {
                out.push(sep);
                out.push_str(q);
                sep = '&';
            }
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Redirect;

    fn redirect(to: &str, keep_path: bool, prefix: Option<&str>) -> RedirectTo {
        let rule = RuleConfig {
            redirect: Some(Redirect {
                to: to.to_owned(),
                status: 308,
                keep_path,
            }),
            ..RuleConfig::default()
        };
        let policy = Policy::compile("s", 0, &rule, prefix.map(str::as_bytes)).expect("compile");
        policy.redirect.expect("redirect")
    }

    #[test]
    fn locations() {
        // to, keep_path, rule prefix (normalised), request, Location
        let cases: &[(&str, bool, Option<&str>, &str, &str)] = &[
            (
                "https://shop.example/new/",
                false,
                Some("/old"),
                "/old/a?x=1",
                "https://shop.example/new/",
            ),
            (
                "https://shop.example/new/",
                true,
                Some("/old"),
                "/old/a/b?x=1",
                "https://shop.example/new/a/b?x=1",
            ),
            (
                "https://shop.example/new/",
                true,
                Some("/old"),
                "/old",
                "https://shop.example/new/",
            ),
            (
                "https://shop.example/new/",
                true,
                Some("/old"),
                "/old/",
                "https://shop.example/new/",
            ),
            (
                "https://shop.example/new/",
                true,
                Some("/old"),
                "/old?x=1",
                "https://shop.example/new/?x=1",
            ),
            (
                "https://shop.example/new",
                true,
                Some("/old"),
                "/old/a",
                "https://shop.example/new/a",
            ),
            (
                "https://shop.example",
                true,
                Some("/old"),
                "/old/a",
                "https://shop.example/a",
            ),
            ("/new/", true, Some("/old"), "/old/a?", "/new/a"),
            (
                "/new?src=old",
                true,
                Some("/old"),
                "/old/a?x=1",
                "/new/a?src=old&x=1",
            ),
            (
                "/new#top",
                true,
                Some("/old"),
                "/old/a?x=1",
                "/new/a?x=1#top",
            ),
            (
                "https://other.example/",
                true,
                None,
                "/any/path?q",
                "https://other.example/any/path?q",
            ),
            (
                "https://other.example",
                true,
                None,
                "/",
                "https://other.example/",
            ),
            ("/new/", true, Some("/old"), "/elsewhere", "/new/elsewhere"),
        ];
        for &(to, keep, prefix, request, want) in cases {
            let r = redirect(to, keep, prefix);
            assert_eq!(r.location(request), want, "{to} keep_path={keep} {request}");
            assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
        }
    }

    #[test]
    fn header_ops_remove_then_set_replacing_every_value() {
        let edits = HeaderEdits {
            set: [("X-Site", "shop"), ("cache-control", "no-store")]
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            remove: vec![
                "Server".to_owned(),
                "X-Site".to_owned(),
                "x-absent".to_owned(),
            ],
        };
        let ops = HeaderOps::compile("s", 0, &edits).expect("compile");
        assert!(!ops.is_empty());
        assert!(HeaderOps::default().is_empty());

        let mut headers = HeaderMap::new();
        headers.append("server", HeaderValue::from_static("origin"));
        headers.append("x-site", HeaderValue::from_static("old"));
        headers.append("cache-control", HeaderValue::from_static("max-age=60"));
        headers.append("cache-control", HeaderValue::from_static("public"));
        headers.append("x-kept", HeaderValue::from_static("1"));
        ops.apply(&mut headers);

        let all = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().expect("ascii"))
                .collect()
        };
        // (field, values after apply)
        let cases: &[(&str, &[&str])] = &[
            ("server", &[]),
            ("x-site", &["shop"]),
            ("cache-control", &["no-store"]),
            ("x-kept", &["1"]),
            ("x-absent", &[]),
        ];
        for (name, want) in cases {
            assert_eq!(all(name), *want, "{name}");
        }
    }

    #[test]
    fn policy_fields_and_ttl_by_status() {
        let rule = RuleConfig {
            cache: CacheMode::Bypass,
            ttl: Some(Duration::from_secs(3600)),
            ttl_status: [(410, 300), (404, 30)]
                .into_iter()
                .map(|(s, t)| (s, Duration::from_secs(t)))
                .collect(),
            ..RuleConfig::default()
        };
        let p = Policy::compile("s", 3, &rule, None).expect("compile");
        assert_eq!(p.rule, Some(3));
        assert_eq!(p.cache, CacheMode::Bypass);
        assert_eq!(p.ttl, Some(Duration::from_secs(3600)));
        assert!(!p.is_default());
        let cases = [(404, Some(30)), (410, Some(300)), (200, None), (500, None)];
        for (status, want) in cases {
            assert_eq!(
                p.ttl_for_status(status),
                want.map(Duration::from_secs),
                "{status}"
            );
        }
        assert!(Policy::default().is_default());
        // a rule that matched but sets nothing is still a rule's policy
        let empty = Policy::compile("s", 0, &RuleConfig::default(), None).expect("compile");
        assert!(!empty.is_default());
    }

    #[test]
    fn bad_headers_and_redirects_are_errors() {
        let header = |set: &[(&str, &str)], remove: &[&str]| RuleConfig {
            response_headers: HeaderEdits {
                set: set
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                remove: remove.iter().map(|n| (*n).to_owned()).collect(),
            },
            ..RuleConfig::default()
        };
        let to = |to: &str, status: u16| RuleConfig {
            redirect: Some(Redirect {
                to: to.to_owned(),
                status,
                keep_path: false,
            }),
            ..RuleConfig::default()
        };
        let cases: &[(RuleConfig, &str)] = &[
            (header(&[("bad name", "v")], &[]), "header name"),
            (header(&[], &["bad:name"]), "header name"),
            (header(&[("x-ok", "line\nbreak")], &[]), "header value"),
            (to("/new", 200), "redirect"),
            (to("/new", 304), "redirect"),
            (to("/new", 999), "redirect"),
            (to("", 301), "redirect"),
            (to("/new\r\nx: y", 301), "redirect"),
        ];
        for (rule, want) in cases {
            let err = Policy::compile("shop", 2, rule, None).expect_err(want);
            let msg = err.to_string();
            assert!(msg.contains(want) && msg.contains("shop"), "{msg}");
        }
        for status in [301, 302, 303, 307, 308] {
            Policy::compile("s", 0, &to("/new", status), None).expect("redirect status");
        }
    }
}
