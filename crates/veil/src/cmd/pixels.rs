//! `veil pixels`: find text burned into pixel data (issue 5), and the pixel stage `veil deid`
//! runs. Detection and redaction live in `veil-pixels`; this module walks inputs, formats the
//! report and writes previews.

use std::path::{Path, PathBuf};

use dicom_object::OpenFileOptions;
use serde::Serialize;
use veil_pixels::{Analysis, Cleaner, Config, Templates};

use crate::exit;

#[derive(clap::Subcommand)]
pub enum PixelsCommand {
    /// Report which files and frames hold text (boxes, confidence, whether the text matches the
    /// file's own identifiers) without changing anything.
    #[command(
        after_help = "Exit codes: 0 no text to remove; 1 runtime failure (Tesseract missing, a preview cannot be written); 2 usage error; 3 some files could not be decoded (their pixels are unchecked); 4 text to remove was found."
    )]
    Scan(ScanArgs),
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// DICOM files or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write a PNG per file (first OCR'd frame) with the boxes drawn into this directory:
    /// red = removed by `veil deid`, yellow = text kept, blue = template regions.
    #[arg(long)]
    pub previews: Option<PathBuf>,
    /// Print one JSON document on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
    /// Include the recognised text in the report (it may be identifying: for review only).
    #[arg(long)]
    pub show_text: bool,
    /// Extra region templates (TOML, see docs/pixels.md); repeatable.
    #[arg(long = "templates")]
    pub templates: Vec<PathBuf>,
    /// Read the whole image of every file, as for flagged ones (default: unflagged images are
    /// screened, and read only where the screen finds candidate text).
    #[arg(long)]
    pub all: bool,
    /// How much each image is enlarged before OCR (1–4; 0 = automatic: 2 for images up to
    /// 1024 columns, else 1). Tesseract reads glyphs about 20–30 px tall best.
    #[arg(long, default_value_t = 0)]
    pub scale: u32,
    /// Decode, pre-filter and apply templates only (no OCR): measures the cheap path.
    #[arg(long)]
    pub no_ocr: bool,
    /// OCR's words only: do not look for text lines in the pixels (for comparison; finds less).
    #[arg(long)]
    pub no_pixel_lines: bool,
}

#[derive(Serialize)]
struct FileReport {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flagged_because: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<Analysis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<String>,
}

#[derive(Serialize)]
struct Summary {
    files: usize,
    not_dicom: usize,
    undecodable: usize,
    files_with_text: usize,
    files_with_text_to_remove: usize,
    files_with_identifier_matches: usize,
    frames: u64,
    frames_ocr: u64,
    seconds: f64,
}

pub fn run(cmd: PixelsCommand) -> anyhow::Result<u8> {
    match cmd {
        PixelsCommand::Scan(args) => scan(args),
    }
}

fn cleaner(
    templates: &[PathBuf],
    scale: u32,
    ocr: bool,
    pixel_lines: bool,
) -> anyhow::Result<Cleaner> {
    let mut t = Templates::builtin();
    for f in templates {
        t.add_file(f).map_err(|e| exit::usage(e.to_string()))?;
    }
    Ok(Cleaner::new(Config {
        templates: t,
        ocr_scale: scale,
        ocr,
        pixel_lines,
        ..Config::default()
    }))
}

fn preview_name(dir: &Path, index: usize, input: &Path) -> PathBuf {
    let stem: String = input
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{index:05}-{stem}.png"))
}

/// Reads a Part 10 file the way `veil deid` does: framing checked before parsing, so a
/// malformed file is refused instead of exhausting memory.
fn open(path: &Path) -> Result<dicom_object::DefaultDicomObject, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err("no DICM marker".into());
    }
    veil_pipeline::preflight::check(&bytes).map_err(|e| e.to_string())?;
    OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[128..])
        .map_err(|e| e.to_string())
}

