//! `[compression]`: which responses the edge compresses for clients that
//! accept it (gzip, Brotli, zstd), and how hard.

use serde::Deserialize;

use super::units::ByteSize;

/// Compression at the edge. Each encoding of an object is made once and
/// stored beside it; see `docs/compression.md`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Compress responses for clients that accept it, and decompress
    /// origin-compressed ones for clients that do not. Sites and rules may
    /// turn it off (`compression = false`). Default: `true`.
    pub enabled: bool,
    /// Media types compressed: exact (`text/html`), or a prefix ending in
    /// `/*` (`text/*`), or a suffix starting with `*+` (`*+json`, `*+xml`).
    /// Parameters (`; charset=…`) are ignored. Default: text, JSON,
    /// JavaScript, XML, SVG, wasm, and fonts that are not compressed
    /// already (ttf, otf, eot).
    pub types: Vec<String>,
    /// Smaller bodies are sent as they are: compressing them saves a few
    /// bytes and costs a header's worth. Default: `1KiB`.
    pub min_size: ByteSize,
    /// gzip level, 1 (fast) to 9 (small). Default: `6`, nginx's and zlib's.
    pub gzip_level: u32,
    /// Brotli quality, 0 to 11. Default: `5`: within a few percent of 11's
    /// size on text at a small fraction of its CPU (a stored encoding is
    /// made once, but the first client waits for it).
    pub br_level: u32,
    /// zstd level, 1 to 19. Default: `3`, zstd's own.
    pub zstd_level: i32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            types: DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            min_size: ByteSize::kib(1),
            gzip_level: 6,
            br_level: 5,
            zstd_level: 3,
        }
    }
}

/// The default `types`.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "*+json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "*+xml",
    "image/svg+xml",
    "application/wasm",
    "application/manifest+json",
    "application/x-font-ttf",
    "application/vnd.ms-fontobject",
    "font/ttf",
    "font/otf",
    "font/eot",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
];

impl CompressionConfig {
    /// What serde cannot check: `(key, message)`.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=9).contains(&self.gzip_level) {
            return Err(("compression.gzip_level", "must be 1 to 9".into()));
        }
        if self.br_level > 11 {
            return Err(("compression.br_level", "must be 0 to 11".into()));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(("compression.zstd_level", "must be 1 to 19".into()));
        }
        for t in &self.types {
            let ok = match t.split_once('/') {
                Some((ty, sub)) => {
                    !ty.is_empty() && !sub.is_empty() && !ty.contains('*') && !sub.contains('*')
                        || (!ty.is_empty() && !ty.contains('*') && sub == "*")
                }
                None => t.len() > 2 && t.starts_with("*+") && !t[2..].contains('*'),
            };
            if !ok {
                return Err((
                    "compression.types",
                    format!("`{t}` is not `type/subtype`, `type/*` or `*+suffix`"),
                ));
            }
        }
        Ok(())
    }
}
