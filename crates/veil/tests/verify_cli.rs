//! `veil verify` run as a binary: Veil's own outputs (demo export with planted identifiers,
//! pydicom's test files) verify clean against their sources; the sources verified against
//! themselves (a leak in every category) give exit 4, the JSON contract, and no identifying
//! value on stdout or stderr.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use dicom_dictionary_std::tags;

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

const CATEGORIES: [&str; 8] = [
    "removed_attribute",
    "private",
    "marker",
    "uid",
    "date",
    "known_identifier",
    "pattern",
    "free_text",
];

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn by_category(v: &serde_json::Value, c: &str) -> u64 {
    v["by_category"][c]
        .as_u64()
        .unwrap_or_else(|| panic!("{c} missing"))
}

/// Runs the demo (planted identifiers, real pipeline) into `dir`.
fn demo(dir: &Path) {
    let o = veil().arg("demo").arg("--dir").arg(dir).output().unwrap();
    assert!(
        o.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Identifying values planted in the demo input, read back from the files.
fn planted_values(input: &Path) -> Vec<String> {
    let mut values = Vec::new();
    for entry in walkdir::WalkDir::new(input) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(obj) = dicom_object::open_file(entry.path()) else {
            continue;
        };
        for tag in [
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::ACCESSION_NUMBER,
            tags::SOP_INSTANCE_UID,
            tags::INSTITUTION_NAME,
        ] {
            if let Some(v) = obj.element(tag).ok().and_then(|e| e.to_str().ok()) {
                for part in v.split(['^', ' ']) {
                    let part = part.trim_matches(['\0', ' ']);
                    if part.len() >= 5 {
                        values.push(part.to_string());
                    }
                }
            }
        }
    }
    values.sort();
    values.dedup();
    assert!(
        values.len() > 10,
        "too few planted values read: {}",
        values.len()
    );
    values
}

#[test]
fn demo_output_is_clean_and_its_input_leaks_in_every_category() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    demo(&dir);
    let (input, output) = (dir.join("input"), dir.join("output"));

    let o = veil()
        .arg("verify")
        .arg(&output)
        .arg("--against")
        .arg(&input)
        .arg("--json")
        .output()
        .unwrap();
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{v}");
    for c in CATEGORIES {
        assert_eq!(by_category(&v, c), 0, "{c}: {v}");
    }
    assert!(v["files_scanned"].as_u64().unwrap() >= 40, "{v}");
    assert!(v["bytes_scanned"].as_u64().unwrap() > 100_000, "{v}");
    assert_eq!(v["files_with_findings"], 0);
    assert!(v["findings"].as_array().unwrap().is_empty());

    // The original export, verified against itself: every leak there is.
    for json_flag in [true, false] {
        let mut cmd = veil();
        cmd.arg("verify").arg(&input).arg("--against").arg(&input);
        if json_flag {
            cmd.arg("--json");
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(4));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .to_lowercase();
        for p in planted_values(&input) {
            assert!(
                !text.contains(&p.to_lowercase()),
                "a planted value is shown in the report"
            );
        }
        if !json_flag {
            assert!(text.contains("known_identifier"), "{text}");
            continue;
        }
        let v = json(&o);
        for c in [
            "removed_attribute",
            "private",
            "marker",
            "uid",
            "date",
            "known_identifier",
            "pattern",
            "free_text",
        ] {
            assert!(
                by_category(&v, c) > 0,
                "no {c} finding: {}",
                v["by_category"]
            );
        }
        let findings = v["findings"].as_array().unwrap();
        let total: u64 = CATEGORIES.iter().map(|c| by_category(&v, c)).sum();
        assert_eq!(total, findings.len() as u64);
        for f in findings {
            for key in ["file", "path", "tag", "category", "rule", "masked"] {
                assert!(f[key].is_string(), "{key} missing in {f}");
            }
        }
        // Nested paths name the sequence and item.
        assert!(
            findings
                .iter()
                .any(|f| f["path"].as_str().unwrap().contains("Sequence[0].")),
            "no nested path"
        );
    }
}

/// `veil deid` of `input` into `dir/out` (a new key, `policy` or the default), checking that
/// most files are written and none fails Veil's own verify stage; then `veil verify --against`
/// the input with the same policy. Returns the run report and the verify run.
fn deid_then_verify(
    input: &Path,
    dir: &Path,
    policy: Option<&Path>,
) -> (serde_json::Value, Output) {
    let key = dir.join("k.key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
    let out = dir.join("out");
    let mut deid = veil();
    deid.arg("deid").arg(input).arg("--key").arg(&key);
    let mut verify = veil();
    verify.arg("verify").arg(&out).arg("--against").arg(input);
    if let Some(p) = policy {
        deid.arg("--policy").arg(p);
        verify.arg("--policy").arg(p);
    }
    let d = deid.arg("--out").arg(&out).arg("--json").output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    assert!(report["written"].as_u64().unwrap() >= 50, "{report}");
    // Nothing Veil writes fails its own verify stage.
    assert!(
        report["reasons"].get("verification_failed").is_none(),
        "{}",
        report["reasons"]
    );
    (report, verify.arg("--json").output().unwrap())
}

#[test]
fn veils_output_of_real_files_is_clean_and_usage_errors_are_exit_2() {
    let Some(pydicom) = common::pydicom() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (report, o) = deid_then_verify(&pydicom, tmp.path(), None);
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{}", v["findings"]);
    assert_eq!(v["files_scanned"], report["written"]);
    // The run's journal and report (`.veil/`) are Veil's state, not outputs: not even listed.
    assert_eq!(
        v["skipped"].as_array().unwrap().len(),
        0,
        "{}",
        v["skipped"]
    );

    // Without sources: conformance only, still clean.
    let o = veil().arg("verify").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("clean"));

    // The originals without sources: markers and removed attributes, exit 4.
    let o = veil()
        .arg("verify")
        .arg(pydicom.join("CT_small.dcm"))
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let v = json(&o);
    assert!(by_category(&v, "marker") > 0 && by_category(&v, "removed_attribute") > 0);

    let o = veil()
        .arg("verify")
        .arg(tmp.path().join("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-dir"));
    let o = veil()
        .arg("verify")
        .arg(&out)
        .arg("--policy")
        .arg(tmp.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_plain_basic_profile_passes_its_own_verify_stage() {
    // Without Retain Longitudinal options every date becomes a dummy or is removed; the verify
    // stage once read the dummies as inconsistent shifts and held back most dated files.
    let Some(pydicom) = common::pydicom() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("basic.toml");
    std::fs::write(&policy, "[profile]\noptions = []\n").unwrap();
    let (_, o) = deid_then_verify(&pydicom, tmp.path(), Some(&policy));
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{}", v["findings"]);
}
