//! Every rule of the policy, with the clock moved explicitly.

use super::*;
use http::HeaderValue;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// Request sent at T0, response received at T0 (no delay).
fn exchange() -> Exchange {
    Exchange {
        request_time: at(T0),
        response_time: at(T0),
    }
}

fn store(resp: &[(&str, &str)]) -> Result<StoredPolicy, NoCacheReason> {
    store_with(StatusCode::OK, &[], resp, &PolicyOptions::default())
}

fn store_with(
    status: StatusCode,
    req: &[(&str, &str)],
    resp: &[(&str, &str)],
    opts: &PolicyOptions,
) -> Result<StoredPolicy, NoCacheReason> {
    let mut resp = headers(resp);
    if !resp.contains_key("date") {
        resp.insert("date", HeaderValue::from_str(&date(T0)).unwrap());
    }
    storable(&Method::GET, &headers(req), status, &resp, exchange(), opts)
}

fn reuse(stored: &StoredPolicy, req: &str, now: u64) -> Reuse {
    evaluate(stored, at(T0), &CacheControl::parse(req), at(now))
}

// --- storable (§3) ---

#[test]
fn only_get_and_whole_final_responses_are_stored() {
    let resp = headers(&[("cache-control", "max-age=60")]);
    let opts = PolicyOptions::default();
    let h = HeaderMap::new();
    for m in [Method::POST, Method::HEAD, Method::PUT] {
        assert_eq!(
            storable(&m, &h, StatusCode::OK, &resp, exchange(), &opts),
            Err(NoCacheReason::Method)
        );
    }
    for s in [
        StatusCode::PARTIAL_CONTENT,
        StatusCode::NOT_MODIFIED,
        StatusCode::CONTINUE,
    ] {
        assert_eq!(
            storable(&Method::GET, &h, s, &resp, exchange(), &opts),
            Err(NoCacheReason::Status)
        );
    }
}

