//! Hostile input (issue 8): structured mutations of real DICOM files (veil-fuzz) go through the
//! real `veil deid` binary, verifier included. Every input must end written (re-parsing, with no
//! identifying value of its source), as a duplicate, quarantined with a JSON reason, or rejected;
//! no panic, nothing half-written, inputs untouched. Plus regression tests for what fuzzing found.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use veil_fuzz::mutate::{mutations, Rng};

fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
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
    let Some(td) = common::pydicom().map(|_| common::testdata()) else {
        return;
    };
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
    assert!(
        report["reasons"]["internal_error"].is_null(),
        "a panic was caught inside the pipeline: {report}"
    );

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
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.strip_prefix(&q).unwrap().starts_with(".veil")
        })
        .count();
    assert_eq!(reasons, get("quarantined"));
    for p in veil_fuzz::walk(&out) {
        let s = p.to_string_lossy();
        assert!(
            !s.ends_with(".part") || s.contains("/.veil/tmp/"),
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
    let Some(td) = common::pydicom().map(|_| common::testdata()) else {
        return;
    };
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

/// A deflate bomb (1 GB inflated from a ~1 MB file) must not be inflated into memory unbounded:
/// found by fuzzing (1.06 GB of memory and 5 s before the fix); now the pre-check inflates at most
/// 256 MiB and quarantines it.
#[test]
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
    assert_eq!(r.reason.as_deref(), Some("unparseable"));
    assert!(
        r.peak_rss_kb.unwrap_or(0) < 600_000,
        "peak RSS {:?} kB",
        r.peak_rss_kb
    );
}

fn seed(name: &str) -> Option<Vec<u8>> {
    let td = common::pydicom().map(|_| common::testdata())?;
    Some(std::fs::read(td.join("pydicom").join(name)).unwrap())
}

fn element(bytes: &[u8], tag: (u16, u16)) -> veil_fuzz::mutate::Element {
    veil_fuzz::mutate::elements(bytes)
        .into_iter()
        .find(|e| e.tag == tag)
        .unwrap_or_else(|| panic!("no ({:04X},{:04X})", tag.0, tag.1))
}

/// Runs one case through the library pipeline and returns its result; the case must keep the
/// fuzz property (written and re-parsing without `planted`, or held back with a reason; no
/// panic, caught or not).
fn case(label: &str, bytes: Vec<u8>, planted: &[&[u8]]) -> veil_fuzz::CaseResult {
    let tmp = tempfile::tempdir().unwrap();
    let planted: Vec<Vec<u8>> = planted.iter().map(|p| p.to_vec()).collect();
    let r = veil_fuzz::run_case(label, bytes, &planted, tmp.path(), Duration::from_secs(60));
    assert!(r.violations.is_empty(), "{label}: {:?}", r.violations);
    r
}

/// Found by fuzzing: DICOMDIR-bigEnd.dcm with its (0002,0010) duplicated. The parser ends the
/// meta group at its declared length and reads the copy as a big-endian data set element with a
/// 3.7 GB length; the pre-check skipped every group-0002 element and let it through (3.7 GB of
/// memory, 17 s). The pre-check now reads the meta group as the parser does.
#[test]
fn a_duplicated_meta_element_is_quarantined_quickly() {
    let Some(bytes) = seed("dicomdirtests/DICOMDIR-bigEnd") else {
        return;
    };
    let el = element(&bytes, (0x0002, 0x0010));
    let end = el.value_at + el.len as usize;
    let v = [&bytes[..end], &bytes[el.start..end], &bytes[end..]].concat();
    let r = case("dup-meta", v, &[]);
    assert_eq!(r.reason.as_deref(), Some("unparseable"), "{r:?}");
    assert!(r.elapsed < Duration::from_secs(5), "took {:?}", r.elapsed);
    if let Some(kb) = r.peak_rss_kb {
        assert!(kb < 500_000, "peak RSS {kb} kB");
    }
}

/// Found by fuzzing: a SOP Class UID with a wrong VR (US) or a corrupt character, or a SOP
/// Instance UID read as two values, was copied into the new file meta, and the output was written
/// but could not be read back ("Could not parse meta group data set"). The instance's class is
/// unknown, or its UID cannot be replaced consistently: it must be held back.
#[test]
fn a_corrupt_sop_class_uid_is_held_back_not_written_unreadable() {
    let Some(bytes) = seed("CT_small.dcm") else {
        return;
    };
    let el = element(&bytes, (0x0008, 0x0016));
    let mut wrong_vr = bytes.clone();
    wrong_vr[el.start + 4..el.start + 6].copy_from_slice(b"US");
    let mut flipped = bytes.clone();
    flipped[el.value_at + 9] = 0xA9; // "1.2.840.1\xA9008.5.1.4.1.1.2"
    let mut instance_vr = bytes.clone();
    let sop = element(&bytes, (0x0008, 0x0018));
    instance_vr[sop.start + 4..sop.start + 6].copy_from_slice(b"US");
    // J2K_pixelrep_mismatch.dcm is in ISO 2022 IR 13/87: the parser decodes a stray 0xFF in
    // the SOP Instance UID as the text `\377`, whose backslash splits it into two UIDs.
    let Some(j2k) = seed("J2K_pixelrep_mismatch.dcm") else {
        return;
    };
    let sop = element(&j2k, (0x0008, 0x0018));
    let split = veil_fuzz::mutate::replace_value(&j2k, &sop, b"1..2.abc\xff ").unwrap();
    for (label, v) in [
        ("sop-class-vr-US", wrong_vr),
        ("sop-class-flip", flipped),
        ("sop-instance-vr-US", instance_vr),
        ("sop-instance-split", split),
    ] {
        let r = case(label, v, &[]);
        assert_eq!(
            r.reason.as_deref(),
            Some("cannot_deidentify"),
            "{label}: {r:?}"
        );
    }
}

/// Found by fuzzing: text in a numeric element was kept unscreened. A study description naming
/// the patient, with its VR changed to US, went through Clean Descriptors untouched (numbers are
/// kept as they are); so did a name in Instance Number (IS). Such values are now emptied.
#[test]
fn text_in_a_numeric_element_does_not_pass_unscreened() {
    let Some(bytes) = seed("CT_small.dcm") else {
        return;
    };
    // CT_small's patient is CompressedSamples^CT1.
    let desc = element(&bytes, (0x0008, 0x1030));
    let mut v =
        veil_fuzz::mutate::replace_value(&bytes, &desc, b"HEAD CompressedSamples  ").unwrap();
    v[desc.start + 4..desc.start + 6].copy_from_slice(b"US");
    let r = case("name-in-US", v, &[b"CompressedSamples"]);
    assert_ne!(r.status, None);
    let inst = element(&bytes, (0x0020, 0x0013));
    let v = veil_fuzz::mutate::replace_value(&bytes, &inst, b"CompressedSamples ").unwrap();
    let r = case("name-in-IS", v, &[b"CompressedSamples"]);
    assert_ne!(r.status, None);
}

/// Found by the long fuzz run (dicomdirtests IM00000R, byte flips): a Study Time whose length
/// grew from 6 to 158 bytes swallowed the elements after it — accession number, modality, study
/// description, the patient's name and ID — as one TM value. Times are kept as they are, so the
/// name went out (and the verifier, which reads identifying values from the parsed source, did not
/// know it). A date, time or age with characters outside its VR's repertoire is now emptied.
#[test]
fn a_time_that_swallows_the_patient_name_does_not_pass() {
    let Some(bytes) = seed("dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000R") else {
        return;
    };
    let time = element(&bytes, (0x0008, 0x0030));
    let id = element(&bytes, (0x0010, 0x0020));
    let mut v = bytes.clone();
    let swallow = (id.value_at + id.len as usize - time.value_at) as u16;
    v[time.len_at..time.len_at + 2].copy_from_slice(&swallow.to_le_bytes());
    let r = case("time-swallows-name", v, &[b"Citizen", b"12345678"]);
    assert_ne!(r.status, None);
}

/// Found by fuzzing: a birth date stored as UN holding invalid UTF-8 (bytes FF FE FD FC)
/// is re-read as DA text of four U+FFFD characters, and deriving Patient's Age sliced it inside
/// one: a panic, caught by the pipeline and quarantined as an internal error. A corrupt date is
/// now just not a date.
#[test]
fn a_birth_date_with_invalid_utf8_does_not_panic() {
    // MR_small.dcm has no Patient's Age, so the engine derives it from the birth date.
    let Some(bytes) = seed("MR_small.dcm") else {
        return;
    };
    let birth = element(&bytes, (0x0010, 0x0030));
    let un = veil_fuzz::mutate::explicit_element((0x0010, 0x0030), b"UN", b"\xff\xfe\xfd\xfc");
    let end = birth.value_at + birth.len as usize;
    let v = [&bytes[..birth.start], &un[..], &bytes[end..]].concat();
    case("birth-date-un-utf8", v, &[]);
}

/// Finding 12 (fuzzing, `r8:5011:flip-0`): a byte flip turned an SH into SL with 6 bytes. The
/// parser reads length / 4 values and goes on from there, two bytes short: every later element
/// was read from the wrong place, and one of them "declared" 1.9 GB, which it allocated (2 GB
/// peak for a 2 KB file). A binary VR whose length is not a multiple of its value size is now
/// held back by the framing pre-check, before the parser sees it.
#[test]
fn a_binary_value_of_the_wrong_length_is_held_back_before_the_parser_loses_its_place() {
    let Some(bytes) = seed("CT_small.dcm") else {
        return;
    };
    let modality = element(&bytes, (0x0008, 0x0060));
    let mut v = bytes.clone();
    v[modality.start + 4..modality.start + 6].copy_from_slice(b"SL");
    let tmp = tempfile::tempdir().unwrap();
    let r = veil_fuzz::run_case(
        "sl-of-2",
        v.clone(),
        &[],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.reason.as_deref(), Some("unparseable"));
    // Held back by the pre-check, which names the element (not by whatever the parser met after
    // losing its place).
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("x.dcm"), &v).unwrap();
    let o = veil()
        .arg("deid")
        .arg(&input)
        .arg("--key")
        .arg(key(tmp.path()))
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let q = tmp.path().join("out.quarantine");
    let reason = veil_fuzz::walk(&q)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p.strip_prefix(&q).unwrap().starts_with(".veil")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .next()
        .expect("a quarantine reason");
    assert!(
        reason.contains("(0008,0060) has VR SL but 2 bytes, not a multiple of 4"),
        "{reason}"
    );
}

/// Finding 13 (long fuzz run, `r3:IM000018:flip-3`): a Study Description whose length grew to
/// 124 bytes swallowed the Patient's Name, Patient ID and Study Instance UID as one LO value.
/// Clean Descriptors removed the digit run and part of the UID but not "Citizen^Jan": with the
/// Patient's Name element gone, the screen did not know it as a name. A text value holding
/// control characters (an element header read as text) is now emptied, not cleaned.
#[test]
fn a_description_that_swallows_the_patient_name_does_not_pass() {
    let Some(bytes) = seed("dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000018") else {
        return;
    };
    let description = element(&bytes, (0x0008, 0x1030));
    let id = element(&bytes, (0x0010, 0x0020));
    let mut v = bytes.clone();
    let swallow = (id.value_at + id.len as usize - description.value_at) as u16;
    v[description.len_at..description.len_at + 2].copy_from_slice(&swallow.to_le_bytes());
    let r = case("description-swallows-name", v, &[b"Citizen", b"12345678"]);
    assert_ne!(r.status, None);
}
