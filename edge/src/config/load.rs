//! Reading a config: TOML into `Config` (errors name the file, line and
//! key), the command line laid over it, and validation errors that say
//! where the bad value came from.

use std::path::{Path, PathBuf};

use super::Config;
use super::lines::key_line;
use super::sites::site_label;

/// What lies over the file: the command line and its `EDGE_*` variables.
/// `Config::load` knows the flags only through this, so the config needs
/// nothing from the command-line parser.
pub trait Overrides {
    /// The file to read under the overrides, if any.
    fn file(&self) -> Option<&Path>;
    /// Overwrites the keys it sets.
    fn apply_to(&self, config: &mut Config);
    /// Whether it sets `key` (dotted, as in the file).
    fn sets(&self, key: &str) -> bool;
    /// The flag that sets `key`, for error messages.
    fn flag_for(&self, key: &str) -> Option<&'static str>;
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {}{message}", path.display(), key_prefix(key))]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Dotted path of the offending key, when known.
        key: Option<String>,
        message: String,
    },
    #[error("{origin}`{key}`{}: {message}", flag.map(|f| format!(" ({f})")).unwrap_or_default())]
    Invalid {
        /// Where the bad value came from, `file:line: ` or
        /// `command line: `, or empty when it is a default.
        origin: String,
        /// Dotted, as in the file: `cache.disk`,
        /// `sites[1].rules[0].path_regex`.
        key: String,
        /// The flag that sets the key, if there is one.
        flag: Option<&'static str>,
        message: String,
    },
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!("key `{k}`: "))
        .unwrap_or_default()
}

impl Config {
    /// Parses a TOML document; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_error = |err: &toml::de::Error, key: Option<String>| {
            let (line, column) = err
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                key,
                message: err.message().trim().to_owned(),
            }
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| parse_error(&e, None))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != ".").then_some(key);
            let mut error = parse_error(e.inner(), key);
            // A site is named by its name, not only by its index.
            if let ConfigError::Parse {
                key: Some(key),
                message,
                ..
            } = &mut error
                && let Some(site) = site_label(text, key)
            {
                *message = format!("{site}: {message}");
            }
            error
        })
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// The file the overrides name (`--config` or `--check-config`), if
    /// any, then the overrides (flags and `EDGE_*` variables) over it,
    /// validated.
    pub fn load(overrides: &impl Overrides) -> Result<Config, ConfigError> {
        let file = overrides.file();
        let (mut config, text) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                (Config::from_toml(&text, path)?, Some(text))
            }
            None => (Config::default(), None),
        };
        overrides.apply_to(&mut config);
        config.validate().map_err(|(key, message)| {
            let origin = if overrides.sets(&key) {
                "command line: ".to_owned()
            } else {
                match (file, text.as_deref().and_then(|t| key_line(t, &key))) {
                    (Some(path), Some(line)) => format!("{}:{line}: ", path.display()),
                    (Some(path), None) => format!("{}: ", path.display()),
                    (None, _) => String::new(),
                }
            };
            ConfigError::Invalid {
                origin,
                flag: overrides.flag_for(&key),
                key,
                message,
            }
        })?;
        Ok(config)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("edge.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen, Config::default().listen);
        assert_eq!(c.server.max_headers, 100);
        assert_eq!(c.cache.memory, ByteSize::mib(256));
    }

    #[test]
    fn the_admin_listener_is_loopback_unless_told_otherwise() {
        // Metrics, stats and purge live there: never on the open internet
        // by accident, whether from an empty file or the shipped example.
        assert!(parse("").unwrap().admin.ip().is_loopback());
        let example = include_str!("../../../examples/edge.toml");
        assert!(parse(example).unwrap().admin.ip().is_loopback());
    }

    #[test]
    fn reads_every_section() {
        let c = parse(
            r#"
listen = "0.0.0.0:80"
origins = ["http://10.0.0.1:8000", "http://10.0.0.2"]
[cache]
memory = "1GiB"
disk = 4294967296
[server]
idle_timeout = "2m"
[upstream]
host_header = "origin.internal"
"#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 80);
        assert_eq!(c.origins.len(), 2);
        assert_eq!(c.cache.memory, ByteSize::gib(1));
        assert_eq!(c.cache.disk, ByteSize::gib(4));
        assert_eq!(c.server.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.upstream.host_header.as_deref(), Some("origin.internal"));
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let err = parse("listen = \"127.0.0.1:1\"\n\n[server]\nidle_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("edge.toml:4:"), "{err}");
        assert!(err.contains("server.idle_timeout"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[upstream]\nconect_timeout = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("edge.toml:2:"), "{err}");
        assert!(err.contains("conect_timeout"), "{err}");
    }

    #[test]
    fn bad_origin_and_syntax_errors_have_lines() {
        let err = parse("origins = [\"ftp://x\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("edge.toml:1:"), "{err}");
        assert!(err.contains("origins") && err.contains("scheme"), "{err}");
        let err = parse("a = 1\nlisten = \n").unwrap_err().to_string();
        assert!(err.starts_with("edge.toml:2:"), "{err}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
