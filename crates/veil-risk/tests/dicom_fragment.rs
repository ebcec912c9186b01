//! A generated `[generalize]` fragment, applied with `veil_deid::generalize::apply` to real
//! DICOM files, gives released files whose measured k meets the target.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::open_file;
use veil_risk::{load, measure, LoadOptions, MeasureOptions, Search, SearchOptions};

fn testdata() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/pydicom");
    if d.join("CT_small.dcm").exists() && d.join("MR_small.dcm").exists() {
        Some(d)
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("testdata/pydicom is missing: run scripts/fetch-testdata.sh");
    } else {
        None
    }
}

/// Writes `n` variants of pydicom's CT and MR files with varied quasi-identifiers
/// (deterministic LCG), 1-3 files per patient.
fn make_corpus(src: &Path, dir: &Path, n: usize) {
    let mut x: u64 = 42;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let manufacturers = [
        "SIEMENS",
        "GE MEDICAL SYSTEMS",
        "Philips",
        "TOSHIBA",
        "Acme Rare Scanners",
    ];
    let mut patient = 0;
    for i in 0..n {
        if i == 0 || next(3) == 0 {
            patient += 1;
        }
        let base = if next(2) == 0 {
            "CT_small.dcm"
        } else {
            "MR_small.dcm"
        };
        let mut obj = open_file(src.join(base)).unwrap();
        let age = 20 + next(75);
        let put = |o: &mut dicom_object::DefaultDicomObject, tag, vr, v: String| {
            o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        };
        put(&mut obj, tags::PATIENT_ID, VR::LO, format!("P{patient:04}"));
        put(&mut obj, tags::PATIENT_AGE, VR::AS, format!("{age:03}Y"));
        put(
            &mut obj,
            tags::PATIENT_SEX,
            VR::CS,
            if next(2) == 0 { "F" } else { "M" }.into(),
        );
        let (y, m, d) = (2015 + next(6), 1 + next(12), 1 + next(28));
        put(
            &mut obj,
            tags::STUDY_DATE,
            VR::DA,
            format!("{y}{m:02}{d:02}"),
        );
        put(
            &mut obj,
            tags::SERIES_DATE,
            VR::DA,
            format!("{y}{m:02}{d:02}"),
        );
        let man = manufacturers[(next(100) as usize * next(100) as usize / 2000).min(4)];
        put(&mut obj, tags::MANUFACTURER, VR::LO, man.into());
        put(
            &mut obj,
            tags::PATIENT_WEIGHT,
            VR::DS,
            format!("{}", 50 + next(60)),
        );
        obj.write_to_file(dir.join(format!("f{i:03}.dcm"))).unwrap();
    }
}

#[test]
fn generated_fragment_applied_to_dicom_meets_target() {
    let Some(src) = testdata() else { return };
    let input = tempfile::tempdir().unwrap();
    let output = tempfile::tempdir().unwrap();
    make_corpus(&src, input.path(), 120);

    // The attributes the corpus varies (a 2,250-node lattice; the 12 defaults give 2.7M nodes,
    // too many for a debug-build test).
    let quasi = [
        "PatientAge",
        "PatientSex",
        "StudyDate",
        "Modality",
        "Manufacturer",
        "PatientWeight",
    ];
    let opts = LoadOptions {
        quasi: quasi.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut table = load(input.path(), &opts).unwrap();
    assert_eq!(table.input_rows, 120);
    assert!(table.rejected.is_empty());
    table.dedupe();
    let before = measure(&table, &MeasureOptions::default());
    assert_eq!(before.k, 1, "the corpus should start with unique records");

    let target = 4;
    let mut search = Search::new(
        &table,
        SearchOptions {
            k: target,
            l: None,
            max_suppression: 0.1,
        },
    );
    let found = search.run().unwrap();
    // The fragment goes through TOML, as `veil deid --policy` would read it.
    let text = veil_risk::report::fragment(&found.spec, &found.result, "test").unwrap();
    #[derive(serde::Deserialize)]
    struct Policy {
        generalize: veil_profile::generalize::GeneralizeSpec,
    }
    let spec = toml::from_str::<Policy>(&text).unwrap().generalize;
    spec.resolve().unwrap();

    let mut suppressed = 0;
    for entry in std::fs::read_dir(input.path()).unwrap() {
        let path = entry.unwrap().path();
        let mut obj = open_file(&path).unwrap();
        let outcome = veil_deid::generalize::apply(&mut obj, &spec);
        if outcome.suppressed {
            suppressed += 1;
        } else {
            obj.write_to_file(output.path().join(path.file_name().unwrap()))
                .unwrap();
        }
    }
    assert_eq!(suppressed, found.result.suppressed_rows);
    assert!(found.result.optimal);
    // Something was generalised: the corpus has no k = 4 at exact levels.
    assert!(found
        .result
        .levels
        .values()
        .any(|l| l != "exact" && l != "day"));

    let mut released = load(output.path(), &opts).unwrap();
    released.dedupe();
    let after = measure(&released, &MeasureOptions::default());
    assert!(
        after.k >= target,
        "released k = {} < target {target}",
        after.k
    );
    let predicted = measure(&found.released, &MeasureOptions::default());
    assert_eq!(after.records, predicted.records);
    assert_eq!(after.k, predicted.k);
    assert_eq!(after.classes, predicted.classes);
}
