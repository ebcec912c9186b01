//! From what a front end was given to a running pipeline, in two steps (as ripgrep resolves raw
//! arguments once into a config): [`Settings`] is what the user said (paths, or nothing);
//! [`Resolved`] is what it means (the key, the policy, the patient map, loaded and checked);
//! [`build`] assembles the pipeline every front end runs — engine, pixel stage, verify stage —
//! so that `deid`, `release`, the demo, a gateway or bindings cannot differ in what they apply.

use std::path::{Path, PathBuf};

use veil_deid::{Deidentifier, PatientMap};
use veil_keys::Key;
use veil_pipeline::{Config, Pipeline};
use veil_profile::Policy;

use crate::error::AppError;

/// What a front end was given.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Key file; `None`: `VEIL_KEY_FILE` or `VEIL_KEY` from the environment.
    pub key: Option<PathBuf>,
    /// Policy file; `None`: the built-in default.
    pub policy: Option<PathBuf>,
    /// CSV of assigned subject IDs.
    pub patient_map: Option<PathBuf>,
    /// Output root.
    pub out: PathBuf,
    /// Quarantine (the operator's side); `None`: `<OUT>.quarantine`.
    pub quarantine: Option<PathBuf>,
    /// Worker threads; `None`: every core.
    pub threads: Option<usize>,
    /// fsync each output before its rename.
    pub fsync: bool,
}

/// The same, loaded and checked.
pub struct Resolved {
    pub key: Key,
    pub policy: Policy,
    pub patient_map: Option<PatientMap>,
    pub config: Config,
}

/// Loads the key: a file, else the environment (`VEIL_KEY_FILE`, `VEIL_KEY`).
pub fn load_key(path: Option<&Path>) -> Result<Key, AppError> {
    if let Some(p) = path {
        return Ok(Key::load(p)?);
    }
    Key::from_env()?.ok_or_else(|| {
        AppError::Usage("no key: pass --key FILE (create one with `veil key new FILE`), or set VEIL_KEY_FILE=FILE, or VEIL_KEY to the key's 64 hex digits".into())
    })
}

/// Loads a policy file, or the built-in default.
pub fn load_policy(path: Option<&Path>) -> Result<Policy, AppError> {
    Ok(match path {
        None => Policy::default_policy(),
        Some(p) => Policy::load(p)?,
    })
}

/// Every input must exist (a typo is the user's to fix, before anything runs).
pub fn check_inputs(inputs: &[PathBuf]) -> Result<(), AppError> {
    match inputs.iter().find(|i| !i.exists()) {
        Some(i) => Err(AppError::Usage(format!(
            "input {}: no such file or directory",
            i.display()
        ))),
        None => Ok(()),
    }
}

impl Settings {
    /// Loads and checks everything the settings name.
    pub fn resolve(&self) -> Result<Resolved, AppError> {
        self.resolve_with_key(load_key(self.key.as_deref())?)
    }

    /// As [`Settings::resolve`], with a key the caller derived (a release's per-recipient
    /// sub-key).
    pub fn resolve_with_key(&self, key: Key) -> Result<Resolved, AppError> {
        let policy = load_policy(self.policy.as_deref())?;
        let patient_map = match &self.patient_map {
            Some(p) => Some(PatientMap::load(p)?),
            None => None,
        };
        let mut config = Config::new(self.out.clone());
        if let Some(q) = &self.quarantine {
            config.quarantine = q.clone();
        }
        config.threads = self.threads;
        config.fsync = self.fsync;
        Ok(Resolved {
            key,
            policy,
            patient_map,
            config,
        })
    }
}

/// Assembles the pipeline: the engine under the policy and key, the pixel stage, the series
/// stage that removes faces from head CT and MR (`[faces]`), and the independent verify stage
/// every output passes.
pub fn build(r: Resolved) -> Pipeline {
    let verifier = crate::verify_stage::pipeline_verifier(&r.policy);
    let pixels = crate::pixel_stage::pixel_stage(&r.policy);
    let faces = veil_face::FaceStage::new(veil_face::Settings::from(&r.policy.faces));
    let mut config = r.config;
    if !r.policy.faces.deface() {
        config.warnings.push("defacing is off ([faces] deface = false): head CT and MR series are released with their faces, which face recognition can match to photographs".into());
    }
    let deid = Deidentifier::new(r.policy, r.key, r.patient_map);
    Pipeline::new(deid, verifier, config)
        .with_pixel_stage(pixels)
        .with_series_stage(Box::new(faces))
}