#[test]
fn no_store_private_and_set_cookie_are_refused() {
    assert_eq!(
        store(&[("cache-control", "max-age=60, no-store")]),
        Err(NoCacheReason::NoStore)
    );
    assert_eq!(
        store(&[("cache-control", "max-age=60, private")]),
        Err(NoCacheReason::Private)
    );
    assert_eq!(
        store(&[("cache-control", "max-age=60, private=\"x-user\"")]),
        Err(NoCacheReason::Private)
    );
    assert_eq!(
        store(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
        Err(NoCacheReason::SetCookie)
    );
    let opts = PolicyOptions {
        allow_set_cookie: true,
        ..PolicyOptions::default()
    };
    assert!(
        store_with(
            StatusCode::OK,
            &[],
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            &opts
        )
        .is_ok()
    );
    assert_eq!(
        store_with(
            StatusCode::OK,
            &[("cache-control", "no-store")],
            &[("cache-control", "max-age=60")],
            &PolicyOptions::default()
        ),
        Err(NoCacheReason::RequestNoStore)
    );
    assert_eq!(
        store(&[("cache-control", "max-age=60"), ("vary", "accept, *")]),
        Err(NoCacheReason::VaryStar)
    );
}

#[test]
fn authorization_needs_explicit_permission() {
    let opts = PolicyOptions::default();
    let auth = [("authorization", "Bearer x")];
    assert_eq!(
        store_with(
            StatusCode::OK,
            &auth,
            &[("cache-control", "max-age=60")],
            &opts
        ),
        Err(NoCacheReason::Authorization)
    );
    for allowed in [
        "public, max-age=60",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        assert!(
            store_with(StatusCode::OK, &auth, &[("cache-control", allowed)], &opts).is_ok(),
            "{allowed}"
        );
    }
}

#[test]
fn cookie_requests_need_a_response_that_says_it_is_shared() {
    let opts = PolicyOptions::default();
    let cookie = [("cookie", "session=alice")];
    let expires = date(T0 + 60);
    for personal in [
        &[("cache-control", "max-age=60")][..],
        &[("cache-control", "max-age=60, must-revalidate")][..],
        &[("expires", expires.as_str())][..],
        &[("cache-control", "max-age=60"), ("vary", "accept-encoding")][..],
    ] {
        assert_eq!(
            store_with(StatusCode::OK, &cookie, personal, &opts),
            Err(NoCacheReason::Cookie),
            "{personal:?}"
        );
    }
    for shared in [
        &[("cache-control", "public, max-age=60")][..],
        &[("cache-control", "s-maxage=60")][..],
        &[("cdn-cache-control", "max-age=60")][..],
        &[("cache-control", "max-age=60"), ("vary", "Accept, Cookie")][..],
    ] {
        assert!(
            store_with(StatusCode::OK, &cookie, shared, &opts).is_ok(),
            "{shared:?}"
        );
    }
    // Without cookies, or with the operator's consent, max-age is enough.
    assert!(
        store_with(
            StatusCode::OK,
            &[],
            &[("cache-control", "max-age=60")],
            &opts
        )
        .is_ok()
    );
    let allowed = PolicyOptions {
        allow_cookie_requests: true,
        ..PolicyOptions::default()
    };
    assert!(
        store_with(
            StatusCode::OK,
            &cookie,
            &[("cache-control", "max-age=60")],
            &allowed
        )
        .is_ok()
    );
}

#[test]
fn no_freshness_information_means_not_stored() {
    assert_eq!(store(&[]), Err(NoCacheReason::NoFreshness));
    assert_eq!(
        store(&[("etag", "\"v1\"")]),
        Err(NoCacheReason::NoFreshness)
    );
    // A status that is not cacheable by default needs explicit freshness.
    assert_eq!(
        store_with(
            StatusCode::FORBIDDEN,
            &[],
            &[("last-modified", &date(T0 - 1000))],
            &PolicyOptions::default()
        ),
        Err(NoCacheReason::NoFreshness)
    );
    assert!(
        store_with(
            StatusCode::FORBIDDEN,
            &[],
            &[("cache-control", "max-age=5")],
            &PolicyOptions::default()
        )
        .is_ok()
    );
    // An operator default applies only to heuristically cacheable statuses.
    let opts = PolicyOptions {
        default_ttl: Some(Duration::from_secs(30)),
        ..PolicyOptions::default()
    };
    let p = store_with(StatusCode::OK, &[], &[], &opts).unwrap();
    assert_eq!(
        (p.lifetime, p.source),
        (Duration::from_secs(30), FreshnessSource::DefaultTtl)
    );
    assert_eq!(
        store_with(StatusCode::FORBIDDEN, &[], &[], &opts),
        Err(NoCacheReason::NoFreshness)
    );
}

// --- freshness lifetime (§4.2.1, RFC 9213) ---

#[test]
fn lifetime_precedence() {
    let p = store(&[
        ("cache-control", "max-age=60, s-maxage=30"),
        ("expires", &date(T0 + 600)),
    ])
    .unwrap();
    assert_eq!(
        (p.lifetime, p.source),
        (Duration::from_secs(30), FreshnessSource::SMaxAge)
    );
    let p = store(&[
        ("cache-control", "max-age=60"),
        ("expires", &date(T0 + 600)),
    ])
    .unwrap();
    assert_eq!(
        (p.lifetime, p.source),
        (Duration::from_secs(60), FreshnessSource::MaxAge)
    );
    let p = store(&[("expires", &date(T0 + 600))]).unwrap();
    assert_eq!(
        (p.lifetime, p.source),
        (Duration::from_secs(600), FreshnessSource::Expires)
    );
}

#[test]
fn cdn_cache_control_and_surrogate_control_come_first() {
    let p = store(&[
        ("cache-control", "max-age=60"),
        ("cdn-cache-control", "max-age=600"),
    ])
    .unwrap();
    assert_eq!(p.lifetime, Duration::from_secs(600));
    let p = store(&[
        ("cache-control", "max-age=60"),
        ("surrogate-control", "max-age=300"),
    ])
    .unwrap();
    assert_eq!(p.lifetime, Duration::from_secs(300));
    // The targeted field replaces Cache-Control entirely.
    assert!(
        store(&[
            ("cache-control", "private"),
            ("cdn-cache-control", "max-age=10")
        ])
        .is_ok()
    );
    assert_eq!(
        store(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store")
        ]),
        Err(NoCacheReason::NoStore)
    );
    let ignore = PolicyOptions {
        honor_cdn_cache_control: false,
        ..PolicyOptions::default()
    };
    let p = store_with(
        StatusCode::OK,
        &[],
        &[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=600"),
        ],
        &ignore,
    )
    .unwrap();
    assert_eq!(p.lifetime, Duration::from_secs(60));
}

