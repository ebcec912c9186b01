//! Releases published by many workers at once — the tasks of a Spark job
//! (`veil.spark.release`) — under one coordinator.
//!
//! The coordinator does what [`crate::release::run`] does around its pipeline: it checks the
//! recipient and purpose, holds the output directory's release lock from before the first
//! worker until after the last, settles what an interrupted earlier run left there at both
//! ends, begins and finishes the release in the registry and writes the operator's and the
//! recipient's reports. Each worker opens the store itself, builds the recipient's pipeline,
//! admits instances through the same consent gate as `veil release` and publishes each output
//! with its ledger entry through an intent log of its own
//! ([`veil_store::publish::Publisher::open_worker`]); so a killed worker leaves nothing that the
//! coordinator's final reconcile (or the next release into the directory) does not settle.
//!
//! Not owned here: reading inputs and settling several versions of one instance (the front
//! end's task, which holds a whole series), and moving the work between processes.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use veil_pipeline::{CommittedInstance, PatientContext, Pipeline};
use veil_store::publish::{OutLock, Published, Publisher, Reconciled};
use veil_store::{Settings as Institution, Store};

use crate::build::{self, Settings};
use crate::error::AppError;
use crate::release::{self, ConsentGate, ReleaseFacts};

/// What the coordinator hands every worker: the release and the recipient, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub release_id: String,
    pub recipient: String,
    pub purpose: String,
    /// Digest of the policy the release runs under; a worker with another policy refuses.
    pub policy_hash: String,
}

/// What the workers did, summed by the front end from their outcomes.
#[derive(Debug, Clone, Default)]
pub struct JobTally {
    /// Outputs recorded in the ledger by the workers that succeeded.
    pub recorded: u64,
    /// Outputs found in place and already recorded (by a killed attempt, or an earlier run).
    pub already_recorded: u64,
    /// Instances the consent gate excluded.
    pub excluded: u64,
    /// Inputs held back.
    pub held: u64,
    /// Excluded patients by short keyed reference: (reason, instances).
    pub excluded_patients: BTreeMap<String, (String, u64)>,
}

/// The coordinator's side of a release with several writers.
pub struct Coordinator {
    store: Store,
    lock: OutLock,
    spec: JobSpec,
    out: PathBuf,
    quarantine: PathBuf,
    /// What settling the directory found before the workers started.
    pub reconciled_before: Reconciled,
}

impl Coordinator {
    /// Checks the recipient and purpose, locks `out` and settles it, then begins the release.
    pub fn begin(
        store: Store,
        institution: &Institution,
        recipient: &str,
        purpose: &str,
        policy: &veil_profile::Policy,
        out: &Path,
        quarantine: &Path,
    ) -> Result<Coordinator, AppError> {
        institution
            .check_purpose(purpose)
            .map_err(AppError::Store)?;
        let recipient = release::recipient_checked(&store, recipient, purpose)?;
        release::purpose_receivable(&store, institution, purpose)?;
        std::fs::create_dir_all(out)
            .map_err(|e| AppError::Usage(format!("{}: cannot create: {e}", out.display())))?;
        let lock = OutLock::take(out)?;
        let reconciled_before = lock.reconcile(&store)?;
        let release_id = store.begin_release(
            &recipient,
            purpose,
            &policy.digest,
            env!("CARGO_PKG_VERSION"),
        )?;
        Ok(Coordinator {
            store,
            lock,
            spec: JobSpec {
                release_id,
                recipient,
                purpose: purpose.to_string(),
                policy_hash: policy.digest.clone(),
            },
            out: out.to_path_buf(),
            quarantine: quarantine.to_path_buf(),
            reconciled_before,
        })
    }

    /// Closes the release to its workers (waiting for any still publishing) and settles what
    /// they published without an entry ([`veil_store::publish::reconcile`]):
    /// [`Coordinator::finish`] does it, and a front end whose job failed calls it before
    /// giving up.
    pub fn settle(&self) -> Result<Reconciled, AppError> {
        // Tasks still running (cancelled, or stragglers) end first, and none starts after.
        self.lock
            .close_release(&self.spec.release_id, veil_store::publish::CLOSE_WAIT)?;
        Ok(self.lock.reconcile(&self.store)?)
    }

    /// The facts every worker needs.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Settles what workers published without an entry (a worker killed for good), finishes
    /// the release in the registry and writes both reports (the operator's under the
    /// quarantine, the recipient's in `OUT/.veil/`). Returns the operator's report.
    pub fn finish(self, tally: &JobTally) -> Result<serde_json::Value, AppError> {
        let reconciled_after = self.settle()?;
        let spec = &self.spec;
        let released = tally.recorded + tally.already_recorded;
        self.store.finish_release(
            &spec.release_id,
            released as i64,
            tally.excluded as i64,
            tally.held as i64,
        )?;
        let excluded_json: Vec<serde_json::Value> = tally
            .excluded_patients
            .iter()
            .map(|(p, (reason, n))| {
                // Outcome rows carry the pipeline's reason (`consent-<gate's reason>`); the
                // report names the gate's, as `veil release`'s does.
                let reason = reason.strip_prefix("consent-").unwrap_or(reason);
                serde_json::json!({"patient_ref": p, "reason": reason, "instances": n})
            })
            .collect();
        let operator = serde_json::json!({
            "release_id": spec.release_id,
            "recipient": spec.recipient,
            "purpose": spec.purpose,
            "recorded_in_ledger": tally.recorded,
            "already_recorded_by_an_interrupted_run": tally.already_recorded,
            "reconciled_before": self.reconciled_before,
            "reconciled_after": reconciled_after,
            "excluded_instances": tally.excluded,
            "excluded_patients": excluded_json,
            "held_back": tally.held,
        });
        let name = format!("release-{}.json", spec.release_id);
        release::write_report(&self.quarantine.join(".veil").join(&name), &operator)?;
        let recipient = serde_json::json!({
            "release_id": spec.release_id,
            "recipient": spec.recipient,
            "purpose": spec.purpose,
            "policy_sha256": spec.policy_hash,
            "veil_version": env!("CARGO_PKG_VERSION"),
            "instances_released": released,
        });
        release::write_report(&self.out.join(".veil").join(&name), &recipient)?;
        Ok(operator)
    }
}

