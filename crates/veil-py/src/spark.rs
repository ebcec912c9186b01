//! The per-task work of the Spark scale-out (`veil.spark`): keyed references of instances for
//! the pre-pass, and one series de-identified and written atomically.
//!
//! Everything that decides bytes is the pipeline `veil deid` runs. What is here is what a run
//! over paths does around it, for a series a Spark task holds whole: several inputs that are
//! one instance (one output path) are one `duplicate` when their outputs are identical, and all
//! held back as `conflicting_duplicate` when they differ, as the CLI decides; an output path
//! already holding the same bytes (a retried task) is left as it is, one holding other bytes is
//! an `output_conflict`; outputs are written to a temporary file beside the tree and renamed
//! into place, so a killed task leaves no half-written output.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use sha2::{Digest, Sha256};
use veil_app::release_job::WorkerTask;
use veil_pipeline::{InstanceOutcome, Pipeline};
use veil_store::publish::Published;

use crate::engine::{Deidentifier, Key};
use crate::errors;

/// Domains of the keyed references: a reference in one domain says nothing about another.
const SERIES_DOMAIN: &str = "veil-spark-series";
const INSTANCE_DOMAIN: &str = "veil-spark-instance";
const PATH_DOMAIN: &str = "veil-spark-path";

fn keyed_hex(key: &veil_keys::Key, domain: &str, value: &str) -> String {
    hex::encode(&key.keyed_ref(domain, value)[..16])
}

/// The Series and SOP Instance UIDs of a file's header (read up to Pixel Data).
fn header_uids(path: &Path) -> Option<(String, String)> {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .ok()?;
    let get = |t| {
        obj.get(t)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
    };
    Some((
        get(tags::SERIES_INSTANCE_UID)?,
        get(tags::SOP_INSTANCE_UID)?,
    ))
}

/// For each path: (series reference, instance reference), keyed so that the shuffle and the
/// plan never carry a UID in clear. A file whose header does not name both UIDs is a series of
/// its own (keyed by its path) with an empty instance reference: the pipeline decides what it
/// is.
#[pyfunction]
pub fn instance_refs(py: Python<'_>, key: &Key, paths: Vec<PathBuf>) -> Vec<(String, String)> {
    py.allow_threads(|| {
        paths
            .iter()
            .map(|p| match header_uids(p) {
                Some((series, sop)) => (
                    keyed_hex(&key.0, SERIES_DOMAIN, &series),
                    keyed_hex(&key.0, INSTANCE_DOMAIN, &sop),
                ),
                None => (
                    format!(
                        "file-{}",
                        keyed_hex(&key.0, PATH_DOMAIN, &p.display().to_string())
                    ),
                    String::new(),
                ),
            })
            .collect()
    })
}

/// One input's row in the Spark job's outcomes: (input, status, output path relative to the
/// output root, SHA-256 of the output, reason code, detail, keyed reference of an excluded
/// patient, ledger). Statuses: `written`, `duplicate`, `suppressed`, `held_back`, and in a
/// release `excluded`; ledger (releases only): `recorded`, or `already_recorded` when the output
/// was found in place and recorded by an earlier attempt.
pub type Row = (
    String,
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<&'static str>,
);

fn row(input: &Path, status: &'static str, output: Option<&str>, sha256: Option<&str>) -> Row {
    (
        input.display().to_string(),
        status,
        output.map(str::to_string),
        sha256.map(str::to_string),
        None,
        None,
        None,
        None,
    )
}

fn held_row(input: &Path, reason: &str, detail: &str) -> Row {
    let mut r = row(input, "held_back", None, None);
    r.4 = Some(reason.to_string());
    r.5 = Some(detail.to_string());
    r
}

/// A released output waiting for its claim to be settled.
struct Released {
    index: usize,
    bytes: Vec<u8>,
    sha256: String,
    instance: Box<veil_pipeline::CommittedInstance>,
}

/// What the outputs of a group are written for: a plain run, or one task of a release (the
/// consent gate admits, every output is published with its ledger entry).
#[derive(Clone, Copy)]
pub(crate) enum Sink<'a> {
    Deid(&'a Pipeline),
    Release(&'a Pipeline, &'a WorkerTask<'a>),
}

impl Sink<'_> {
    fn pipeline(&self) -> &Pipeline {
        match self {
            Sink::Deid(p) | Sink::Release(p, _) => p,
        }
    }

    fn one(&self, bytes: &[u8]) -> InstanceOutcome {
        match self {
            Sink::Deid(p) => p.deidentify_bytes(bytes),
            Sink::Release(p, task) => p.deidentify_bytes_with(bytes, *task),
        }
    }

    fn group(&self, members: &[Vec<u8>]) -> Vec<InstanceOutcome> {
        match self {
            Sink::Deid(p) => p.deidentify_group(members),
            Sink::Release(p, task) => p.deidentify_group_with(members, *task),
        }
    }
}