#[test]
fn invalid_values_mean_stale_not_fresh() {
    let p = store(&[("expires", "0")]).unwrap();
    assert_eq!(p.lifetime, Duration::ZERO);
    let p = store(&[("expires", &date(T0 - 60))]).unwrap();
    assert_eq!(p.lifetime, Duration::ZERO);
    let p = store(&[("cache-control", "max-age=soon")]).unwrap();
    assert_eq!(p.lifetime, Duration::ZERO);
    assert_eq!(reuse(&p, "", T0), Reuse::Revalidate);
}

#[test]
fn heuristic_is_ten_percent_capped_and_only_where_allowed() {
    let p = store(&[("last-modified", &date(T0 - 1000))]).unwrap();
    assert_eq!(
        (p.lifetime, p.source),
        (Duration::from_secs(100), FreshnessSource::Heuristic)
    );
    let p = store(&[("last-modified", &date(T0 - 100 * 86_400))]).unwrap();
    assert_eq!(p.lifetime, Duration::from_secs(86_400), "capped at a day");
    let off = PolicyOptions {
        heuristic_fraction: None,
        ..PolicyOptions::default()
    };
    assert_eq!(
        store_with(
            StatusCode::OK,
            &[],
            &[("last-modified", &date(T0 - 1000))],
            &off
        ),
        Err(NoCacheReason::NoFreshness)
    );
    // `public` makes any status heuristically cacheable.
    let p = store_with(
        StatusCode::FORBIDDEN,
        &[],
        &[
            ("cache-control", "public"),
            ("last-modified", &date(T0 - 1000)),
        ],
        &PolicyOptions::default(),
    )
    .unwrap();
    assert_eq!(p.source, FreshnessSource::Heuristic);
}

// --- age (§4.2.3) ---

#[test]
fn age_includes_upstream_age_delay_and_residence() {
    let exchange = Exchange {
        request_time: at(T0),
        response_time: at(T0 + 2),
    };
    let resp = headers(&[
        ("date", &date(T0)),
        ("age", "10"),
        ("cache-control", "max-age=60"),
    ]);
    let p = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        exchange,
        &PolicyOptions::default(),
    )
    .unwrap();
    // age_value 10 + response_delay 2 beats apparent age 2.
    assert_eq!(p.corrected_initial_age, Duration::from_secs(12));
    assert_eq!(
        current_age(&p, at(T0 + 2), at(T0 + 32)),
        Duration::from_secs(42)
    );

    // A Date far in the past (clock skew) shows as apparent age.
    let resp = headers(&[("date", &date(T0 - 100)), ("cache-control", "max-age=60")]);
    let p = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        exchange,
        &PolicyOptions::default(),
    )
    .unwrap();
    assert_eq!(p.corrected_initial_age, Duration::from_secs(102));
    // An absurd upstream Age is capped (RFC 9111 §1.2.2), never overflows.
    let resp = headers(&[
        ("age", "18446744073709551615"),
        ("cache-control", "max-age=60"),
    ]);
    let p = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        exchange,
        &PolicyOptions::default(),
    )
    .unwrap();
    assert_eq!(p.corrected_initial_age, Duration::from_secs((1 << 31) + 2));
    assert!(
        current_age(
            &p,
            at(T0),
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4)
        ) > Duration::ZERO
    );
    // A Date in the future does not make the age negative.
    let resp = headers(&[("date", &date(T0 + 500)), ("cache-control", "max-age=60")]);
    let p = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        exchange,
        &PolicyOptions::default(),
    )
    .unwrap();
    assert_eq!(p.corrected_initial_age, Duration::from_secs(2));
}

