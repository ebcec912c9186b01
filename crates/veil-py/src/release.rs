//! Consent-gated releases from Spark (`veil.spark.release`): the driver's coordinator and the
//! executors' workers of `veil_app::release_job`, as Python objects.
//!
//! The driver begins the release ([`ReleaseJob::begin`]: checks, the output directory's lock, the
//! reconcile) and finishes it from the tasks' outcome rows; each executor process opens the
//! store once ([`ReleaseWorker`]) and runs its partitions through [`release_partition`], which
//! admits every instance through the consent gate and publishes every output with its ledger
//! entry. What the tasks hand back is the outcome rows of `spark.rs`: no identifier, no key.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use veil_app::release_job::{Coordinator, JobSpec, JobTally, Worker};

use crate::engine::{Key, Policy};
use crate::errors;
use crate::spark::{series_rows, Places, Row, Sink, WriteError};

/// A release begun on the driver. Holds the output directory's release lock until it is
/// finished or dropped.
#[pyclass(module = "veil", name = "ReleaseJob", frozen)]
pub struct ReleaseJob {
    coordinator: Mutex<Option<Coordinator>>,
    spec: JobSpec,
    reconciled_before: String,
}

fn institution(config: Option<PathBuf>) -> PyResult<veil_store::Settings> {
    veil_app::registry::institution_settings(config.as_deref()).map_err(errors::app_error)
}

#[pymethods]
impl ReleaseJob {
    /// Checks the recipient and purpose in the store at `db`, locks `out`, settles what an
    /// interrupted earlier release left there and begins the release.
    #[staticmethod]
    #[pyo3(signature = (db, key, recipient, purpose, policy, out, quarantine, config=None))]
    #[allow(clippy::too_many_arguments)]
    fn begin(
        py: Python<'_>,
        db: String,
        key: &Key,
        recipient: String,
        purpose: String,
        policy: &Policy,
        out: PathBuf,
        quarantine: PathBuf,
        config: Option<PathBuf>,
    ) -> PyResult<ReleaseJob> {
        let settings = institution(config)?;
        let coordinator = py
            .allow_threads(|| {
                let store = veil_store::Store::open(Some(&db), Some(&key.0))?;
                Coordinator::begin(
                    store,
                    &settings,
                    &recipient,
                    &purpose,
                    &policy.0,
                    &out,
                    &quarantine,
                )
            })
            .map_err(errors::app_error)?;
        let reconciled_before =
            serde_json::to_string(&coordinator.reconciled_before).expect("JSON of plain counts");
        Ok(ReleaseJob {
            spec: coordinator.spec().clone(),
            coordinator: Mutex::new(Some(coordinator)),
            reconciled_before,
        })
    }

    #[getter]
    fn release_id(&self) -> String {
        self.spec.release_id.clone()
    }

    #[getter]
    fn recipient(&self) -> String {
        self.spec.recipient.clone()
    }

    #[getter]
    fn purpose(&self) -> String {
        self.spec.purpose.clone()
    }

    #[getter]
    fn policy_hash(&self) -> String {
        self.spec.policy_hash.clone()
    }

    /// What settling the output directory found before the job (JSON).
    #[getter]
    fn reconciled_before(&self) -> String {
        self.reconciled_before.clone()
    }

    /// Settles outputs published without a ledger entry (a job that failed); JSON counts.
    fn settle(&self, py: Python<'_>) -> PyResult<String> {
        let guard = self.coordinator.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = guard.as_ref() else {
            return Err(errors::usage("this release is already finished"));
        };
        let r = py.allow_threads(|| c.settle()).map_err(errors::app_error)?;
        Ok(serde_json::to_string(&r).expect("JSON of plain counts"))
    }

