//! `veil deid`: de-identify files and directories into an output tree.

use std::io::IsTerminal;
use std::path::PathBuf;

use veil_pipeline::{FileOutcome, Pipeline, RunReport};

#[derive(clap::Args)]
pub struct Args {
    /// Input files and directories (walked recursively; never modified).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Key file written by `veil key new`. Without --key: VEIL_KEY_FILE=FILE names the file, or
    /// VEIL_KEY holds the key itself (its 64 hex digits).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Output root: OUT/<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm
    #[arg(long)]
    pub out: PathBuf,
    /// Policy file (TOML); default: Basic Profile + Retain Longitudinal Modified Dates +
    /// Retain Patient Characteristics + Clean Descriptors.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Quarantine directory for held-back inputs (default: <OUT>.quarantine).
    #[arg(long)]
    pub quarantine: Option<PathBuf>,
    /// CSV `original_patient_id,pseudonym` of assigned subject IDs (clinical trials).
    #[arg(long)]
    pub patient_map: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// fsync every output before it is renamed into place.
    #[arg(long)]
    pub fsync: bool,
    /// Print one JSON document (the run report) on stdout instead of the human-readable text.
    #[arg(long)]
    pub json: bool,
}

/// The pipeline for these arguments, from the one builder every front end uses.
pub fn build_pipeline(args: &Args) -> anyhow::Result<Pipeline> {
    veil_app::build::check_inputs(&args.inputs).map_err(crate::exit::app_error)?;
    let settings = veil_app::Settings {
        key: args.key.clone(),
        policy: args.policy.clone(),
        patient_map: args.patient_map.clone(),
        out: args.out.clone(),
        quarantine: args.quarantine.clone(),
        threads: args.threads,
        fsync: args.fsync,
    };
    let resolved = settings.resolve().map_err(crate::exit::app_error)?;
    Ok(veil_app::build(resolved))
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let pipeline = build_pipeline(&args)?;
    let report = run_pipeline(&pipeline, &args.inputs, args.json)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, &pipeline);
    }
    Ok(if report.all_released() {
        crate::exit::OK
    } else {
        crate::exit::QUARANTINED
    })
}

/// Runs with a progress bar on a terminal; lists held-back inputs on stderr as they happen.
pub fn run_pipeline(
    pipeline: &Pipeline,
    inputs: &[PathBuf],
    quiet: bool,
) -> anyhow::Result<RunReport> {
    // Progress by bytes, not files: a run's time goes where its bytes are (one large cine takes
    // as long as thousands of small CT slices), so the estimate holds on mixed corpora.
    let mut sizes: std::collections::HashMap<PathBuf, u64> = Default::default();
    let bar = if !quiet && std::io::stderr().is_terminal() {
        for f in veil_pipeline::walk_inputs(inputs, &[])? {
            let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            sizes.insert(f, len);
        }
        let bar = indicatif::ProgressBar::new(sizes.values().sum());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    let done_files = std::sync::atomic::AtomicU64::new(0);
    let total_files = sizes.len();
    // Name the first held-back inputs as they happen; the report has the full list.
    const NAMED: usize = 20;
    let named = std::sync::atomic::AtomicUsize::new(0);
    let progress = |o: &FileOutcome| {
        if let Some(b) = &bar {
            b.inc(sizes.get(&o.input).copied().unwrap_or(0));
            let n = done_files.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            b.set_message(format!("{n}/{total_files} files"));
        }
        if !quiet {
            if let (
                veil_pipeline::report::Status::Quarantined
                | veil_pipeline::report::Status::Rejected,
                Some(reason),
            ) = (o.status, &o.reason)
            {
                let n = named.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n > NAMED {
                    return;
                }
                let line = if n == NAMED {
                    "… more held-back inputs: `veil quarantine list QUARANTINE` names them all"
                        .to_string()
                } else {
                    format!("{} {}: {}", o.status.as_str(), o.input.display(), reason)
                };
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    };
    let report = pipeline
        .run(inputs, &progress)
        .map_err(crate::exit::pipeline_error)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(report)
}

/// Series the face stage planned: counts by outcome, and the ones it changed or held back.
fn print_series(r: &RunReport) {
    if r.series.is_empty() {
        return;
    }
    let mut outcomes: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in &r.series {
        *outcomes.entry(s.outcome.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = outcomes.iter().map(|(o, n)| format!("{n} {o}")).collect();
    println!("  series (faces): {}", counts.join(", "));
    let notable = r.series.iter().filter(|s| {
        matches!(
            s.outcome.as_str(),
            "defaced" | "held_back" | "no_face_found"
        )
    });
    for s in notable.take(20) {
        println!(
            "    {} ({} instance(s)): {} — {}",
            &s.series_ref[..12.min(s.series_ref.len())],
            s.instances,
            s.outcome,
            s.detail
        );
    }
}

pub fn print_summary(r: &RunReport, pipeline: &Pipeline) {
    let out = &pipeline.config().out;
    println!(
        "veil deid: {} input file(s) in {:.2} s ({:.1} files/s, {:.1} MB/s)",
        r.inputs, r.seconds, r.files_per_second, r.megabytes_per_second
    );
    println!(
        "  written      {:>7}  (verified, in {})",
        r.written,
        out.display()
    );
    if r.already_in_place > 0 {
        println!(
            "    of which    {:>6}  were already in place from an earlier run",
            r.already_in_place
        );
    }
    if r.skipped_done_earlier > 0 {
        println!(
            "  skipped      {:>7}  (finished by an earlier run)",
            r.skipped_done_earlier
        );
    }
    if r.duplicates > 0 {
        println!(
            "  duplicates   {:>7}  (same instance as another input)",
            r.duplicates
        );
    }
    let q = &pipeline.config().quarantine;
    println!(
        "  quarantined  {:>7}  (copies + JSON reasons in {})",
        r.quarantined,
        q.display()
    );
    println!(
        "  rejected     {:>7}  (not DICOM, unreadable or DICOMDIR: reported, not copied)",
        r.rejected
    );
    if r.excluded > 0 {
        println!("  excluded     {:>7}  (consent)", r.excluded);
    }
    if r.suppressed > 0 {
        println!(
            "  suppressed   {:>7}  (re-identification risk)",
            r.suppressed
        );
    }
    for (reason, n) in &r.reasons {
        println!("    {n:>6} × {reason}");
    }
    let a = &r.actions;
    println!(
        "  actions: {} removed, {} emptied, {} dummy, {} pseudonyms, {} UIDs replaced, {} dates shifted, {} texts cleaned, {} private removed, {} private kept, {} unknown removed",
        a.removed, a.emptied, a.dummied, a.pseudonymised, a.uids_replaced, a.dates_shifted, a.text_cleaned, a.private_removed, a.private_kept, a.unknown_removed
    );
    if a.numbers_replaced + a.code_values_dropped > 0 {
        println!(
            "  identifiers hidden in structured values: {} number(s) holding an ID's digits set to 0, {} code value(s) that were not terms of their attribute dropped",
            a.numbers_replaced, a.code_values_dropped
        );
    }
    print_series(r);
    for w in &r.warnings {
        println!("  WARNING: {w}");
    }
    println!(
        "  policy {} (sha256 {}), key fingerprint {}",
        r.policy,
        &r.policy_sha256[..16],
        r.key_fingerprint
    );
    if r.held_back_total > 0 {
        println!(
            "  held back now, this and earlier runs: {} input(s); name them with `veil quarantine list {}`",
            r.held_back_total,
            q.display()
        );
    }
    println!(
        "  run report (operator's side, not shipped): {}",
        q.join(".veil/run-report.json").display()
    );
}
