//! CSV and Parquet loaders on small files whose contents are known (tests/data).

use std::path::Path;

use veil_risk::{load, measure, LoadOptions, MeasureOptions};

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn values(t: &veil_risk::QiTable, col: usize) -> Vec<String> {
    let c = &t.columns[col];
    c.codes
        .iter()
        .map(|&k| c.values[k as usize].clone())
        .collect()
}

// small.parquet (see make_small_parquet.py), two row groups of 4 and 2 rows:
//   PatientID PatientAge PatientSex StudyDate   instanceCount series_size_MB
//   p1        030Y       F          2019-08-17  10            1.5
//   p1        030Y       F          2019-08-17  20            2.0
//   p2        030Y       F          2019-08-17  10            1.5
//   p3        null       M          2000-02-29   5            null
//   p4        045Y       null       null          1            0.25
//   null      045Y       M          1969-12-31   1            0.25
// Default quasi-identifiers present: PatientAge, PatientSex, StudyDate; subject PatientID.
// Rows 1 and 2 are the same person with the same values: one record. Classes:
// (030Y,F,2019-08-17) {p1,p2} = 2; (-,M,2000-02-29) 1; (045Y,-,-) 1; (045Y,M,1969-12-31) 1.
// records 5, classes 4, k 1, uniques 3.
#[test]
fn parquet_nulls_dates_and_row_groups() {
    let mut t = load(&data("small.parquet"), &LoadOptions::default()).unwrap();
    assert_eq!(
        t.quasi_names(),
        vec!["PatientAge", "PatientSex", "StudyDate"]
    );
    assert_eq!(t.input_rows, 6);
    assert_eq!(
        values(&t, 2),
        vec![
            "2019-08-17",
            "2019-08-17",
            "2019-08-17",
            "2000-02-29",
            "",
            "1969-12-31"
        ]
    );
    assert_eq!(
        values(&t, 0),
        vec!["030Y", "030Y", "030Y", "", "045Y", "045Y"]
    );
    t.dedupe();
    let r = measure(&t, &MeasureOptions::default());
    assert_eq!((r.records, r.classes, r.k, r.unique_records), (5, 4, 1, 3));

    let opts = LoadOptions {
        quasi: vec![
            "instanceCount:number".into(),
            "series_size_MB:number".into(),
        ],
        subject: Some(String::new()),
        ..Default::default()
    };
    let t = load(&data("small.parquet"), &opts).unwrap();
    assert_eq!(values(&t, 0), vec!["10", "20", "10", "5", "1", "1"]);
    assert_eq!(values(&t, 1), vec!["1.5", "2", "1.5", "", "0.25", "0.25"]);
    assert!(t.subject.is_none());

    let bad = LoadOptions {
        quasi: vec!["NoSuchColumn".into()],
        ..Default::default()
    };
    let err = load(&data("small.parquet"), &bad).unwrap_err();
    assert!(err.is_usage());
    assert!(format!("{err:#}").contains("NoSuchColumn"));
}

// CSV: rows (age, sex): 40 F, 40 F, 41 M; trailing spaces are padding. k = 1, 1 unique.
#[test]
fn csv_with_padding_and_sensitive() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.csv");
    std::fs::write(&p, "PatientAge,PatientSex,Dx\n40,F ,a\n40,F,b\n41,M,a\n").unwrap();
    let opts = LoadOptions {
        sensitive: Some("Dx".into()),
        ..Default::default()
    };
    let t = load(&p, &opts).unwrap();
    let r = measure(&t, &MeasureOptions::default());
    assert_eq!((r.records, r.classes, r.k, r.unique_records), (3, 2, 1, 1));
    let l = r.l_diversity.unwrap();
    assert_eq!(l.distinct_l, 1);
    assert_eq!(l.records_in_homogeneous_classes, 1);
}
