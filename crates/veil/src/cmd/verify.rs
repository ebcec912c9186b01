//! `veil verify`: check de-identified files (Veil's or any tool's) with the independent verifier
//! (`veil-verify`), optionally against the original files.
//!
//! Exit status: 0 clean, 4 findings, 2 usage (bad arguments or policy), 1 runtime error (an
//! unreadable file, named).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dicom_core::header::Header;
use rayon::prelude::*;
use serde::Serialize;
use veil_verify::{Finding, Verifier, CATEGORIES};

#[derive(clap::Args)]
pub struct Args {
    /// De-identified files or directories (walked recursively).
    #[arg(required = true, value_name = "OUTPUT")]
    pub outputs: Vec<PathBuf>,
    /// An original file or directory: its identifying values are searched for in every byte
    /// of every output, its UIDs must not remain, its dates must be shifted. One path per
    /// --against; repeat it for several (`--against in1 --against in2 OUTPUT`).
    #[arg(long, value_name = "ORIGINAL", action = clap::ArgAction::Append, num_args = 1)]
    pub against: Vec<PathBuf>,
    /// Policy file the outputs should conform to (default: the built-in default policy; the
    /// de-identification method codes are then compared only for files written by Veil).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Print one JSON document (the findings) on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    /// For outputs whose pixels a pixel stage cleaned (code 113101): read the burned-in text
    /// with OCR and compare it with the sources' identifiers (needs --against and Tesseract).
    #[arg(long)]
    pub ocr: bool,
}

#[derive(Serialize)]
struct Skipped {
    file: String,
    reason: String,
}

#[derive(Serialize)]
struct FileFinding {
    file: String,
    path: String,
    tag: String,
    category: String,
    rule: String,
    masked: String,
}

#[derive(Serialize)]
struct Report {
    files_scanned: u64,
    bytes_scanned: u64,
    files_with_findings: u64,
    skipped: Vec<Skipped>,
    by_category: BTreeMap<&'static str, u64>,
    findings: Vec<FileFinding>,
    #[serde(skip)]
    seconds: f64,
}

/// Files under the given paths, sorted, without Veil's run state; a path that does not exist is
/// a usage error.
fn walk(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            return Err(crate::exit::usage(format!(
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
                anyhow::anyhow!(
                    "{}: cannot list: {e}",
                    e.path().unwrap_or(p.as_path()).display()
                )
            })?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))
}

