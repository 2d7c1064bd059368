//! `SitesError`: what compiling the sites can refuse. Validation
//! (`config::validate`) reports these first with file and line; this is the
//! backstop that keeps a config that slipped past it from panicking.
//! Rules are named by their index in the site (`rules[0]` is the first).

/// A site or rule that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SitesError {
    #[error("site {site:?}: host {host:?} is not a name or a `*.` wildcard")]
    Host { site: String, host: String },
    #[error("site {site:?} rules[{rule}]: path_regex {regex:?}: {source}")]
    Regex {
        site: String,
        rule: usize,
        regex: String,
        #[source]
        source: regex::Error,
    },
    #[error("site {site:?} rules[{rule}]: method {method:?} is not a method token")]
    Method {
        site: String,
        rule: usize,
        method: String,
        #[source]
        source: http::method::InvalidMethod,
    },
    #[error("site {site:?} rules[{rule}]: {name:?} is not a valid header name")]
    HeaderName {
        site: String,
        rule: usize,
        name: String,
    },
    #[error(
        "site {site:?} rules[{rule}]: the header value of {name:?} is not valid (visible ASCII only)"
    )]
    HeaderValue {
        site: String,
        rule: usize,
        name: String,
    },
    #[error("site {site:?}{}: {source}", rule.map(|r| format!(" rules[{r}]")).unwrap_or_default())]
    Access {
        site: String,
        rule: Option<usize>,
        #[source]
        source: crate::access::AccessError,
    },
    #[error("site {site:?} rules[{rule}]: redirect: {reason}")]
    Redirect {
        site: String,
        rule: usize,
        reason: &'static str,
    },
}
