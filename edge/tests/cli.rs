//! The `edge` binary's command line: `--check-config` and its errors.

use std::io::Write;
use std::process::Command;

fn edge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    // Keep the developer's environment out of the test.
    for (key, _) in std::env::vars() {
        if key.starts_with("EDGE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/edge.toml");
    let out = edge().arg("--check-config").arg(example).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
}

#[test]
fn check_config_names_file_line_and_key_of_a_bad_value() {
    let file = write_config(
        "origins = [\"http://127.0.0.1:8000\"]\n\n[server]\nmax_headers = 100\nidle_timeout = \"forever\"\n",
    );
    let out = edge()
        .arg("--check-config")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:5:", file.path().display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("server.idle_timeout"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_config_reports_syntax_errors_and_unknown_keys() {
    let file = write_config("origins = [\"http://127.0.0.1:8000\"]\nlisten = 127.0.0.1:80\n");
    let out = edge()
        .arg("--check-config")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", file.path().display())),
        "{stderr}"
    );

    let file = write_config("origins = [\"http://127.0.0.1:8000\"]\n[cache]\nmemroy = \"1GiB\"\n");
    let out = edge()
        .arg("--check-config")
        .arg(file.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:", file.path().display())),
        "{stderr}"
    );
    assert!(stderr.contains("memroy"), "{stderr}");
}

#[test]
fn check_config_of_a_missing_file_is_an_error() {
    let out = edge()
        .args(["--check-config", "/nonexistent/edge.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/edge.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn running_without_an_origin_explains_what_is_missing() {
    let out = edge().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--origin"), "{stderr}");
}

#[test]
fn env_vars_override_the_file() {
    let file = write_config("origins = [\"http://127.0.0.1:8000\"]\n");
    let out = edge()
        .arg("--check-config")
        .arg(file.path())
        .env("EDGE_MEMORY", "not-a-size")
        .output()
        .unwrap();
    assert!(!out.status.success(), "EDGE_MEMORY was not read");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-a-size"), "{stderr}");
}