enum One {
    Skipped(String),
    Checked {
        bytes: u64,
        checked: veil_verify::Checked,
        pixels_cleaned: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = super::policy::load(args.policy.as_deref())?;
    if args.ocr && args.against.is_empty() {
        return Err(crate::exit::usage(
            "--ocr compares burned-in text with the sources' identifiers: give --against",
        ));
    }
    let started = Instant::now();
    let verifier = Verifier::new(
        veil_app::verify_stage::policy_spec(&policy),
        args.policy.is_some(),
    );
    let outputs = walk(&args.outputs)?;
    let known = if args.against.is_empty() {
        None
    } else {
        let sources = walk(&args.against)?;
        let mut set = verifier.sources();
        for s in &sources {
            let bytes = read(s)?;
            if veil_verify::walk::looks_like_dicom(&bytes) {
                set.add(&bytes);
            }
        }
        if set.is_empty() {
            return Err(crate::exit::usage(
                "--against: no DICOM file found among the sources",
            ));
        }
        Some(set.finish())
    };
    let results: Vec<anyhow::Result<One>> = outputs
        .par_iter()
        .map(|path| {
            let bytes = read(path)?;
            if !veil_verify::walk::looks_like_dicom(&bytes) {
                return Ok(One::Skipped(
                    "not DICOM (no Part 10 header and no data set at the start)".into(),
                ));
            }
            let checked = verifier.check(&bytes, known.as_ref());
            let pixels_cleaned = args.ocr && claims_clean_pixels(&bytes);
            Ok(One::Checked {
                bytes: bytes.len() as u64,
                checked,
                pixels_cleaned,
            })
        })
        .collect();
    let mut report = Report {
        files_scanned: 0,
        bytes_scanned: 0,
        files_with_findings: 0,
        skipped: Vec::new(),
        by_category: CATEGORIES.iter().map(|c| (*c, 0)).collect(),
        findings: Vec::new(),
        seconds: 0.0,
    };
    let mut per_file: Vec<(usize, Vec<Finding>)> = Vec::new();
    let mut shifts = Vec::new();
    let mut shift_files = Vec::new();
    let mut ocr_files = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r? {
            One::Skipped(reason) => report.skipped.push(Skipped {
                file: outputs[i].display().to_string(),
                reason,
            }),
            One::Checked {
                bytes,
                checked,
                pixels_cleaned,
            } => {
                report.files_scanned += 1;
                report.bytes_scanned += bytes;
                shifts.push((checked.patient_id, checked.date_shift_days));
                shift_files.push(i);
                if pixels_cleaned {
                    ocr_files.push(i);
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
        ocr_check(&args.against, &outputs, &ocr_files, &mut per_file)?;
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
    report.seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_human(&report, known.is_some());
    }
    Ok(if report.findings.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FINDINGS
    })
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

/// OCR of outputs whose pixels were cleaned, compared with every source's identifiers.
fn ocr_check(
    against: &[PathBuf],
    outputs: &[PathBuf],
    files: &[usize],
    per_file: &mut [(usize, Vec<Finding>)],
) -> anyhow::Result<()> {
    // One data set holding every source's values (multi-valued per tag), so one OCR pass per
    // output compares its text with all sources at once.
    let mut merged: BTreeMap<dicom_core::Tag, (dicom_core::VR, Vec<String>)> = BTreeMap::new();
    for s in walk(against)? {
        let Ok(obj) = dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(&s)
        else {
            continue;
        };
        for e in obj.iter() {
            if let (dicom_core::value::Value::Primitive(_), Ok(v)) = (e.value(), e.to_multi_str()) {
                let entry = merged.entry(e.tag()).or_insert((e.vr(), Vec::new()));
                entry.1.extend(v.iter().map(|x| x.trim().to_string()));
            }
        }
    }
    let ids = veil_pixels::Identifiers::of(&dicom_object::InMemDicomObject::from_element_iter(
        merged.into_iter().map(|(tag, (vr, values))| {
            dicom_core::DataElement::new(
                tag,
                vr,
                dicom_core::value::PrimitiveValue::Strs(values.into()),
            )
        }),
    ));
    for &i in files {
        let obj = dicom_object::open_file(&outputs[i])
            .map_err(|e| anyhow::anyhow!("{}: cannot read for OCR: {e}", outputs[i].display()))?;
        let found = veil_pixels::surviving_identifiers(&ids, &obj)
            .map_err(|e| anyhow::anyhow!("{}: OCR failed: {e}", outputs[i].display()))?;
        if let Some(entry) = per_file.iter_mut().find(|(k, _)| *k == i) {
            for (frame, _, kind) in found {
                entry.1.push(Finding {
                    path: format!("PixelData frame {frame}"),
                    tag: "(7FE0,0010)".into(),
                    category: "known_identifier".into(),
                    rule: format!(
                        "known:burned_in_text OCR reads a source {kind:?} in the cleaned pixels"
                    ),
                    masked: String::new(),
                });
            }
        }
    }
    Ok(())
}

fn print_human(r: &Report, against: bool) {
    for f in &r.findings {
        println!(
            "{}: {} {} [{}] {} (value {})",
            f.file,
            f.path,
            f.tag,
            f.category,
            f.rule,
            if f.masked.is_empty() { "-" } else { &f.masked }
        );
    }
    for s in &r.skipped {
        eprintln!("skipped {}: {}", s.file, s.reason);
    }
    let mb = r.bytes_scanned as f64 / 1e6;
    println!(
        "veil verify: {} file(s), {:.1} MB in {:.2} s ({:.1} files/s, {:.1} MB/s){}; {} skipped",
        r.files_scanned,
        mb,
        r.seconds,
        r.files_scanned as f64 / r.seconds.max(1e-9),
        mb / r.seconds.max(1e-9),
        if against {
            ", against the sources"
        } else {
            ", without sources (no known-identifier, UID or date comparison)"
        },
        r.skipped.len()
    );
    if r.findings.is_empty() {
        println!("  clean: no findings");
    } else {
        println!(
            "  {} finding(s) in {} file(s):",
            r.findings.len(),
            r.files_with_findings
        );
        for (c, n) in &r.by_category {
            if *n > 0 {
                println!("    {n:>6} × {c}");
            }
        }
    }
}
