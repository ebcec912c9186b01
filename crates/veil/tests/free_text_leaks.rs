//! Issue 16's acceptance test: identifiers that no structured field spells out, planted in the
//! free text of real images (scripts/adversarial-free-text.py: 18 kinds, several variants each,
//! nine places including nested RT, segmentation and waveform text, four transfer syntaxes, and
//! names in ISO 2022 Japanese and Korean, GB18030, Latin-1 and Cyrillic files).
//!
//! 1. `veil deid` with the default policy releases every case and no planted identifier
//!    survives, in decoded text or in the bytes.
//! 2. The released files verify clean (no false finding).
//! 3. Each case's text put back into a released file (what a cleaner that missed it would
//!    release) is found by `veil verify` without the sources: the verifier's own method.
//!
//! Either count non-zero fails the test.

mod common;

use std::path::Path;
use std::process::Command;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/adversarial-free-text.py")
}

fn python(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 runs (scripts/test.sh installs pydicom)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn veil(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .env_remove("VEIL_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn planted_free_text_identifiers_never_survive_and_the_verifier_finds_each_one() {
    let Some(td) = common::pydicom() else { return };
    let charsets = common::testdata().join("charsets");
    assert!(
        charsets.join("chrH31.dcm").is_file(),
        "charset samples missing: run scripts/fetch-testdata.sh"
    );
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p).to_string_lossy().into_owned();
    let made = python(&[
        "make",
        td.to_str().unwrap(),
        charsets.to_str().unwrap(),
        &w(""),
    ]);
    let cases = made["cases"].as_u64().unwrap();
    assert!(
        cases >= 90 && made["kinds"].as_u64().unwrap() >= 18,
        "{made}"
    );

    std::fs::write(work.path().join("k"), format!("{:064x}\n", 7)).unwrap();
    let mut perms = std::fs::metadata(work.path().join("k"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(work.path().join("k"), perms).unwrap();
    let (code, report) = veil(&[
        "deid",
        "--json",
        "--key",
        &w("k"),
        "--out",
        &w("out"),
        &w("in"),
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(code, 0, "every case is released: {report}");
    assert_eq!(report["written"], cases);

    let checked = python(&["check", &w(""), &w("out")]);
    eprintln!(
        "free-text corpus: {cases} cases, survivors {}",
        checked["survivors"]
    );
    assert_eq!(checked["released"], cases);
    assert_eq!(
        checked["survivors"].as_array().unwrap().len(),
        0,
        "{checked}"
    );

    let (code, clean) = veil(&["verify", "--json", "--against", &w("in"), &w("out")]);
    let clean: serde_json::Value = serde_json::from_str(&clean).unwrap();
    assert_eq!(
        (code, clean["findings"].as_array().unwrap().len()),
        (0, 0),
        "{clean}"
    );

    let injected = python(&["inject", &w(""), &w("out"), &w("inj")]);
    assert_eq!(injected.as_u64(), Some(cases));
    let (code, found) = veil(&["verify", "--json", &w("inj")]);
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(code, 4);
    let with_findings: std::collections::BTreeSet<String> = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["file"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let missed: Vec<String> = (0..cases)
        .map(|i| format!("case{i:03}.dcm"))
        .filter(|f| !with_findings.contains(f))
        .collect();
    eprintln!(
        "verifier: {} of {cases} injected leaks found",
        cases as usize - missed.len()
    );
    assert!(missed.is_empty(), "verifier misses: {missed:?}");
}
