//! Issue 13: what a new user met on a fresh machine, each through the `veil` binary as the user
//! runs it, on pydicom's and deid-data's real files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{open_file, InMemDicomObject};

fn veil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_veil"));
    c.env_remove("VEIL_KEY").env_remove("VEIL_KEY_FILE");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let o: Output = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn new_key(dir: &Path) -> PathBuf {
    let k = dir.join("site.key");
    let (code, _, err) = run(veil().args(["key", "new"]).arg(&k));
    assert_eq!(code, 0, "{err}");
    k
}

/// Every file below `root`, relative.
fn files(root: &Path) -> Vec<PathBuf> {
    veil_fuzz::walk(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// A small input folder: two real images that are released and three files that are held back
/// (an unparseable truncation, a data set without a Part 10 header, a text file).
fn mixed_input(td: &Path, dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("SMITH^JOHN")).unwrap();
    std::fs::copy(td.join("CT_small.dcm"), input.join("SMITH^JOHN/ct.dcm")).unwrap();
    std::fs::copy(td.join("MR_small.dcm"), input.join("mr.dcm")).unwrap();
    std::fs::copy(
        td.join("MR_truncated.dcm"),
        input.join("SMITH^JOHN/cut.dcm"),
    )
    .unwrap();
    std::fs::copy(td.join("no_meta.dcm"), input.join("bare.dcm")).unwrap();
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();
    input
}

/// Item 1: the quarantine never lands inside OUT, whatever the spelling of OUT; overlapping
/// input, output and quarantine paths are refused with exit 2 before anything is written.
#[test]
fn quarantine_and_run_state_never_sit_inside_the_output() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let input = mixed_input(&td, &base);
    let key = new_key(&base);
    std::fs::create_dir(base.join("x")).unwrap();
    std::os::unix::fs::symlink(base.join("released"), base.join("link")).unwrap();
    for spelling in ["released/", "released/.", "x/../released", "link/"] {
        let (code, out, err) = run(veil()
            .current_dir(&base)
            .args(["deid", "--key"])
            .arg(&key)
            .args(["--out", spelling])
            .arg(&input));
        assert_eq!(code, 3, "{spelling}: {out}{err}");
        let released = base.join("released");
        assert!(
            !released.join(".quarantine").exists(),
            "{spelling}: quarantine inside OUT"
        );
        // OUT holds outputs and nothing that names an input or a held-back file.
        for f in files(&released) {
            let s = f.to_string_lossy();
            assert!(
                s.ends_with(".dcm") && !s.starts_with(".veil"),
                "{spelling}: {s} in the released tree"
            );
        }
        let q = base.join("released.quarantine");
        let copies = files(&q)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .count();
        assert!(
            copies >= 1,
            "{spelling}: the held-back copies are beside OUT"
        );
        assert!(q.join(".veil/run-report.json").is_file());
        assert!(
            out.contains("released.quarantine"),
            "{spelling}: the summary names the quarantine: {out}"
        );
    }
    // Overlaps: OUT inside an input, an input inside OUT, the quarantine inside OUT.
    let cases: [(&str, Vec<&str>); 3] = [
        ("in/out", vec![]),
        ("released", vec!["--quarantine", "released/q"]),
        ("elsewhere", vec!["--quarantine", "in/q"]),
    ];
    for (out, extra) in cases {
        let (code, _, err) = run(veil()
            .current_dir(&base)
            .args(["deid", "--key"])
            .arg(&key)
            .args(["--out", out])
            .args(&extra)
            .arg(&input));
        assert_eq!(code, 2, "{out} {extra:?}: {err}");
        assert!(err.contains("overlap"), "{err}");
    }
    std::fs::create_dir_all(base.join("x/sub")).unwrap();
    let (code, _, err) = run(veil()
        .current_dir(&base)
        .args(["deid", "--key"])
        .arg(&key)
        .args(["--out", "x", "x/sub"]));
    assert_eq!(code, 2, "an input inside OUT: {err}");
    assert!(!base.join("in/out").exists() && !base.join("elsewhere").exists());
}

