//! `edge inspect URL`: the cache inspector's JSON (`GET /cache/inspect`,
//! built in `proxy/inspect.rs`) as a summary for people. Pure: `main.rs`
//! fetches, [`render`] formats, [`query_value`] encodes the URL for the
//! query string.

use std::fmt::Write as _;

use serde_json::Value;

/// `url` percent-encoded for a query value: everything but RFC 3986's
/// unreserved characters.
pub fn query_value(url: &str) -> String {
    let mut out = String::with_capacity(url.len() * 3);
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The report as lines of text.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let _ = writeln!(out, "{}", s(&report["url"]));
    let _ = writeln!(
        out,
        "  site {}{}, key {}",
        s(&report["site"]),
        match &report["rule"] {
            Value::Null => String::new(),
            rule => format!(" (rule {rule})"),
        },
        s(&report["key"]),
    );
    if report["cacheable"] == Value::Bool(false) {
        let _ = writeln!(out, "  not cacheable (bypassed by its rule, or no key)");
    }
    if let Some(note) = report["note"].as_str() {
        let _ = writeln!(out, "  note: {note}");
    }
    if report["stored"] != Value::Bool(true) {
        let _ = writeln!(out, "  not stored");
        for rule in report["url_rules"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  purged by {} {} (hard {}, soft {})",
                s(&rule["kind"]),
                s(&rule["selector"]),
                s(&rule["hard_at"]),
                s(&rule["soft_at"])
            );
        }
        return out;
    }
    if let Some(fields) = report["vary"]["fields"].as_array() {
        let names: Vec<String> = fields.iter().map(s).collect();
        let _ = writeln!(out, "  varies on {}", names.join(", "));
    }
    let variants = report["variants"].as_array().cloned().unwrap_or_default();
    for variant in &variants {
        render_variant(&mut out, variant, &s);
    }
    out
}

fn render_variant(out: &mut String, v: &Value, s: &dyn Fn(&Value) -> String) {
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "-".to_owned())
    };
    let selector = v["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, val)| format!("{k}: {}", s(val)))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let _ = writeln!(out);
    if selector.is_empty() {
        let _ = writeln!(out, "  object");
    } else {
        let _ = writeln!(out, "  variant {selector}");
    }
    let _ = writeln!(
        out,
        "    status {}, {} bytes ({}), in {}",
        s(&v["status"]),
        s(&v["size"]),
        s(&v["layout"]),
        list(&v["tiers"]),
    );
    let _ = writeln!(
        out,
        "    stored {} (freshness from {})",
        s(&v["stored_at"]),
        s(&v["freshness_source"])
    );
    match &v["freshness"] {
        Value::Null => {
            let _ = writeln!(out, "    not servable: purged");
        }
        f => {
            let _ = writeln!(
                out,
                "    {}: age {}s of {}s, fresh for {}s, stale for {}s",
                s(&f["state"]),
                s(&f["age_secs"]),
                s(&f["lifetime_secs"]),
                s(&f["fresh_for_secs"]),
                s(&f["stale_for_secs"]),
            );
            for (name, key) in [
                ("stale-while-revalidate", "stale_while_revalidate"),
                ("stale-if-error", "stale_if_error"),
            ] {
                if let Some(w) = f[key].as_object() {
                    let _ = writeln!(
                        out,
                        "    {name} {}s ({}s left)",
                        s(&w["window_secs"]),
                        s(&w["left_secs"])
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "    validators: ETag {}, Last-Modified {}",
        s(&v["validators"]["etag"]),
        s(&v["validators"]["last_modified"])
    );
    let _ = writeln!(out, "    tags: {}", list(&v["tags"]));
    let encodings: Vec<String> = v["encodings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} {} bytes", s(&e["encoding"]), s(&e["size"])))
                .collect()
        })
        .unwrap_or_default();
    if !encodings.is_empty() {
        let _ = writeln!(out, "    encodings: {}", encodings.join(", "));
    }
    if let Some(slices) = v["slices"].as_object() {
        let held = slices["held"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "    sliced: {held} of {} slices of {} bytes held ({})",
            s(&slices["count"]),
            s(&slices["slice_size"]),
            list(&slices["held"]),
        );
    }
    let _ = writeln!(out, "    purge: {}", s(&v["purge"]["verdict"]));
    for rule in v["purge"]["rules"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "      {} {} hard {} soft {}{}",
            s(&rule["kind"]),
            s(&rule["selector"]),
            s(&rule["hard_at"]),
            s(&rule["soft_at"]),
            if rule["covers"] == Value::Bool(true) {
                " (covers it)"
            } else {
                " (before it was stored)"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_are_encoded_for_the_query() {
        assert_eq!(
            query_value("http://a.b/c?d=1&e"),
            "http%3A%2F%2Fa.b%2Fc%3Fd%3D1%26e"
        );
    }

    #[test]
    fn renders_a_stored_variant_and_an_absent_url() {
        let absent = json!({"url": "http://x/a", "site": "default", "rule": null,
            "cacheable": true, "key": "ab", "stored": false, "vary": null, "variants": [],
            "url_rules": [{"kind": "url", "selector": "ab", "hard_at": "then", "soft_at": null}]});
        let text = render(&absent);
        assert!(text.contains("not stored"), "{text}");
        assert!(
            text.contains("purged by url ab (hard then, soft -)"),
            "{text}"
        );
        let stored = json!({"url": "http://x/a", "site": "default", "rule": null,
            "cacheable": true, "key": "ab", "stored": true,
            "vary": {"fields": ["accept-language"], "tiers": ["memory"]},
            "variants": [{"selector": {"accept-language": "fr"}, "status": 200, "size": 5,
                "layout": "inline", "tiers": ["memory", "disk"], "stored_at": "then",
                "freshness_source": "max-age",
                "freshness": {"state": "fresh", "age_secs": 1, "lifetime_secs": 60,
                    "fresh_for_secs": 59, "stale_for_secs": 0,
                    "stale_while_revalidate": {"window_secs": 30, "left_secs": 30},
                    "stale_if_error": null},
                "validators": {"etag": "\"v1\"", "last_modified": null},
                "tags": ["t1"], "encodings": [{"encoding": "br", "size": 3}],
                "slices": {"slice_size": 4, "count": 3, "held": [0, 2]},
                "purge": {"verdict": "valid", "rules": [
                    {"kind": "tag", "selector": "t1", "hard_at": "before", "soft_at": null,
                     "covers": false}]}}]});
        let text = render(&stored);
        for want in [
            "varies on accept-language",
            "variant accept-language: fr",
            "in memory, disk",
            "fresh: age 1s of 60s",
            "stale-while-revalidate 30s (30s left)",
            "ETag \"v1\"",
            "tags: t1",
            "encodings: br 3 bytes",
            "sliced: 2 of 3 slices of 4 bytes held (0, 2)",
            "tag t1 hard before soft - (before it was stored)",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
    }
}
