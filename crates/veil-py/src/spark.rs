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
use veil_pipeline::InstanceOutcome;

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
/// output root, SHA-256 of the output, reason code, detail). Statuses: `written`,
/// `duplicate`, `suppressed`, `held_back`.
pub type Row = (
    String,
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn held_row(input: &Path, reason: &str, detail: &str) -> Row {
    (
        input.display().to_string(),
        "held_back",
        None,
        None,
        Some(reason.to_string()),
        Some(detail.to_string()),
    )
}

/// A released output waiting for its claim to be settled.
struct Released {
    index: usize,
    bytes: Vec<u8>,
    sha256: String,
}

/// De-identifies the inputs: instances the series stage waits for go together as one group.
fn deidentify_all(deid: &Deidentifier, inputs: &[PathBuf]) -> Vec<Result<InstanceOutcome, String>> {
    let pipeline = deid.pipeline();
    let mut outcomes: Vec<Option<Result<InstanceOutcome, String>>> = Vec::new();
    let mut waiting: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        let outcome = match std::fs::read(path) {
            Err(e) => Err(format!("cannot read the input: {e}")),
            Ok(bytes) => match pipeline.deidentify_bytes(&bytes) {
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
    for (i, o) in indices.into_iter().zip(pipeline.deidentify_group(&members)) {
        outcomes[i] = Some(Ok(o));
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every input has an outcome"))
        .collect()
}

/// Writes `bytes` to `final_path` through a temporary file in `tmp` (same file system) and a
/// rename. Returns false, writing nothing, when the path already holds other bytes.
fn write_atomic(final_path: &Path, tmp: &Path, bytes: &[u8], fsync: bool) -> std::io::Result<bool> {
    if let Ok(existing) = std::fs::read(final_path) {
        return Ok(existing == bytes);
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
    Ok(true)
}

/// De-identifies one series (or any group of inputs holding every version of each instance)
/// and writes its outputs under `out`, temporary files in `tmp`. One row per input, in input
/// order.
#[pyfunction]
#[pyo3(signature = (deid, inputs, out, tmp, fsync=false))]
pub fn write_series(
    py: Python<'_>,
    deid: &Deidentifier,
    mut inputs: Vec<PathBuf>,
    out: PathBuf,
    tmp: PathBuf,
    fsync: bool,
) -> PyResult<Vec<Row>> {
    // The order a run sees inputs in decides which of identical versions is the `written` one.
    inputs.sort();
    let rows = py.allow_threads(|| series_rows(deid, &inputs, &out, &tmp, fsync));
    rows.map_err(|e| errors::runtime(format!("writing under {}: {e}", out.display())))
}

fn series_rows(
    deid: &Deidentifier,
    inputs: &[PathBuf],
    out: &Path,
    tmp: &Path,
    fsync: bool,
) -> std::io::Result<Vec<Row>> {
    let mut rows: Vec<Option<Row>> = vec![None; inputs.len()];
    let mut claims: BTreeMap<String, Vec<Released>> = BTreeMap::new();
    for (index, outcome) in deidentify_all(deid, inputs).into_iter().enumerate() {
        let input = &inputs[index];
        rows[index] = Some(match outcome {
            Err(detail) => held_row(input, "unreadable", &detail),
            Ok(InstanceOutcome::Released {
                bytes, relative, ..
            }) => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let claim = Released {
                    index,
                    bytes,
                    sha256,
                };
                claims
                    .entry(relative.display().to_string())
                    .or_default()
                    .push(claim);
                continue;
            }
            Ok(InstanceOutcome::Suppressed) => (
                input.display().to_string(),
                "suppressed",
                None,
                None,
                Some("suppressed".into()),
                None,
            ),
            Ok(InstanceOutcome::HeldBack { reason, detail }) => held_row(input, &reason, &detail),
            Ok(InstanceOutcome::Excluded { reason }) => {
                held_row(input, &reason, "excluded by the consent gate")
            }
            Ok(InstanceOutcome::WaitsForSeries { .. }) => held_row(
                input,
                "internal_error",
                "the series stage did not take this instance; it was held back",
            ),
        });
    }
    for (relative, versions) in claims {
        for (index, row) in settle_claim(&relative, versions, inputs, out, tmp, fsync)? {
            rows[index] = Some(row);
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| r.expect("every input has a row"))
        .collect())
}

/// Every version of one output path: written once, duplicates named, conflicts held back.
fn settle_claim(
    relative: &str,
    versions: Vec<Released>,
    inputs: &[PathBuf],
    out: &Path,
    tmp: &Path,
    fsync: bool,
) -> std::io::Result<Vec<(usize, Row)>> {
    let row = |index: usize, status, sha: &str| {
        (
            index,
            (
                inputs[index].display().to_string(),
                status,
                Some(relative.to_string()),
                Some(sha.to_string()),
                None,
                None,
            ),
        )
    };
    if versions.iter().any(|v| v.sha256 != versions[0].sha256) {
        let (reason, detail) = veil_pipeline::conflict_reason();
        return Ok(versions
            .iter()
            .map(|v| (v.index, held_row(&inputs[v.index], &reason, &detail)))
            .collect());
    }
    let first = &versions[0];
    let mut rows = Vec::with_capacity(versions.len());
    if write_atomic(&out.join(relative), tmp, &first.bytes, fsync)? {
        rows.push(row(first.index, "written", &first.sha256));
    } else {
        let detail = "the output path already holds a different file (another key or policy wrote to this output directory?)";
        rows.push((
            first.index,
            held_row(&inputs[first.index], "output_conflict", detail),
        ));
    }
    for v in &versions[1..] {
        rows.push(row(v.index, "duplicate", &v.sha256));
    }
    Ok(rows)
}
