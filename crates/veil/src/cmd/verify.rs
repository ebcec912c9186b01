//! `veil verify`: check de-identified files (Veil's or any tool's) with the independent verifier
//! (`veil-verify`), optionally against the original files.
//!
//! Exit status: 0 clean, 4 findings, 2 usage (bad arguments or policy), 1 runtime error (an
//! unreadable file, named).

use std::path::PathBuf;

use veil_app::verify_files::{verify_files, VerifyReport, VerifyRequest};

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
    /// Read every output image with OCR (the verifier's own pixel reader and the tesseract
    /// program) and compare the text with the sources' identifiers (needs --against and
    /// Tesseract). An output claiming Clean Pixel Data (113101) that the reader cannot decode is
    /// a finding; other undecodable outputs are listed as not read.
    #[arg(long)]
    pub ocr: bool,
    /// Render every CT or MR volume among the outputs (a directory of 16 or more images) and
    /// run this face judge on it; a face found is a finding. The command is given the
    /// directory, `--json` and a file for `{"cnn_faces_total": N}`, e.g.
    /// "python3 scripts/faces/attack.py judge" (dlib's CNN face detector).
    #[arg(long, value_name = "COMMAND")]
    pub face_judge: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let policy = super::policy::load(args.policy.as_deref())?;
    let report = verify_files(VerifyRequest {
        outputs: &args.outputs,
        against: &args.against,
        policy: &policy,
        policy_given: args.policy.is_some(),
        ocr: args.ocr,
        face_judge: args.face_judge.as_deref(),
    })
    .map_err(crate::exit::app_error)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_human(&report);
    }
    Ok(if report.findings.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::FINDINGS
    })
}

fn print_human(r: &VerifyReport) {
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
    for s in &r.pixels_unchecked {
        eprintln!(
            "pixels not read for burned-in text {}: {}",
            s.file, s.reason
        );
    }
    let mb = r.bytes_scanned as f64 / 1e6;
    println!(
        "veil verify: {} file(s), {:.1} MB in {:.2} s ({:.1} files/s, {:.1} MB/s){}; {} skipped",
        r.files_scanned,
        mb,
        r.seconds,
        r.files_scanned as f64 / r.seconds.max(1e-9),
        mb / r.seconds.max(1e-9),
        if r.against_sources {
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
