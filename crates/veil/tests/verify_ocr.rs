//! `veil verify --ocr` reads burned-in text with the verifier's own pixel reader and the
//! tesseract program (not the pixel stage's decoder or OCR binding): the ultrasounds Veil
//! cleaned verify clean, and the same outputs with their original pixels put back are found.

mod common;

use std::path::Path;
use std::process::Command;

use dicom_dictionary_std::tags;

fn verify(against: &Path, outputs: &Path) -> (i32, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["verify", "--json", "--ocr", "--against"])
        .arg(against)
        .arg(outputs)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap_or(-1), v)
}

#[test]
fn cleaned_ultrasounds_verify_clean_and_their_original_pixels_are_found() {
    let us = common::testdata().join("deid-data/ultrasounds");
    if !us.join("GREYSCALE_IMAGE.dcm").is_file()
        || Command::new("tesseract").arg("--version").output().is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "deid-data or tesseract missing"
        );
        eprintln!("skipping: run scripts/fetch-testdata.sh and install tesseract-ocr");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for f in ["GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm"] {
        std::fs::copy(us.join(f), input.join(f)).unwrap();
    }
    let key = work.path().join("k");
    std::fs::write(&key, format!("{:064x}\n", 7)).unwrap();
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&key, perms).unwrap();
    let out = work.path().join("out");
    let st = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["deid", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out)
        .arg(&input)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));

    let (code, clean) = verify(&input, &out);
    assert_eq!(
        (code, clean["files_with_findings"].as_u64()),
        (0, Some(0)),
        "{clean}"
    );

    // The same outputs with the original, text-bearing pixels: what a pixel stage that missed
    // the text would release.
    let leak = work.path().join("leak");
    std::fs::create_dir(&leak).unwrap();
    let outputs: Vec<_> = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "dcm"))
        .map(|e| e.into_path())
        .collect();
    assert_eq!(outputs.len(), 2);
    for (i, o) in outputs.iter().enumerate() {
        let mut obj = dicom_object::open_file(o).unwrap();
        let photometric = common::text(&obj, tags::PHOTOMETRIC_INTERPRETATION);
        let source = if photometric.starts_with("MONOCHROME") {
            "GREYSCALE_IMAGE.dcm"
        } else {
            "RGB_IMAGE.dcm"
        };
        let original = dicom_object::open_file(input.join(source)).unwrap();
        obj.put(original.element(tags::PIXEL_DATA).unwrap().clone());
        obj.write_to_file(leak.join(format!("leak{i}.dcm")))
            .unwrap();
    }
    let (code, found) = verify(&input, &leak);
    assert_eq!(code, 4, "{found}");
    let files: std::collections::BTreeSet<&str> = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["rule"]
                .as_str()
                .unwrap()
                .starts_with("known:burned_in_text ")
        })
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{found}");
}
