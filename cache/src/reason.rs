//! `NoCacheReason`: why a response is not stored (or not shared), from RFC
//! 9111's rules and from the edge's own limits. Typed end to end: its text
//! appears only where a `Cache-Status` `detail=`, a log field or a metric
//! label is written.

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoCacheReason {
    /// Only GET responses are stored.
    Method,
    /// Interim, partial (206) or not-modified responses are not stored
    /// whole (and a slice fetch that got anything but a 206).
    Status,
    /// `no-store` in the response.
    NoStore,
    /// `no-store` in the request.
    RequestNoStore,
    /// `private`: for one user only.
    Private,
    /// The request carried `Authorization` and the response did not allow
    /// sharing (RFC 9111 §3.5).
    Authorization,
    /// `Set-Cookie` and the operator did not allow it.
    SetCookie,
    /// The request carried `Cookie`, the response did not say it may be
    /// shared, and the operator did not allow it.
    Cookie,
    /// `Vary: *`: no later request can be shown to match.
    VaryStar,
    /// No explicit freshness, no heuristic, no default TTL.
    NoFreshness,
    /// A HEAD response brings no body to store.
    Head,
    /// Larger than `cache.max_object_size` (and not kept in slices).
    TooLarge,
    /// The key was recently found uncacheable (hit-for-pass).
    HitForPass,
    /// Waited for another request's fill, which settled nothing usable.
    FillWait,
    /// A 206 without a usable `Content-Range`.
    ContentRange,
    /// A 206 that is not the slice asked for, or has nothing (ETag,
    /// Last-Modified) to tie slices of one version together.
    Unsliceable,
    /// A sliced object whose head could not be served.
    Slice,
}

impl NoCacheReason {
    /// Every reason, for tables and tests.
    pub const ALL: [NoCacheReason; 17] = [
        NoCacheReason::Method,
        NoCacheReason::Status,
        NoCacheReason::NoStore,
        NoCacheReason::RequestNoStore,
        NoCacheReason::Private,
        NoCacheReason::Authorization,
        NoCacheReason::SetCookie,
        NoCacheReason::Cookie,
        NoCacheReason::VaryStar,
        NoCacheReason::NoFreshness,
        NoCacheReason::Head,
        NoCacheReason::TooLarge,
        NoCacheReason::HitForPass,
        NoCacheReason::FillWait,
        NoCacheReason::ContentRange,
        NoCacheReason::Unsliceable,
        NoCacheReason::Slice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::Method => "method",
            NoCacheReason::Status => "status",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::RequestNoStore => "request-no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::SetCookie => "set-cookie",
            NoCacheReason::Cookie => "cookie",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::NoFreshness => "no-freshness",
            NoCacheReason::Head => "head",
            NoCacheReason::TooLarge => "too-large",
            NoCacheReason::HitForPass => "pass",
            NoCacheReason::FillWait => "fill-wait",
            NoCacheReason::ContentRange => "content-range",
            NoCacheReason::Unsliceable => "unsliceable",
            NoCacheReason::Slice => "slice",
        }
    }

    /// Whether the reason lies in the request alone (its method or its own
    /// headers), not in the response: another request for the same URL may
    /// still store and share the response, so the URL must not be marked
    /// hit-for-pass for everyone.
    pub fn concerns_request_only(self) -> bool {
        matches!(
            self,
            NoCacheReason::Method
                | NoCacheReason::RequestNoStore
                | NoCacheReason::Authorization
                | NoCacheReason::Cookie
                | NoCacheReason::Head
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_reasons_are_the_requests_own() {
        let all = NoCacheReason::ALL;
        let request_only: Vec<_> = all
            .iter()
            .filter(|r| r.concerns_request_only())
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            request_only,
            [
                "method",
                "request-no-store",
                "authorization",
                "cookie",
                "head"
            ]
        );
        let mut texts: Vec<_> = all.iter().map(|r| r.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), all.len(), "each reason has its own text");
    }
}
