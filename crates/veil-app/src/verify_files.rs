//! `veil verify` for every front end: the independent verifier (`veil-verify`) over files or
//! directories, optionally against the originals, with the date-shift consistency check and
//! OCR of cleaned pixels. The report is data; front ends print it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use veil_profile::Policy;
use veil_verify::{Finding, Known, Verifier, CATEGORIES};

use crate::AppError;

/// An output that is not DICOM, with why.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// One finding in one output.
#[derive(Debug, Serialize)]
pub struct FileFinding {
    pub file: String,
    pub path: String,
    pub tag: String,
    pub category: String,
    pub rule: String,
    pub masked: String,
}

/// The outcome of one verification run.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub files_with_findings: u64,
    pub skipped: Vec<Skipped>,
    pub by_category: BTreeMap<&'static str, u64>,
    pub findings: Vec<FileFinding>,
    /// With `ocr`: outputs whose pixels the verifier's own reader cannot decode (compressed,
    /// big endian, …) and that claim no Clean Pixel Data: not read for burned-in text. (One
    /// that claims it is a finding instead.)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pixels_unchecked: Vec<Skipped>,
    #[serde(skip)]
    pub seconds: f64,
    /// The outputs were compared with sources (`against`).
    #[serde(skip)]
    pub against_sources: bool,
}

/// Files under the given paths, sorted, without Veil's run state; a path that does not exist is
/// a usage error.
pub fn walk(paths: &[PathBuf]) -> Result<Vec<PathBuf>, AppError> {
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(AppError::Usage(format!(
                "{}: no such file or directory",
                p.display()
            )));
        }
        // `.veil/` below a directory is a Veil run's state (journal, report), never an output.
        let walker = walkdir::WalkDir::new(p)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || e.file_name() != ".veil");
        for entry in walker {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(p.as_path()).to_path_buf();
                AppError::Io {
                    what: "cannot list",
                    path,
                    error: e.into(),
                }
            })?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, AppError> {
    std::fs::read(path).map_err(AppError::io("cannot read", path))
}

enum One {
    Skipped(String),
    Checked {
        bytes: u64,
        checked: veil_verify::Checked,
        /// With `ocr`, an output holding Pixel Data: whether it claims Clean Pixel Data.
        ocr: Option<bool>,
        /// A CT or MR image (looked at only for the face judge).
        ct_or_mr: bool,
    },
}

/// What to verify and how.
pub struct VerifyRequest<'a> {
    /// De-identified files or directories (walked recursively, `.veil/` run state left out).
    pub outputs: &'a [PathBuf],
    /// Original files or directories: their identifiers are searched for in every output.
    pub against: &'a [PathBuf],
    pub policy: &'a Policy,
    /// The policy was given (not the default): method codes are compared for every output.
    pub policy_given: bool,
    /// OCR the outputs whose pixels a pixel stage cleaned (needs `against`).
    pub ocr: bool,
    /// A face judge to run on every directory holding a CT or MR volume (16 images or more):
    /// a command line, given the directory, `--json` and a file to write
    /// `{"cnn_faces_total": N}` to (`scripts/faces/attack.py judge` is one). A face found is
    /// a finding.
    pub face_judge: Option<&'a str>,
}

