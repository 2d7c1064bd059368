//! Where a key is in the text of a config file, for the errors found after
//! parsing (validation), which carry no span: `cache.memory`, and entries of
//! arrays of tables as serde names them, `sites[1].rules[0].path_regex`.
//!
//! A line scanner, not a TOML parser: it follows table headers (counting
//! `[[...]]` entries) and `key =` lines, which is all a config file written
//! by hand uses. The document has already parsed when this runs.

use std::collections::HashMap;

/// The line of a TOML file where the dotted `key` is set, if it is.
///
/// A key inside an array of tables (one with `[i]` in it) that the file
/// does not set is found at the nearest enclosing key or header that it
/// does: the `[[sites]]` line of a site without `origins`, the
/// `redirect = { ... }` line of `sites[0].rules[2].redirect.status`.
/// Other keys are found only where they are set.
pub(super) fn key_line(text: &str, key: &str) -> Option<usize> {
    let fallback = key.contains('[');
    // Entries seen so far of each array of tables, by its resolved path
    // (`sites`, `sites[1].rules`).
    let mut arrays: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    // (length of the matched prefix, line) of the best enclosing match.
    let mut best: Option<(usize, usize)> = None;
    let mut consider = |path: &str, line: usize| -> bool {
        if path == key {
            return true;
        }
        if fallback && encloses(path, key) && best.is_none_or(|(len, _)| path.len() > len) {
            best = Some((path.len(), line));
        }
        false
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((header, is_array)) = header(line) {
            table = resolve(&mut arrays, &split_key(header), is_array);
            if consider(&table, i + 1) {
                return Some(i + 1);
            }
        } else if let Some(lhs) = assigned_key(line) {
            let full = join(&table, &split_key(lhs).join("."));
            if consider(&full, i + 1) {
                return Some(i + 1);
            }
        }
    }
    best.map(|(_, line)| line)
}

/// Whether `path` is a proper prefix of `key` on a segment boundary.
fn encloses(path: &str, key: &str) -> bool {
    !path.is_empty()
        && key
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with(['.', '[']))
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// The path of a table header, each segment of a name that is an array of
/// tables resolved to its latest entry; a `[[...]]` header opens a new one.
fn resolve(arrays: &mut HashMap<String, usize>, segments: &[String], is_array: bool) -> String {
    let mut path = String::new();
    for (n, segment) in segments.iter().enumerate() {
        let joined = join(&path, segment);
        path = if is_array && n + 1 == segments.len() {
            let count = arrays.entry(joined.clone()).or_insert(0);
            *count += 1;
            format!("{joined}[{}]", *count - 1)
        } else if let Some(count) = arrays.get(&joined) {
            format!("{joined}[{}]", count - 1)
        } else {
            joined
        };
    }
    path
}

/// `[a.b]` or `[[a.b]]` (with an optional comment after it): the inside and
/// whether it is an array of tables.
fn header(line: &str) -> Option<(&str, bool)> {
    let (inner, is_array) = match line.strip_prefix("[[") {
        Some(rest) => (rest, true),
        None => (line.strip_prefix('[')?, false),
    };
    let close = outside_quotes(inner, ']')?;
    let after = &inner[close..];
    let after = if is_array {
        after.strip_prefix("]]")?
    } else {
        &after[1..]
    };
    let after = after.trim_start();
    (after.is_empty() || after.starts_with('#')).then_some((&inner[..close], is_array))
}

/// The key of a `key = value` line.
fn assigned_key(line: &str) -> Option<&str> {
    outside_quotes(line, '=').map(|eq| &line[..eq])
}

/// Byte offset of the first `wanted` not inside a quoted string.
fn outside_quotes(text: &str, wanted: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == wanted => return Some(i),
            None => {}
        }
    }
    None
}

