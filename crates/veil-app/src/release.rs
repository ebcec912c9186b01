//! Releases: de-identification for one recipient under one purpose, admitting only patients
//! whose consent allows it (the consent gate) and recording every released instance in the
//! disclosure ledger through the publishing protocol of `veil_store::publish`, so that no crash
//! leaves an output without its entry or an entry without its output.
//!
//! Two reports come out. The operator's (under the quarantine, never shipped) names who was
//! excluded and why; the recipient's (in `OUT/.veil/`) speaks only of what was released:
//! excluded or refused patients, even as keyed references, would let two recipients compare
//! their trees and learn who said no.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use veil_store::consent::{decide, ConsentRecord, Decision};
use veil_store::ledger::{NewEntry, Uids};
use veil_store::publish::Reconciled;
use veil_store::{Settings as Institution, Store};

use crate::build::{self, Settings};
use crate::error::AppError;

/// The consent gate of one recipient and purpose: who may be released, by the consent
/// registry (a release over files and a gateway route share it).
pub(crate) struct ConsentGate<'a> {
    pub(crate) store: &'a Store,
    pub(crate) settings: &'a Institution,
    pub(crate) purpose: String,
    records: Mutex<HashMap<(String, String), Vec<ConsentRecord>>>,
    /// Excluded patients by internal reference: (reason, instances).
    pub(crate) excluded: Mutex<BTreeMap<String, (String, u64)>>,
}

impl<'a> ConsentGate<'a> {
    pub(crate) fn new(store: &'a Store, settings: &'a Institution, purpose: &str) -> Self {
        ConsentGate {
            store,
            settings,
            purpose: purpose.to_string(),
            records: Mutex::new(HashMap::new()),
            excluded: Mutex::new(BTreeMap::new()),
        }
    }

    fn records_of(
        &self,
        pid: &str,
        issuer: &str,
    ) -> Result<Vec<ConsentRecord>, veil_store::StoreError> {
        let k = (pid.to_string(), issuer.to_string());
        if let Some(r) = self.records.lock().unwrap().get(&k) {
            return Ok(r.clone());
        }
        let r = self.store.consent_history(pid, issuer)?;
        self.records.lock().unwrap().insert(k, r.clone());
        Ok(r)
    }

    /// Admits a patient whose consent allows the purpose; fails closed without the registry.
    pub(crate) fn admit(&self, p: &veil_pipeline::PatientContext) -> veil_pipeline::Admission {
        let pref = self
            .store
            .patient_ref(&p.patient_id, &p.issuer_of_patient_id)
            .unwrap_or_default();
        let decision = if p.patient_id.trim().is_empty() {
            Decision::Exclude {
                reason: "no-patient-id".into(),
                consent_ref: String::new(),
            }
        } else {
            match self.records_of(&p.patient_id, &p.issuer_of_patient_id) {
                Ok(recs) => decide(
                    &recs,
                    self.settings,
                    &self.purpose,
                    &p.modality,
                    &p.study_date,
                ),
                // Fail closed: no decision without the registry.
                Err(_) => Decision::Exclude {
                    reason: "consent-registry-error".into(),
                    consent_ref: String::new(),
                },
            }
        };
        match decision {
            Decision::Admit { consent_ref } => veil_pipeline::Admission::Admit {
                consent_ref: Some(consent_ref),
            },
            Decision::Exclude { reason, .. } => {
                let mut ex = self.excluded.lock().unwrap();
                let e = ex
                    .entry(veil_store::short_ref(&pref))
                    .or_insert((reason.clone(), 0));
                e.1 += 1;
                veil_pipeline::Admission::Exclude {
                    reason: format!("consent-{reason}"),
                }
            }
        }
    }
}

/// What one release writes in every ledger entry besides the instance.
pub(crate) struct ReleaseFacts {
    pub(crate) recipient: String,
    pub(crate) purpose: String,
    pub(crate) release_id: String,
    pub(crate) policy_hash: String,
}