    /// Lets go of the store and the output directory's lock without finishing the release (a
    /// failed job, after [`ReleaseJob::settle`]); the release stays begun, as `veil release`
    /// leaves one that failed.
    fn close(&self) {
        self.coordinator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// Settles the directory, finishes the release and writes both reports; returns the
    /// operator's report (JSON). `excluded_patients`: (keyed reference, reason, instances).
    #[pyo3(signature = (recorded, already_recorded, excluded, held, excluded_patients))]
    fn finish(
        &self,
        py: Python<'_>,
        recorded: u64,
        already_recorded: u64,
        excluded: u64,
        held: u64,
        excluded_patients: Vec<(String, String, u64)>,
    ) -> PyResult<String> {
        let Some(c) = self
            .coordinator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Err(errors::usage("this release is already finished"));
        };
        let tally = JobTally {
            recorded,
            already_recorded,
            excluded,
            held,
            excluded_patients: excluded_patients
                .into_iter()
                .map(|(r, reason, n)| (r, (reason, n)))
                .collect(),
        };
        let report = py
            .allow_threads(|| c.finish(&tally))
            .map_err(errors::app_error)?;
        Ok(serde_json::to_string(&report).expect("JSON of plain data"))
    }
}

/// One executor process's share of a release: its store connection and the recipient's
/// pipeline, built once per Python worker.
#[pyclass(module = "veil", name = "ReleaseWorker", frozen)]
pub struct ReleaseWorker(Worker);

#[pymethods]
impl ReleaseWorker {
    #[new]
    #[pyo3(signature = (db, key, policy, out, release_id, recipient, purpose, policy_hash, config=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        db: String,
        key: &Key,
        policy: &Policy,
        out: PathBuf,
        release_id: String,
        recipient: String,
        purpose: String,
        policy_hash: String,
        config: Option<PathBuf>,
    ) -> PyResult<ReleaseWorker> {
        let settings = institution(config)?;
        let spec = JobSpec {
            release_id,
            recipient,
            purpose,
            policy_hash,
        };
        let policy = policy.0.clone();
        py.allow_threads(|| Worker::open(&db, &key.0, settings, policy, spec, &out))
            .map(ReleaseWorker)
            .map_err(errors::app_error)
    }
}

/// Runs one Spark partition of a release: every group (a whole series, holding every version of
/// each of its instances) is de-identified with the recipient's pipeline behind the consent
/// gate and its outputs written and published with their ledger entries, held-back inputs
/// copied into `quarantine` when given; the task's last entries commit before this returns. `on_group(rows)` is called after each group's outputs
/// are in place. A registry or ledger failure raises (the task fails and Spark retries it).
#[pyfunction]
#[pyo3(signature = (worker, groups, out, tmp, fsync=false, batch=256, on_group=None, quarantine=None))]
#[allow(clippy::too_many_arguments)]
pub fn release_partition(
    py: Python<'_>,
    worker: &ReleaseWorker,
    groups: Vec<Vec<PathBuf>>,
    out: PathBuf,
    tmp: PathBuf,
    fsync: bool,
    batch: usize,
    on_group: Option<PyObject>,
    quarantine: Option<PathBuf>,
) -> PyResult<Vec<Row>> {
    let places = Places {
        out: &out,
        tmp: &tmp,
        fsync,
        quarantine: quarantine.as_deref(),
    };
    let failed = |e: WriteError| match e {
        WriteError::Release(e) => errors::app_error(e),
        WriteError::Io(e) => errors::runtime(format!("writing under {}: {e}", out.display())),
    };
    py.allow_threads(|| {
        let task = worker.0.task(batch).map_err(errors::app_error)?;
        let sink = Sink::Release(worker.0.pipeline(), &task);
        let mut rows = Vec::new();
        for mut group in groups {
            // The order a run sees inputs in decides which of identical versions is written.
            group.sort();
            let done = series_rows(sink, &group, &places).map_err(failed)?;
            if let Some(callback) = &on_group {
                Python::with_gil(|py| callback.call1(py, (done.clone(),)))?;
            }
            rows.extend(done);
        }
        task.finish().map_err(errors::app_error)?;
        Ok(rows)
    })
}
