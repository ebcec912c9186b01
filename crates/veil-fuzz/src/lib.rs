//! Fuzzing on stable Rust for Veil: structured mutators of real DICOM files ([`mutate`]) and a
//! bounded driver ([`run_case`], [`fuzz_corpus`]) that pushes each mutated file through the real
//! pipeline and checks the property every input must satisfy: it ends as a written output that
//! re-parses and holds none of the source's identifying values, as a quarantine entry with a JSON
//! reason, or as a rejection with a reason — with no escaped panic and within per-file time and
//! memory bounds.

pub mod mutate;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use veil_pipeline::report::Status;
use veil_pipeline::{Config, Pipeline};

/// Peak RSS any case may reach, whatever its size (kB).
pub const MEMORY_BOUND_BASE_KB: u64 = 1 << 20;
/// Peak RSS allowed per byte of input beyond that (decoded pixels, the output, the copy).
pub const MEMORY_BOUND_PER_BYTE: u64 = 16;
/// Time any case may take before it counts as a failure (a hang is reported at `limit`).
pub const TIME_BOUND: Duration = Duration::from_secs(20);

/// How one case ended.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub label: String,
    pub status: Option<Status>,
    pub reason: Option<String>,
    pub elapsed: Duration,
    /// Peak resident set of the process during the case (kB), when the OS reports it.
    pub peak_rss_kb: Option<u64>,
    /// Property violations (empty when the case passed).
    pub violations: Vec<String>,
}

/// Totals of a fuzz run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Complete passes over the seeds.
    pub rounds: usize,
    pub cases: usize,
    pub written: usize,
    pub quarantined: usize,
    pub rejected: usize,
    pub failures: Vec<CaseResult>,
    pub max_elapsed: Duration,
    pub max_elapsed_label: String,
    pub max_rss_kb: u64,
    pub max_rss_label: String,
}

