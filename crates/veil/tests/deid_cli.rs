//! Integration tests that run the real `veil` binary on real DICOM files (pydicom's test files,
//! fetched by scripts/fetch-testdata.sh) and on instances built from them, and check the results
//! with independent readers (pydicom, dcmdump, dciodvfy).

mod common;

use common::{dciodvfy_errors, text};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, VR};
use dicom_dictionary_std::tags;
use dicom_object::{open_file, InMemDicomObject};

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

fn new_key(dir: &Path, name: &str) -> PathBuf {
    let k = dir.join(name);
    let st = veil().args(["key", "new"]).arg(&k).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    k
}

fn deid(key: &Path, out: &Path, inputs: &[&Path], extra: &[&str]) -> (i32, serde_json::Value) {
    let o = veil()
        .arg("deid")
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .args(extra)
        .args(inputs)
        .output()
        .unwrap();
    let code = o.status.code().unwrap();
    let report = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report (exit {code}): {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (code, report)
}

/// Every file under `dir` (outside Veil's state directory), relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    fn rec(root: &Path, d: &Path, m: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().unwrap() == ".veil" {
                continue;
            }
            if p.is_dir() {
                rec(root, &p, m);
            } else {
                m.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    if dir.exists() {
        rec(dir, dir, &mut m);
    }
    m
}

