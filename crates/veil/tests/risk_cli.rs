//! End to end: `veil deid` output measured by `veil risk`, a `[generalize]` fragment written for
//! k = 2, `veil deid --policy fragment` rerun with the same key, and the released files
//! measured again: they have the k (and the classes) the search promised.

mod common;

use std::process::Command;

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.code() == Some(0),
        "{:?} exited {:?}: {}",
        cmd,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Seven of the default quasi-identifiers (a 4,050-node lattice; all twelve give 2.7M nodes,
/// which the debug build would take most of its 45 s search budget on).
const QUASI: &str =
    "PatientAge,PatientSex,StudyDate,Modality,Manufacturer,ManufacturerModelName,StudyDescription";

#[test]
fn fragment_applied_by_deid_gives_the_measured_risk() {
    let Some(data) = common::pydicom() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    let out1 = tmp.path().join("out1");
    let out2 = tmp.path().join("out2");
    let frag = tmp.path().join("generalize.toml");
    assert!(veil()
        .arg("key")
        .arg("new")
        .arg(&key)
        .status()
        .unwrap()
        .success());

    // First run: Annex E only. Exit 0 or 3 (some pydicom files are quarantined by design).
    let st = veil()
        .args(["deid", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out1)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        matches!(st.status.code(), Some(0) | Some(3)),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let before = json(
        veil()
            .arg("risk")
            .arg(&out1)
            .args([
                "--quasi",
                QUASI,
                "--target-k",
                "2",
                "--max-suppression",
                "40%",
            ])
            .args(["--json", "--write-policy"])
            .arg(&frag),
    );
    assert_eq!(
        before["risk"]["rejected"], 0,
        "the .veil metadata must not be read as data"
    );
    assert_eq!(
        before["risk"]["k"], 1,
        "pydicom's files start with unique records"
    );
    let promised = &before["after"];
    assert!(promised["k"].as_u64().unwrap() >= 2);

    // Second run with the fragment as policy, same key: Annex E gives the same values, then the
    // generalisation and suppression apply.
    let st = veil()
        .args(["deid", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out2)
        .arg("--policy")
        .arg(&frag)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        matches!(st.status.code(), Some(0) | Some(3)),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let released = json(
        veil()
            .arg("risk")
            .arg(&out2)
            .args(["--quasi", QUASI, "--json"]),
    );
    let r = &released["risk"];
    assert!(r["k"].as_u64().unwrap() >= 2, "released k = {}", r["k"]);
    assert_eq!(r["records"], promised["records"]);
    assert_eq!(r["classes"], promised["classes"]);
    assert_eq!(r["unique_records"], 0);
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("t.csv");
    std::fs::write(&csv, "PatientAge,PatientSex\n045Y,F\n050Y,M\n").unwrap();
    let code = |args: &[&str]| {
        veil()
            .arg("risk")
            .arg(&csv)
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code(&["--quasi", "NoSuchColumn"]), Some(2));
    assert_eq!(
        code(&["--max-suppression", "150%", "--target-k", "2"]),
        Some(2)
    );
    assert_eq!(code(&["--write-policy", "x.toml"]), Some(2));
    // k = 3 on two records cannot be met at any level.
    assert_eq!(
        code(&["--target-k", "3", "--max-suppression", "0"]),
        Some(2)
    );
    assert_eq!(code(&[]), Some(0));
}