impl ReleaseFacts {
    /// The ledger entry of a released instance; the study's details are recorded first, once
    /// per (study, modality) in `seen` (what lets the patient tell one study from another).
    pub(crate) fn entry(
        &self,
        store: &Store,
        i: &veil_pipeline::CommittedInstance,
        seen: &Mutex<std::collections::HashSet<(String, String)>>,
    ) -> Result<NewEntry, veil_store::StoreError> {
        let patient_ref =
            store.patient_ref(&i.patient.patient_id, &i.patient.issuer_of_patient_id)?;
        let study = (i.original.study.clone(), i.patient.modality.clone());
        if seen.lock().unwrap().insert(study) {
            store.record_study_details(
                &patient_ref,
                &i.original.study,
                &i.patient.modality,
                &i.patient.study_date,
                &i.patient.study_description,
            )?;
        }
        Ok(NewEntry {
            release_id: self.release_id.clone(),
            recipient: self.recipient.clone(),
            purpose: self.purpose.clone(),
            consent_ref: i.consent_ref.clone().unwrap_or_default(),
            patient_ref,
            patient_id: i.patient.patient_id.clone(),
            issuer: i.patient.issuer_of_patient_id.clone(),
            patient_pseudonym: i.patient_pseudonym.clone(),
            original: Uids {
                study: i.original.study.clone(),
                series: i.original.series.clone(),
                sop: i.original.sop_instance.clone(),
            },
            released: Uids {
                study: i.released.study.clone(),
                series: i.released.series.clone(),
                sop: i.released.sop_instance.clone(),
            },
            output_path: i.output_relative.display().to_string(),
            output_sha256: i.sha256.clone(),
            policy_hash: self.policy_hash.clone(),
            veil_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// The consent gate and ledger writer of one release.
struct Gate<'a> {
    consent: ConsentGate<'a>,
    publisher: &'a veil_store::publish::Publisher<'a>,
    facts: ReleaseFacts,
    /// (original study, modality) pairs whose details this run has recorded.
    studies: Mutex<std::collections::HashSet<(String, String)>>,
}

impl veil_pipeline::ReleaseObserver for Gate<'_> {
    fn admit(&self, p: &veil_pipeline::PatientContext) -> veil_pipeline::Admission {
        self.consent.admit(p)
    }

    fn commit(
        &self,
        i: &veil_pipeline::CommittedInstance,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<(), veil_pipeline::RecordError> {
        let entry = self
            .facts
            .entry(self.consent.store, i, &self.studies)
            .map_err(record)?;
        // Intent, rename, then the entry in the next batch commit; a crash in between is
        // undone by the reconcile at the start of the next release (veil_store::publish).
        self.publisher
            .publish(entry, &i.output, rename)
            .map(|_| ())
            .map_err(record)
    }

    fn retract(
        &self,
        output: &Path,
        output_relative: &Path,
    ) -> Result<(), veil_pipeline::RecordError> {
        self.publisher
            .retract(output, output_relative)
            .map_err(record)
    }
}

/// A store failure as the pipeline's record error (the store's error is its source).
fn record(e: veil_store::StoreError) -> veil_pipeline::RecordError {
    veil_pipeline::RecordError::Record(Box::new(e))
}

/// What a release is asked to do.
pub struct ReleaseRequest<'a> {
    pub store: &'a Store,
    /// Institution settings (purposes, consent defaults).
    pub institution: &'a Institution,
    /// The master key: the recipient's sub-key is derived from it.
    pub master: &'a veil_keys::Key,
    pub recipient: String,
    pub purpose: String,
    pub inputs: Vec<PathBuf>,
    /// Output root, policy, quarantine and threads (the key comes from `master`).
    pub settings: Settings,
    /// Outputs recorded per ledger transaction.
    pub ledger_batch: usize,
}

/// What a release did.
pub struct ReleaseOutcome {
    pub release_id: String,
    /// Instances recorded in the ledger by this run, and by an interrupted earlier one.
    pub recorded: u64,
    pub already_recorded: u64,
    /// What settling an interrupted earlier release found.
    pub reconciled: Reconciled,
    /// Excluded patients by internal reference: (reason, instances).
    pub excluded: BTreeMap<String, (String, u64)>,
    pub report: veil_pipeline::RunReport,
    /// The operator's report, as written under the quarantine.
    pub operator_report: serde_json::Value,
    pub operator_report_path: PathBuf,
}

impl ReleaseOutcome {
    /// Inputs held back (quarantined or rejected).
    pub fn held(&self) -> u64 {
        self.report.quarantined + self.report.rejected
    }
}

pub(crate) fn recipient_checked(
    store: &Store,
    name: &str,
    purpose: &str,
) -> Result<String, AppError> {
    let r = store.recipient(name)?.ok_or_else(|| {
        AppError::Usage(format!(
            "no recipient `{name}`: add it with `veil recipient add {name} --purpose {purpose}`"
        ))
    })?;
    if !r.purposes.iter().any(|p| p == purpose) {
        return Err(AppError::Usage(format!(
            "recipient `{}` is registered for {}, not {purpose}",
            r.name,
            r.purposes.join(", ")
        )));
    }
    Ok(r.name)
}

/// Runs a release end to end.
/// A usage error when no patient can be released for `purpose`: refused by default (opt-in)
/// and granted by nobody. Checked before a release id is used.
pub(crate) fn purpose_receivable(
    store: &Store,
    settings: &Institution,
    purpose: &str,
) -> Result<(), AppError> {
    let opt_in = settings.defaults.get(purpose).copied() != Some(veil_store::ConsentState::Granted);
    if opt_in && !store.anyone_granted(purpose)? {
        return Err(AppError::Usage(format!(
            "nobody may be released for {purpose}: it needs each patient's consent (opt-in) and no consent record grants it; record consents first (`veil consent set|import`)"
        )));
    }
    Ok(())
}

pub fn run(req: ReleaseRequest) -> Result<ReleaseOutcome, AppError> {
    req.institution
        .check_purpose(&req.purpose)
        .map_err(AppError::Store)?;
    let recipient = recipient_checked(req.store, &req.recipient, &req.purpose)?;
    purpose_receivable(req.store, req.institution, &req.purpose)?;
    build::check_inputs(&req.inputs)?;
    // Per-recipient key: pseudonyms and UIDs agree inside one recipient, unlinkable across them.
    let key = req.master.subkey("recipient", &recipient);
    // A release has no patient map: pseudonyms are the recipient's keyed ones.
    let mut resolved = req.settings.resolve_with_key(key)?;
    resolved.patient_map = None;
    let policy_hash = resolved.policy.digest.clone();
    let out = resolved.config.out.clone();
    let pipeline = build::build(resolved);
    let release_id = req.store.begin_release(
        &recipient,
        &req.purpose,
        &policy_hash,
        env!("CARGO_PKG_VERSION"),
    )?;
    // Locks OUT and settles what an interrupted release left there before anything is written.
    let (publisher, reconciled) =
        veil_store::publish::Publisher::open(req.store, &out, &release_id, req.ledger_batch)?;
    if reconciled.rolled_back > 0 || reconciled.foreign > 0 {
        tracing::warn!(
            rolled_back = reconciled.rolled_back,
            foreign = reconciled.foreign,
            "an interrupted release left outputs without a ledger entry: removed (produced again now)"
        );
    }
    let gate = Gate {
        consent: ConsentGate::new(req.store, req.institution, &req.purpose),
        publisher: &publisher,
        facts: ReleaseFacts {
            recipient: recipient.clone(),
            purpose: req.purpose.clone(),
            release_id: release_id.clone(),
            policy_hash: policy_hash.clone(),
        },
        studies: Mutex::new(Default::default()),
    };
    let run = pipeline.run_with(&req.inputs, &gate, &|_| {});
    // Whatever the run's outcome, what it published is recorded now (or removed if that fails).
    let (recorded, already_recorded) = publisher.finish()?;
    let report = run?;
    let excluded = gate.consent.excluded.into_inner().unwrap();
    let held = report.quarantined + report.rejected;
    req.store.finish_release(
        &release_id,
        recorded as i64,
        report.excluded as i64,
        held as i64,
    )?;
    let excluded_json: Vec<serde_json::Value> = excluded
        .iter()
        .map(|(p, (reason, n))| serde_json::json!({"patient_ref": p, "reason": reason, "instances": n}))
        .collect();
    let operator_report = serde_json::json!({
        "release_id": release_id,
        "recipient": recipient,
        "purpose": req.purpose,
        "recorded_in_ledger": recorded,
        "already_recorded_by_an_interrupted_run": already_recorded,
        "reconciled": reconciled,
        "excluded_instances": report.excluded,
        "excluded_patients": excluded_json,
        "run": report,
    });
    let operator_report_path = pipeline
        .config()
        .quarantine
        .join(".veil")
        .join(format!("release-{release_id}.json"));
    write_report(&operator_report_path, &operator_report)?;
    let recipient_report = serde_json::json!({
        "release_id": release_id,
        "recipient": recipient,
        "purpose": req.purpose,
        "policy_sha256": policy_hash,
        "veil_version": env!("CARGO_PKG_VERSION"),
        "instances_released": recorded + already_recorded,
    });
    write_report(
        &out.join(".veil").join(format!("release-{release_id}.json")),
        &recipient_report,
    )?;
    Ok(ReleaseOutcome {
        release_id,
        recorded,
        already_recorded,
        reconciled,
        excluded,
        report,
        operator_report,
        operator_report_path,
    })
}

/// Writes a JSON report atomically, creating its directory.
pub fn write_report(path: &Path, value: &serde_json::Value) -> Result<(), AppError> {
    let bytes = serde_json::to_vec_pretty(value).expect("JSON of plain data");
    crate::registry::write_atomic(path, &bytes)
}
