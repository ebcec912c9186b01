//! The Python package's tests (crates/veil-py/tests: `veil.deidentify`, `deid_paths`, `verify`,
//! `risk` and `veil.spark` against this binary, byte for byte), run with pytest so that
//! `cargo test` fails when they fail.
//!
//! The package must be installed from this tree first (scripts/setup.d/python.sh, which
//! scripts/test.sh runs). Nothing is skipped silently: a missing package, pytest, pyspark or
//! Java fails with what to do. VEIL_SKIP_PYTHON=1 leaves the whole suite out on purpose,
//! VEIL_SKIP_SPARK=1 only the Spark tests.

use std::path::Path;
use std::process::Command;

#[test]
fn python_package_tests_pass() {
    if std::env::var("VEIL_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("VEIL_SKIP_PYTHON=1: the Python package's tests are left out on purpose");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let import = Command::new("python3")
        .args(["-c", "import veil, pytest"])
        .output()
        .expect("python3 runs");
    assert!(
        import.status.success(),
        "the veil Python package or pytest is not installed: run scripts/setup.d/python.sh \
         (or set VEIL_SKIP_PYTHON=1 to leave these tests out): {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let status = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "crates/veil-py/tests",
        ])
        .current_dir(&repo)
        .env("VEIL_BIN", env!("CARGO_BIN_EXE_veil"))
        .status()
        .expect("pytest runs");
    assert!(
        status.success(),
        "the Python package's tests failed (output above)"
    );
}