/// Item 10: every held-back input can be named, across reruns, from an encrypted list on the
/// operator's side.
#[test]
fn held_back_inputs_are_listed_by_path_across_reruns_and_encrypted_at_rest() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let input = mixed_input(&td, &base);
    let key = new_key(&base);
    let deid = || {
        run(veil()
            .args(["deid", "--json", "--key"])
            .arg(&key)
            .arg("--out")
            .arg(base.join("o"))
            .arg(&input))
    };
    let (code, first, _) = deid();
    assert_eq!(code, 3);
    let (code, second, _) = deid();
    assert_eq!(code, 3, "still held back");
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["held_back_total"], 3, "{first}");
    assert_eq!(second["quarantined"], 0, "nothing new");
    assert_eq!(
        second["held_back_total"], 3,
        "but three still held back: {second}"
    );
    let log = std::fs::read(base.join("o.quarantine/.veil/held-back.log")).unwrap();
    assert!(
        !String::from_utf8_lossy(&log).contains("SMITH"),
        "paths are encrypted at rest"
    );
    for f in files(&base.join("o.quarantine")) {
        let text = std::fs::read(base.join("o.quarantine").join(&f)).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("SMITH^JOHN"),
            "{} names the input path",
            f.display()
        );
    }
    let (code, list, err) = run(veil()
        .args(["quarantine", "list", "--key"])
        .arg(&key)
        .arg(base.join("o.quarantine")));
    assert_eq!(code, 3, "{err}");
    for name in ["SMITH^JOHN/cut.dcm", "bare.dcm", "notes.txt"] {
        assert!(
            list.lines().any(|l| l.contains(name)),
            "{name} missing: {list}"
        );
    }
    assert!(
        list.contains("unparseable") && list.contains("not_dicom"),
        "{list}"
    );
    assert!(err.contains("3 input(s) held back"), "{err}");
    // Another key cannot read it.
    let other = base.join("other.key");
    run(veil().args(["key", "new"]).arg(&other));
    let (code, _, err) = run(veil()
        .args(["quarantine", "list", "--key"])
        .arg(&other)
        .arg(base.join("o.quarantine")));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("with this key"), "{err}");
    // Fixed inputs leave the list.
    std::fs::remove_file(input.join("notes.txt")).unwrap();
    std::fs::copy(td.join("rtplan.dcm"), input.join("bare.dcm")).unwrap();
    deid();
    let (_, list, _) = run(veil()
        .args(["quarantine", "list", "--json", "--key"])
        .arg(&key)
        .arg(base.join("o.quarantine")));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let inputs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["input"].as_str().unwrap())
        .collect();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert!(inputs.iter().any(|i| i.ends_with("SMITH^JOHN/cut.dcm")));
    assert!(
        inputs.iter().any(|i| i.ends_with("notes.txt")),
        "removed inputs stay listed"
    );
}

/// Item 2: a recipient's tree holds nothing about patients who were not released; the operator's
/// report (beside the quarantine) has the exclusions.
#[test]
fn recipients_trees_say_nothing_about_excluded_patients() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::copy(td.join("CT_small.dcm"), dir.join("in/ct.dcm")).unwrap();
    std::fs::copy(td.join("MR_small.dcm"), dir.join("in/mr.dcm")).unwrap();
    let key = new_key(&dir);
    let registry = |args: &[&str]| {
        run(veil()
            .current_dir(&dir)
            .env("VEIL_DB", dir.join("v.db"))
            .env("VEIL_KEY_FILE", &key)
            .args(args))
    };
    // 1CT1 (CT_small) refuses internal research; 4MR1 (MR_small) grants it.
    for (patient, state) in [("1CT1", "refused"), ("4MR1", "granted")] {
        let (code, _, err) = registry(&[
            "consent",
            "set",
            patient,
            "--purpose",
            "internal-research",
            "--state",
            state,
        ]);
        assert_eq!(code, 0, "{err}");
    }
    for r in ["lab1", "lab2"] {
        assert_eq!(
            registry(&["recipient", "add", r, "--purpose", "internal-research"]).0,
            0
        );
        let (code, out, err) = registry(&[
            "release",
            "in",
            "--recipient",
            r,
            "--purpose",
            "internal-research",
            "--out",
            r,
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("1 excluded"), "{out}");
        // The recipient's tree: its one output and a report about what was released only.
        for f in files(&dir.join(r)) {
            let bytes = std::fs::read(dir.join(r).join(&f)).unwrap();
            let text = String::from_utf8_lossy(&bytes).to_lowercase();
            for word in ["exclu", "refus", "withdraw", "patient_ref", "1ct1"] {
                assert!(!text.contains(word), "{r}/{}: mentions {word}", f.display());
            }
        }
        let report = std::fs::read_dir(dir.join(format!("{r}.quarantine/.veil")))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("release-"))
            .expect("the operator's release report");
        let report = std::fs::read_to_string(report.path()).unwrap();
        assert!(
            report.contains("excluded_patients") && report.contains("refused"),
            "{report}"
        );
    }
}

