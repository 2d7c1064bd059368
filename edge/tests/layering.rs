//! The one-way rule of ARCHITECTURE.md, checked: no file in `edge/src`,
//! `cache/src` or `purge-api/src` uses one that uses it back, directly or
//! round a loop (`scripts/deps` reads the `crate::` / `super::` paths).

use std::path::Path;
use std::process::Command;

#[test]
fn source_files_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for src in [
        "edge/src",
        "cache/src",
        "purge-api/src",
        "origin-shield/src",
    ] {
        let out = Command::new("python3")
            .arg(root.join("scripts/deps"))
            .arg(root.join(src))
            .output()
            .expect("python3 runs scripts/deps");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{src} has an import cycle:\n{text}");
        assert!(text.contains("no cycles"), "{src}: {text}");
    }
}

#[test]
fn a_cycle_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("lib.rs", "mod a;\nmod b;\n");
    write("a.rs", "use crate::b::Bee;\npub struct Ay;\n");
    write(
        "b.rs",
        "pub struct Bee;\nfn f() -> super::a::Ay { todo!() }\n",
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("scripts/deps"))
        .arg(dir.path())
        .output()
        .expect("python3 runs scripts/deps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a <-> b not reported:\n{text}");
    assert!(text.contains("['a', 'b']"), "{text}");
}
