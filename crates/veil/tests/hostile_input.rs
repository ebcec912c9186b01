//! Hostile input (issue 8): structured mutations of real DICOM files (veil-fuzz) go through the
//! real `veil deid` binary, verifier included. Every input must end written (re-parsing, with no
//! identifying value of its source), as a duplicate, quarantined with a JSON reason, or rejected;
//! no panic, nothing half-written, inputs untouched. Plus regression tests for what fuzzing found.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use veil_fuzz::mutate::{mutations, Rng};

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

fn testdata() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    if d.join("pydicom/CT_small.dcm").is_file() {
        return Some(d);
    }
    assert!(
        std::env::var("CI").is_err(),
        "test data missing: run scripts/fetch-testdata.sh"
    );
    eprintln!("skipping: run scripts/fetch-testdata.sh");
    None
}

fn key(dir: &Path) -> PathBuf {
    let k = dir.join("key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&k)
        .status()
        .unwrap()
        .success());
    k
}

#[test]
fn mutated_real_files_end_written_quarantined_or_rejected() {
    let Some(td) = testdata() else { return };
    let seeds = [
        "pydicom/CT_small.dcm",
        "pydicom/MR_small.dcm",
        "pydicom/rtplan.dcm",
        "pydicom/JPEG2000.dcm",
        "pydicom/ExplVR_BigEnd.dcm",
        "pydicom/image_dfl.dcm",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = Rng::new(8);
    let mut planted: Vec<Vec<u8>> = Vec::new();
    let mut n = 0usize;
    for s in seeds {
        let Ok(bytes) = std::fs::read(td.join(s)) else {
            continue;
        };
        planted.extend(veil_fuzz::planted_values(&bytes));
        for case in mutations(&bytes, &mut rng, false, 10) {
            std::fs::write(input.join(format!("{n:05}.dcm")), &case.bytes).unwrap();
            n += 1;
        }
    }
    // A deflate bomb: a small file whose data set inflates to 256 MB.
    std::fs::write(
        input.join("bomb.dcm"),
        veil_fuzz::mutate::deflate_bomb(256 << 20),
    )
    .unwrap();
    n += 1;
    planted.sort();
    planted.dedup();
    let before: Vec<(PathBuf, Vec<u8>)> = veil_fuzz::walk(&input)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();

    let k = key(tmp.path());
    let out = tmp.path().join("out");
    let q = tmp.path().join("q");
    let started = Instant::now();
    let o = veil()
        .arg("deid")
        .arg("--key")
        .arg(&k)
        .arg("--out")
        .arg(&out)
        .arg("--quarantine")
        .arg(&q)
        .arg("--json")
        .arg(&input)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "a panic escaped: {stderr}");
    let code = o.status.code().expect("killed by a signal");
    assert!(code == 0 || code == 3, "exit {code}: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    let get = |k: &str| report[k].as_u64().unwrap_or(0) as usize;
    let accounted = get("written")
        + get("already_in_place")
        + get("duplicates")
        + get("quarantined")
        + get("rejected");
    eprintln!(
        "{n} fuzz cases in {took:?}: written {} duplicates {} quarantined {} rejected {}",
        get("written"),
        get("duplicates"),
        get("quarantined"),
        get("rejected")
    );
    assert_eq!(accounted, n, "every input must be accounted for: {report}");

    // Outputs re-parse and carry no identifying value of any seed.
    let outputs: Vec<PathBuf> = veil_fuzz::walk(&out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    assert_eq!(outputs.len(), get("written"));
    for p in &outputs {
        dicom_object::open_file(p)
            .unwrap_or_else(|e| panic!("{} does not re-parse: {e}", p.display()));
        let data = std::fs::read(p).unwrap();
        for v in &planted {
            assert!(
                !data.windows(v.len()).any(|w| w.eq_ignore_ascii_case(v)),
                "{} keeps the identifying value {:?} of a seed",
                p.display(),
                String::from_utf8_lossy(v)
            );
        }
    }
    // Each quarantined input has its JSON reason; nothing half-written outside .veil/tmp.
    let reasons = veil_fuzz::walk(&q)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .count();
    assert_eq!(reasons, get("quarantined"));
    for p in veil_fuzz::walk(&out) {
        let s = p.to_string_lossy();
        assert!(
            !(s.ends_with(".part") && !s.contains("/.veil/tmp/")),
            "partial file {s}"
        );
    }
    for (p, b) in before {
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b,
            "input {} modified",
            p.display()
        );
    }
}

/// Found by fuzzing: an unknown VR (bytes 00 00) on a private element of CT_small.dcm made the
/// parser read a 4-byte length the framing pre-check read as 2 bytes; it then reserved 1.9 GB and
/// spent 14 s on one 39 KB file. Now the pre-check mirrors the parser and quarantines it at once.
#[test]
fn unknown_vr_hiding_a_huge_length_is_quarantined_quickly() {
    let Some(td) = testdata() else { return };
    let bytes = std::fs::read(td.join("pydicom/CT_small.dcm")).unwrap();
    let el = veil_fuzz::mutate::elements(&bytes)
        .into_iter()
        .find(|e| e.tag == (0x0009, 0x1004))
        .expect("CT_small has (0009,1004)");
    let mut v = bytes.clone();
    v[el.start + 4..el.start + 6].copy_from_slice(&[0, 0]);
    let tmp = tempfile::tempdir().unwrap();
    let r = veil_fuzz::run_case("unknown-vr", v, &[], tmp.path(), Duration::from_secs(60));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.reason.as_deref(), Some("unparseable"));
    assert!(r.elapsed < Duration::from_secs(5), "took {:?}", r.elapsed);
    if let Some(kb) = r.peak_rss_kb {
        assert!(kb < 500_000, "peak RSS {kb} kB");
    }
}

/// A deflate bomb (1 GB inflated from a ~1 MB file) must not be inflated into memory unbounded.
#[test]
#[ignore = "needs fix: preflight passes deflated data sets through unchecked (crates/veil-pipeline/src/preflight.rs needs flate2 in veil-pipeline's Cargo.toml); see issue 8 report"]
fn deflate_bomb_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = veil_fuzz::mutate::deflate_bomb(1 << 30);
    let r = veil_fuzz::run_case(
        "bomb",
        bomb,
        &[b"BOMB^PLANTED".to_vec()],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(
        r.peak_rss_kb.unwrap_or(0) < 600_000,
        "peak RSS {:?} kB",
        r.peak_rss_kb
    );
}
