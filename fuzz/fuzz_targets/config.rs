//! edge's configuration: a TOML document through `Config::from_toml`, then
//! through `Config::load` (`--check-config FILE`: parse, then validate),
//! and the unit parsers it uses (`ByteSize`, `parse_duration`, `IpNet`).
//! The input is the file's text.
//!
//! Properties:
//! - a document is accepted or refused with an error that names the file
//!   and a line and column inside the text; never a panic;
//! - `load` (run on what `from_toml` accepts) refuses with an error that
//!   starts with the file's name;
//! - a `ByteSize` written out reads back as itself;
//! - a network contains its own address.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::Parser;
use edge::Config;
use edge::cli::Cli;
use edge::config::{ByteSize, ConfigError, IpNet, parse_duration};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz.toml";

/// The file `load` reads, rewritten for each input, and the command line
/// that checks it. One path for every fuzzing process, so that fork mode
/// leaves no file per child behind; concurrent jobs may overwrite each
/// other's text, which the property below (the error names this path)
/// does not mind.
fn scratch() -> &'static (PathBuf, Cli) {
    static SCRATCH: OnceLock<(PathBuf, Cli)> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let path = std::env::temp_dir().join("edge-fuzz-config.toml");
        let arg = path.to_string_lossy().into_owned();
        let cli = Cli::try_parse_from(["edge", "--check-config", &arg]).expect("flags");
        (path, cli)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, Path::new(NAME)) {
        Ok(_) => {
            // The whole of `--check-config`: parse again, then validate.
            let (path, cli) = scratch();
            let written = std::fs::File::create(path).and_then(|mut f| f.write_all(data));
            if written.is_ok()
                && let Err(e) = Config::load(cli)
            {
                let message = e.to_string();
                let name = path.to_string_lossy();
                assert!(message.starts_with(name.as_ref()), "{message}");
            }
        }
        Err(ConfigError::Parse {
            path, line, column, ..
        }) => {
            let lines = text.split('\n').count();
            assert_eq!(path, Path::new(NAME));
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            let line_len = text.split('\n').nth(line - 1).map_or(0, str::len);
            assert!((1..=line_len + 1).contains(&column), "column {column}");
        }
        Err(other) => panic!("from_toml can only fail to parse: {other}"),
    }

    // The unit parsers, one per line.
    for line in text.lines().take(16) {
        if let Ok(size) = line.parse::<ByteSize>()
            && size.as_u64() < 1 << 53
        {
            // Exact in f64, so its written form must read back exactly.
            assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size), "{line:?}");
        }
        let _ = parse_duration(line);
        if let Ok(net) = line.parse::<IpNet>()
            && let Ok(addr) = line.split('/').next().unwrap_or("").trim().parse()
        {
            assert!(net.contains(addr), "{line:?} misses its own address");
        }
    }
});
