//! Crash safety (issue 8): `veil deid` is killed with SIGKILL at many points and resumed; the
//! final tree must be byte-identical to an uninterrupted run with the same key, with no partial
//! file outside .veil/tmp and no extra file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    veil_fuzz::walk(root)
        .into_iter()
        .filter(|p| !p.strip_prefix(root).unwrap().starts_with(".veil"))
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn deid(key: &Path, out: &Path, q: &Path, input: &Path) -> Command {
    let mut c = veil();
    c.arg("deid")
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .arg("--quarantine")
        .arg(q)
        .arg("--json")
        .arg(input);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

#[test]
fn sigkill_at_random_points_then_resume_gives_the_uninterrupted_tree() {
    let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    if !td.join("pydicom/CT_small.dcm").is_file() {
        assert!(
            std::env::var("CI").is_err(),
            "test data missing: run scripts/fetch-testdata.sh"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let k = tmp.path().join("key");
    assert!(veil()
        .args(["key", "new"])
        .arg(&k)
        .status()
        .unwrap()
        .success());

    let reference = tmp.path().join("ref");
    let rq = tmp.path().join("ref.q");
    let code = deid(&k, &reference, &rq, &td).status().unwrap().code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "reference run exit {code:?}"
    );
    let want = tree(&reference);
    let want_q: Vec<PathBuf> = tree(&rq).into_keys().collect();
    assert!(!want.is_empty());

    let out = tmp.path().join("out");
    let q = tmp.path().join("out.q");
    let mut rng = veil_fuzz::mutate::Rng::new(0x6b696c6c);
    let kills = 32;
    let mut killed_mid_run = 0;
    for _ in 0..kills {
        let mut child = deid(&k, &out, &q, &td).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(5 + rng.below(400) as u64));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        for p in veil_fuzz::walk(&out) {
            let s = p.to_string_lossy();
            assert!(
                !(s.ends_with(".part") && !s.contains("/.veil/tmp/")),
                "partial file {s}"
            );
        }
    }
    eprintln!("{kills} kill points, {killed_mid_run} hit a running process");
    assert!(
        killed_mid_run >= kills / 2,
        "too few kills landed mid-run ({killed_mid_run})"
    );
    let code = deid(&k, &out, &q, &td).status().unwrap().code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "resumed run exit {code:?}"
    );
    let got = tree(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "different file sets"
    );
    for (p, b) in &want {
        assert!(
            got[p] == *b,
            "{} differs from the uninterrupted run",
            p.display()
        );
    }
    let got_q: Vec<PathBuf> = tree(&q).into_keys().collect();
    assert_eq!(got_q, want_q, "quarantine differs");
}