// --- reuse (§4, §5.2.1, RFC 5861) ---

#[test]
fn fresh_until_lifetime_then_revalidate() {
    let p = store(&[("cache-control", "max-age=60")]).unwrap();
    assert_eq!(reuse(&p, "", T0), Reuse::Fresh);
    assert_eq!(reuse(&p, "", T0 + 59), Reuse::Fresh);
    assert_eq!(reuse(&p, "", T0 + 60), Reuse::Revalidate);
}

#[test]
fn response_no_cache_always_revalidates() {
    let p = store(&[("cache-control", "max-age=60, no-cache")]).unwrap();
    assert_eq!(reuse(&p, "", T0), Reuse::Revalidate);
    let p = store(&[("cache-control", "max-age=60, no-cache=\"set-cookie\"")]).unwrap();
    assert_eq!(reuse(&p, "", T0), Reuse::Revalidate);
}

#[test]
fn request_directives_apply() {
    let p = store(&[("cache-control", "max-age=60")]).unwrap();
    assert_eq!(reuse(&p, "no-cache", T0), Reuse::Revalidate);
    assert_eq!(reuse(&p, "max-age=10", T0 + 5), Reuse::Fresh);
    assert_eq!(reuse(&p, "max-age=10", T0 + 11), Reuse::Revalidate);
    assert_eq!(reuse(&p, "min-fresh=30", T0 + 20), Reuse::Fresh);
    assert_eq!(reuse(&p, "min-fresh=30", T0 + 31), Reuse::Revalidate);
    assert_eq!(reuse(&p, "max-stale=10", T0 + 65), Reuse::StaleAllowed);
    assert_eq!(reuse(&p, "max-stale=10", T0 + 75), Reuse::Revalidate);
    assert_eq!(reuse(&p, "max-stale", T0 + 10_000), Reuse::StaleAllowed);
    assert_eq!(reuse(&p, "x-unknown=1, max-age=100", T0 + 5), Reuse::Fresh);
}

#[test]
fn pragma_no_cache_only_without_cache_control() {
    let h = headers(&[("pragma", "no-cache")]);
    assert!(request_directives(&h).has("no-cache"));
    let h = headers(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]);
    assert!(!request_directives(&h).has("no-cache"));
}

#[test]
fn must_revalidate_forbids_any_stale_use() {
    for cc in [
        "max-age=60, must-revalidate, stale-while-revalidate=100, stale-if-error=100",
        "max-age=60, proxy-revalidate, stale-while-revalidate=100",
        "s-maxage=60, stale-while-revalidate=100",
    ] {
        let p = store(&[("cache-control", cc)]).unwrap();
        assert_eq!(reuse(&p, "max-stale", T0 + 61), Reuse::Revalidate, "{cc}");
        assert!(
            !stale_if_error_allows(&p, at(T0), &CacheControl::default(), at(T0 + 61)),
            "{cc}"
        );
    }
}

#[test]
fn stale_while_revalidate_window() {
    let p = store(&[("cache-control", "max-age=60, stale-while-revalidate=30")]).unwrap();
    assert_eq!(reuse(&p, "", T0 + 30), Reuse::Fresh);
    assert_eq!(reuse(&p, "", T0 + 70), Reuse::StaleWhileRevalidate);
    assert_eq!(reuse(&p, "", T0 + 90), Reuse::StaleWhileRevalidate);
    assert_eq!(reuse(&p, "", T0 + 91), Reuse::Revalidate);
    assert_eq!(reuse(&p, "no-cache", T0 + 70), Reuse::Revalidate);
}

