//! Runs over paths: `veil.deid_paths` (the whole pipeline as `veil deid` runs it) and
//! `veil.verify` (the independent verifier as `veil verify` runs it). Reports come back as the
//! CLI's `--json` documents.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use veil_pipeline::FileOutcome;

use crate::engine::{pipeline_for, Key, Policy};
use crate::errors;

/// The CLI's exit code for a finished run: 0 when every input was released, 3 otherwise.
const QUARANTINED: u8 = 3;
/// `veil verify`'s exit code when it found problems.
const FINDINGS: u8 = 4;

/// What a progress callback is given for one input: its path, status, and (held back) the
/// reason code; output path relative to the output root when written.
fn progress_args(o: &FileOutcome) -> (String, &'static str, Option<String>, Option<String>) {
    (
        o.input.display().to_string(),
        o.status.as_str(),
        o.reason.clone(),
        o.output.as_ref().map(|p| p.display().to_string()),
    )
}

/// Runs the pipeline over files and directories into `out`, exactly as `veil deid` does (same
/// builder, same run). Returns (run report as JSON, exit code the CLI would give).
#[pyfunction]
#[pyo3(signature = (inputs, out, key, policy, quarantine=None, patient_map=None, threads=None, fsync=false, progress=None))]
#[allow(clippy::too_many_arguments)]
pub fn deid_paths(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    out: PathBuf,
    key: &Key,
    policy: &Policy,
    quarantine: Option<PathBuf>,
    patient_map: Option<PathBuf>,
    threads: Option<usize>,
    fsync: bool,
    progress: Option<PyObject>,
) -> PyResult<(String, u8)> {
    veil_app::build::check_inputs(&inputs).map_err(errors::app_error)?;
    let settings = veil_app::Settings {
        key: None,
        policy: None,
        patient_map,
        out,
        quarantine,
        threads,
        fsync,
    };
    let pipeline = pipeline_for(&key.0, &policy.0, settings).map_err(errors::app_error)?;
    // The first exception a callback raised: the run goes on (stopping half way would leave
    // less done, not less risk) and the exception is raised when it ends.
    let callback_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let on_file = |o: &FileOutcome| {
        let Some(callback) = &progress else { return };
        Python::with_gil(|py| {
            if let Err(e) = callback.call1(py, progress_args(o)) {
                callback_error.lock().unwrap().get_or_insert(e);
            }
        });
    };
    let report = py.allow_threads(|| pipeline.run(&inputs, &on_file));
    let report = report.map_err(|e| errors::app_error(e.into()))?;
    if let Some(e) = callback_error.into_inner().unwrap() {
        return Err(e);
    }
    let json = serde_json::to_string(&report).map_err(|e| errors::runtime(e.to_string()))?;
    let code = if report.all_released() {
        0
    } else {
        QUARANTINED
    };
    Ok((json, code))
}

/// Verifies de-identified files or directories with the independent verifier, optionally
/// against the originals, as `veil verify`. Returns (report as JSON, exit code: 0 clean, 4
/// findings).
#[pyfunction]
#[pyo3(signature = (outputs, policy, policy_given, against=Vec::new(), ocr=false))]
pub fn verify(
    py: Python<'_>,
    outputs: Vec<PathBuf>,
    policy: &Policy,
    policy_given: bool,
    against: Vec<PathBuf>,
    ocr: bool,
) -> PyResult<(String, u8)> {
    let report = py.allow_threads(|| {
        veil_app::verify_files::verify_files(veil_app::verify_files::VerifyRequest {
            outputs: &outputs,
            against: &against,
            policy: &policy.0,
            policy_given,
            ocr,
            face_judge: None,
        })
    });
    let report = report.map_err(errors::app_error)?;
    let json = serde_json::to_string(&report).map_err(|e| errors::runtime(e.to_string()))?;
    let code = if report.findings.is_empty() {
        0
    } else {
        FINDINGS
    };
    Ok((json, code))
}
