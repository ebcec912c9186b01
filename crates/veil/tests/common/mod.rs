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