/// Verifies de-identified files (Veil's or any tool's) with the independent verifier,
/// optionally against the originals: identifiers, UIDs, dates, date-shift consistency, and
/// with `ocr` burned-in text.
pub fn verify_files(args: VerifyRequest) -> Result<VerifyReport, AppError> {
    let policy = args.policy;
    if args.ocr && args.against.is_empty() {
        return Err(AppError::Usage(
            "--ocr compares burned-in text with the sources' identifiers: give --against".into(),
        ));
    }
    let started = Instant::now();
    let verifier = Verifier::new(crate::verify_stage::policy_spec(policy), args.policy_given);
    let outputs = walk(args.outputs)?;
    let known = if args.against.is_empty() {
        None
    } else {
        let sources = walk(args.against)?;
        let mut set = verifier.sources();
        for s in &sources {
            let bytes = read(s)?;
            if veil_verify::walk::looks_like_dicom(&bytes) {
                set.add(&bytes);
            }
        }
        if set.is_empty() {
            return Err(AppError::Usage(
                "--against: no DICOM file found among the sources".into(),
            ));
        }
        Some(set.finish())
    };
    let results: Vec<Result<One, AppError>> = outputs
        .par_iter()
        .map(|path| {
            let bytes = read(path)?;
            if !veil_verify::walk::looks_like_dicom(&bytes) {
                return Ok(One::Skipped(
                    "not DICOM (no Part 10 header and no data set at the start)".into(),
                ));
            }
            let checked = verifier.check(&bytes, known.as_ref());
            // Every image is OCR'd, not only those claiming Clean Pixel Data: text in an image
            // nobody declared is what leaks (the pixel stage screens them all too).
            let ocr = (args.ocr && has_pixel_data(&bytes)).then(|| claims_clean_pixels(&bytes));
            let ct_or_mr = args.face_judge.is_some() && is_ct_or_mr_image(&bytes);
            Ok(One::Checked {
                bytes: bytes.len() as u64,
                checked,
                ocr,
                ct_or_mr,
            })
        })
        .collect();
    let mut report = VerifyReport {
        files_scanned: 0,
        bytes_scanned: 0,
        files_with_findings: 0,
        skipped: Vec::new(),
        pixels_unchecked: Vec::new(),
        by_category: CATEGORIES.iter().map(|c| (*c, 0)).collect(),
        findings: Vec::new(),
        seconds: 0.0,
        against_sources: false,
    };
    let mut per_file: Vec<(usize, Vec<Finding>)> = Vec::new();
    let mut shifts = Vec::new();
    let mut shift_files = Vec::new();
    let mut ocr_files = Vec::new();
    let mut images = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r? {
            One::Skipped(reason) => report.skipped.push(Skipped {
                file: outputs[i].display().to_string(),
                reason,
            }),
            One::Checked {
                bytes,
                checked,
                ocr,
                ct_or_mr,
            } => {
                report.files_scanned += 1;
                report.bytes_scanned += bytes;
                shifts.push((checked.patient_id, checked.date_shift_days));
                shift_files.push(i);
                if let Some(claimed) = ocr {
                    ocr_files.push((i, claimed));
                }
                if ct_or_mr {
                    images.push(outputs[i].as_path());
                }
                per_file.push((i, checked.findings));
            }
        }
    }
    if policy.shifts_dates() && known.is_some() {
        for (k, f) in veil_verify::shift_consistency(&shifts) {
            let file = shift_files[k];
            if let Some(entry) = per_file.iter_mut().find(|(i, _)| *i == file) {
                entry.1.push(f);
            }
        }
    }
    if !ocr_files.is_empty() {
        let known = known
            .as_ref()
            .expect("--ocr needs --against, checked above");
        report.pixels_unchecked = ocr_check(known, &outputs, &ocr_files, &mut per_file)?;
    }
    for (i, findings) in per_file {
        if findings.is_empty() {
            continue;
        }
        report.files_with_findings += 1;
        for f in findings {
            if let Some(n) = report.by_category.get_mut(f.category.as_str()) {
                *n += 1;
            }
            report.findings.push(FileFinding {
                file: outputs[i].display().to_string(),
                path: f.path,
                tag: f.tag,
                category: f.category,
                rule: f.rule,
                masked: f.masked,
            });
        }
    }
    if let Some(judge) = args.face_judge {
        for f in judge_faces(judge, &images)? {
            report.files_with_findings += 1;
            *report.by_category.entry(FACE_CATEGORY).or_default() += 1;
            report.findings.push(f);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.against_sources = known.is_some();
    Ok(report)
}

/// The category of a face found in a volume by the face judge.
const FACE_CATEGORY: &str = "recognizable_face";
/// Directories with fewer CT or MR images hold no volume to render.
const MIN_VOLUME_IMAGES: usize = 16;

/// Runs the face judge on every directory of outputs that holds a CT or MR volume (`images`:
/// the CT and MR images among the outputs).
fn judge_faces(judge: &str, images: &[&Path]) -> Result<Vec<FileFinding>, AppError> {
    let mut volumes: BTreeMap<&Path, usize> = BTreeMap::new();
    for dir in images.iter().filter_map(|p| p.parent()) {
        *volumes.entry(dir).or_default() += 1;
    }
    let mut words = judge.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| AppError::Usage("--face-judge: give a command".into()))?;
    let fixed: Vec<&str> = words.collect();
    let mut findings = Vec::new();
    for (dir, _) in volumes.into_iter().filter(|(_, n)| *n >= MIN_VOLUME_IMAGES) {
        let verdict = tempfile::NamedTempFile::new()
            .map_err(|e| AppError::Verify(format!("cannot make a temporary file: {e}")))?;
        let status = std::process::Command::new(program)
            .args(&fixed)
            .arg(dir)
            .arg("--json")
            .arg(verdict.path())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| AppError::Verify(format!("cannot run the face judge {program:?}: {e}")))?;
        let faces = std::fs::read(verdict.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["cnn_faces_total"].as_u64());
        let Some(faces) = faces.filter(|_| status.success()) else {
            return Err(AppError::Verify(format!(
                "{}: the face judge failed ({status}) or wrote no cnn_faces_total",
                dir.display()
            )));
        };
        if faces > 0 {
            findings.push(FileFinding {
                file: dir.display().to_string(),
                path: "volume".into(),
                tag: "(7FE0,0010)".into(),
                category: FACE_CATEGORY.into(),
                rule: format!(
                    "the face judge found {faces} face(s) in renders of this series' skin surface"
                ),
                masked: String::new(),
            });
        }
    }
    Ok(findings)
}