#[test]
fn stale_if_error_window_from_response_or_request() {
    let none = CacheControl::default();
    let p = store(&[("cache-control", "max-age=60, stale-if-error=300")]).unwrap();
    assert!(stale_if_error_allows(&p, at(T0), &none, at(T0 + 200)));
    assert!(!stale_if_error_allows(&p, at(T0), &none, at(T0 + 361)));
    let p = store(&[("cache-control", "max-age=60")]).unwrap();
    assert!(!stale_if_error_allows(&p, at(T0), &none, at(T0 + 61)));
    let req = CacheControl::parse("stale-if-error=100");
    assert!(stale_if_error_allows(&p, at(T0), &req, at(T0 + 100)));
}

// --- site rule defaults (nginx proxy_cache_valid / use_stale) ---

/// `storable_with` for a GET of a response of `status` sent at T0.
fn store_under(
    status: u16,
    resp: &[(&str, &str)],
    defaults: &Defaults<'_>,
) -> Result<StoredPolicy, NoCacheReason> {
    let mut resp = headers(resp);
    if !resp.contains_key("date") {
        resp.insert("date", HeaderValue::from_str(&date(T0)).unwrap());
    }
    let response = Response {
        status: StatusCode::from_u16(status).unwrap(),
        headers: &resp,
        exchange: exchange(),
    };
    storable_with(
        &Method::GET,
        &HeaderMap::new(),
        response,
        &PolicyOptions::default(),
        defaults,
    )
}

fn with_rule(
    status: u16,
    resp: &[(&str, &str)],
    defaults: &Defaults<'_>,
) -> Result<(u64, FreshnessSource), NoCacheReason> {
    store_under(status, resp, defaults).map(|p| (p.lifetime.as_secs(), p.source))
}

/// Lifetime in seconds and where it came from, or why not stored.
type Stored = Result<(u64, FreshnessSource), NoCacheReason>;
/// Status, response headers, the rule's defaults, what is stored.
type RuleRow<'a> = (u16, Vec<(&'a str, &'a str)>, &'a Defaults<'a>, Stored);

#[test]
fn rule_lifetimes_fill_in_where_the_origin_is_silent() {
    use FreshnessSource::{Heuristic, MaxAge, Rule};
    let statuses = [
        (404, Duration::from_secs(30)),
        (500, Duration::from_secs(5)),
    ];
    let rule = Defaults {
        ttl: Some(Duration::from_secs(3600)),
        ttl_status: &statuses,
        ..Defaults::default()
    };
    let overriding = Defaults {
        ttl_override: true,
        ..rule
    };
    let lm = date(T0 - 1000);
    let none = Defaults::default();
    #[rustfmt::skip]
    let table: Vec<RuleRow<'_>> = vec![
        // no rule: RFC 9111 alone
        (200, vec![],                                   &none,        Err(NoCacheReason::NoFreshness)),
        (200, vec![("last-modified", &lm)],             &none,        Ok((100, Heuristic))),
        // ttl for a silent response of a status cacheable by default
        (200, vec![],                                   &rule,        Ok((3600, Rule))),
        // the rule's ttl wins over the heuristic
        (200, vec![("last-modified", &lm)],             &rule,        Ok((3600, Rule))),
        // the origin's own freshness wins...
        (200, vec![("cache-control", "max-age=60")],    &rule,        Ok((60, MaxAge))),
        // ...unless the rule overrides it
        (200, vec![("cache-control", "max-age=60")],    &overriding,  Ok((3600, Rule))),
        // no-store and private are always honoured
        (200, vec![("cache-control", "no-store")],      &overriding,  Err(NoCacheReason::NoStore)),
        (200, vec![("cache-control", "private")],       &overriding,  Err(NoCacheReason::Private)),
        // negative caching by status, for any status listed
        (404, vec![],                                   &rule,        Ok((30, Rule))),
        (500, vec![],                                   &rule,        Ok((5, Rule))),
        (404, vec![("cache-control", "max-age=600")],   &rule,        Ok((600, MaxAge))),
        (404, vec![("cache-control", "max-age=600")],   &overriding,  Ok((30, Rule))),
        // a status neither cacheable by default nor listed: nothing
        (502, vec![],                                   &rule,        Err(NoCacheReason::NoFreshness)),
        (302, vec![],                                   &rule,        Err(NoCacheReason::NoFreshness)),
        // `public` makes any status cacheable by default
        (302, vec![("cache-control", "public")],        &rule,        Ok((3600, Rule))),
        // a rule never makes partial or not-modified responses storable
        (206, vec![],                                   &rule,        Err(NoCacheReason::Status)),
    ];
    for (i, (status, resp, defaults, want)) in table.into_iter().enumerate() {
        assert_eq!(
            with_rule(status, &resp, defaults),
            want,
            "row {i}: {status} {resp:?}"
        );
    }
}

