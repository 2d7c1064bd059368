//! Purges as rules applied lazily at lookup: an object stored before a
//! matching rule is invalid (hard) or stale (soft). Purging a tag that
//! covers a million objects costs one map entry; checking an object costs
//! one lookup per kind, per tag and per path segment.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache::CacheKey;
use serde::{Deserialize, Serialize};

/// One accepted purge: what it covers and when it happened. Stored in
/// RocksDB and forwarded to peers as it is (same id everywhere, so a
/// repeated delivery changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRecord {
    pub id: String,
    /// Milliseconds since the Unix epoch: objects stored before are hit.
    pub at: u64,
    pub soft: bool,
    /// Cache keys (hex) of the exact URLs, next to the URLs for display.
    pub url_keys: Vec<String>,
    pub urls: Vec<String>,
    /// `(host, path prefix)`, host lower-case without port, path without a
    /// trailing slash (`/` for the whole host).
    pub prefixes: Vec<(String, String)>,
    pub hosts: Vec<String>,
    pub tags: Vec<String>,
    /// Covers every object (written when stored purges could not be read:
    /// whatever they covered must be assumed gone).
    #[serde(default)]
    pub all: bool,
}

/// What the rules say about a stored object (the cache's own vocabulary:
/// its decision takes the verdict as an input).
pub use cache::decision::PurgeVerdict as Verdict;

/// The latest hard and soft purge times of one selector.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    hard: u64,
    soft: u64,
}

impl Mark {
    fn add(&mut self, at: u64, soft: bool) {
        let slot = if soft { &mut self.soft } else { &mut self.hard };
        *slot = (*slot).max(at);
    }
}

#[derive(Debug, Default)]
struct Index {
    /// Purges of everything, and the newest forgotten rule: objects older
    /// than that may have been covered by a rule no longer kept.
    all: Mark,
    urls: HashMap<CacheKey, Mark>,
    hosts: HashMap<String, Mark>,
    /// Keyed `host` + `\0` + `path prefix`, so a lookup can probe with one
    /// reused buffer instead of allocating a key per path segment.
    prefixes: HashMap<String, Mark>,
    tags: HashMap<String, Mark>,
}