/// De-identifies the inputs: instances the series stage waits for go together as one group.
fn deidentify_all(sink: Sink<'_>, inputs: &[PathBuf]) -> Vec<Result<InstanceOutcome, String>> {
    let mut outcomes: Vec<Option<Result<InstanceOutcome, String>>> = Vec::new();
    let mut waiting: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        let outcome = match std::fs::read(path) {
            Err(e) => Err(format!("cannot read the input: {e}")),
            Ok(bytes) => match sink.one(&bytes) {
                InstanceOutcome::WaitsForSeries { .. } => {
                    waiting.push((i, bytes));
                    outcomes.push(None);
                    continue;
                }
                other => Ok(other),
            },
        };
        outcomes.push(Some(outcome));
    }
    let (indices, members): (Vec<usize>, Vec<Vec<u8>>) = waiting.into_iter().unzip();
    for (i, o) in indices.into_iter().zip(sink.group(&members)) {
        outcomes[i] = Some(Ok(o));
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every input has an outcome"))
        .collect()
}

/// Writes `bytes` to `final_path` through a temporary file in `tmp` (same file system) and a
/// rename. Does nothing when the path already holds these bytes (a retried task).
fn write_atomic(final_path: &Path, tmp: &Path, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
    if holds(final_path, bytes)? == Some(true) {
        return Ok(());
    }
    std::fs::create_dir_all(tmp)?;
    let mut temp = tempfile::Builder::new().prefix("veil-").tempfile_in(tmp)?;
    temp.write_all(bytes)?;
    if fsync {
        temp.as_file().sync_all()?;
    }
    if let Some(parent) = final_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    temp.persist(final_path).map_err(|e| e.error)?;
    Ok(())
}