#[test]
fn pydicom_corpus_every_file_is_released_or_held_back() {
    let Some(src) = common::pydicom() else { return };
    let work = tempfile::tempdir().unwrap();
    let key = new_key(work.path(), "site.key");
    let out = work.path().join("out");
    let before = tree(&src);
    let (code, report) = deid(&key, &out, &[&src], &[]);
    // Inputs are never modified.
    assert_eq!(before, tree(&src), "an input was modified");
    assert_eq!(code, 3, "some pydicom files must be held back");

    let inputs = report["inputs"].as_u64().unwrap();
    let written = report["written"].as_u64().unwrap();
    let quarantined = report["quarantined"].as_u64().unwrap();
    let rejected = report["rejected"].as_u64().unwrap();
    let dups = report["duplicates"].as_u64().unwrap();
    assert_eq!(
        inputs,
        written + quarantined + rejected + dups,
        "every input ends exactly once: {report}"
    );
    assert!(written >= 60, "too few outputs: {report}");
    eprintln!("pydicom corpus: {inputs} inputs, {written} written, {quarantined} quarantined, {rejected} rejected, {dups} duplicates; reasons {}", report["reasons"]);

    let outputs = tree(&out);
    assert_eq!(outputs.len() as u64, written);
    // Quarantine: one copy + one JSON reason per held-back DICOM input, nothing for rejected ones.
    let q = tree(&work.path().join("out.quarantine"));
    assert_eq!(q.len() as u64, 2 * quarantined);
    for (name, bytes) in &q {
        if name.extension().unwrap() == "json" {
            let j: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert!(j["reason"].as_str().is_some_and(|r| !r.is_empty()));
        }
    }

    // dcmdump (dcmtk) reads every output.
    for p in outputs.keys() {
        let st = Command::new("dcmdump").arg("-q").arg(out.join(p)).output();
        match st {
            Ok(o) => assert!(
                o.status.success(),
                "dcmdump cannot read {}: {}",
                p.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => assert!(std::env::var("CI").is_err(), "dcmdump is not installed"),
        }
    }
    // pydicom reads every output; every PixelData is byte-identical to a source's, in the same
    // transfer syntax.
    let py = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/check_outputs.py"))
        .arg(&src)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let check: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    eprintln!("pydicom check: {check}");
    assert_eq!(check["read_by_pydicom"], check["outputs"], "{check}");
    // Pixel data is byte-identical unless the pixel stage redacted burned-in text (the output
    // then says so with code 113101).
    let unchanged =
        check["with_pixels"].as_u64().unwrap() - check["pixels_cleaned"].as_u64().unwrap();
    assert_eq!(
        check["pixels_match_a_source"].as_u64().unwrap(),
        unchanged,
        "{check}"
    );
    assert_eq!(
        check["same_transfer_syntax"].as_u64().unwrap(),
        unchanged,
        "{check}"
    );
    assert!(check["with_pixels"].as_u64().unwrap() >= 30);
}

#[test]
fn dciodvfy_errors_do_not_increase() {
    let Some(src) = common::pydicom() else { return };
    if Command::new("dciodvfy").arg("-version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "dciodvfy (dicom3tools) is not installed"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let key = new_key(work.path(), "k");
    // One run per file, so each output is paired with its own source.
    let mut compared = 0;
    let mut worse = Vec::new();
    let files: Vec<PathBuf> = tree(&src).into_keys().map(|p| src.join(p)).collect();
    for (i, input) in files.iter().enumerate() {
        let out = work.path().join(format!("out{i}"));
        let (_, report) = deid(&key, &out, &[input], &[]);
        if report["written"] != 1 {
            continue;
        }
        let output = out.join(tree(&out).keys().next().unwrap());
        let (Some(before), Some(after)) = (dciodvfy_errors(input), dciodvfy_errors(&output)) else {
            continue;
        };
        if after > before {
            worse.push(format!(
                "{}: {before} -> {after}",
                input.file_name().unwrap().to_string_lossy()
            ));
        }
        compared += 1;
    }
    eprintln!("dciodvfy: compared {compared} source/output pairs");
    assert!(
        worse.is_empty(),
        "de-identification added dciodvfy errors: {worse:?}"
    );
    assert!(compared >= 80, "too few files compared: {compared}");
}

/// Builds a small two-study, one-patient dataset from CT_small.dcm with cross references.
fn build_linked_fixture(src: &Path, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    let studies = [
        ("1.2.826.0.1.3680043.9.7777.1", "20200101"),
        ("1.2.826.0.1.3680043.9.7777.2", "20200315"),
    ];
    let mut first_sop = String::new();
    for (i, (study, date)) in studies.iter().enumerate() {
        let mut obj = open_file(src.join("CT_small.dcm")).unwrap();
        let sop = format!("1.2.826.0.1.3680043.9.7777.{}.1.1", i + 1);
        obj.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from("LINK-4471"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Linkage^Lena"),
        ));
        obj.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(*study),
        ));
        obj.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(format!("{study}.1")),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop.clone()),
        ));
        obj.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from(*date),
        ));
        obj.put(DataElement::new(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.9.7777.99"),
        ));
        if i == 1 {
            // The second study's image references the first study's image, two sequences deep.
            let inner = InMemDicomObject::from_element_iter([
                DataElement::new(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.2"),
                ),
                DataElement::new(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from(first_sop.clone()),
                ),
            ]);
            let outer = InMemDicomObject::from_element_iter([DataElement::new(
                tags::REFERENCED_IMAGE_SEQUENCE,
                VR::SQ,
                Value::Sequence(DataSetSequence::new(vec![inner], Length::UNDEFINED)),
            )]);
            obj.put(DataElement::new(
                tags::SOURCE_IMAGE_SEQUENCE,
                VR::SQ,
                Value::Sequence(DataSetSequence::new(vec![outer], Length::UNDEFINED)),
            ));
        } else {
            first_sop = sop.clone();
        }
        obj.update_meta(|m| m.media_storage_sop_instance_uid = sop.clone());
        let p = dir.join(format!("study{i}.dcm"));
        obj.write_to_file(&p).unwrap();
        paths.push(p);
    }
    paths
}

fn outputs_by_study_date(out: &Path) -> Vec<InMemDicomObject> {
    let mut v: Vec<InMemDicomObject> = tree(out)
        .keys()
        .map(|p| open_file(out.join(p)).unwrap().into_inner())
        .collect();
    v.sort_by_key(|o| text(o, tags::STUDY_DATE));
    v
}