/// Item 3: the demo script installs what the demo needs (Tesseract and its English model, for
/// the demo's ultrasound) through the same setup script the tests use.
#[test]
fn the_demo_script_installs_tesseract_for_the_demos_ultrasound() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let demo = std::fs::read_to_string(root.join("scripts/demo.sh")).unwrap();
    assert!(
        demo.lines().any(|l| l
            .trim_start()
            .starts_with("source scripts/setup.d/pixels.sh")),
        "demo.sh must run the pixel stage's setup:\n{demo}"
    );
    let setup = std::fs::read_to_string(root.join("scripts/setup.d/pixels.sh")).unwrap();
    for pkg in ["tesseract-ocr", "tesseract-ocr-eng"] {
        assert!(setup.contains(&format!("+=({pkg})")), "{pkg} not installed");
    }
    // And with it, the demo releases its ultrasound (nothing held back).
    let work = tempfile::tempdir().unwrap();
    let (code, out, err) = run(veil().arg("demo").arg("--dir").arg(work.path().join("d")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("quarantined        0"), "{out}");
    // The network stage: the export through a gateway to a receiving node, nothing planted left.
    assert!(
        out.contains("DICOM network:") && out.contains("0 still waiting; 0 planted values found"),
        "{out}"
    );
}

/// Item 4: every form of `veil verify` that its usage line and help show works.
#[test]
fn verify_accepts_the_forms_its_usage_line_shows() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::copy(td.join("CT_small.dcm"), dir.join("in/ct.dcm")).unwrap();
    let key = new_key(dir);
    let (code, _, err) = run(veil()
        .current_dir(dir)
        .args(["deid", "--key"])
        .arg(&key)
        .args(["--out", "released", "in"]));
    assert_eq!(code, 0, "{err}");
    let (_, help, _) = run(veil().args(["verify", "--help"]));
    let usage = help
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap()
        .to_string();
    assert_eq!(usage, "Usage: veil verify [OPTIONS] <OUTPUT>...");
    for args in [
        vec!["--against", "in", "released"],
        vec!["released", "--against", "in"],
        vec!["--against", "in", "--against", "in/ct.dcm", "released"],
        vec!["released"],
    ] {
        let (code, out, err) = run(veil().current_dir(dir).arg("verify").args(&args));
        assert_eq!(code, 0, "veil verify {args:?}: {out}{err}");
    }
}