/// Does `path` hold exactly `bytes` (None: there is no file)?
fn holds(path: &Path, bytes: &[u8]) -> std::io::Result<Option<bool>> {
    match std::fs::read(path) {
        Ok(existing) => Ok(Some(existing == bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// De-identifies one series (or any group of inputs holding every version of each instance)
/// and writes its outputs under `out`, temporary files in `tmp`; held-back inputs are copied
/// into `quarantine` when given. One row per input, in input order.
#[pyfunction]
#[pyo3(signature = (deid, inputs, out, tmp, fsync=false, quarantine=None))]
pub fn write_series(
    py: Python<'_>,
    deid: &Deidentifier,
    mut inputs: Vec<PathBuf>,
    out: PathBuf,
    tmp: PathBuf,
    fsync: bool,
    quarantine: Option<PathBuf>,
) -> PyResult<Vec<Row>> {
    // The order a run sees inputs in decides which of identical versions is the `written` one.
    inputs.sort();
    let places = Places {
        out: &out,
        tmp: &tmp,
        fsync,
        quarantine: quarantine.as_deref(),
    };
    let rows = py.allow_threads(|| series_rows(Sink::Deid(deid.pipeline()), &inputs, &places));
    rows.map_err(|e| errors::runtime(format!("writing under {}: {e}", out.display())))
}

/// Where a task writes.
pub(crate) struct Places<'a> {
    pub(crate) out: &'a Path,
    pub(crate) tmp: &'a Path,
    pub(crate) fsync: bool,
    /// Where held-back inputs are copied with their reasons (the CLI's quarantine), if anywhere.
    pub(crate) quarantine: Option<&'a Path>,
}

/// Why a group could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The registry or ledger failed: the task must fail (and be retried), never go on.
    #[error(transparent)]
    Release(#[from] veil_app::AppError),
}

/// Rows of one group (see [`write_series`]) written into `sink`.
pub(crate) fn series_rows(
    sink: Sink<'_>,
    inputs: &[PathBuf],
    places: &Places<'_>,
) -> Result<Vec<Row>, WriteError> {
    let mut rows: Vec<Option<Row>> = vec![None; inputs.len()];
    let mut claims: BTreeMap<String, Vec<Released>> = BTreeMap::new();
    for (index, outcome) in deidentify_all(sink, inputs).into_iter().enumerate() {
        let input = &inputs[index];
        rows[index] = Some(match outcome {
            Err(detail) => held_row(input, "unreadable", &detail),
            Ok(InstanceOutcome::Released {
                bytes,
                relative,
                instance,
            }) => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let claim = Released {
                    index,
                    bytes,
                    sha256,
                    instance,
                };
                claims
                    .entry(relative.display().to_string())
                    .or_default()
                    .push(claim);
                continue;
            }
            Ok(InstanceOutcome::Suppressed) => {
                let mut r = row(input, "suppressed", None, None);
                r.4 = Some("suppressed".into());
                r
            }
            Ok(InstanceOutcome::HeldBack { reason, detail }) => held_row(input, &reason, &detail),
            Ok(InstanceOutcome::Excluded { reason, patient }) => {
                let mut r = row(input, "excluded", None, None);
                r.4 = Some(reason);
                r.5 = Some("excluded by the consent gate".into());
                if let Sink::Release(_, task) = sink {
                    r.6 = Some(task.patient_ref(&patient));
                }
                r
            }
            Ok(InstanceOutcome::WaitsForSeries { .. }) => held_row(
                input,
                "internal_error",
                "the series stage did not take this instance; it was held back",
            ),
        });
    }
    for (relative, versions) in claims {
        for (index, row) in settle_claim(sink, &relative, versions, inputs, places)? {
            rows[index] = Some(row);
        }
    }
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| r.expect("every input has a row"))
        .collect();
    if let Some(quarantine) = places.quarantine {
        hold_back(sink.pipeline(), quarantine, inputs, &rows)?;
    }
    Ok(rows)
}

/// Copies every held-back input into the quarantine with its reason and lists it in the
/// operator's held-back list, as `veil deid` does (an input that could not be read has nothing
/// to copy).
fn hold_back(
    pipeline: &Pipeline,
    quarantine: &Path,
    inputs: &[PathBuf],
    rows: &[Row],
) -> Result<(), WriteError> {
    for (input, r) in inputs.iter().zip(rows) {
        if r.1 != "held_back" || r.4.as_deref() == Some("unreadable") {
            continue;
        }
        let Ok(bytes) = std::fs::read(input) else {
            continue;
        };
        let (reason, detail) = (r.4.as_deref().unwrap_or(""), r.5.as_deref().unwrap_or(""));
        pipeline
            .hold_back(quarantine, input, &bytes, reason, detail)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}

/// Every version of one output path: written once (and in a release published with its ledger
/// entry), duplicates named, conflicts held back.
fn settle_claim(
    sink: Sink<'_>,
    relative: &str,
    mut versions: Vec<Released>,
    inputs: &[PathBuf],
    places: &Places<'_>,
) -> Result<Vec<(usize, Row)>, WriteError> {
    if versions.iter().any(|v| v.sha256 != versions[0].sha256) {
        let (reason, detail) = veil_pipeline::conflict_reason();
        return Ok(versions
            .iter()
            .map(|v| (v.index, held_row(&inputs[v.index], &reason, &detail)))
            .collect());
    }
    let first = versions.remove(0);
    let input = &inputs[first.index];
    let output = places.out.join(relative);
    let mut rows = Vec::with_capacity(versions.len() + 1);
    if holds(&output, &first.bytes)? == Some(false) {
        let detail = "the output path already holds a different file (another key or policy wrote to this output directory?)";
        rows.push((first.index, held_row(input, "output_conflict", detail)));
    } else {
        let mut written = row(input, "written", Some(relative), Some(&first.sha256));
        let mut rename = || write_atomic(&output, places.tmp, &first.bytes, places.fsync);
        match sink {
            Sink::Deid(_) => rename()?,
            Sink::Release(_, task) => {
                let mut instance = first.instance;
                instance.output.clone_from(&output);
                instance.sha256.clone_from(&first.sha256);
                written.7 = Some(match task.publish(&instance, &mut rename)? {
                    Published::Queued => "recorded",
                    Published::AlreadyRecorded => "already_recorded",
                });
            }
        }
        rows.push((first.index, written));
    }
    for v in &versions {
        rows.push((
            v.index,
            row(
                &inputs[v.index],
                "duplicate",
                Some(relative),
                Some(&v.sha256),
            ),
        ));
    }
    Ok(rows)
}

/// The files under `inputs` as `veil deid` lists them (sorted, hidden files included, `exclude`
/// directories skipped): what a Spark job given paths runs over, so that it sees what the CLI
/// sees (Spark's own file source leaves out names starting with `.` or `_`).
#[pyfunction]
#[pyo3(signature = (inputs, exclude=Vec::new()))]
pub fn walk_inputs(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    exclude: Vec<PathBuf>,
) -> PyResult<Vec<PathBuf>> {
    let excluded: Vec<&Path> = exclude.iter().map(PathBuf::as_path).collect();
    py.allow_threads(|| veil_pipeline::walk_inputs(&inputs, &excluded))
        .map_err(|e| errors::usage(e.to_string()))
}
