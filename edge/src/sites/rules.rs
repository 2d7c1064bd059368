//! The rule matcher of one site: which rule (first match, file order) a
//! request's method and path select.
//!
//! A rule is a method list, a path prefix on whole segments and a regular
//! expression, each optional (all of them must match). Prefixes are compared
//! as bytes; the regexes of a site are compiled into one `RegexSet`, run
//! (`is_match`, at most once a request) only when a regex rule is reached
//! whose method and prefix already match. Only when the set says some regex
//! matches are the rules' own regexes asked, in file order, which one (an
//! `is_match` each): `RegexSet::matches`, an overlapping search with an
//! allocated result, cost more than both (1.8k against 1.3k instructions a
//! request in `benches/benches/sites.rs`).
//!
//! A regex anchored by `^` and a literal (`^/v[0-9]+/` starts with `/v`)
//! carries that literal as a prefix the path must have before the set is
//! worth running.
//!
//! With many prefix rules, scanning them all was most of the cost (~3 ns a
//! rule in that bench), so rules are indexed by the first segment their paths must have
//! (of the prefix, or of a regex's literal when it spans a whole segment):
//! the request's own first segment selects a precomputed list, in file
//! order, of the rules with that segment and the rules without one.

use http::Method;
use regex::{Regex, RegexSet};

use super::SitesError;
use super::hash::FastMap;
use crate::config::RuleConfig;

/// From this many rules with a known first segment on, a site indexes them
/// (below, one hash costs more than the scan it saves).
const INDEX_FROM: usize = 8;

/// The index repeats the unkeyed rules in each segment's list; past this
/// many entries in all (a config of thousands of rules), scan instead.
const INDEX_MAX_ENTRIES: usize = 1 << 16;

/// First segment → candidate rules, ascending.
type BySegment = FastMap<Box<[u8]>, Box<[u32]>>;

/// One site's rules, compiled.
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    rules: Box<[Rule]>,
    /// Every `path_regex` of the site, in rule order; `Rule::regex` indexes it.
    set: Option<RegexSet>,
    /// The same regexes one by one, asked only once the set has matched.
    regexes: Box<[Regex]>,
    /// A first segment → the rules whose paths must have it and the rules
    /// without one (`unkeyed`), ascending. Empty when the site is not
    /// indexed: then `unkeyed` holds every rule.
    by_segment: BySegment,
    /// The rules a path whose first segment is not in `by_segment` may
    /// match, ascending.
    unkeyed: Box<[u32]>,
}

#[derive(Debug)]
struct Rule {
    /// Empty: every method.
    methods: Box<[Method]>,
    /// Without trailing slashes (`/api/` → `/api`); `None` for no `path`
    /// and for `/`, which match every path.
    prefix: Option<Box<[u8]>>,
    /// Index into `Matcher::set` and `Matcher::regexes`.
    regex: Option<usize>,
    /// What a path matching `regex` must start with (see `literal_prefix`).
    literal: Option<Box<[u8]>>,
}

impl Rule {
    /// The first segment every path this rule matches has, if known.
    fn segment(&self) -> Option<&[u8]> {
        if let Some(prefix) = &self.prefix {
            return Some(first_segment(prefix));
        }
        let literal = self.literal.as_deref()?;
        let rest = literal.strip_prefix(b"/").unwrap_or(literal);
        rest.contains(&b'/').then(|| first_segment(literal))
    }
}

/// What the `RegexSet` said about this request's path, so far.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetSays {
    NotRun,
    NoneMatch,
    SomeMatch,
}

impl Matcher {
    pub(crate) fn compile(site: &str, rules: &[RuleConfig]) -> Result<Matcher, SitesError> {
        Matcher::compile_indexed(site, rules, INDEX_FROM)
    }