fn put_text(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Item 5: ordinary words and filler runs are not identifiers; another patient's name still is.
#[test]
fn verify_ignores_vocabulary_and_fillers_but_finds_other_patients_names() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    // Patient A: born 1111-11-11, and a removed descriptive attribute saying ABDOMEN.
    let mut a = open_file(td.join("CT_small.dcm")).unwrap();
    put_text(&mut a, tags::PATIENT_BIRTH_DATE, VR::DA, "11111111");
    put_text(&mut a, tags::DEVICE_DESCRIPTION, VR::LO, "ABDOMEN");
    a.write_to_file(dir.join("in/a.dcm")).unwrap();
    // Patient B: a study called ABDOMEN.
    let mut b = open_file(td.join("MR_small.dcm")).unwrap();
    put_text(&mut b, tags::STUDY_DESCRIPTION, VR::LO, "ABDOMEN");
    b.write_to_file(dir.join("in/b.dcm")).unwrap();
    let key = new_key(dir);
    let (code, _, err) = run(veil()
        .current_dir(dir)
        .args(["deid", "--key"])
        .arg(&key)
        .args(["--out", "released", "in"]));
    assert_eq!(code, 0, "{err}");
    let outputs: Vec<PathBuf> = veil_fuzz::walk(&dir.join("released"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    assert_eq!(outputs.len(), 2);
    // A blanked region of A's pixels that reads "11111111" (a filler run, as in a blanked frame).
    let out_a = outputs
        .iter()
        .find(|p| {
            open_file(p)
                .unwrap()
                .element(tags::MODALITY)
                .unwrap()
                .to_str()
                .unwrap()
                == "CT"
        })
        .unwrap()
        .clone();
    let mut oa = open_file(&out_a).unwrap();
    let mut px = oa
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec();
    px[1000..1016].copy_from_slice(b"\x00\x00\x00\x0011111111\x00\x00\x00\x00");
    oa.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(px),
    ));
    oa.write_to_file(&out_a).unwrap();
    let (code, out, err) =
        run(veil()
            .current_dir(dir)
            .args(["verify", "released", "--against", "in"]));
    assert_eq!(code, 0, "filler and vocabulary are no leak: {out}{err}");
    // Patient B's name in A's output is a leak.
    let b_name = b
        .element(tags::PATIENT_NAME)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut oa = open_file(&out_a).unwrap();
    put_text(
        &mut oa,
        tags::IMAGE_COMMENTS,
        VR::LT,
        &format!("see {b_name}"),
    );
    oa.write_to_file(&out_a).unwrap();
    let (code, out, _) =
        run(veil()
            .current_dir(dir)
            .args(["verify", "released", "--against", "in"]));
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("ImageComments") || out.contains("(0020,4000)"),
        "{out}"
    );
}