/// Is this a CT or MR image (SOP Class UID, read by the verifier's own walker)?
fn is_ct_or_mr_image(bytes: &[u8]) -> bool {
    let p = veil_verify::walk::parse(bytes);
    p.elems.iter().any(|e| {
        e.tag == 0x0008_0016 && e.parent.is_none() && {
            let class = p.text(bytes, e);
            let class = class.trim_end_matches(['\0', ' ']);
            class == "1.2.840.10008.5.1.4.1.1.2" || class == "1.2.840.10008.5.1.4.1.1.4"
        }
    })
}

/// Does the output hold a top-level Pixel Data element?
fn has_pixel_data(bytes: &[u8]) -> bool {
    let p = veil_verify::walk::parse(bytes);
    p.elems
        .iter()
        .any(|e| e.tag == 0x7FE0_0010 && e.parent.is_none())
}

/// Does the output's De-identification Method Code Sequence claim Clean Pixel Data (113101)?
fn claims_clean_pixels(bytes: &[u8]) -> bool {
    let p = veil_verify::walk::parse(bytes);
    p.elems.iter().any(|e| {
        e.tag == 0x0008_0100
            && e.parent
                .is_some_and(|s| p.elems[s as usize].tag == 0x0012_0064)
            && p.text(bytes, e).trim() == "113101"
    })
}

/// OCR of every output image, compared with every source's identifiers, by the verifier's own
/// pixel reader and the tesseract program (`veil_verify::ocr`), not the pixel stage's. An output
/// claiming Clean Pixel Data that it cannot read is a finding (unchecked is not clean); the
/// others it cannot read are returned, to be reported as not read.
fn ocr_check(
    known: &Known,
    outputs: &[PathBuf],
    files: &[(usize, bool)],
    per_file: &mut [(usize, Vec<Finding>)],
) -> Result<Vec<Skipped>, AppError> {
    let mut unchecked = Vec::new();
    for &(i, claimed) in files {
        let bytes = read(&outputs[i])?;
        let p = veil_verify::walk::parse(&bytes);
        let rules: Vec<(String, String)> = match veil_verify::ocr::surviving(&p, &bytes, known) {
            Ok(found) => found
                .into_iter()
                .map(|(frame, kind)| {
                    (
                        format!("PixelData frame {frame}"),
                        format!("known:burned_in_text OCR reads a source {kind} in the pixels"),
                    )
                })
                .collect(),
            Err(veil_verify::ocr::OcrError::Unreadable(why)) if !claimed => {
                unchecked.push(Skipped {
                    file: outputs[i].display().to_string(),
                    reason: why,
                });
                continue;
            }
            Err(veil_verify::ocr::OcrError::Unreadable(why)) => vec![(
                "PixelData".to_string(),
                format!("known:burned_in_text_unchecked {why}: burned-in text was not looked for"),
            )],
            Err(veil_verify::ocr::OcrError::Tool(why)) => {
                return Err(AppError::Verify(format!(
                    "{}: OCR failed: {why}",
                    outputs[i].display()
                )))
            }
        };
        if let Some(entry) = per_file.iter_mut().find(|(k, _)| *k == i) {
            for (path, rule) in rules {
                entry.1.push(Finding {
                    path,
                    tag: "(7FE0,0010)".into(),
                    category: "known_identifier".into(),
                    rule,
                    masked: String::new(),
                });
            }
        }
    }
    Ok(unchecked)
}