    fn compile_indexed(
        site: &str,
        rules: &[RuleConfig],
        index_from: usize,
    ) -> Result<Matcher, SitesError> {
        let mut patterns = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let methods = rule
                .methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|source| {
                        SitesError::Method {
                            site: site.to_owned(),
                            rule: index,
                            method: m.clone(),
                            source,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let regex = rule.path_regex.as_ref().map(|re| {
                patterns.push((index, re.as_str()));
                patterns.len() - 1
            });
            compiled.push(Rule {
                methods: methods.into_boxed_slice(),
                prefix: rule.path.as_deref().and_then(segment_prefix),
                regex,
                literal: rule.path_regex.as_deref().and_then(literal_prefix),
            });
        }
        let (set, regexes) = compile_regexes(site, &patterns)?;
        let (by_segment, unkeyed) = index(&compiled, index_from);
        Ok(Matcher {
            rules: compiled.into_boxed_slice(),
            set,
            regexes,
            by_segment,
            unkeyed,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The index of the first rule matching `method` and `path` (the path
    /// without its query).
    pub(crate) fn first_match(&self, method: &Method, path: &str) -> Option<usize> {
        let candidates: &[u32] = if self.by_segment.is_empty() {
            &self.unkeyed
        } else {
            self.by_segment
                .get(first_segment(path.as_bytes()))
                .unwrap_or(&self.unkeyed)
        };
        let mut set_says = SetSays::NotRun;
        for &index in candidates {
            let index = index as usize;
            let Some(rule) = self.rules.get(index) else {
                continue;
            };
            if !rule.methods.is_empty() && !rule.methods.contains(method) {
                continue;
            }
            if let Some(prefix) = &rule.prefix
                && !on_segments(path.as_bytes(), prefix)
            {
                continue;
            }
            if let Some(literal) = &rule.literal
                && !path.as_bytes().starts_with(literal)
            {
                continue;
            }
            if let Some(regex) = rule.regex {
                if set_says == SetSays::NotRun {
                    let any = self.set.as_ref().is_some_and(|set| set.is_match(path));
                    set_says = if any {
                        SetSays::SomeMatch
                    } else {
                        SetSays::NoneMatch
                    };
                }
                if set_says == SetSays::NoneMatch
                    || !self.regexes.get(regex).is_some_and(|re| re.is_match(path))
                {
                    continue;
                }
            }
            return Some(index);
        }
        None
    }

    /// The prefix of rule `index` (normalised), for redirects that keep the
    /// rest of the path.
    pub(crate) fn prefix(&self, index: usize) -> Option<&[u8]> {
        self.rules.get(index)?.prefix.as_deref()
    }
}

/// The candidate lists: by first segment, and for every other path. Not
/// indexed (every rule in the one list) below `index_from` keyed rules or
/// past `INDEX_MAX_ENTRIES`.
fn index(rules: &[Rule], index_from: usize) -> (BySegment, Box<[u32]>) {
    let all = || (0..rules.len()).filter_map(|i| u32::try_from(i).ok());
    let segment = |i: u32| rules.get(i as usize).and_then(Rule::segment);
    let unkeyed: Vec<u32> = all().filter(|&i| segment(i).is_none()).collect();
    let segments: std::collections::BTreeSet<&[u8]> = all().filter_map(segment).collect();
    let keyed = rules.len() - unkeyed.len();
    let entries = keyed.saturating_add(segments.len().saturating_mul(unkeyed.len()));
    if keyed < index_from || entries > INDEX_MAX_ENTRIES {
        return (BySegment::default(), all().collect());
    }
    let by_segment = segments
        .into_iter()
        .map(|key| {
            let list: Vec<u32> = all()
                .filter(|&i| segment(i).is_none_or(|s| s == key))
                .collect();
            (key.into(), list.into_boxed_slice())
        })
        .collect();
    (by_segment, unkeyed.into_boxed_slice())
}

/// The literal a regex anchored at the start requires: `^/v[0-9]+/` →
/// `/v`, `^/api/v2/` → `/api/v2/`, `^/ab?` → `/a`. `None` when there is
/// no such literal (no leading `^`, a flag group, an alternation anywhere).
fn literal_prefix(regex: &str) -> Option<Box<[u8]>> {
    let body = regex.strip_prefix('^')?;
    if regex.contains('|') {
        return None;
    }
    let mut literal = String::new();
    for c in body.chars() {
        match c {
            // the quantifier may repeat the last character zero times
            '*' | '?' | '{' => {
                literal.pop();
                break;
            }
            '\\' | '.' | '+' | '(' | ')' | '[' | ']' | '}' | '^' | '$' => break,
            c => literal.push(c),
        }
    }
    (!literal.is_empty()).then(|| literal.into_bytes().into_boxed_slice())
}

/// `/api/` and `/api` → `/api`; `/` and `` → `None` (every path).
fn segment_prefix(path: &str) -> Option<Box<[u8]>> {
    let trimmed = path.trim_end_matches('/');
    (!trimmed.is_empty()).then(|| trimmed.as_bytes().into())
}

/// The first segment: `/api/v1` → `api`, `/` → ``. Every path a prefix
/// matches has the prefix's first segment.
fn first_segment(path: &[u8]) -> &[u8] {
    let path = path.strip_prefix(b"/").unwrap_or(path);
    match path.iter().position(|&b| b == b'/') {
        Some(end) => &path[..end],
        None => path,
    }
}

/// `path` is `prefix` or continues it with a new segment.
fn on_segments(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/'))
}

/// Each regex alone (an error names its rule), then the site's set of them
/// (an error there, a set too big, names the first).
fn compile_regexes(
    site: &str,
    patterns: &[(usize, &str)],
) -> Result<(Option<RegexSet>, Box<[Regex]>), SitesError> {
    let error = |rule: usize, regex: &str, source| SitesError::Regex {
        site: site.to_owned(),
        rule,
        regex: regex.to_owned(),
        source,
    };
    let Some(&(first_rule, first)) = patterns.first() else {
        return Ok((None, Box::default()));
    };
    let regexes = patterns
        .iter()
        .map(|&(rule, re)| Regex::new(re).map_err(|e| error(rule, re, e)))
        .collect::<Result<_, _>>()?;
    let set = RegexSet::new(patterns.iter().map(|(_, re)| re))
        .map_err(|e| error(first_rule, first, e))?;
    Ok((Some(set), regexes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: Option<&str>, regex: Option<&str>, methods: &[&str]) -> RuleConfig {
        RuleConfig {
            path: path.map(str::to_owned),
            path_regex: regex.map(str::to_owned),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            ..RuleConfig::default()
        }
    }

    #[test]
    fn segment_prefixes() {
        // rule path, request path, matches
        let cases: &[(&str, &str, bool)] = &[
            ("/api/", "/api", true),
            ("/api/", "/api/", true),
            ("/api/", "/api/x", true),
            ("/api/", "/apix", false),
            ("/api", "/api", true),
            ("/api", "/api/x/y", true),
            ("/api", "/apix", false),
            ("/api", "/ap", false),
            ("/api", "/", false),
            ("/api", "/API", false),
            ("/a/b/", "/a/b/c", true),
            ("/a/b/", "/a/bc", false),
            ("/", "/", true),
            ("/", "/anything/at/all", true),
            ("/", "*", true),
            ("", "/x", true),
        ];
        for &(prefix, path, want) in cases {
            for index_from in [0, usize::MAX] {
                let rules = [rule(Some(prefix), None, &[])];
                let m = Matcher::compile_indexed("s", &rules, index_from).expect("compile");
                let got = m.first_match(&Method::GET, path).is_some();
                assert_eq!(got, want, "path {prefix:?} on {path:?}, index {index_from}");
            }
        }
    }

    #[test]
    fn first_match_in_file_order() {
        let rules = [
            rule(Some("/api/"), None, &["post", "PUT"]), // 0
            rule(None, Some(r"^/v[0-9]+/"), &["GET"]),   // 1
            rule(Some("/api/"), None, &[]),              // 2
            rule(Some("/static"), Some(r"\.css$"), &[]), // 3
            rule(None, Some(r"\.(png|jpg)$"), &[]),      // 4
            rule(Some("/static/"), None, &["GET"]),      // 5
            rule(None, None, &["DELETE"]),               // 6
            rule(Some("/v2"), None, &[]),                // 7
        ];
        let linear = Matcher::compile_indexed("s", &rules, usize::MAX).expect("compile");
        let indexed = Matcher::compile_indexed("s", &rules, 0).expect("compile");
        assert!(linear.by_segment.is_empty() && !indexed.by_segment.is_empty());
        let cases: &[(Method, &str, Option<usize>)] = &[
            (Method::POST, "/api/x", Some(0)),
            (Method::PUT, "/api", Some(0)),
            (Method::GET, "/api/x", Some(2)),
            (Method::GET, "/v1/x", Some(1)),
            (Method::HEAD, "/v1/x", None),
            (Method::HEAD, "/v2/x", Some(7)),
            (Method::GET, "/v/x", None),
            (Method::GET, "/static/site.css", Some(3)),
            (Method::GET, "/other/site.css", None),
            (Method::GET, "/static/a.png", Some(4)),
            (Method::GET, "/img/a.jpg", Some(4)),
            (Method::GET, "/static/a.js", Some(5)),
            (Method::HEAD, "/static/a.js", None),
            (Method::DELETE, "/static/a.js", Some(6)),
            (Method::DELETE, "/api/x", Some(2)),
            (Method::GET, "/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(linear.first_match(method, path), *want, "{method} {path}");
            assert_eq!(
                indexed.first_match(method, path),
                *want,
                "{method} {path} indexed"
            );
        }
    }

    #[test]
    fn the_segment_index_keeps_file_order_across_shared_segments() {
        let rules = [
            rule(Some("/a/b/"), None, &["POST"]), // 0
            rule(None, Some("^/a/b/c"), &[]),     // 1
            rule(Some("/a/b"), None, &[]),        // 2
            rule(Some("/a"), None, &[]),          // 3
            rule(Some("//x"), None, &[]),         // 4
            rule(Some("a"), None, &[]),           // 5
            rule(Some("/b"), Some("z$"), &[]),    // 6
            rule(None, None, &["PUT"]),           // 7
            rule(Some("/b"), None, &[]),          // 8
            rule(Some("/"), None, &["PATCH"]),    // 9
        ];
        let cases: &[(Method, &str, Option<usize>)] = &[
            (Method::POST, "/a/b/x", Some(0)),
            (Method::GET, "/a/b/c", Some(1)),
            (Method::GET, "/a/b/x", Some(2)),
            (Method::GET, "/a/bx", Some(3)),
            (Method::GET, "/a", Some(3)),
            (Method::GET, "//x/y", Some(4)),
            (Method::GET, "a/y", Some(5)),
            (Method::GET, "/b/z", Some(6)),
            (Method::PUT, "/b/y", Some(7)),
            (Method::GET, "/b/y", Some(8)),
            (Method::PATCH, "/c", Some(9)),
            (Method::GET, "/c", None),
            (Method::GET, "/", None),
            (Method::GET, "", None),
        ];
        for index_from in [0, 3, usize::MAX] {
            let m = Matcher::compile_indexed("s", &rules, index_from).expect("compile");
            for (method, path, want) in cases {
                let got = m.first_match(method, path);
                assert_eq!(got, *want, "{method} {path:?}, index from {index_from}");
            }
        }
    }

    #[test]
    fn literal_prefixes_of_regexes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("^/v[0-9]+/", Some("/v")),
            ("^/api/v2/", Some("/api/v2/")),
            ("^/api/v2/.*$", Some("/api/v2/")),
            ("^/ab?c", Some("/a")),
            ("^/ab*", Some("/a")),
            ("^/ab{0,2}", Some("/a")),
            ("^/ab+", Some("/ab")),
            ("^/é+x", Some("/é")),
            ("^/a\\.b", Some("/a")),
            ("^/a(b)", Some("/a")),
            ("^/a/|^/b/", None),
            ("^(/a|/b)/", None),
            ("^(?i)/a/", None),
            ("(?i)^/a/", None),
            ("/a/", None),
            ("\\.css$", None),
            ("^", None),
            ("^?", None),
            ("^.*", None),
        ];
        for (regex, want) in cases {
            let got = literal_prefix(regex);
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{regex:?}");
        }
        // sound where a quantifier allows the last character zero times
        for (regex, path) in [
            ("^/ab?c", "/ac"),
            ("^/ab*", "/a"),
            ("^/ab{0,2}", "/a"),
            ("^/é+x", "/éx"),
        ] {
            let literal = literal_prefix(regex).expect(regex);
            assert!(
                regex::Regex::new(regex).expect(regex).is_match(path),
                "{regex} {path}"
            );
            assert!(path.as_bytes().starts_with(&literal), "{regex} {path}");
        }
    }

    #[test]
    fn regexes_keyed_by_their_literal_segment_keep_file_order() {
        let rules = [
            rule(None, Some("^/img/.*\\.png$"), &[]), // 0: keyed by `img`
            rule(None, Some("^/im"), &["POST"]),      // 1: unkeyed, literal `/im`
            rule(None, Some("\\.jpg$"), &[]),         // 2: unkeyed, no literal
            rule(Some("/img/"), None, &[]),           // 3
            rule(Some("/css/"), None, &[]),           // 4
        ];
        let cases: &[(Method, &str, Option<usize>)] = &[
            (Method::GET, "/img/a.png", Some(0)),
            (Method::POST, "/img/a.png", Some(0)),
            (Method::POST, "/img/a.gif", Some(1)),
            (Method::POST, "/imx", Some(1)),
            (Method::GET, "/img/a.jpg", Some(2)),
            (Method::GET, "/css/a.jpg", Some(2)),
            (Method::GET, "/img/a.gif", Some(3)),
            (Method::GET, "/css/a.css", Some(4)),
            (Method::GET, "/x/a.png", None),
            (Method::GET, "/imgs/a.png", None),
        ];
        for index_from in [0, usize::MAX] {
            let m = Matcher::compile_indexed("s", &rules, index_from).expect("compile");
            for (method, path, want) in cases {
                let got = m.first_match(method, path);
                assert_eq!(got, *want, "{method} {path:?}, index from {index_from}");
            }
        }
    }

    #[test]
    fn no_rules_match_nothing_and_a_bare_rule_matches_everything() {
        let none = Matcher::compile("s", &[]).expect("compile");
        assert!(none.is_empty());
        assert_eq!(none.first_match(&Method::GET, "/"), None);
        let bare = Matcher::compile("s", &[rule(None, None, &[])]).expect("compile");
        assert_eq!(bare.first_match(&Method::GET, "/x"), Some(0));
        assert_eq!(bare.first_match(&Method::OPTIONS, "*"), Some(0));
    }

    #[test]
    fn extension_methods_compare_upper_cased() {
        let m = Matcher::compile("s", &[rule(None, None, &["purge"])]).expect("compile");
        let purge = Method::from_bytes(b"PURGE").expect("method");
        assert_eq!(m.first_match(&purge, "/"), Some(0));
        let lower = Method::from_bytes(b"purge").expect("method");
        assert_eq!(m.first_match(&lower, "/"), None);
        assert_eq!(m.first_match(&Method::GET, "/"), None);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_rule() {
        let bad_regex = [
            rule(None, Some("^/ok"), &[]),
            rule(None, Some("(unclosed"), &[]),
        ];
        match Matcher::compile("shop", &bad_regex) {
            Err(SitesError::Regex {
                site, rule, regex, ..
            }) => {
                assert_eq!(
                    (site.as_str(), rule, regex.as_str()),
                    ("shop", 1, "(unclosed")
                );
            }
            other => panic!("expected a regex error, got {other:?}"),
        }
        match Matcher::compile("shop", &[rule(None, None, &["GET", "GE T"])]) {
            Err(SitesError::Method { rule, method, .. }) => {
                assert_eq!((rule, method.as_str()), (0, "GE T"));
            }
            other => panic!("expected a method error, got {other:?}"),
        }
    }
}