fn days(da: &str) -> i64 {
    // Days from civil date (proleptic Gregorian), enough for interval checks.
    let (y, m, d): (i64, i64, i64) = (
        da[0..4].parse().unwrap(),
        da[4..6].parse().unwrap(),
        da[6..8].parse().unwrap(),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[test]
fn references_dates_and_pseudonyms_stay_consistent_across_runs() {
    let Some(src) = common::pydicom() else { return };
    let work = tempfile::tempdir().unwrap();
    let inputs = build_linked_fixture(&src, &work.path().join("in"));
    let key = new_key(work.path(), "k");
    // Two separate runs, one file each: consistency must not depend on seeing both at once.
    let (c1, _) = deid(&key, &work.path().join("a"), &[&inputs[0]], &[]);
    let (c2, _) = deid(&key, &work.path().join("a"), &[&inputs[1]], &[]);
    assert_eq!((c1, c2), (0, 0));
    let outs = outputs_by_study_date(&work.path().join("a"));
    assert_eq!(outs.len(), 2);
    let (first, second) = (&outs[0], &outs[1]);
    // Same patient pseudonym, not the original.
    assert_eq!(
        text(first, tags::PATIENT_ID),
        text(second, tags::PATIENT_ID)
    );
    assert!(text(first, tags::PATIENT_ID).starts_with("VEIL-"));
    assert_eq!(
        text(first, tags::PATIENT_NAME),
        text(first, tags::PATIENT_ID)
    );
    // The nested reference points at the first output's new SOP Instance UID.
    let src_seq = second
        .get(tags::SOURCE_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let ref_seq = src_seq[0]
        .get(tags::REFERENCED_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let referenced = text(&ref_seq[0], tags::REFERENCED_SOP_INSTANCE_UID);
    assert_eq!(referenced, text(first, tags::SOP_INSTANCE_UID));
    assert!(referenced.starts_with("2.25."));
    assert_eq!(
        text(first, tags::FRAME_OF_REFERENCE_UID),
        text(second, tags::FRAME_OF_REFERENCE_UID)
    );
    // Dates shifted, the interval between the studies preserved exactly (74 days).
    let (d1, d2) = (
        text(first, tags::STUDY_DATE),
        text(second, tags::STUDY_DATE),
    );
    assert_ne!(d1, "20200101");
    assert_eq!(days(&d2) - days(&d1), 74);
    let shift = days(&d1) - days("20200101");
    assert!(
        (-3650..=-365).contains(&shift),
        "shift {shift} outside the default range"
    );
    assert_eq!(
        text(first, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED),
        "MODIFIED"
    );
    assert_eq!(text(first, tags::PATIENT_IDENTITY_REMOVED), "YES");
    let codes: BTreeSet<String> = first
        .get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .iter()
        .map(|i| text(i, tags::CODE_VALUE))
        .collect();
    assert_eq!(
        codes,
        ["113100", "113105", "113107", "113108"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn same_key_is_byte_identical_and_other_keys_share_nothing() {
    let Some(src) = common::pydicom() else { return };
    let work = tempfile::tempdir().unwrap();
    let inputs = build_linked_fixture(&src, &work.path().join("in"));
    let mut all: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let extra = [
        src.join("MR_small.dcm"),
        src.join("rtplan.dcm"),
        src.join("test-SR.dcm"),
    ];
    all.extend(extra.iter().map(|p| p.as_path()));
    let k1 = new_key(work.path(), "k1");
    let k2 = new_key(work.path(), "k2");
    deid(&k1, &work.path().join("r1"), &all, &["--threads", "1"]);
    deid(&k1, &work.path().join("r2"), &all, &["--threads", "2"]);
    deid(&k2, &work.path().join("r3"), &all, &[]);
    let (t1, t2, t3) = (
        tree(&work.path().join("r1")),
        tree(&work.path().join("r2")),
        tree(&work.path().join("r3")),
    );
    assert_eq!(t1.len(), 5);
    assert_eq!(t1, t2, "same key and input must give byte-identical output");
    // Another key: no path (pseudonym, study, series, instance UID) in common.
    let parts = |t: &BTreeMap<PathBuf, Vec<u8>>| -> BTreeSet<String> {
        t.keys()
            .flat_map(|p| {
                p.iter()
                    .map(|c| c.to_string_lossy().trim_end_matches(".dcm").to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert!(parts(&t1).is_disjoint(&parts(&t3)));

    // A rerun into the same output skips finished work and leaves the files as they were.
    let (_, again) = deid(&k1, &work.path().join("r1"), &all, &[]);
    assert_eq!(again["skipped_done_earlier"], 5, "{again}");
    assert_eq!(tree(&work.path().join("r1")), t1);
}

#[test]
fn loose_key_bad_policy_and_missing_input_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    let key = new_key(work.path(), "k");
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = work.path().join("loose.key");
        std::fs::copy(&key, &loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = veil()
            .args(["deid", "--out"])
            .arg(work.path().join("o"))
            .arg("--key")
            .arg(&loose)
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("chmod 600"), "{err}");
        assert!(
            !err.contains(std::fs::read_to_string(&key).unwrap().trim()),
            "key material in an error"
        );
    }
    let policy = work.path().join("p.toml");
    std::fs::write(&policy, "[profile]\noptions = [\"clean_descriptors\"]\n\n[[override]]\nkeyword = \"NoSuchKeyword\"\naction = \"K\"\n").unwrap();
    let o = veil()
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 5") && err.contains("override[0].keyword"),
        "{err}"
    );
    let o = veil()
        .args(["deid", "--out"])
        .arg(work.path().join("o"))
        .arg("--key")
        .arg(&key)
        .arg("--policy")
        .arg(&policy)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = veil()
        .args(["deid", "--out"])
        .arg(work.path().join("o"))
        .arg("--key")
        .arg(&key)
        .arg(work.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such file"));
}

#[test]
fn non_dicom_is_reported_not_copied() {
    let work = tempfile::tempdir().unwrap();
    let key = new_key(work.path(), "k");
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("notes.txt"), "Patient John Smith MRN 12345678").unwrap();
    let out = work.path().join("out");
    let (code, report) = deid(&key, &out, &[&input], &[]);
    assert_eq!(code, 3);
    assert_eq!(report["rejected"], 1);
    assert!(tree(&out).is_empty());
    assert!(tree(&work.path().join("out.quarantine")).is_empty());
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("Smith") && !text.contains("12345678"));
}

#[test]
fn policy_show_lists_every_table_row() {
    let o = veil().args(["policy", "show", "--json"]).output().unwrap();
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = j["attributes"].as_array().unwrap();
    assert_eq!(rows.len(), 621);
    let row = |kw: &str| rows.iter().find(|r| r["keyword"] == kw).unwrap().clone();
    assert_eq!(row("StudyDate")["effective"], "clean");
    assert_eq!(row("StudyDate")["table_action"], "C");
    assert_eq!(
        row("StudyDate")["source"],
        "retain_longitudinal_modified_dates"
    );
    // What the engine writes: the pseudonym, not an empty value.
    assert_eq!(row("PatientName")["effective"], "pseudonym {id}");
    assert_eq!(row("PatientName")["source"], "pseudonyms.patient_name");
    // Compound codes are resolved the way the engine resolves them.
    assert_eq!(row("ContentDate")["basic"], "Z/D");
    assert_eq!(row("InstitutionName")["table_action"], "X/Z/D");
    assert_eq!(
        row("InstitutionName")["effective"],
        "dummy (empty stays empty)"
    );
    assert_eq!(j["options"][0], "basic_profile", "like the text form");
}

#[test]
fn patient_map_assigns_trial_ids_and_keys_everyone_else() {
    let Some(src) = common::pydicom() else { return };
    let work = tempfile::tempdir().unwrap();
    let inputs = build_linked_fixture(&src, &work.path().join("in"));
    let key = new_key(work.path(), "k");
    let map = work.path().join("map.csv");
    std::fs::write(
        &map,
        "original_patient_id,pseudonym\nLINK-4471,TRIAL-0007\n",
    )
    .unwrap();
    let other = src.join("MR_small.dcm");
    let all = [inputs[0].as_path(), inputs[1].as_path(), other.as_path()];
    let (code, _) = deid(
        &key,
        &work.path().join("out"),
        &all,
        &["--patient-map", map.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    let out = work.path().join("out");
    let ids: BTreeSet<String> = tree(&out)
        .keys()
        .map(|p| text(&open_file(out.join(p)).unwrap(), tags::PATIENT_ID))
        .collect();
    assert!(ids.contains("TRIAL-0007"), "{ids:?}");
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().any(|i| i.starts_with("VEIL-")), "{ids:?}");
    assert!(out.join("TRIAL-0007").is_dir());
    // A bad map is a usage error naming the line.
    std::fs::write(&map, "original_patient_id,pseudonym\nA,X 1\n").unwrap();
    let o = veil()
        .args(["deid", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(work.path().join("o2"))
        .arg("--patient-map")
        .arg(&map)
        .arg(&inputs[0])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"));
}

#[test]
fn demo_runs_offline_and_leaks_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo");
    for _ in 0..2 {
        // Twice: the demo recreates its own directory.
        let o = veil().arg("demo").arg("--dir").arg(&dir).output().unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.contains(": 0 found"), "{stdout}");
        // 48 CT images, 3 SR reports, the ultrasound marked Burned In Annotation YES (a blank
        // frame, through the pixel stage) and the 50-slice head CT, defaced; the stray text
        // file is rejected.
        assert!(stdout.contains("written          102"), "{stdout}");
        assert!(stdout.contains("quarantined        0"), "{stdout}");
        assert!(
            stdout.contains("faces: the head CT was defaced"),
            "{stdout}"
        );
    }
    // It refuses to wipe a directory it did not make.
    let other = work.path().join("precious");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("data.txt"), "keep me").unwrap();
    let o = veil()
        .arg("demo")
        .arg("--dir")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(other.join("data.txt").exists());
}

#[test]
fn planted_fixture_on_real_pixels_leaks_nothing_and_keeps_pixels() {
    let Some(src) = common::pydicom() else { return };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo");
    let real = src.join("CT_small.dcm");
    let o = veil()
        .arg("demo")
        .arg("--dir")
        .arg(&dir)
        .arg("--pixels-from")
        .arg(&real)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    // 3 patients x 2 studies x 2 series x 4 images on real CT pixels, 3 SR reports, the
    // (blank) ultrasound and the synthetic head CT (its own pixels, defaced).
    assert!(stdout.contains("written          102"), "{stdout}");
    assert!(stdout.contains(": 0 found"), "{stdout}");
    let want = open_file(&real)
        .unwrap()
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .into_owned();
    let out = dir.join("output");
    let mut images = 0;
    for p in tree(&out).keys() {
        let obj = open_file(out.join(p)).unwrap();
        let modality = obj.element(tags::MODALITY).unwrap().to_str().unwrap();
        let head = obj
            .get(tags::BODY_PART_EXAMINED)
            .is_some_and(|e| e.to_str().unwrap().trim() == "HEAD");
        if modality.trim() != "CT" || head {
            continue;
        }
        if let Some(px) = obj.get(tags::PIXEL_DATA) {
            assert_eq!(
                px.to_bytes().unwrap().as_ref(),
                &want[..],
                "pixel data changed in {}",
                p.display()
            );
            images += 1;
        }
    }
    assert_eq!(images, 48);
}
