//! Shared by the integration tests of the `veil` binary.

// Each test crate compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository's fetched test data (`scripts/fetch-testdata.sh`).
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// pydicom's test files, or `None` when they were not fetched: a failure whenever `CI` is set
/// (CI must never skip), a note on stderr otherwise.
pub fn pydicom() -> Option<PathBuf> {
    let d = testdata().join("pydicom");
    if d.join("CT_small.dcm").is_file() {
        return Some(d);
    }
    assert!(
        std::env::var("CI").is_err(),
        "test data missing: run scripts/fetch-testdata.sh"
    );
    eprintln!("skipping: run scripts/fetch-testdata.sh to fetch pydicom's test files");
    None
}

/// A generated corpus that needs no fetched data: the demo's synthetic CT export (two patients,
/// planted identifiers) written under `dir`. Returns its DICOM files, sorted.
pub fn generated(dir: &Path) -> Vec<PathBuf> {
    veil_app::demo::generate(dir, None).expect("the demo generator writes its export");
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "the generator wrote {} files",
        files.len()
    );
    files
}

/// The files of a run's output or quarantine, by relative path, without the run's `.veil/`
/// state.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    veil_fuzz::walk(root)
        .into_iter()
        .filter(|p| !p.strip_prefix(root).unwrap().starts_with(".veil"))
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// A text attribute's value, padding removed; empty when absent.
pub fn text(obj: &dicom_object::InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
        .map(|e| {
            e.to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .unwrap_or_default()
}

/// dciodvfy's error count for a file, or `None` when dciodvfy is not installed.
pub fn dciodvfy_errors(path: &Path) -> Option<usize> {
    let o = std::process::Command::new("dciodvfy")
        .arg(path)
        .output()
        .ok()?;
    let all = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    Some(all.lines().filter(|l| l.starts_with("Error")).count())
}

/// A fresh, empty PostgreSQL database `name` on the server `admin` names
/// (VEIL_TEST_POSTGRES_URL, from scripts/setup.d/postgres.sh): its URL.
pub fn fresh_postgres_db(admin: &str, name: &str) -> String {
    let st = std::process::Command::new("psql")
        .args([
            admin,
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "cannot create database {name}");
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}
