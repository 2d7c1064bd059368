//! `[cache]`: the two tiers' sizes, cache keys, and the RFC 9111 choices.

use std::time::Duration;

use serde::Deserialize;

use super::units::{ByteSize, de_duration, de_opt_duration};

/// The two cache tiers and the caching policy choices RFC 9111 leaves open.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory tier budget. Default: `256MiB`.
    pub memory: ByteSize,
    /// Disk tier size under `data_dir/cache`, at least `64MiB`.
    /// Default: `1GiB`.
    pub disk: ByteSize,
    /// Which new objects are written to the disk tier: `"frequency"`, once
    /// their URL has been requested `disk_admission_requests` times (before
    /// that they live in memory only, so the disk holds what memory evicts
    /// instead of a copy of it, and one-hit wonders cost no disk write; a
    /// disk hit is not copied back into memory), or `"all"`, every object
    /// when stored, so that a restart or an upgrade keeps everything, as
    /// nginx and ATS write every cached response to disk. Default:
    /// `"frequency"` (`--disk-admission`): on the harness's Zipf run it
    /// holds 2 pp more hits than `"all"` in the same tiers and a stored
    /// miss costs no disk write; a restart keeps every object requested
    /// that often (see `docs/operations.md`).
    pub disk_admission: DiskAdmissionMode,
    /// Requests before an object goes to disk under `"frequency"`, 1 to
    /// 255. Default: `3`.
    pub disk_admission_requests: u8,
    /// Larger responses are not stored whole: they are kept in slices if
    /// the origin serves ranges, else passed through. Default: `256MiB`.
    pub max_object_size: ByteSize,
    /// Large objects are cached as slices of this size, each fetched from
    /// the origin with a Range request when first needed: a range request
    /// on a miss fetches only the slices it touches, as does any response
    /// larger than `max_object_size`. `0` turns slicing off. Default: `4MiB`.
    pub slice_size: ByteSize,
    /// Store responses that set cookies. Default: `false`.
    pub allow_set_cookie: bool,
    /// Store responses to requests with `Cookie` even when the response
    /// does not say it may be shared (`public`, `s-maxage`,
    /// `CDN-Cache-Control` or `Vary: Cookie`). Default: `false`, so a page
    /// built for one signed-in user is never served to others.
    pub allow_cookie_requests: bool,
    /// Heuristic freshness: this fraction of the time since
    /// `Last-Modified` (RFC 9111 §4.2.2); `0` disables it. Default: `0.1`.
    pub heuristic_fraction: f64,
    /// Cap on a heuristic lifetime. Default: `1d`.
    #[serde(deserialize_with = "de_duration")]
    pub heuristic_max: Duration,
    /// Lifetime for cacheable-by-default responses without any freshness
    /// information. Default: unset (such responses are not reused).
    #[serde(deserialize_with = "de_opt_duration")]
    pub default_ttl: Option<Duration>,
    /// Honour `CDN-Cache-Control` and `Surrogate-Control` ahead of
    /// `Cache-Control`. Default: `true`.
    pub honor_cdn_cache_control: bool,
    /// Query parameters left out of cache keys (e.g. `utm_source`).
    /// Default: none.
    pub key_ignore_query_params: Vec<String>,
    /// Sort query parameters in cache keys. Default: `false`.
    pub key_sort_query: bool,
    /// Leave the scheme out of cache keys, so `http://` and `https://`
    /// requests share objects. Default: `false` (nginx's default key has
    /// `$scheme` too).
    pub key_ignore_scheme: bool,
    /// Body bytes an in-flight fill keeps in memory for its readers;
    /// readers further behind read from the store. All fills together keep
    /// at most a quarter of `memory` this way. Default: `8MiB`.
    pub fill_window: ByteSize,
    /// How long a miss waits for another request's response head before
    /// fetching on its own. Default: `5s`.
    #[serde(deserialize_with = "de_duration")]
    pub fill_wait_timeout: Duration,
    /// How long a URL whose response could not be stored skips the wait
    /// ("hit-for-pass"). Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub hit_for_pass: Duration,
}

/// `cache.disk_admission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DiskAdmissionMode {
    /// On the `disk_admission_requests`th request.
    Frequency,
    /// Every object, when stored.
    All,
}

impl CacheConfig {
    /// The disk tier's admission as the store takes it.
    pub fn disk_admission(&self) -> cache::store::DiskAdmission {
        match self.disk_admission {
            DiskAdmissionMode::All => cache::store::DiskAdmission::All,
            DiskAdmissionMode::Frequency => cache::store::DiskAdmission::Frequency {
                min_requests: self.disk_admission_requests,
            },
        }
    }

    /// How requests map to cache keys.
    pub fn key_rules(&self) -> cache::KeyRules {
        cache::KeyRules {
            ignore_query_params: self.key_ignore_query_params.clone(),
            sort_query: self.key_sort_query,
            ignore_scheme: self.key_ignore_scheme,
        }
    }
}

impl CacheConfig {
    /// The policy choices as the `cache` crate takes them.
    pub fn policy_options(&self) -> cache::policy::PolicyOptions {
        cache::policy::PolicyOptions {
            allow_set_cookie: self.allow_set_cookie,
            allow_cookie_requests: self.allow_cookie_requests,
            heuristic_fraction: (self.heuristic_fraction > 0.0).then_some(self.heuristic_fraction),
            heuristic_max: self.heuristic_max,
            default_ttl: self.default_ttl,
            honor_cdn_cache_control: self.honor_cdn_cache_control,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: ByteSize::mib(256),
            disk: ByteSize::gib(1),
            disk_admission: DiskAdmissionMode::Frequency,
            disk_admission_requests: 3,
            max_object_size: ByteSize::mib(256),
            slice_size: ByteSize::mib(4),
            allow_set_cookie: false,
            allow_cookie_requests: false,
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(86_400),
            default_ttl: None,
            honor_cdn_cache_control: true,
            key_ignore_query_params: Vec::new(),
            key_sort_query: false,
            key_ignore_scheme: false,
            fill_window: ByteSize::mib(8),
            fill_wait_timeout: Duration::from_secs(5),
            hit_for_pass: Duration::from_secs(10),
        }
    }
}
