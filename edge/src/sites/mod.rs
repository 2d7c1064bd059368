//! Sites and rules, compiled once from a `Config`: which site a `Host`
//! belongs to ([`hosts`]), which rule of that site a request's method and
//! path select ([`rules`]) and the precompiled [`Policy`] that rule stands
//! for ([`policy`]). The proxy evaluates `Sites::site_for` then
//! `Site::policy` once per request, before the cache lookup, and carries the
//! borrowed `&Policy` with it; nothing on that path allocates (but the
//! lowering of an upper-case `Host` longer than 256 bytes).
//!
//! The top-level `origins`/`shields` are the default site (named `default`,
//! index 0, no hosts, no rules) when `origins` is non-empty; `[[sites]]`
//! follow in file order.

mod describe;
mod error;
mod hash;
mod hosts;
mod policy;
mod rules;

use std::sync::Arc;

use http::Method;
use origin_shield::Peer;

use crate::access::Access;
use crate::config::HostPattern;
use crate::config::{Config, RuleConfig, ShieldPeer, SiteConfig};
pub use error::SitesError;
use hosts::HostTable;
pub use policy::{HeaderOps, Policy, RedirectTo};
use rules::Matcher;

pub use crate::config::DEFAULT_SITE;

/// Every site of a config, and the host table over them.
#[derive(Debug)]
pub struct Sites {
    sites: Vec<Site>,
    hosts: HostTable,
    /// For a site index out of range: every field default.
    no_policy: Policy,
}

impl Sites {
    /// Compiles the default site (when `config.origins` is non-empty) and
    /// every `[[sites]]` entry. Errors on what validation should already
    /// have refused; never panics.
    pub fn compile(config: &Config) -> Result<Sites, SitesError> {
        let has_default = !config.origins.is_empty();
        let mut sites = Vec::with_capacity(config.sites.len() + usize::from(has_default));
        if has_default {
            sites.push(Site::compile_default(config)?);
        }
        let mut hosts = HostTable::new(has_default.then_some(0));
        for site in &config.sites {
            let index = sites.len();
            for raw in &site.hosts {
                let pattern = HostPattern::parse(raw).map_err(|_| SitesError::Host {
                    site: site.name.clone(),
                    host: raw.clone(),
                })?;
                hosts.insert(pattern, index);
            }
            sites.push(Site::compile(site, index)?);
        }
        Ok(Sites {
            sites,
            hosts,
            no_policy: Policy::default(),
        })
    }

    /// Takes over the rate limit buckets of `previous` (the sites a reload
    /// replaces) for every limiter of the same site, place (the site, or
    /// rule N) and settings: a reload must not hand every client a full
    /// bucket again.
    pub fn keep_limits_of(&mut self, previous: &Sites) {
        for site in &mut self.sites {
            let Some(before) = previous.by_name(&site.name) else {
                continue;
            };
            let old = before.rate_limiters();
            let policies = site.policies.iter_mut().chain([&mut site.default_policy]);
            for policy in policies {
                if let Some(limit) = &mut policy.access.rate_limit
                    && let Some(kept) = old.iter().find(|o| o.made_from == limit.made_from)
                {
                    *limit = kept.clone();
                }
            }
        }
    }

    /// The policy of rule `rule` of site `site` (as `Site::index` and
    /// `Policy::rule` name them), or the default policy: what a request
    /// carries instead of a reference into the table.
    pub fn policy_of(&self, site: usize, rule: Option<usize>) -> &Policy {
        match self.sites.get(site) {
            Some(site) => site.policy_at(rule),
            None => &self.no_policy,
        }
    }

    /// The site for a `Host` value (port stripped, case-insensitive,
    /// trailing dot ignored): an exact name, else the most specific wildcard
    /// (`*.shop.example` matches `a.shop.example` and `b.a.shop.example`,
    /// never `shop.example` itself — nginx semantics), else the default
    /// site; `None` when nothing matches and there is no default site.
    pub fn site_for(&self, host: &str) -> Option<&Site> {
        self.hosts.lookup(host).and_then(|i| self.sites.get(i))
    }

    /// The default site, if the config has top-level `origins`.
    pub fn default_site(&self) -> Option<&Site> {
        self.sites.first().filter(|s| s.is_default)
    }

    /// Every site, the default one (if any) first; `Site::index` is its
    /// position.
    pub fn all(&self) -> &[Site] {
        &self.sites
    }

    pub fn get(&self, index: usize) -> Option<&Site> {
        self.sites.get(index)
    }