/// The person-identifying values of a source file (name, IDs, accession, physicians), read
/// before mutation; none may appear in an output. (Institution names are left out: in a mixed
/// corpus one file's institution is another's manufacturer.)
pub fn planted_values(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        b"FUZZ-PLANTED-ID1".to_vec(),
        b"FUZZ^PLANTED".to_vec(),
        b"BOMB^PLANTED".to_vec(),
    ];
    let Ok(obj) = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Auto)
        .from_reader(bytes)
    else {
        return out;
    };
    use dicom_object::mem::InMemElement;
    for tag in [
        (0x0010, 0x0010),
        (0x0010, 0x0020),
        (0x0008, 0x0050),
        (0x0008, 0x0090),
        (0x0010, 0x1000),
        (0x0008, 0x1050),
        (0x0008, 0x1070),
    ] {
        let el: Option<&InMemElement> = obj.element(dicom_object::Tag(tag.0, tag.1)).ok();
        if let Some(s) = el.and_then(|e| e.to_str().ok()) {
            for part in s.split(['^', '\\', '=']) {
                let p = part.trim().trim_end_matches('\0');
                // Short values (e.g. "M", "1") are everywhere in any file; they are not a signal.
                // Placeholders left by an earlier anonymiser identify no one.
                let placeholder = ["anonymized", "anonymous", "unknown", "removed"]
                    .iter()
                    .any(|w| p.eq_ignore_ascii_case(w));
                if p.len() >= 5 && !placeholder && p.chars().any(|c| c.is_ascii_alphabetic()) {
                    out.push(p.as_bytes().to_vec());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Current and peak resident set (kB) from /proc; the peak is reset before each case.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Builds the pipeline the CLI uses by default: default policy, a fixed test key. It runs on the
/// global worker pool: a pool per case would start fresh threads, each with its own allocator
/// arena that keeps the memory freed in it, and the per-case peak RSS would measure the harness
/// (it grew by ~460 MB a case on a 43 MB multi-frame file) instead of the case.
pub fn pipeline(out: &Path, quarantine: &Path) -> Pipeline {
    let key = veil_keys::Key::from_bytes([7u8; 32]);
    let deid = veil_deid::Deidentifier::new(veil_profile::Policy::default_policy(), key, None);
    let mut config = Config::new(out.to_path_buf());
    config.quarantine = quarantine.to_path_buf();
    Pipeline::new(deid, None, config)
}

/// Runs one case through a fresh pipeline in `work` and checks the property. A case that has not
/// finished after `limit` is reported as a hang (its thread is left behind).
pub fn run_case(
    label: &str,
    bytes: Vec<u8>,
    planted: &[Vec<u8>],
    work: &Path,
    limit: Duration,
) -> CaseResult {
    let dir = work.join(format!("case-{}", sanitize(label)));
    let _ = std::fs::remove_dir_all(&dir);
    let input_dir = dir.join("in");
    std::fs::create_dir_all(&input_dir).expect("create case dir");
    let input = input_dir.join("input.dcm");
    std::fs::write(&input, &bytes).expect("write case");
    let out = dir.join("out");
    let q = dir.join("quarantine");
    let mut result = CaseResult {
        label: label.to_string(),
        status: None,
        reason: None,
        elapsed: Duration::ZERO,
        peak_rss_kb: None,
        violations: Vec::new(),
    };
    reset_peak_rss();
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    {
        let (input_dir, out, q) = (input_dir.clone(), out.clone(), q.clone());
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| {
                let p = pipeline(&out, &q);
                let mut outcomes = Vec::new();
                let seen = std::sync::Mutex::new(&mut outcomes);
                let report = p.run(&[input_dir], &|o| seen.lock().unwrap().push(o.clone()));
                (report.map_err(|e| e.to_string()), outcomes)
            });
            let _ = tx.send(r);
        });
    }
    let r = rx.recv_timeout(limit);
    result.elapsed = started.elapsed();
    result.peak_rss_kb = peak_rss_kb();
    // Per-file bounds: a file may cost memory in proportion to its size, not gigabytes for
    // kilobytes (the bound leaves room for decoded pixel data and the output copy).
    let bound_kb = (MEMORY_BOUND_BASE_KB).max(bytes.len() as u64 / 1024 * MEMORY_BOUND_PER_BYTE);
    if let Some(kb) = result.peak_rss_kb.filter(|kb| *kb > bound_kb) {
        result.violations.push(format!(
            "memory bound exceeded: peak RSS {kb} kB > {bound_kb} kB"
        ));
    }
    if result.elapsed > TIME_BOUND && r.is_ok() {
        result.violations.push(format!(
            "time bound exceeded: {:?} > {TIME_BOUND:?}",
            result.elapsed
        ));
    }
    let (report, outcomes) = match r {
        Err(_) => {
            result
                .violations
                .push(format!("hang: no outcome after {limit:?}"));
            return result;
        }
        Ok(Err(panic)) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            result
                .violations
                .push(format!("panic escaped the pipeline: {msg}"));
            return result;
        }
        Ok(Ok(x)) => x,
    };
    if let Err(e) = report {
        result.violations.push(format!("run failed: {e}"));
        return result;
    }
    if outcomes.len() != 1 {
        result
            .violations
            .push(format!("{} outcomes for one input", outcomes.len()));
        return result;
    }
    let o = &outcomes[0];
    result.status = Some(o.status);
    result.reason = o.reason.clone();
    match o.status {
        Status::Written => match &o.output {
            None => result
                .violations
                .push("written without an output path".into()),
            Some(path) => check_output(&out.join(path), planted, &mut result.violations),
        },
        Status::Quarantined => {
            if o.reason.as_deref().unwrap_or("").is_empty() {
                result
                    .violations
                    .push("quarantined without a reason".into());
            }
            // The pipeline turns a panic into this quarantine: held back, but still a crash.
            if o.reason.as_deref() == Some("internal_error") {
                result
                    .violations
                    .push("panic inside the pipeline (caught and quarantined)".into());
            }
            let reasons = walk(&q)
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .count();
            if reasons == 0 {
                result
                    .violations
                    .push("quarantined but no JSON reason in the quarantine".into());
            }
            if walk(&out)
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "dcm"))
            {
                result
                    .violations
                    .push("quarantined yet an output exists".into());
            }
        }
        Status::Rejected => {
            if o.reason.as_deref().unwrap_or("").is_empty() {
                result.violations.push("rejected without a reason".into());
            }
            if walk(&out)
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "dcm"))
            {
                result
                    .violations
                    .push("rejected yet an output exists".into());
            }
        }
        other => result
            .violations
            .push(format!("unexpected status {other:?}")),
    }
    // Nothing half-written anywhere outside the run's own temp area.
    for p in walk(&out) {
        let s = p.to_string_lossy();
        if s.ends_with(".part") && !s.contains("/.veil/tmp/") {
            result.violations.push(format!("partial file left: {s}"));
        }
    }
    if std::fs::read(&input).ok().as_deref() != Some(&bytes[..]) {
        result.violations.push("input modified".into());
    }
    if result.violations.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn check_output(path: &Path, planted: &[Vec<u8>], violations: &mut Vec<String>) {
    let Ok(data) = std::fs::read(path) else {
        violations.push("output missing".into());
        return;
    };
    if let Err(e) = dicom_object::open_file(path) {
        violations.push(format!("output does not re-parse: {e}"));
    }
    for v in planted {
        if memfind(&data, v) {
            violations.push(format!(
                "planted value of {} bytes survives in the output",
                v.len()
            ));
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Every file under a directory.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect()
}

/// Records a case result into the summary.
pub fn record(summary: &mut Summary, r: CaseResult) {
    summary.cases += 1;
    match r.status {
        Some(Status::Written) => summary.written += 1,
        Some(Status::Quarantined) => summary.quarantined += 1,
        Some(Status::Rejected) => summary.rejected += 1,
        _ => {}
    }
    if r.elapsed > summary.max_elapsed {
        summary.max_elapsed = r.elapsed;
        summary.max_elapsed_label = r.label.clone();
    }
    if let Some(k) = r.peak_rss_kb {
        if k > summary.max_rss_kb {
            summary.max_rss_kb = k;
            summary.max_rss_label = r.label.clone();
        }
    }
    if !r.violations.is_empty() {
        summary.failures.push(r);
    }
}

/// Mutates each seed file and runs every case. `budget` stops the run early (the cases done are
/// still reported); `sample` bounds per-file mutations when `exhaustive` is off. With budget left
/// after the last seed (and `rounds` > 1), the seeds are mutated again: the random choices
/// (truncation points, elements, byte flips) differ from one round to the next.
#[allow(clippy::too_many_arguments)]
pub fn fuzz_corpus(
    seeds: &[PathBuf],
    work: &Path,
    rng_seed: u64,
    exhaustive: bool,
    sample: usize,
    per_case_limit: Duration,
    budget: Duration,
    rounds: usize,
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut rng = mutate::Rng::new(rng_seed);
    for round in 0..rounds.max(1) {
        for seed in seeds {
            let Ok(bytes) = std::fs::read(seed) else {
                continue;
            };
            let planted = planted_values(&bytes);
            let name = seed
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            mutate::each_mutation(&bytes, &mut rng, exhaustive, sample, &mut |case| {
                if started.elapsed() > budget {
                    return;
                }
                let label = format!("r{round}:{name}:{}", case.label);
                let r = run_case(&label, case.bytes, &planted, work, per_case_limit);
                record(&mut summary, r);
            });
            if started.elapsed() > budget {
                return summary;
            }
        }
        summary.rounds = round + 1;
    }
    summary
}
