//! `veil demo`: generates a small synthetic hospital export full of planted identifiers, runs
//! the real pipeline on it with a fresh key, checks every output byte for every planted value,
//! and shows what happened. Needs no network and no test data.

use std::path::PathBuf;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use veil_app::demo::{generate, head_phantom, pixel_module, scan, MARKER};
use veil_keys::Key;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the demo's input, key, output and quarantine (recreated on each run).
    #[arg(long, default_value = "veil-demo")]
    pub dir: PathBuf,
    /// Take the images' pixel module from this real DICOM file (uncompressed) instead of the
    /// synthetic phantom, e.g. pydicom's CT_small.dcm.
    #[arg(long)]
    pub pixels_from: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let dir = &args.dir;
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(crate::exit::usage(format!(
                "{} exists and was not made by `veil demo`; choose another --dir",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "made by veil demo\n")?;
    let input = dir.join("input");
    let pixels = args
        .pixels_from
        .as_deref()
        .map(pixel_module)
        .transpose()
        .map_err(|e| crate::exit::app_error(e.into()))?;
    let planted =
        generate(&input, pixels.as_deref()).map_err(|e| crate::exit::app_error(e.into()))?;
    let head_slices = head_phantom(&input).map_err(|e| crate::exit::app_error(e.into()))?;
    let key_path = dir.join("demo.key");
    let key = Key::write_new(&key_path)?;
    println!(
        "veil demo: wrote a synthetic export with {} planted identifying values to {}",
        planted.len(),
        input.display()
    );
    println!("  (names, MRNs, birth dates, phones, e-mails, addresses, accession numbers, UIDs, staff and institution,");
    println!("   in standard tags, sequences three deep, an unknown private block with a UN value, free text and file meta)");
    println!(
        "  and a head CT of {head_slices} slices with a face, which the face stage must remove"
    );
    println!(
        "  key: {} (mode 0600, fingerprint {})",
        key_path.display(),
        key.fingerprint()
    );
    println!();

    let out = dir.join("output");
    let demo_key = key.clone();
    // The same builder as `veil deid`: the ultrasound goes through the pixel stage.
    // No policy file: the built-in default.
    let resolved = veil_app::Settings {
        out: out.clone(),
        quarantine: Some(dir.join("quarantine")),
        ..Default::default()
    }
    .resolve_with_key(key)
    .map_err(crate::exit::app_error)?;
    let pipeline = veil_app::build(resolved);
    let report = super::deid::run_pipeline(&pipeline, std::slice::from_ref(&input), true)?;
    super::deid::print_summary(&report, &pipeline);

    let (files, bytes, hits) =
        scan(&out, &planted).map_err(|e| crate::exit::app_error(e.into()))?;
    println!();
    println!(
        "check: searched every byte of {files} output files ({:.1} MB) for all {} planted values, case-insensitive: {} found",
        bytes as f64 / 1e6,
        planted.len(),
        hits.len()
    );
    for h in hits.iter().take(10) {
        println!("  LEAK {h}");
    }
    // The same instance before and after: its output is named by its keyed new SOP Instance UID.
    let before = dicom_object::open_file(input.join("export/p1/s1/se1/img1.dcm"))?;
    let before_sop = before
        .element(tags::SOP_INSTANCE_UID)?
        .to_str()?
        .trim_end_matches('\0')
        .to_string();
    let wanted = format!("{}.dcm", demo_key.derive_uid(&before_sop));
    let sample = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy() == wanted);
    if let Some(sample) = sample {
        // The demo's data is synthetic, so showing values here reveals no one.
        let after = dicom_object::open_file(sample.path())?;
        let show = |o: &InMemDicomObject, t: Tag| {
            o.get(t)
                .and_then(|e| e.to_str().ok().map(|s| s.to_string()))
                .unwrap_or_else(|| "(absent)".into())
        };
        println!();
        println!("  one instance, before → after:");
        for (label, t) in [
            ("Patient's Name", tags::PATIENT_NAME),
            ("Patient ID", tags::PATIENT_ID),
            ("Birth Date", tags::PATIENT_BIRTH_DATE),
            ("Patient's Age", tags::PATIENT_AGE),
            ("Study Date", tags::STUDY_DATE),
            ("Study Description", tags::STUDY_DESCRIPTION),
            ("Accession Number", tags::ACCESSION_NUMBER),
            ("Institution Name", tags::INSTITUTION_NAME),
            ("SOP Instance UID", tags::SOP_INSTANCE_UID),
        ] {
            println!(
                "    {label:<18} {:<42} → {}",
                show(&before, t),
                show(&after, t)
            );
        }
        println!("  look at it: dcmdump {}", sample.path().display());
    }
    println!(
        "  held back: {} (see {}/*.json for the reasons)",
        report.quarantined + report.rejected,
        dir.join("quarantine").display()
    );
    let defaced = report.series.iter().find(|s| s.outcome == "defaced");
    match defaced {
        Some(s) => println!(
            "  faces: the head CT was defaced ({} mL removed, {} mm from the brain); Recognizable Visual Features is NO in its outputs",
            s.measures.get("removed_ml").map_or(0.0, |v| v.round()),
            s.measures.get("clearance_mm").map_or(0.0, |v| v.round())
        ),
        None => println!("  FAILED: the head CT was not defaced"),
    }
    Ok(if hits.is_empty() && defaced.is_some() {
        crate::exit::OK
    } else {
        crate::exit::FINDINGS
    })
}