/// One worker process's side: its own store connection and the recipient's pipeline, built
/// once and used for every task the process runs.
pub struct Worker {
    store: Store,
    institution: Institution,
    pipeline: Pipeline,
    spec: JobSpec,
    out: PathBuf,
}

impl Worker {
    /// Opens the store at `db` with the master key, derives the recipient's sub-key (as
    /// `veil release` does) and builds the pipeline under `policy`, which must be the policy
    /// the release was begun with.
    pub fn open(
        db: &str,
        master: &veil_keys::Key,
        institution: Institution,
        policy: veil_profile::Policy,
        spec: JobSpec,
        out: &Path,
    ) -> Result<Worker, AppError> {
        if policy.digest != spec.policy_hash {
            return Err(AppError::Usage(format!(
                "release {}: this worker's policy ({}) is not the one the release was begun with",
                spec.release_id, policy.origin
            )));
        }
        let store = Store::open(Some(db), Some(master))?;
        let key = master.subkey("recipient", &spec.recipient);
        let mut resolved = Settings {
            out: out.to_path_buf(),
            ..Default::default()
        }
        .resolve_with_key(key)?;
        resolved.policy = policy;
        resolved.patient_map = None;
        Ok(Worker {
            store,
            institution,
            pipeline: build::build(resolved),
            spec,
            out: out.to_path_buf(),
        })
    }

    /// The recipient's pipeline (what `veil release` runs for this recipient and policy).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Starts one task's work: a consent gate with its own cache and a publisher with its own
    /// intent log. `batch`: outputs per ledger transaction.
    pub fn task(&self, batch: usize) -> Result<WorkerTask<'_>, AppError> {
        Ok(WorkerTask {
            store: &self.store,
            consent: ConsentGate::new(&self.store, &self.institution, &self.spec.purpose),
            publisher: Publisher::open_worker(
                &self.store,
                &self.out,
                &self.spec.release_id,
                batch,
            )?,
            facts: ReleaseFacts {
                recipient: self.spec.recipient.clone(),
                purpose: self.spec.purpose.clone(),
                release_id: self.spec.release_id.clone(),
                policy_hash: self.spec.policy_hash.clone(),
            },
            studies: Mutex::new(HashSet::new()),
        })
    }
}

/// One task of a worker: the release observer its instances are de-identified with, and the
/// publisher of its outputs. Call [`WorkerTask::finish`] when the task's outputs are all
/// published; a task dropped without it leaves its intents for the coordinator to settle.
pub struct WorkerTask<'w> {
    store: &'w Store,
    consent: ConsentGate<'w>,
    publisher: Publisher<'w>,
    facts: ReleaseFacts,
    studies: Mutex<HashSet<(String, String)>>,
}

impl WorkerTask<'_> {
    /// Publishes one released instance: its intent, `rename` (which must put the output at
    /// `instance.output`) and its entry, committed with the next batch.
    pub fn publish(
        &self,
        instance: &CommittedInstance,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<Published, AppError> {
        let entry = self.facts.entry(self.store, instance, &self.studies)?;
        Ok(self.publisher.publish(entry, &instance.output, rename)?)
    }

    /// The keyed short reference the operator's report names an excluded patient by.
    pub fn patient_ref(&self, patient: &PatientContext) -> String {
        let full = self
            .store
            .patient_ref(&patient.patient_id, &patient.issuer_of_patient_id)
            .unwrap_or_default();
        veil_store::short_ref(&full)
    }

    /// Commits what is queued; returns (recorded, found already recorded).
    pub fn finish(self) -> Result<(u64, u64), AppError> {
        Ok(self.publisher.finish()?)
    }
}

impl veil_pipeline::ReleaseObserver for WorkerTask<'_> {
    fn admit(&self, p: &PatientContext) -> veil_pipeline::Admission {
        self.consent.admit(p)
    }

    /// Outputs are published by the front end through [`WorkerTask::publish`], after it has
    /// settled every version of the instance; in-memory de-identification never commits.
    fn commit(
        &self,
        _instance: &CommittedInstance,
        _rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<(), veil_pipeline::RecordError> {
        Err(veil_pipeline::RecordError::Record(
            "a release worker publishes through WorkerTask::publish".into(),
        ))
    }
}