#[test]
fn rule_stale_windows_apply_where_the_response_has_none() {
    let rule = Defaults {
        ttl: Some(Duration::from_secs(60)),
        stale_if_error: Some(Duration::from_secs(600)),
        stale_while_revalidate: Some(Duration::from_secs(30)),
        ..Defaults::default()
    };
    let store = |resp: &[(&str, &str)]| store_under(200, resp, &rule).unwrap();
    let silent = store(&[]);
    assert_eq!(silent.stale_if_error, Some(Duration::from_secs(600)));
    assert_eq!(silent.stale_while_revalidate, Some(Duration::from_secs(30)));
    let own = store(&[(
        "cache-control",
        "max-age=10, stale-if-error=5, stale-while-revalidate=1",
    )]);
    assert_eq!(
        own.stale_if_error,
        Some(Duration::from_secs(5)),
        "the response's own window"
    );
    assert_eq!(own.stale_while_revalidate, Some(Duration::from_secs(1)));
    assert_eq!(own.lifetime, Duration::from_secs(10));
}

// --- issue 25: conformance, last mile ---

#[test]
fn list_valued_age_uses_its_first_member() {
    // RFC 9111 §5.1: a list-valued Age uses the first member; "7200, 0"
    // must not parse as no Age at all (which would make it fresh).
    let p = store(&[("cache-control", "max-age=3600"), ("age", "7200, 0")]).unwrap();
    assert_eq!(p.corrected_initial_age, Duration::from_secs(7200));
    assert_eq!(reuse(&p, "", T0), Reuse::Revalidate);
    let p = store(&[("cache-control", "max-age=3600"), ("age", " 10 ,7200")]).unwrap();
    assert_eq!(p.corrected_initial_age, Duration::from_secs(10));
    // An Age that is not delta-seconds is still no Age.
    let p = store(&[("cache-control", "max-age=3600"), ("age", "soon, 5")]).unwrap();
    assert_eq!(p.corrected_initial_age, Duration::ZERO);
}

#[test]
fn cdn_cache_control_is_a_structured_dictionary() {
    let cc = ("cache-control", "max-age=60");
    let lifetime = |targeted: (&str, &str)| store(&[cc, targeted]).map(|p| p.lifetime.as_secs());
    // RFC 9213 §2.1 / RFC 9651: a field that does not parse, or whose
    // directive has the wrong type, is ignored as a whole.
    for ignored in [
        "max-age=10000, &&&&&",
        "max-age=\"10000\"",
        "max-age=10.5",
        "max-age=(1 2)",
        "no-store=\"yes\"",
        "max-age=-5",
    ] {
        assert_eq!(
            lifetime(("cdn-cache-control", ignored)),
            Ok(60),
            "{ignored}"
        );
    }
    assert_eq!(lifetime(("cdn-cache-control", "max-age=10000")), Ok(10000));
    assert_eq!(
        lifetime((
            "cdn-cache-control",
            "max-age=600;x=1, public, x-ext=\"any\""
        )),
        Ok(600)
    );
    assert_eq!(
        lifetime(("cdn-cache-control", "no-store")),
        Err(NoCacheReason::NoStore)
    );
    // `?0` is false: the directive is not there.
    assert_eq!(
        lifetime(("cdn-cache-control", "max-age=100, no-store=?0")),
        Ok(100)
    );
    // Surrogate-Control (Edge Architecture 1.0) is not a Structured Field,
    // but its directives are as strict: a malformed field is ignored
    // (`&&&&&` would be a token there, an extension directive).
    assert_eq!(lifetime(("surrogate-control", "max-age=300")), Ok(300));
    for ignored in ["max-age=\"300\"", "max-age=300, @@@", "max-age=soon"] {
        assert_eq!(
            lifetime(("surrogate-control", ignored)),
            Ok(60),
            "{ignored}"
        );
    }
    // An ignored CDN-Cache-Control does not make a cookie response shared.
    assert_eq!(
        store_with(
            StatusCode::OK,
            &[("cookie", "a=b")],
            &[cc, ("cdn-cache-control", "max-age=\"10\"")],
            &PolicyOptions::default()
        ),
        Err(NoCacheReason::Cookie)
    );
}