/// Every rule in force, indexed for the lookup path.
#[derive(Debug)]
pub struct RuleSet {
    index: RwLock<Index>,
    /// Records indexed; 0 lets the lookup path skip the lock entirely.
    count: AtomicUsize,
    /// Objects older than this are treated as absent: rules are forgotten
    /// after it, so nothing they covered may outlive them.
    ttl: Duration,
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RuleSet {
    pub fn new(ttl: Duration) -> Self {
        RuleSet {
            index: RwLock::new(Index::default()),
            count: AtomicUsize::new(0),
            ttl,
        }
    }

    /// Whether a record is past the point where it could still match.
    pub fn expired(&self, record: &PurgeRecord, now: SystemTime) -> bool {
        record
            .at
            .saturating_add(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
            < millis(now)
    }

    /// Adds a record's rules.
    pub fn insert(&self, record: &PurgeRecord) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        if record.all {
            index.all.add(record.at, record.soft);
        }
        for hex in &record.url_keys {
            if let Some(key) = key_from_hex(hex) {
                index
                    .urls
                    .entry(key)
                    .or_default()
                    .add(record.at, record.soft);
            }
        }
        for host in &record.hosts {
            index
                .hosts
                .entry(host.clone())
                .or_default()
                .add(record.at, record.soft);
        }
        for (host, path) in &record.prefixes {
            index
                .prefixes
                .entry(format!("{host}\0{path}"))
                .or_default()
                .add(record.at, record.soft);
        }
        for tag in &record.tags {
            index
                .tags
                .entry(tag.clone())
                .or_default()
                .add(record.at, record.soft);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces every rule with those of `records` (after expiry);
    /// objects older than `forgotten` (the newest expired rule) stay
    /// invalid.
    pub fn rebuild<'a>(&self, records: impl IntoIterator<Item = &'a PurgeRecord>, forgotten: u64) {
        let fresh = RuleSet::new(self.ttl);
        fresh.forget_before(forgotten);
        for record in records {
            fresh.insert(record);
        }
        let index = fresh.index.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        self.count
            .store(fresh.count.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Objects stored before `at` (ms) are invalid: rules that may have
    /// covered them were forgotten.
    pub fn forget_before(&self, at: u64) {
        if at == 0 {
            return;
        }
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .all
            .add(at, false);
        self.count.fetch_max(1, Ordering::Relaxed);
    }

    /// Records in force.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The verdict on an object whose content dates from `stored_at` (its
    /// response time less the age it arrived with) under the primary key
    /// `key`, for a request to `host` (without port) and `path` (without
    /// query), carrying `tags`.
    pub fn verdict(
        &self,
        key: &CacheKey,
        host: &str,
        path: &str,
        tags: &[String],
        stored_at: SystemTime,
    ) -> Verdict {
        if self.is_empty() {
            return Verdict::Valid;
        }
        let stored = millis(stored_at);
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut latest = index.all;
        let mut seen = |mark: Option<&Mark>| {
            if let Some(mark) = mark {
                latest.hard = latest.hard.max(mark.hard);
                latest.soft = latest.soft.max(mark.soft);
            }
        };
        seen(index.urls.get(key));
        if !index.hosts.is_empty() || !index.prefixes.is_empty() {
            let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                host.to_ascii_lowercase().into()
            } else {
                host.into()
            };
            seen(index.hosts.get(host.as_ref()));
            if !index.prefixes.is_empty() {
                let mut probe = String::with_capacity(host.len() + 1 + path.len());
                probe.push_str(&host);
                probe.push('\0');
                let base = probe.len();
                for prefix in path_prefixes(path) {
                    probe.truncate(base);
                    probe.push_str(prefix);
                    seen(index.prefixes.get(probe.as_str()));
                }
            }
        }
        if !index.tags.is_empty() {
            for tag in tags {
                seen(index.tags.get(tag));
            }
        }
        drop(index);
        if latest.hard > stored {
            Verdict::Invalid
        } else if latest.soft > stored {
            Verdict::Stale(UNIX_EPOCH + Duration::from_millis(latest.soft))
        } else {
            Verdict::Valid
        }
    }
}

/// A rule in force that names an object (for the cache inspector): which
/// selector, and its latest hard and soft purge times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covering {
    /// `all`, `url`, `host`, `prefix` or `tag`.
    pub kind: &'static str,
    /// The URL's key (hex), the host, `host/prefix` or the tag; empty for
    /// `all`.
    pub selector: String,
    /// Latest hard purge by this selector, if any.
    pub hard: Option<SystemTime>,
    /// Latest soft purge by this selector, if any.
    pub soft: Option<SystemTime>,
    /// Whether it covers an object stored at the time asked about: a
    /// purge after it (what [`RuleSet::verdict`] counts).
    pub covers: bool,
}

impl Mark {
    fn covering(&self, kind: &'static str, selector: String, stored: u64) -> Option<Covering> {
        let time = |ms: u64| (ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(ms));
        if self.hard == 0 && self.soft == 0 {
            return None;
        }
        Some(Covering {
            kind,
            selector,
            hard: time(self.hard),
            soft: time(self.soft),
            covers: self.hard > stored || self.soft > stored,
        })
    }
}

impl RuleSet {
    /// Every rule that names the object [`verdict`](RuleSet::verdict)
    /// would judge (same arguments), whether or not it came after
    /// `stored_at`. Off the request path: the inspector's.
    pub fn covering(
        &self,
        key: &CacheKey,
        host: &str,
        path: &str,
        tags: &[String],
        stored_at: SystemTime,
    ) -> Vec<Covering> {
        if self.is_empty() {
            return Vec::new();
        }
        let stored = millis(stored_at);
        let host = host.to_ascii_lowercase();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        out.extend(index.all.covering("all", String::new(), stored));
        if let Some(mark) = index.urls.get(key) {
            out.extend(mark.covering("url", key.to_hex(), stored));
        }
        if let Some(mark) = index.hosts.get(&host) {
            out.extend(mark.covering("host", host.clone(), stored));
        }
        for prefix in path_prefixes(path) {
            if let Some(mark) = index.prefixes.get(&format!("{host}\0{prefix}")) {
                out.extend(mark.covering("prefix", format!("{host}{prefix}"), stored));
            }
        }
        for tag in tags {
            if let Some(mark) = index.tags.get(tag) {
                out.extend(mark.covering("tag", tag.clone(), stored));
            }
        }
        out
    }
}

/// `/a/b/c` → `/`, `/a`, `/a/b`, `/a/b/c`: the prefixes a prefix purge can
/// name (segment boundaries only, so `/img` never matches `/imgs`).
pub fn path_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let path = path.split('?').next().unwrap_or("/");
    let trimmed = path.trim_end_matches('/');
    std::iter::once("/").chain(
        trimmed
            .match_indices('/')
            .skip(1)
            .map(move |(i, _)| &trimmed[..i])
            .chain((!trimmed.is_empty()).then_some(trimmed)),
    )
}

fn key_from_hex(hex: &str) -> Option<CacheKey> {
    let hash = blake3::Hash::from_hex(hex).ok()?;
    Some(CacheKey::from_bytes(*hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    /// A fixed "now": the rules are pure functions of the times given.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn key(path: &str) -> CacheKey {
        CacheKey::for_request(&Method::GET, "https", "example.com", path).unwrap()
    }

    fn record(at: SystemTime, soft: bool) -> PurgeRecord {
        PurgeRecord {
            id: "p1".into(),
            at: millis(at),
            soft,
            url_keys: Vec::new(),
            urls: Vec::new(),
            prefixes: Vec::new(),
            hosts: Vec::new(),
            tags: Vec::new(),
            all: false,
        }
    }

    fn ask(rules: &RuleSet, path: &str, tags: &[&str], stored: SystemTime) -> Verdict {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        rules.verdict(&key(path), "Example.com", path, &tags, stored)
    }

    #[test]
    fn covering_lists_the_rules_naming_an_object_and_which_came_after_it() {
        let rules = RuleSet::new(Duration::from_secs(86_400));
        let mut tag = record(now(), false);
        tag.tags = vec!["product-7".into()];
        rules.insert(&tag);
        let mut prefix = record(now() + Duration::from_secs(10), true);
        prefix.prefixes = vec![("example.com".into(), "/img".into())];
        rules.insert(&prefix);
        let mut other = record(now(), false);
        other.tags = vec!["other".into()];
        rules.insert(&other);
        let tags = vec!["product-7".to_owned()];
        let before = now() - Duration::from_secs(1);
        let seen = rules.covering(
            &key("/img/a.png"),
            "Example.com",
            "/img/a.png",
            &tags,
            before,
        );
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            (seen[0].kind, seen[0].selector.as_str()),
            ("prefix", "example.com/img")
        );
        assert_eq!(seen[0].soft, Some(now() + Duration::from_secs(10)));
        assert_eq!(seen[0].hard, None);
        assert_eq!(
            (seen[1].kind, seen[1].selector.as_str()),
            ("tag", "product-7")
        );
        assert!(seen.iter().all(|c| c.covers));
        // Stored after both: named, but not covered.
        let after = now() + Duration::from_secs(20);
        let seen = rules.covering(
            &key("/img/a.png"),
            "example.com",
            "/img/a.png",
            &tags,
            after,
        );
        assert!(seen.iter().all(|c| !c.covers));
        assert!(
            rules
                .covering(&key("/b"), "example.com", "/b", &[], before)
                .is_empty()
        );
    }

    #[test]
    fn prefixes_stop_at_segment_boundaries() {
        let all: Vec<_> = path_prefixes("/a/b/c.js?x=1").collect();
        assert_eq!(all, ["/", "/a", "/a/b", "/a/b/c.js"]);
        assert_eq!(path_prefixes("/").collect::<Vec<_>>(), ["/"]);
        assert_eq!(path_prefixes("/img/").collect::<Vec<_>>(), ["/", "/img"]);
    }

    #[test]
    fn each_kind_of_rule_hits_only_what_it_names_and_only_older_objects() {
        let rules = RuleSet::new(Duration::from_secs(3600));
        let before = now() - Duration::from_secs(10);
        let after = now() + Duration::from_secs(10);
        let mut r = record(now(), false);
        r.url_keys = vec![key("/exact").to_hex()];
        r.prefixes = vec![("example.com".into(), "/img".into())];
        r.tags = vec!["product-7".into()];
        rules.insert(&r);
        assert_eq!(ask(&rules, "/exact", &[], before), Verdict::Invalid);
        assert_eq!(ask(&rules, "/exact", &[], after), Verdict::Valid);
        assert_eq!(ask(&rules, "/img/a.png", &[], before), Verdict::Invalid);
        assert_eq!(ask(&rules, "/img", &[], before), Verdict::Invalid);
        assert_eq!(ask(&rules, "/imgs/a.png", &[], before), Verdict::Valid);
        assert_eq!(
            ask(&rules, "/other", &["product-7"], before),
            Verdict::Invalid
        );
        assert_eq!(
            ask(&rules, "/other", &["product-8"], before),
            Verdict::Valid
        );
    }

    #[test]
    fn soft_rules_make_objects_stale_and_hard_rules_win() {
        let rules = RuleSet::new(Duration::from_secs(3600));
        let stored = now() - Duration::from_secs(10);
        let mut soft = record(now(), true);
        soft.hosts = vec!["example.com".into()];
        rules.insert(&soft);
        assert!(matches!(ask(&rules, "/x", &[], stored), Verdict::Stale(_)));
        let mut hard = record(now(), false);
        hard.tags = vec!["t".into()];
        rules.insert(&hard);
        assert_eq!(ask(&rules, "/x", &["t"], stored), Verdict::Invalid);
    }

    #[test]
    fn forgotten_rules_leave_a_watermark_and_purges_of_everything_cover_all() {
        let rules = RuleSet::new(Duration::from_secs(60));
        let ancient = now() - Duration::from_secs(120);
        assert_eq!(
            ask(&rules, "/x", &[], ancient),
            Verdict::Valid,
            "no rules, no cap"
        );
        let old = record(ancient, false);
        assert!(rules.expired(&old, now()));
        assert!(!rules.expired(&record(now(), false), now()));
        rules.insert(&old);
        rules.rebuild(std::iter::empty(), old.at);
        let older = ancient - Duration::from_secs(1);
        assert_eq!(ask(&rules, "/x", &[], older), Verdict::Invalid);
        assert_eq!(ask(&rules, "/x", &[], now()), Verdict::Valid);
        let mut everything = record(now(), false);
        everything.all = true;
        rules.insert(&everything);
        assert_eq!(
            ask(&rules, "/y", &[], now() - Duration::from_secs(1)),
            Verdict::Invalid
        );
    }
}