fn scan(args: ScanArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    let cleaner = cleaner(
        &args.templates,
        args.scale,
        !args.no_ocr,
        !args.no_pixel_lines,
    )?;
    if !args.no_ocr {
        if let Err(e) = veil_pixels::ocr::available() {
            anyhow::bail!("{e}");
        }
    }
    if let Some(dir) = &args.previews {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the preview directory {}: {e}", dir.display())
        })?;
    }
    let files =
        veil_pipeline::walk_inputs(&args.inputs, &[]).map_err(|e| exit::usage(e.to_string()))?;
    let mut reports = Vec::new();
    let mut summary = Summary {
        files: files.len(),
        not_dicom: 0,
        undecodable: 0,
        files_with_text: 0,
        files_with_text_to_remove: 0,
        files_with_identifier_matches: 0,
        frames: 0,
        frames_ocr: 0,
        seconds: 0.0,
    };
    for (index, path) in files.iter().enumerate() {
        let mut report = FileReport {
            path: path.display().to_string(),
            flagged_because: None,
            error: None,
            analysis: None,
            preview: None,
        };
        let file = match open(path) {
            Ok(f) => f,
            Err(e) => {
                summary.not_dicom += 1;
                report.error = Some(format!("not a readable DICOM Part 10 file ({e})"));
                reports.push(report);
                continue;
            }
        };
        if file
            .element(dicom_dictionary_std::tags::PIXEL_DATA)
            .is_err()
        {
            reports.push(report);
            continue;
        }
        let media = file.meta().media_storage_sop_class_uid().to_string();
        let flagged = match veil_pipeline::classify::classify(&file, &media, false) {
            Some(veil_pipeline::Hold::BurnedInRisk(why)) => Some(why),
            _ => None,
        };
        let whole = args.all || flagged.is_some() || veil_pixels::header_flagged(&file);
        report.flagged_because = flagged;
        match cleaner.scan(&file, whole, args.show_text) {
            Ok((px, a)) => {
                summary.frames += a.frames as u64;
                summary.frames_ocr += a.frames_ocr.len() as u64;
                if !a.words.is_empty() {
                    summary.files_with_text += 1;
                }
                if a.text_to_remove {
                    summary.files_with_text_to_remove += 1;
                }
                if a.words.iter().any(|w| w.matches.is_some()) {
                    summary.files_with_identifier_matches += 1;
                }
                if let Some(dir) = &args.previews {
                    let out = preview_name(dir, index, path);
                    let frame = a.frames_ocr.first().copied().unwrap_or(0);
                    veil_pixels::preview::write(&out, &px, frame, &a)
                        .map_err(|e| anyhow::anyhow!("cannot write a preview: {e}"))?;
                    report.preview = Some(out.display().to_string());
                }
                report.analysis = Some(a);
            }
            Err(e) => {
                summary.undecodable += 1;
                report.error = Some(e.to_string());
            }
        }
        reports.push(report);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if args.json {
        let doc = serde_json::json!({ "summary": summary, "files": reports });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for r in &reports {
            if let Some(e) = &r.error {
                println!("{}: {e}", r.path);
                continue;
            }
            let Some(a) = &r.analysis else { continue };
            let remove = a.words.iter().filter(|w| w.redact).count();
            let matched = a.words.iter().filter(|w| w.matches.is_some()).count();
            let lines_removed = a.glyph_lines.iter().filter(|l| l.redact).count();
            println!(
                "{}: {} frame(s), {} OCR'd, {} word(s) found, {} to remove ({} matching the file's identifiers), {} text line(s) seen in the pixels ({} removed), {} region(s), {:.1}% of the frame{}",
                r.path,
                a.frames,
                a.frames_ocr.len(),
                a.words.len(),
                remove,
                matched,
                a.glyph_lines.len(),
                lines_removed,
                a.redaction.len(),
                a.redacted_fraction * 100.0,
                r.preview.as_ref().map(|p| format!(" → {p}")).unwrap_or_default()
            );
            if args.show_text {
                for w in a.words.iter().filter(|w| w.redact) {
                    println!(
                        "    frame {} at {},{} {}x{} conf {:.0}{}: {}",
                        w.frame,
                        w.rect.x,
                        w.rect.y,
                        w.rect.w,
                        w.rect.h,
                        w.confidence,
                        w.matches
                            .map(|k| format!(" matches {k:?}"))
                            .unwrap_or_default(),
                        w.text.as_deref().unwrap_or("")
                    );
                }
            }
        }
        println!(
            "{} file(s), {} frame(s) ({} OCR'd); {} with text to remove, {} with text matching their own identifiers; {} undecodable, {} not DICOM; {:.1}s",
            summary.files,
            summary.frames,
            summary.frames_ocr,
            summary.files_with_text_to_remove,
            summary.files_with_identifier_matches,
            summary.undecodable,
            summary.not_dicom,
            summary.seconds
        );
    }
    Ok(if summary.undecodable > 0 {
        exit::QUARANTINED
    } else if summary.files_with_text_to_remove > 0 {
        exit::FINDINGS
    } else {
        exit::OK
    })
}
