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

/// A key file (mode 0600) in `dir` holding the number `n`.
fn key_file(dir: &Path, n: u32) -> std::path::PathBuf {
    let key = dir.join("k");
    std::fs::write(&key, format!("{n:064x}\n")).unwrap();
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&key, perms).unwrap();
    key
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
    let key = key_file(work.path(), 7);
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
    assert_eq!(burned_files(&found).len(), 2, "{found}");
}

fn deid(key: &Path, input: &Path, out: &Path, policy: Option<&Path>) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veil"));
    cmd.args(["deid", "--json", "--key"])
        .arg(key)
        .arg("--out")
        .arg(out);
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    let o = cmd.arg(input).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn burned_files(found: &serde_json::Value) -> std::collections::BTreeSet<String> {
    found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["rule"]
                .as_str()
                .unwrap()
                .starts_with("known:burned_in_text ")
        })
        .map(|f| f["file"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn text_in_a_ct_that_declares_nothing_is_removed_and_the_verifier_finds_it_when_left() {
    // Real CT images (a 512² head CT and pydicom's 128² CT) with the patient's name, ID and
    // birth date drawn into the pixels, Burned In Annotation absent, in three native syntaxes
    // (Explicit VR LE, Implicit VR LE, RLE Lossless): nothing flags them, only the screen.
    let py = common::testdata().join("pydicom");
    let have = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !py.join("693_J2KI.dcm").is_file()
        || !have("tesseract")
        || !have("dcmcrle")
        || Command::new("python3")
            .args(["-c", "import pydicom, numpy, PIL, openjpeg"])
            .status()
            .map_or(true, |s| !s.success())
    {
        assert!(
            std::env::var("CI").is_err(),
            "test data, tesseract, dcmtk or pillow missing"
        );
        eprintln!("skipping: run scripts/test.sh's setup first");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let input = w.join("in");
    std::fs::create_dir(&input).unwrap();
    let burn = |src: &str, seed: u32, out: &Path| {
        let st = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/burn-text.py"
            ))
            .arg(py.join(src))
            .arg(out)
            .args(["--seed", &seed.to_string()])
            .args([
                "--name",
                "NGUYEN^THI",
                "--id",
                "7730021455",
                "--dob",
                "19620314",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    };
    burn("693_J2KI.dcm", 1, &input.join("ct-explicit.dcm"));
    burn("693_J2KI.dcm", 2, &w.join("implicit-src.dcm"));
    let st = Command::new("dcmconv")
        .arg("+ti")
        .arg(w.join("implicit-src.dcm"))
        .arg(input.join("ct-implicit.dcm"))
        .status()
        .unwrap();
    assert!(st.success());
    burn("693_J2KI.dcm", 3, &w.join("rle-src.dcm"));
    let st = Command::new("dcmcrle")
        .arg(w.join("rle-src.dcm"))
        .arg(input.join("ct-rle.dcm"))
        .status()
        .unwrap();
    assert!(st.success());
    burn("CT_small.dcm", 4, &input.join("ct-small.dcm"));

    let key = key_file(w, 9);

    // Default policy: the screen finds the text, OCR reads it, it is removed.
    let out = w.join("out");
    let run = deid(&key, &input, &out, None);
    assert_eq!(
        (run["written"].as_u64(), run["quarantined"].as_u64()),
        (Some(4), Some(0)),
        "{run}"
    );
    let (code, clean) = verify(&input, &out);
    assert_eq!(
        (code, clean["files_with_findings"].as_u64()),
        (0, Some(0)),
        "{clean}"
    );
    assert!(clean.get("pixels_unchecked").is_none(), "{clean}");

    // Screen off: the text stays, and the verifier's own reading (its own decoder, a local
    // contrast view, the tesseract program) finds it in the large native images; the RLE
    // output, which its decoder does not read, is listed as not read (not called clean).
    let policy = w.join("no-screen.toml");
    std::fs::write(&policy, "[pixels]\nscreen = false\n").unwrap();
    let left = w.join("left");
    let run = deid(&key, &input, &left, Some(&policy));
    assert_eq!(run["written"].as_u64(), Some(4), "{run}");
    let (code, found) = verify(&input, &left);
    assert_eq!(code, 4, "{found}");
    assert!(burned_files(&found).len() >= 2, "{found}");
    assert_eq!(
        found["pixels_unchecked"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
}
