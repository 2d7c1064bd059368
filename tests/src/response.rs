//! What tests read off a response: the cache's verdict headers (`X-Cache`,
//! `Cache-Status`, `Age`), any header as text, and the body as text. One
//! extension trait instead of a helper per test file.

use bytes::Bytes;
use http::Response;

/// Reading a collected response; `use edge_tests::ResponseExt` and call
/// `resp.x_cache()`.
pub trait ResponseExt {
    /// The value of header `name`; `None` when absent or not visible ASCII.
    fn header(&self, name: &str) -> Option<&str>;

    /// `X-Cache` (`HIT`, `MISS`, `STALE` …), or `-` when there is none, so
    /// comparing it with a verdict fails on a missing header too.
    fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("-")
    }

    /// `Cache-Status` (RFC 9211), or empty when there is none.
    fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    /// `Age` in seconds; panics without a valid one.
    fn age(&self) -> u64 {
        self.header("age")
            .and_then(|v| v.parse().ok())
            .expect("an Age header")
    }

    /// The body, lossily decoded as UTF-8.
    fn text(&self) -> String;
}

impl ResponseExt for Response<Bytes> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }
}