/// A dotted key's segments, trimmed and unquoted.
fn split_key(key: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = key;
    loop {
        let dot = outside_quotes(rest, '.');
        let segment = rest[..dot.unwrap_or(rest.len())].trim();
        let unquoted = segment
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| {
                segment
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
            })
            .unwrap_or(segment);
        segments.push(unquoted.to_owned());
        match dot {
            Some(dot) => rest = &rest[dot + 1..],
            None => return segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_of_a_key() {
        let text = "origins = []\n\n[cache]\n# disk = 1\nmemory = \"1KiB\"\ndisk=\"1MiB\"\n[server]\ndisk = 3\n";
        assert_eq!(key_line(text, "origins"), Some(1));
        assert_eq!(key_line(text, "cache.memory"), Some(5));
        assert_eq!(key_line(text, "cache.disk"), Some(6));
        assert_eq!(key_line(text, "server.disk"), Some(8));
        assert_eq!(key_line(text, "node_name"), None);
        // Outside arrays of tables a key is found only where it is set.
        assert_eq!(key_line(text, "server.max_headers"), None);
    }

    const SITES: &str = r#"origins = ["http://127.0.0.1:1"]
[[sites]]
name = "shop"
hosts = ["shop.example"]
origins = ["http://127.0.0.1:2"]

[[sites.rules]]
path = "/api/"
cache = "bypass"

[[sites.rules]] # negative caching
path = "/static/"
redirect = { to = "/x", status = 999 }
[sites.rules.ttl_status]
404 = "30s"
"410" = "5m"

[[sites]]
name = "blog"
hosts = [
  "blog.example",
]
[[sites.rules]]
path_regex = '^/v[0-9]+/'
request_headers.set = { "X-Site" = "blog" }
[sites.rules.response_headers]
remove = ["Server"]
[upstream]
max_hops = 0
"#;

    #[test]
    fn finds_keys_inside_arrays_of_tables() {
        for (key, line) in [
            ("origins", 1),
            ("sites[0]", 2),
            ("sites[0].name", 3),
            ("sites[0].origins", 5),
            ("sites[0].rules[0].path", 8),
            ("sites[0].rules[0].cache", 9),
            ("sites[0].rules[1]", 11),
            ("sites[0].rules[1].path", 12),
            ("sites[0].rules[1].redirect", 13),
            ("sites[0].rules[1].ttl_status.404", 15),
            ("sites[0].rules[1].ttl_status.410", 16),
            ("sites[1].name", 19),
            ("sites[1].hosts", 20),
            ("sites[1].rules[0].path_regex", 24),
            ("sites[1].rules[0].request_headers.set", 25),
            ("sites[1].rules[0].response_headers.remove", 27),
            ("upstream.max_hops", 29),
        ] {
            assert_eq!(key_line(SITES, key), Some(line), "{key}");
        }
    }

    #[test]
    fn a_missing_key_of_an_entry_is_found_at_what_encloses_it() {
        for (key, line) in [
            // No `origins` in the second site: its header.
            ("sites[1].origins", 18),
            // Inside an inline table: the line of the table's key.
            ("sites[0].rules[1].redirect.status", 13),
            ("sites[1].rules[0].request_headers.set.X-Site", 25),
            ("sites[1].hosts[0]", 20),
            ("sites[0].rules[1].ttl_status", 14),
            ("sites[0].rules[0].ttl", 7),
        ] {
            assert_eq!(key_line(SITES, key), Some(line), "{key}");
        }
        assert_eq!(key_line(SITES, "sites[2].name"), None);
        // Sites written as an inline array: the array's line.
        let inline = "sites = [\n  { name = \"a\", hosts = [\"a\"] },\n]\n";
        assert_eq!(key_line(inline, "sites[0].origins"), Some(1));
    }

    #[test]
    fn headers_and_keys_are_read_with_quotes_and_comments() {
        assert_eq!(header("[cache] # the cache"), Some(("cache", false)));
        assert_eq!(header("[[sites.rules]]"), Some(("sites.rules", true)));
        assert_eq!(header("[\"a]\"]"), Some(("\"a]\"", false)));
        assert_eq!(header("[\"a\", \"b\"],"), None);
        assert_eq!(header("[[sites]"), None);
        assert_eq!(split_key(" a . \"b.c\" .'d'"), ["a", "b.c", "d"]);
        assert_eq!(assigned_key("\"a=b\" = 1"), Some("\"a=b\" "));
        assert_eq!(assigned_key("\"a\\\"=\" = 1"), Some("\"a\\\"=\" "));
    }
}
