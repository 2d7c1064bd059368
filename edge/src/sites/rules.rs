//! The rule matcher of one site: which rule (first match, file order) a
//! request's method and path select.
//!
//! A rule is a method list, a path prefix on whole segments and a regular
//! expression, each optional (all of them must match). Prefixes are compared
//! as bytes; the regexes of a site are compiled into one `RegexSet`,
//! evaluated at most once per request and only when a regex rule is reached
//! whose method and prefix already match.

use http::Method;
use regex::{RegexSet, SetMatches};

use super::SitesError;
use crate::config::RuleConfig;

/// One site's rules, compiled.
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    rules: Box<[Rule]>,
    /// Every `path_regex` of the site, in rule order; `Rule::regex` indexes it.
    set: Option<RegexSet>,
}

#[derive(Debug)]
struct Rule {
    /// Empty: every method.
    methods: Box<[Method]>,
    /// Without trailing slashes (`/api/` → `/api`); `None` for no `path`
    /// and for `/`, which match every path.
    prefix: Option<Box<[u8]>>,
    /// Index into `Matcher::set`.
    regex: Option<usize>,
}

impl Matcher {
    pub(crate) fn compile(site: &str, rules: &[RuleConfig]) -> Result<Matcher, SitesError> {
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
            });
        }
        let set = if patterns.is_empty() {
            None
        } else {
            Some(compile_set(site, &patterns)?)
        };
        Ok(Matcher {
            rules: compiled.into_boxed_slice(),
            set,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The index of the first rule matching `method` and `path` (the path
    /// without its query).
    pub(crate) fn first_match(&self, method: &Method, path: &str) -> Option<usize> {
        let mut regexes: Option<SetMatches> = None;
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.methods.is_empty() && !rule.methods.contains(method) {
                continue;
            }
            if let Some(prefix) = &rule.prefix
                && !on_segments(path.as_bytes(), prefix)
            {
                continue;
            }
            if let Some(regex) = rule.regex {
                let Some(set) = &self.set else { continue };
                if !regexes
                    .get_or_insert_with(|| set.matches(path))
                    .matched(regex)
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

/// `/api/` and `/api` → `/api`; `/` and `` → `None` (every path).
fn segment_prefix(path: &str) -> Option<Box<[u8]>> {
    let trimmed = path.trim_end_matches('/');
    (!trimmed.is_empty()).then(|| trimmed.as_bytes().into())
}

/// `path` is `prefix` or continues it with a new segment.
fn on_segments(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/'))
}

/// One set for the site; on failure, the regex at fault (compiled alone) is
/// named, or, when each compiles alone but the set is too big, the first.
fn compile_set(site: &str, patterns: &[(usize, &str)]) -> Result<RegexSet, SitesError> {
    RegexSet::new(patterns.iter().map(|(_, re)| re)).map_err(|set_err| {
        let culprit = patterns
            .iter()
            .find_map(|&(rule, re)| regex::Regex::new(re).err().map(|e| (rule, re, e)));
        let (rule, re, source) = match culprit {
            Some(found) => found,
            None => (patterns[0].0, patterns[0].1, set_err),
        };
        SitesError::Regex {
            site: site.to_owned(),
            rule,
            regex: re.to_owned(),
            source,
        }
    })
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
            let m = Matcher::compile("s", &[rule(Some(prefix), None, &[])]).expect("compile");
            let got = m.first_match(&Method::GET, path).is_some();
            assert_eq!(got, want, "path {prefix:?} on {path:?}");
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
        let m = Matcher::compile("s", &rules).expect("compile");
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
            assert_eq!(m.first_match(method, path), *want, "{method} {path}");
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