    /// The site of that name.
    pub fn by_name(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// `[site, ...]` as [`Site::describe_site`] prints each, for `GET /sites`.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::Value::Array(self.sites.iter().map(Site::describe_site).collect())
    }
}

/// One site: its hosts, where its misses go, and its compiled rules.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub index: usize,
    pub is_default: bool,
    /// As configured (the default site has none: it answers for the rest).
    pub hosts: Vec<String>,
    pub origins: Vec<Peer>,
    pub shields: Vec<ShieldPeer>,
    matcher: Matcher,
    /// One per rule, in rule order.
    policies: Box<[Policy]>,
    /// For requests no rule matches: every field default.
    default_policy: Policy,
    /// As configured, for `describe`.
    rules: Vec<RuleConfig>,
}

impl Site {
    fn compile_default(config: &Config) -> Result<Site, SitesError> {
        let access =
            Access::compile(&config.access, &Access::default(), None).map_err(|source| {
                SitesError::Access {
                    site: DEFAULT_SITE.to_owned(),
                    rule: None,
                    source,
                }
            })?;
        Ok(Site {
            name: DEFAULT_SITE.to_owned(),
            index: 0,
            is_default: true,
            hosts: Vec::new(),
            origins: config.origins.clone(),
            shields: config.shields.clone(),
            matcher: Matcher::default(),
            policies: Box::default(),
            default_policy: Policy {
                access,
                ..Policy::default()
            },
            rules: Vec::new(),
        })
    }

    fn compile(config: &SiteConfig, index: usize) -> Result<Site, SitesError> {
        let matcher = Matcher::compile(&config.name, &config.rules)?;
        let access_error = |rule: Option<usize>| {
            move |source| SitesError::Access {
                site: config.name.clone(),
                rule,
                source,
            }
        };
        let site_access = Access::compile(&config.access(), &Access::default(), None)
            .map_err(access_error(None))?;
        let policies = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let policy = Policy::compile(&config.name, i, rule, matcher.prefix(i))?;
                let access = Access::compile(&rule.access(), &site_access, Some(i))
                    .map_err(access_error(Some(i)))?;
                Ok(Policy {
                    compression: rule.compression.or(config.compression),
                    access,
                    ..policy
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Site {
            name: config.name.clone(),
            index,
            is_default: false,
            hosts: config.hosts.clone(),
            origins: config.origins.clone(),
            shields: config.shields.clone(),
            matcher,
            policies,
            default_policy: Policy {
                compression: config.compression,
                access: site_access,
                ..Policy::default()
            },
            rules: config.rules.clone(),
        })
    }

    /// The policy of the first rule (file order) whose methods and path
    /// match, or the site's default policy (every field default). `path`
    /// is the request's path without its query.
    pub fn policy(&self, method: &Method, path: &str) -> &Policy {
        if self.matcher.is_empty() {
            return &self.default_policy;
        }
        self.matcher
            .first_match(method, path)
            .and_then(|i| self.policies.get(i))
            .unwrap_or(&self.default_policy)
    }

    /// The policy of rule `rule` (`Policy::rule`), or the default one.
    pub fn policy_at(&self, rule: Option<usize>) -> &Policy {
        rule.and_then(|i| self.policies.get(i))
            .unwrap_or(&self.default_policy)
    }

    /// Every distinct rate limiter of the site's policies (a site's limit
    /// that rules inherit is one), for the gauges.
    pub fn rate_limiters(&self) -> Vec<Arc<crate::access::rate_limit::RateLimiter>> {
        let mut out: Vec<Arc<crate::access::rate_limit::RateLimiter>> = Vec::new();
        for policy in self.policies.iter().chain([&self.default_policy]) {
            if let Some(l) = &policy.access.rate_limit
                && !out.iter().any(|o| Arc::ptr_eq(o, l))
            {
                out.push(l.clone());
            }
        }
        out
    }

    /// Whether the site has any rule (without, it behaves like a node
    /// without sites).
    pub fn has_rules(&self) -> bool {
        !self.matcher.is_empty()
    }

    /// The rules as configured, a JSON array in rule order, for
    /// `GET /sites` (rules carry no secrets).
    pub fn describe(&self) -> serde_json::Value {
        describe::rules(&self.rules)
    }

    /// The whole site as JSON: name, index, default, hosts, origins,
    /// shields and `rules` (as [`Site::describe`]).
    pub fn describe_site(&self) -> serde_json::Value {
        describe::site(self)
    }
}

#[cfg(test)]
mod tests;