#[test]
fn obsolete_and_case_folded_http_dates_are_read() {
    // T0 + 600 = Tue, 14 Nov 2023 22:23:20 GMT (RFC 9110 §5.6.7).
    for expires in [
        "Tue, 14 Nov 2023 22:23:20 GMT",
        "Tuesday, 14-Nov-23 22:23:20 GMT",
        "Tue Nov 14 22:23:20 2023",
        "tue, 14 nov 2023 22:23:20 gmt",
        "TUESDAY, 14-NOV-23 22:23:20 GMT",
        "tue nov 14 22:23:20 2023",
    ] {
        let p = store(&[("expires", expires)]).unwrap();
        assert_eq!(p.lifetime, Duration::from_secs(600), "{expires}");
    }
    // Truly invalid: already expired, still stored for revalidation.
    for expires in ["0", "-1", "Tue, 32 Nov 2023 22:23:20 GMT", "Tuesday"] {
        let p = store(&[("expires", expires)]).unwrap();
        assert_eq!(p.lifetime, Duration::ZERO, "{expires}");
    }
    // Last-Modified and Date go through the same reader.
    let p = store(&[
        ("date", "tue, 14 nov 2023 22:13:20 gmt"),
        ("last-modified", "Tue Nov 14 21:56:40 2023"),
    ])
    .unwrap();
    assert_eq!(
        (p.lifetime, p.source),
        (Duration::from_secs(100), FreshnessSource::Heuristic)
    );
}

#[test]
fn must_understand_overrides_no_store_for_understood_statuses() {
    // RFC 9111 §5.2.2.3.
    let p = store(&[("cache-control", "must-understand, no-store, max-age=60")]).unwrap();
    assert_eq!(p.lifetime, Duration::from_secs(60));
    assert_eq!(reuse(&p, "", T0 + 10), Reuse::Fresh);
    let p = store_with(
        StatusCode::NOT_FOUND,
        &[],
        &[("cache-control", "max-age=60, no-store, must-understand")],
        &PolicyOptions::default(),
    );
    assert!(p.is_ok());
    // A status code we do not know: not stored, no-store or not.
    let unknown = StatusCode::from_u16(299).unwrap();
    for cc in [
        "must-understand, no-store, max-age=60",
        "must-understand, max-age=60",
    ] {
        assert_eq!(
            store_with(
                unknown,
                &[],
                &[("cache-control", cc)],
                &PolicyOptions::default()
            ),
            Err(NoCacheReason::Status),
            "{cc}"
        );
    }
    // Without must-understand, no-store still wins.
    assert_eq!(
        store(&[("cache-control", "no-store, max-age=60")]),
        Err(NoCacheReason::NoStore)
    );
    // private is not no-store: must-understand does not lift it.
    assert_eq!(
        store(&[("cache-control", "must-understand, private, max-age=60")]),
        Err(NoCacheReason::Private)
    );
}
