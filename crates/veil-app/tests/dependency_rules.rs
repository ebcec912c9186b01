//! The workspace's design rules, checked from `cargo metadata` and `cargo tree` so that they
//! fail a build instead of living only in comments:
//!
//! - the verifier links no engine crate (it must not share the engine's blind spots);
//! - the fault-injection hooks of the engine never reach the binary a user runs;
//! - every normal dependency of every crate is used by that crate's code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    c
}

fn metadata() -> serde_json::Value {
    let o = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Normal (non-dev, non-build) dependencies of each workspace crate.
fn normal_deps(m: &serde_json::Value) -> BTreeMap<String, (PathBuf, Vec<(String, String)>)> {
    let members: Vec<&str> = m["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for p in m["packages"].as_array().unwrap() {
        if !members.contains(&p["id"].as_str().unwrap()) {
            continue;
        }
        let dir = Path::new(p["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap()
            .to_path_buf();
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| {
                let name = d["name"].as_str().unwrap().to_string();
                let used_as = d["rename"].as_str().unwrap_or(&name).replace('-', "_");
                (name, used_as)
            })
            .collect();
        out.insert(p["name"].as_str().unwrap().to_string(), (dir, deps));
    }
    out
}

#[test]
fn the_verifier_links_no_engine_crate() {
    let m = metadata();
    let deps = normal_deps(&m);
    let (_, verify) = &deps["veil-verify"];
    for (name, _) in verify {
        assert!(
            !name.starts_with("veil-"),
            "veil-verify depends on {name}: the verifier must read the standard and the bytes on its own"
        );
    }
}

#[test]
fn fault_injection_never_reaches_the_binary() {
    let o = cargo()
        .args([
            "tree",
            "--offline",
            "-p",
            "veil",
            "-e",
            "normal,features",
            "-i",
            "veil-deid",
        ])
        .output()
        .unwrap();
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tree.contains("veil-deid"), "{tree}");
    assert!(
        !tree.contains("fault-injection"),
        "the binary's build enables the engine's fault hooks:\n{tree}"
    );
}

#[test]
fn every_dependency_is_used() {
    // Linked for what they register, not named in code: the codecs of the transfer syntax
    // registry (dicom-pixeldata finds them through it).
    let side_effects = ["dicom-transfer-syntax-registry"];
    let mut unused = Vec::new();
    for (krate, (dir, deps)) in normal_deps(&metadata()) {
        let mut code = String::new();
        for entry in walk(&dir.join("src")) {
            code.push_str(&std::fs::read_to_string(entry).unwrap());
        }
        for (name, used_as) in deps {
            if side_effects.contains(&name.as_str()) {
                continue;
            }
            let pattern = regex_word(&used_as);
            if !pattern(&code) {
                unused.push(format!("{krate}: {name}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "unused dependencies:\n{}",
        unused.join("\n")
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// A matcher for `name` as a whole word (a path segment or an identifier).
fn regex_word(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |code: &str| {
        code.match_indices(name).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + name.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    }
}
