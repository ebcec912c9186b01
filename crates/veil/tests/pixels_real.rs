//! Burned-in text on real images: the deid-data ultrasounds (single-frame grey and RGB, a
//! 30-frame RGB cine, and the two cines shipped as zips). Tesseract reads them before; after
//! `veil deid` it must find none of the identifier tokens it found before (reported per image),
//! the outputs say Burned In Annotation NO, pydicom and dcmdump read them, and dciodvfy reports
//! no more errors than for the source.

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_object::OpenFileOptions;
use veil_pixels::{identifiers::normalize, Cleaner};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/deid-data/ultrasounds")
}

fn veil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .output()
        .expect("run veil")
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Identifier tokens Tesseract reads in a file (words matching the file's own identifiers).
fn tokens_read(cleaner: &Cleaner, path: &Path) -> (Vec<String>, usize, Vec<String>) {
    let file = OpenFileOptions::new().open_file(path).expect("open");
    let (_, a) = cleaner.scan(&file, true, true).expect("scan");
    let all: Vec<String> = a
        .words
        .iter()
        .filter_map(|w| w.text.as_deref())
        .map(normalize)
        .filter(|t| t.len() >= 3)
        .collect();
    let ids: Vec<String> = a
        .words
        .iter()
        .filter(|w| w.matches.is_some())
        .filter_map(|w| w.text.as_deref())
        .map(normalize)
        .filter(|t| t.len() >= 3)
        .collect();
    (ids, a.frames_ocr.len(), all)
}

#[test]
fn deid_removes_every_identifier_tesseract_reads_in_the_ultrasounds() {
    let dir = testdata();
    if !dir.join("GREYSCALE_IMAGE.dcm").exists() {
        assert!(!ci(), "deid-data is missing: run scripts/fetch-testdata.sh");
        eprintln!("skipping: deid-data missing");
        return;
    }
    if let Err(e) = veil_pixels::ocr::available() {
        assert!(!ci(), "{e}");
        eprintln!("skipping: {e}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in [
        "GREYSCALE_IMAGE.dcm",
        "RGB_IMAGE.dcm",
        "ultrasound-multiframe.dcm",
    ] {
        std::fs::copy(dir.join(f), input.join(f)).unwrap();
    }
    for z in ["GREYSCALE_CINE.zip", "RGB_CINE.zip"] {
        let st = Command::new("unzip")
            .args(["-q", "-o"])
            .arg(dir.join(z))
            .arg("-d")
            .arg(&input)
            .status();
        assert!(
            st.map(|s| s.success()).unwrap_or(false),
            "cannot unzip {z} (install unzip)"
        );
    }
    let cleaner = Cleaner::default();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let before: Vec<(String, Vec<String>)> = names
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                tokens_read(&cleaner, p).0,
            )
        })
        .collect();

    let key = tmp.path().join("k");
    assert!(veil(&["key", "new", key.to_str().unwrap()])
        .status
        .success());
    let out = tmp.path().join("out");
    let q = tmp.path().join("q");
    let o = veil(&[
        "deid",
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quarantine",
        q.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "veil deid: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    let outputs: Vec<PathBuf> = walk(&out);
    assert_eq!(outputs.len(), names.len(), "one output per input");
    // Pair outputs with their sources by image geometry (unique among these five).
    let sources: Vec<Source> = names
        .iter()
        .map(|p| {
            let f = OpenFileOptions::new().open_file(p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                geometry(&f),
                veil_pixels::Identifiers::of(&f),
            )
        })
        .collect();
    // Every identifier token read in any input, searched for in every output.
    let all_tokens: Vec<&String> = before.iter().flat_map(|(_, t)| t).collect();
    let mut lines = Vec::new();
    let mut leaks = 0;
    for o in &outputs {
        let file = OpenFileOptions::new().open_file(o).expect("output opens");
        let bia = file
            .element(dicom_dictionary_std::tags::BURNED_IN_ANNOTATION)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()));
        assert_eq!(
            bia.as_deref(),
            Some("NO"),
            "Burned In Annotation must be NO after cleaning"
        );
        let g = geometry(&file);
        let (name, _, ids) = sources
            .iter()
            .find(|(_, sg, _)| *sg == g)
            .expect("output pairs with a source");
        let surviving = veil_pixels::surviving_identifiers(ids, &file).expect("OCR output");
        assert!(
            surviving.is_empty(),
            "{name}: identifiers of the source survive: {surviving:?}"
        );
        // No new dciodvfy errors (dicom3tools) compared with the source.
        if let (Some(before), Some(after)) =
            (dciodvfy_errors(&input.join(name)), dciodvfy_errors(o))
        {
            assert!(
                after <= before,
                "{name}: dciodvfy errors rose from {before} to {after}"
            );
        } else {
            assert!(!ci(), "dciodvfy (dicom3tools) is not installed");
        }
        let (_, frames, words) = tokens_read(&cleaner, o);
        let found: Vec<&&String> = all_tokens
            .iter()
            .filter(|t| {
                words
                    .iter()
                    .any(|w| w.contains(t.as_str()) || (w.len() >= 4 && t.contains(w.as_str())))
            })
            .collect();
        leaks += found.len();
        lines.push((name.clone(), frames, words.len(), found.len()));
        // Readable by dcmdump and pydicom.
        let d = Command::new("dcmdump").arg("-q").arg(o).output();
        match d {
            Ok(d) => assert!(d.status.success(), "dcmdump cannot read {}", o.display()),
            Err(_) => assert!(!ci(), "dcmdump missing"),
        }
        let p = Command::new("python3")
            .args(["-c", "import sys,pydicom; d=pydicom.dcmread(sys.argv[1]); d.pixel_array; print(d.BurnedInAnnotation)"])
            .arg(o)
            .output();
        match p {
            Ok(p) if p.status.success() => {}
            Ok(p) => {
                let err = String::from_utf8_lossy(&p.stderr);
                assert!(
                    !err.contains("Error") || err.contains("No module named"),
                    "pydicom cannot read {}: {err}",
                    o.display()
                )
            }
            Err(_) => assert!(!ci(), "python3 missing"),
        }
    }
    for (name, toks) in &before {
        println!("{name}: {} identifier token(s) read before", toks.len());
    }
    for (name, frames, words, found) in &lines {
        println!("{name} after deid: {frames} frame(s) OCR'd, {words} word(s) read, {found} identifier token(s) surviving");
    }
    assert!(
        before.iter().map(|(_, t)| t.len()).sum::<usize>() >= 5,
        "Tesseract should read identifiers in these images"
    );
    assert_eq!(leaks, 0, "identifier tokens survived the pixel stage");
}

/// A source image: file name, geometry, its identifiers.
type Source = (String, (u32, u32, u32, u32), veil_pixels::Identifiers);

fn dciodvfy_errors(path: &Path) -> Option<usize> {
    let o = Command::new("dciodvfy").arg(path).output().ok()?;
    let all = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    Some(all.lines().filter(|l| l.starts_with("Error")).count())
}

fn geometry(f: &dicom_object::DefaultDicomObject) -> (u32, u32, u32, u32) {
    use dicom_dictionary_std::tags;
    let n = |t| {
        f.element(t)
            .ok()
            .and_then(|e| e.to_int::<u32>().ok())
            .unwrap_or(1)
    };
    (
        n(tags::ROWS),
        n(tags::COLUMNS),
        n(tags::NUMBER_OF_FRAMES),
        n(tags::SAMPLES_PER_PIXEL),
    )
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "dcm") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
