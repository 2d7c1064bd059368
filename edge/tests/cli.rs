//! The `edge` binary's command line: `--check-config` and its errors.

use std::io::Write;
use std::process::Command;

use edge_tests::process::{clean_command, wait_exit};

/// The binary, with the developer's environment kept out of the test.
fn edge() -> Command {
    clean_command(env!("CARGO_BIN_EXE_edge"))
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

/// Two sites behind one node, no default site; `{RULE}` is the body of the
/// second site's second rule, which each test below breaks in its own way.
const SITES: &str = r#"[[sites]]
name = "shop"
hosts = ["shop.example", "*.shop.example"]
origins = ["http://127.0.0.1:9001"]

[[sites.rules]]
path = "/api/"
cache = "bypass"

[[sites]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:9002"]

[[sites.rules]]
path = "/static/"
ttl = "1h"

[[sites.rules]]
{RULE}
"#;

/// Line of the `{RULE}` placeholder in `SITES`.
const RULE_LINE: usize = 20;

/// `--check-config` on `text`: it must fail with exit status 2; stderr.
fn check_config_refuses(text: &str) -> (tempfile::NamedTempFile, String) {
    let file = write_config(text);
    let out = edge()
        .arg("--check-config")
        .arg(file.path())
        .output()
        .expect("edge runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (file, stderr)
}

#[test]
fn check_config_accepts_sites_without_a_default_site() {
    let file = write_config(&SITES.replace(
        "{RULE}",
        "path = \"/old/\"\nredirect = { to = \"/new/\", keep_path = true }",
    ));
    let out = edge()
        .arg("--check-config")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each broken rule: the error names file, line, key and site.
#[test]
fn check_config_names_file_line_key_and_site_of_a_bad_rule() {
    for (rule, key, why) in [
        (
            "path_regex = \"^/v[0-9+/\"",
            "sites[1].rules[1].path_regex",
            "does not compile",
        ),
        (
            "ttl_status = { 404 = \"30s\", 700 = \"1m\" }",
            "sites[1].rules[1].ttl_status.700",
            "not within 100-599",
        ),
        (
            "pathh = \"/x/\"",
            "sites[1].rules[1].pathh",
            "unknown field `pathh`",
        ),
        (
            "stale_if_error = \"10 mins please\"",
            "sites[1].rules[1].stale_if_error",
            "invalid duration",
        ),
    ] {
        let (file, stderr) = check_config_refuses(&SITES.replace("{RULE}", rule));
        let at = format!("{}:{RULE_LINE}:", file.path().display());
        assert!(stderr.contains(&at), "{rule}: {stderr}");
        assert!(stderr.contains(&format!("`{key}`")), "{rule}: {stderr}");
        assert!(stderr.contains("site \"blog\""), "{rule}: {stderr}");
        assert!(stderr.contains(why), "{rule}: {stderr}");
    }
}

#[test]
fn check_config_refuses_a_host_of_two_sites() {
    // Line 12: the second site's `hosts`.
    let text = SITES
        .replace("[\"blog.example\"]", "[\"blog.example\", \"SHOP.example\"]")
        .replace("{RULE}", "");
    let (file, stderr) = check_config_refuses(&text);
    let at = format!("{}:12: `sites[1].hosts`", file.path().display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(
        stderr.contains("site \"blog\": host \"SHOP.example\" is also a host of site \"shop\""),
        "{stderr}"
    );
    let text = SITES
        .replace(
            "[\"blog.example\"]",
            "[\"blog.example\", \"a.shop.example\"]",
        )
        .replace("{RULE}", "");
    let (file, stderr) = check_config_refuses(&text);
    let at = format!("{}:12: `sites[1].hosts`", file.path().display());
    assert!(stderr.contains(&at), "{stderr}");
    assert!(stderr.contains("overlapping host names"), "{stderr}");
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

/// Reads the child's stdout lines on a thread so the test can wait with a
/// deadline.
fn line_reader(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line containing {needle:?}"),
        }
    }
}

/// The binary end to end: JSON logs with an access line per request, and a
/// clean exit on SIGTERM.
#[test]
fn binary_logs_json_and_exits_cleanly_on_sigterm() {
    use std::io::Read;
    use std::process::Stdio;

    let dead_origin = edge_tests::free_port();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut child = edge()
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--log-format", "json", "--origin"])
        .arg(format!("http://127.0.0.1:{dead_origin}"))
        .arg("--data-dir")
        .arg(data_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("edge starts");
    let lines = line_reader(child.stdout.take().expect("stdout"));

    let serving = wait_for_line(&lines, "edge serving");
    let listen = serving
        .split("\"listen\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("listen address in the startup line")
        .to_owned();

    let mut stream = std::net::TcpStream::connect(&listen).expect("connect to edge");
    stream
        .write_all(b"GET /logged?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");

    let access = wait_for_line(&lines, "\"target\":\"access\"");
    for field in [
        "\"status\":502",
        "\"method\":\"GET\"",
        "\"host\":\"example.test\"",
        "\"path\":\"/logged?q=1\"",
        "\"error\":\"connect\"",
    ] {
        assert!(access.contains(field), "{field} missing from {access}");
    }

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status =
        wait_exit(&mut child, std::time::Duration::from_secs(20)).expect("edge ignored SIGTERM");
    assert!(status.success(), "exit status {status}");
}

/// `edge man` (hidden) prints the roff page the package ships.
#[test]
fn man_prints_the_man_page() {
    let out = edge().arg("man").output().expect("edge man runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(page.contains("\n.TH edge 1 "), "{page}");
    assert!(page.contains("\\-\\-access\\-log"), "{page}");
    let help = edge().arg("--help").output().expect("edge --help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains("Print the man page"),
        "hidden from --help: {help}"
    );
}
