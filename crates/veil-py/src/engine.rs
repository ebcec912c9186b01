//! Keys, policies and the in-memory de-identifier: `veil.Key`, `veil.Policy` and the engine
//! behind `veil.deidentify`.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veil_pipeline::{InstanceOutcome, Pipeline};

use crate::errors;

/// A 256-bit Veil key. Shown by its fingerprint only; it cannot be pickled, so it never travels
/// in a Spark plan (executors load it from a key file).
#[pyclass(module = "veil", name = "Key", frozen)]
pub struct Key(pub veil_keys::Key);

#[pymethods]
impl Key {
    /// Reads a key file written by `veil key new` (refused if group or others can read it).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Key> {
        veil_keys::Key::load(&path)
            .map(Key)
            .map_err(|e| errors::app_error(e.into()))
    }

    /// The key named by the environment (`VEIL_KEY_FILE`, else `VEIL_KEY`), as the CLI reads
    /// it; a usage error when neither is set.
    #[staticmethod]
    fn from_env() -> PyResult<Key> {
        veil_app::build::load_key(None)
            .map(Key)
            .map_err(errors::app_error)
    }

    /// Writes a new random key to `path` (mode 0600, never overwriting), as `veil key new`.
    #[staticmethod]
    fn create(path: PathBuf) -> PyResult<Key> {
        veil_keys::Key::write_new(&path)
            .map(Key)
            .map_err(|e| errors::app_error(e.into()))
    }

    /// The key's public fingerprint, as run reports print it.
    #[getter]
    fn fingerprint(&self) -> String {
        self.0.fingerprint()
    }

    fn __repr__(&self) -> String {
        format!("veil.Key(fingerprint='{}')", self.0.fingerprint())
    }
}

/// A de-identification policy: the built-in default or a TOML file (`veil policy`).
#[pyclass(module = "veil", name = "Policy", frozen)]
pub struct Policy(pub veil_profile::Policy);

#[pymethods]
impl Policy {
    /// The built-in default (Basic Profile + Retain Longitudinal Modified Dates + Retain
    /// Patient Characteristics + Clean Descriptors), as `veil deid` without `--policy`.
    #[staticmethod]
    fn default() -> Policy {
        Policy(veil_profile::Policy::default_policy())
    }

    /// Loads and checks a policy file, as `veil deid --policy FILE`.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Policy> {
        veil_app::build::load_policy(Some(&path))
            .map(Policy)
            .map_err(errors::app_error)
    }

    /// SHA-256 of the effective rules (written into every output and report).
    #[getter]
    fn digest(&self) -> String {
        self.0.digest.clone()
    }

    /// Where the policy came from (a path, or `built-in default`).
    #[getter]
    fn origin(&self) -> String {
        self.0.origin.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "veil.Policy(origin='{}', digest='{}')",
            self.0.origin,
            &self.0.digest[..16.min(self.0.digest.len())]
        )
    }
}

/// The pipeline `veil deid` runs, for these settings, built by the application layer. The output
/// root only decides where files go, never their bytes.
pub fn pipeline_for(
    key: &veil_keys::Key,
    policy: &veil_profile::Policy,
    settings: veil_app::Settings,
) -> Result<Pipeline, veil_app::AppError> {
    let mut resolved = settings.resolve_with_key(key.clone())?;
    resolved.policy = policy.clone();
    Ok(veil_app::build(resolved))
}

/// One instance's outcome as Python receives it: (kind, output bytes, output path relative to
/// the output root, reason code, detail). Kinds: `released`, `suppressed`, `held_back`.
pub type Outcome = (
    &'static str,
    Option<Py<PyBytes>>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn to_python(py: Python<'_>, o: InstanceOutcome) -> Outcome {
    match o {
        InstanceOutcome::Released {
            bytes, relative, ..
        } => (
            "released",
            Some(PyBytes::new_bound(py, &bytes).unbind()),
            Some(relative.display().to_string()),
            None,
            None,
        ),
        InstanceOutcome::Suppressed => (
            "suppressed",
            None,
            None,
            Some("suppressed".into()),
            Some("the policy suppresses this kind of instance (re-identification risk)".into()),
        ),
        InstanceOutcome::HeldBack { reason, detail } => {
            ("held_back", None, None, Some(reason), Some(detail))
        }
        // The bindings run no consent gate; should one exclude a patient, nothing is released.
        InstanceOutcome::Excluded { reason, .. } => (
            "held_back",
            None,
            None,
            Some(reason),
            Some("excluded by the consent gate".into()),
        ),
        // Only a group call can settle a series; a caller never sees this.
        InstanceOutcome::WaitsForSeries { .. } => (
            "held_back",
            None,
            None,
            Some("internal_error".into()),
            Some("the series stage did not take this instance; it was held back".into()),
        ),
    }
}

/// The engine behind `veil.deidentify`: one pipeline, built once for a key, a policy and an
/// optional patient map, shared by every call (and thread).
#[pyclass(module = "veil", name = "Deidentifier", frozen)]
pub struct Deidentifier {
    pipeline: Arc<Pipeline>,
    fingerprint: String,
    policy_digest: String,
}

#[pymethods]
impl Deidentifier {
    #[new]
    #[pyo3(signature = (key, policy, patient_map=None))]
    fn new(key: &Key, policy: &Policy, patient_map: Option<PathBuf>) -> PyResult<Deidentifier> {
        let settings = veil_app::Settings {
            patient_map,
            ..Default::default()
        };
        let pipeline = pipeline_for(&key.0, &policy.0, settings).map_err(errors::app_error)?;
        Ok(Deidentifier {
            pipeline: Arc::new(pipeline),
            fingerprint: key.0.fingerprint(),
            policy_digest: policy.0.digest.clone(),
        })
    }

    /// De-identifies one Part 10 instance held in memory. An instance the defacing stage
    /// wants with its series is planned as a series of one (give the whole series to
    /// `deidentify_series` instead).
    fn deidentify(&self, py: Python<'_>, data: &[u8]) -> Outcome {
        let pipeline = &self.pipeline;
        let outcome = py.allow_threads(|| match pipeline.deidentify_bytes(data) {
            InstanceOutcome::WaitsForSeries { .. } => pipeline
                .deidentify_group(&[data.to_vec()])
                .pop()
                .expect("one outcome per member"),
            other => other,
        });
        to_python(py, outcome)
    }

    /// De-identifies a group of instances (a whole series) as a run over the same files would;
    /// outcomes in member order.
    fn deidentify_series(&self, py: Python<'_>, members: Vec<Vec<u8>>) -> Vec<Outcome> {
        let pipeline = &self.pipeline;
        let outcomes = py.allow_threads(|| pipeline.deidentify_group(&members));
        outcomes.into_iter().map(|o| to_python(py, o)).collect()
    }

    /// The fingerprint of the key this engine was built with.
    #[getter]
    fn key_fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    #[getter]
    fn policy_digest(&self) -> String {
        self.policy_digest.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "veil.Deidentifier(key_fingerprint='{}', policy_digest='{}')",
            self.fingerprint,
            &self.policy_digest[..16.min(self.policy_digest.len())]
        )
    }
}

impl Deidentifier {
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}