/// Items 6 and 7: on deid-data's ultrasounds, text regions only are blanked (no box over the
/// anatomy of the echo cine), and a cleaned output whose only region is a template banner scans
/// clean; the summary agrees with the per-file lines.
#[test]
fn pixels_blank_text_not_anatomy_and_cleaned_outputs_scan_clean() {
    let dd = common::testdata().join("deid-data/ultrasounds");
    if !dd.join("ultrasound-multiframe.dcm").is_file() {
        assert!(std::env::var("CI").is_err(), "deid-data missing");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cines = tmp.path().join("cines");
    std::fs::create_dir_all(&cines).unwrap();
    std::fs::copy(dd.join("ultrasound-multiframe.dcm"), cines.join("echo.dcm")).unwrap();
    let st = Command::new("unzip")
        .args(["-q", "-o"])
        .arg(dd.join("GREYSCALE_CINE.zip"))
        .arg("-d")
        .arg(&cines)
        .status()
        .unwrap();
    assert!(st.success());
    // The image area of each cine (measured on its first frame): no burned-in text lies there.
    let anatomy: [(&str, [u32; 4]); 2] = [
        ("echo.dcm", [120, 100, 580, 440]),
        ("GREYSCALE_CINE.dcm", [100, 100, 600, 435]),
    ];
    let (code, out, err) = run(veil().args(["pixels", "scan", "--json"]).arg(&cines));
    assert_eq!(code, 4, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    for f in doc["files"].as_array().unwrap() {
        let name = Path::new(f["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let Some((_, [x, y, w, h])) = anatomy.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let mut blanked = 0u64;
        for r in f["analysis"]["redaction"].as_array().unwrap() {
            let (rx, ry) = (
                r["x"].as_u64().unwrap() as u32,
                r["y"].as_u64().unwrap() as u32,
            );
            let (rw, rh) = (
                r["w"].as_u64().unwrap() as u32,
                r["h"].as_u64().unwrap() as u32,
            );
            let ix = (rx + rw).min(x + w).saturating_sub(rx.max(*x));
            let iy = (ry + rh).min(y + h).saturating_sub(ry.max(*y));
            blanked += ix as u64 * iy as u64;
        }
        let share = blanked as f64 / (*w as f64 * *h as f64);
        eprintln!(
            "{name}: false-redacted area {:.2}% of the image area",
            share * 100.0
        );
        assert!(
            share < 0.005,
            "{name}: {:.2}% of the anatomy blanked",
            share * 100.0
        );
    }
    // Clean, then scan the outputs: the echo cine's banner (a template region) is blank now.
    let key = new_key(tmp.path());
    let (code, _, err) = run(veil()
        .args(["deid", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg(cines.join("echo.dcm")));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(veil().args(["pixels", "scan"]).arg(tmp.path().join("out")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 with text to remove"), "{out}");
    assert!(out.contains("0 to remove"), "{out}");
}

/// Item 8: every output carries the pseudonyms of the folder it is filed under, also when the
/// source had no Patient ID or Patient's Name.
#[test]
fn outputs_without_patient_id_get_the_pseudonym_they_are_filed_under() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let mut a = open_file(td.join("CT_small.dcm")).unwrap();
    a.remove_element(tags::PATIENT_ID);
    a.write_to_file(dir.join("in/no_id.dcm")).unwrap();
    let mut b = open_file(td.join("MR_small.dcm")).unwrap();
    b.remove_element(tags::PATIENT_ID);
    b.remove_element(tags::PATIENT_NAME);
    b.write_to_file(dir.join("in/no_id_no_name.dcm")).unwrap();
    let key = new_key(dir);
    let (code, _, err) = run(veil()
        .current_dir(dir)
        .args(["deid", "--key"])
        .arg(&key)
        .args(["--out", "o", "in"]));
    assert_eq!(code, 0, "{err}");
    let outputs: Vec<PathBuf> = files(&dir.join("o"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    assert_eq!(outputs.len(), 2);
    for rel in outputs {
        let folder = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let o = open_file(dir.join("o").join(&rel)).unwrap();
        let id = o
            .element(tags::PATIENT_ID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_string();
        let name = o
            .element(tags::PATIENT_NAME)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .to_string();
        assert_eq!(id, folder, "{}", rel.display());
        assert_eq!(name, folder, "the default name template is {{id}}");
    }
}

fn method_hash(out: &Path) -> String {
    let f = veil_fuzz::walk(out)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "dcm"))
        .unwrap();
    let o = open_file(f).unwrap();
    let m = o
        .element(tags::DEIDENTIFICATION_METHOD)
        .unwrap()
        .to_multi_str()
        .unwrap()
        .join("\\");
    m.split("policy sha256:")
        .nth(1)
        .expect("a policy hash in De-identification Method")
        .chars()
        .take(16)
        .collect()
}

/// Item 9: the policy hash written into outputs identifies the effective rules.
#[test]
fn the_policy_hash_identifies_the_rules_applied() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::copy(td.join("CT_small.dcm"), dir.join("in/ct.dcm")).unwrap();
    let key = new_key(dir);
    // The default written out, with comments and another layout; and a different policy.
    std::fs::write(
        dir.join("same.toml"),
        "# the default, spelled out\n[profile]\noptions = [ \"clean_descriptors\", \"retain_patient_characteristics\",\n  \"retain_longitudinal_modified_dates\" ]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("other.toml"),
        "[profile]\noptions = [\"clean_descriptors\"]\n",
    )
    .unwrap();
    let mut hashes = Vec::new();
    for (out, policy) in [
        ("d", None),
        ("s", Some("same.toml")),
        ("o", Some("other.toml")),
    ] {
        let mut c = veil();
        c.current_dir(dir)
            .args(["deid", "--key"])
            .arg(&key)
            .args(["--out", out]);
        if let Some(p) = policy {
            c.args(["--policy", p]);
        }
        let (code, _, err) = run(c.arg("in"));
        assert_eq!(code, 0, "{err}");
        hashes.push(method_hash(&dir.join(out)));
    }
    assert_ne!(hashes[0], "e3b0c44298fc1c14", "not the hash of empty text");
    assert_eq!(hashes[0], hashes[1], "the same rules, the same hash");
    assert_ne!(hashes[0], hashes[2], "other rules, another hash");
    let (_, shown, _) = run(veil().args(["policy", "show"]));
    assert!(
        shown.contains(&hashes[0]),
        "policy show gives the same hash"
    );
}

/// Item 11: the key can be named by VEIL_KEY_FILE; VEIL_KEY holding a path says what it holds.
#[test]
fn key_from_the_environment_by_file_or_by_value() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = new_key(dir);
    let deid = |env: (&str, &str), out: &str| {
        run(veil()
            .current_dir(dir)
            .env(env.0, env.1)
            .args(["deid", "--out", out])
            .arg(td.join("CT_small.dcm")))
    };
    let path = key.display().to_string();
    let (code, _, err) = deid(("VEIL_KEY_FILE", &path), "a");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = deid(("VEIL_KEY", &path), "b");
    assert_eq!(code, 2);
    assert!(
        err.contains("VEIL_KEY holds the key itself") && err.contains("VEIL_KEY_FILE"),
        "{err}"
    );
    let hex = std::fs::read_to_string(&key).unwrap();
    let (code, _, err) = deid(("VEIL_KEY", hex.trim()), "c");
    assert_eq!(code, 0, "{err}");
    let (_, help, _) = run(veil().args(["deid", "--help"]));
    assert!(help.contains("VEIL_KEY_FILE"), "{help}");
}

/// Item 12: logs written to a file or pipe carry no terminal colour codes.
#[test]
fn redirected_logs_have_no_colour_codes() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let key = new_key(tmp.path());
    let (_, _, err) = run(veil()
        .args(["-vv", "deid", "--key"])
        .arg(&key)
        .arg("--out")
        .arg(tmp.path().join("o"))
        .arg(td.join("JPEG2000.dcm"))
        .arg(td.join("MR_truncated.dcm")));
    assert!(!err.is_empty(), "-vv logs something");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a redirected log: {err:?}"
    );
}

/// Item 14: conflicting duplicates leave no empty folders; policy errors name the field and come
/// in line order.
#[test]
fn conflicts_leave_no_empty_folders_and_policy_errors_read_in_order() {
    let Some(td) = common::pydicom() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    // The same instance twice, with different content.
    std::fs::copy(td.join("CT_small.dcm"), dir.join("in/a.dcm")).unwrap();
    let mut b = open_file(td.join("CT_small.dcm")).unwrap();
    put_text(&mut b, tags::SERIES_DESCRIPTION, VR::LO, "another version");
    b.write_to_file(dir.join("in/b.dcm")).unwrap();
    let key = new_key(dir);
    let (code, _, err) = run(veil()
        .current_dir(dir)
        .args(["deid", "--key"])
        .arg(&key)
        .args(["--out", "o", "in"]));
    assert_eq!(code, 3, "{err}");
    let entries: Vec<_> = std::fs::read_dir(dir.join("o"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".veil")
        .collect();
    assert!(entries.is_empty(), "left behind: {entries:?}");

    std::fs::write(
        dir.join("p.toml"),
        "[[override]]\nkeyword = \"Nope\"\naction = \"X\"\n\n[profile]\noptions = [\"bogus\"]\n",
    )
    .unwrap();
    let (code, _, err) = run(veil().current_dir(dir).args(["policy", "check", "p.toml"]));
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("line ")).collect();
    assert!(
        lines[0].contains("line 2") && lines[1].contains("line 6"),
        "{err}"
    );
    std::fs::write(
        dir.join("q.toml"),
        "[dates]\nshift_min_days = -9\nshfit_max_days = -1\n",
    )
    .unwrap();
    let (code, _, err) = run(veil().current_dir(dir).args(["policy", "check", "q.toml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("line 3") && err.contains("dates.shfit_max_days"),
        "{err}"
    );
}

/// Item 12: on a terminal (a pseudo-terminal from `script`), `deid` counts progress in bytes, so
/// its estimate holds when a few large cines sit among small files, and `risk --target-k` says
/// what it is doing while it searches.
#[test]
fn progress_on_a_terminal_counts_bytes_and_risk_search_speaks() {
    let Some(td) = common::pydicom() else { return };
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "script (util-linux) is not installed"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("in")).unwrap();
    for f in ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"] {
        std::fs::copy(td.join(f), dir.join("in").join(f)).unwrap();
    }
    let key = new_key(dir);
    let bin = env!("CARGO_BIN_EXE_veil");
    let on_tty = |cmd: String| {
        let o = Command::new("script")
            .current_dir(dir)
            .env_remove("VEIL_KEY")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let deid = on_tty(format!("{bin} deid --key {} --out o in", key.display()));
    assert!(
        deid.contains("KiB/") && deid.contains("/3 files"),
        "{deid:?}"
    );
    let risk = on_tty(format!("{bin} risk o --target-k 2"));
    assert!(
        risk.contains("searching the least generalisation with k=2"),
        "{risk:?}"
    );
}
