//! The consent registry: per patient and purpose, an append-only history of granted / refused /
//! withdrawn records with a scope (all imaging, or some modalities and/or a study-date range),
//! an effective time, a source and an evidence reference (sealed). The decision for an instance
//! is the latest record (by effective time, then entry order) whose scope covers it; with none,
//! the institution default for the purpose.

use sqlx::Row;

use crate::config::Settings;
use crate::{Result, Store, StoreError};

/// The built-in purposes: (name, description for patients).
pub const BUILTIN_PURPOSES: &[(&str, &str)] = &[
    ("clinical-care", "Clinical care"),
    ("quality-improvement", "Quality improvement"),
    ("internal-research", "Research inside the institution"),
    (
        "external-academic-research",
        "Academic research outside the institution",
    ),
    (
        "commercial-ai-training",
        "Training of commercial AI products",
    ),
    ("public-dataset-release", "Release in a public dataset"),
];

/// A patient-readable description of a purpose.
pub fn describe_purpose(p: &str) -> String {
    BUILTIN_PURPOSES
        .iter()
        .find(|(n, _)| *n == p)
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| p.replace('-', " "))
}

/// A consent state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentState {
    Granted,
    Refused,
    Withdrawn,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Granted => "granted",
            ConsentState::Refused => "refused",
            ConsentState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<ConsentState> {
        match s.trim().to_ascii_lowercase().as_str() {
            "granted" | "grant" | "permit" | "yes" => Some(ConsentState::Granted),
            "refused" | "refuse" | "deny" | "no" => Some(ConsentState::Refused),
            "withdrawn" | "withdraw" => Some(ConsentState::Withdrawn),
            _ => None,
        }
    }
}

/// What a record covers. Empty modalities: all; empty dates: unbounded (dates are `YYYYMMDD`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    pub modalities: Vec<String>,
    pub from: String,
    pub to: String,
}

impl Scope {
    /// Does the scope cover an instance of this modality and study date?
    /// An instance without a study date is covered only by a scope without dates (fail closed
    /// for grants, see [`decide`]).
    pub fn covers(&self, modality: &str, study_date: &str) -> bool {
        if !self.modalities.is_empty()
            && !self
                .modalities
                .iter()
                .any(|m| m.eq_ignore_ascii_case(modality.trim()))
        {
            return false;
        }
        let date = study_date.trim();
        if !self.from.is_empty() && (date.len() != 8 || date < self.from.as_str()) {
            return false;
        }
        if !self.to.is_empty() && (date.len() != 8 || date > self.to.as_str()) {
            return false;
        }
        true
    }

    pub fn is_all(&self) -> bool {
        self.modalities.is_empty() && self.from.is_empty() && self.to.is_empty()
    }

    /// Human description: "all imaging", "CT, MR from 20200101 to 20231231".
    pub fn describe(&self) -> String {
        if self.is_all() {
            return "all imaging".into();
        }
        let mut s = if self.modalities.is_empty() {
            "all modalities".to_string()
        } else {
            self.modalities.join(", ")
        };
        if !self.from.is_empty() {
            s.push_str(&format!(" from {}", self.from));
        }
        if !self.to.is_empty() {
            s.push_str(&format!(" to {}", self.to));
        }
        s
    }
}

/// A consent statement to record.
#[derive(Debug, Clone)]
pub struct ConsentInput {
    pub patient_id: String,
    pub issuer: String,
    pub purpose: String,
    pub state: ConsentState,
    pub scope: Scope,
    /// When the patient stated it (normalised timestamp); recording time when empty.
    pub effective_at: String,
    /// When the statement is in force (normalised timestamps; empty: unbounded). Outside it,
    /// decisions ignore the record (FHIR `Consent.provision.period`).
    pub valid_from: String,
    pub valid_until: String,
    pub source: String,
    pub evidence: String,
}

/// A recorded consent statement (evidence decrypted).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsentRecord {
    pub id: i64,
    pub patient_ref: String,
    pub purpose: String,
    pub state: ConsentState,
    pub scope: Scope,
    pub effective_at: String,
    pub recorded_at: String,
    /// In force from / until (normalised timestamps; empty: unbounded).
    pub valid_from: String,
    pub valid_until: String,
    pub source: String,
    pub evidence: String,
    /// The hash of the record's consent entry in the ledger (empty: none, see
    /// [`crate::consent_log`]).
    pub ledger_entry: String,
}

impl ConsentRecord {
    /// Is the record in force at `now` (a normalised timestamp)? From is inclusive, until
    /// exclusive.
    pub fn in_force(&self, now: &str) -> bool {
        (self.valid_from.is_empty() || self.valid_from.as_str() <= now)
            && (self.valid_until.is_empty() || now < self.valid_until.as_str())
    }

    /// The reference a release records for this record: `C-<id>@<hash of its consent entry>`.
    pub fn reference(&self) -> String {
        if self.ledger_entry.is_empty() {
            format!("C-{}", self.id)
        } else {
            format!("C-{}@{}", self.id, self.ledger_entry)
        }
    }
}

/// A consent reference as people read it: `C-<id>` without the hash of its ledger entry (a
/// `default:<purpose>` reference unchanged).
pub fn reference_label(consent_ref: &str) -> &str {
    consent_ref.split('@').next().unwrap_or_default()
}

/// The consent decision for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Release, under this record (`C-<id>`) or the purpose default (`default:<purpose>`).
    Admit { consent_ref: String },
    /// Do not release; `reason` is a category (`refused`, `withdrawn`, `default-refused`).
    Exclude { reason: String, consent_ref: String },
}

/// Decides from a patient's records (any order) for one purpose and instance, now.
pub fn decide(
    records: &[ConsentRecord],
    settings: &Settings,
    purpose: &str,
    modality: &str,
    study_date: &str,
) -> Decision {
    decide_at(
        records,
        settings,
        purpose,
        modality,
        study_date,
        &crate::time::now_utc(),
    )
}

/// [`decide`] at a given time: records not in force at `now` are ignored.
pub fn decide_at(
    records: &[ConsentRecord],
    settings: &Settings,
    purpose: &str,
    modality: &str,
    study_date: &str,
    now: &str,
) -> Decision {
    let mut relevant: Vec<&ConsentRecord> = records
        .iter()
        .filter(|r| r.purpose == purpose && r.in_force(now))
        .collect();
    relevant.sort_by(|a, b| (a.effective_at.as_str(), a.id).cmp(&(b.effective_at.as_str(), b.id)));
    // A withdrawal or refusal of the whole purpose covers everything, later narrower grants
    // re-open only what they name.
    if let Some(r) = relevant
        .iter()
        .rev()
        .find(|r| r.scope.covers(modality, study_date))
    {
        return match r.state {
            ConsentState::Granted => Decision::Admit {
                consent_ref: r.reference(),
            },
            s => Decision::Exclude {
                reason: s.as_str().to_string(),
                consent_ref: r.reference(),
            },
        };
    }
    match settings.default_for(purpose) {
        ConsentState::Granted => Decision::Admit {
            consent_ref: format!("default:{purpose}"),
        },
        _ => Decision::Exclude {
            reason: "default-refused".into(),
            consent_ref: format!("default:{purpose}"),
        },
    }
}

impl Store {
    /// Records a consent statement (append-only) and returns its id.
    pub fn record_consent(&self, c: &ConsentInput, settings: &Settings) -> Result<i64> {
        Ok(self.record_consents(std::slice::from_ref(c), settings)?[0])
    }

    /// Records several statements in one transaction (all or nothing).
    pub fn record_consents(&self, items: &[ConsentInput], settings: &Settings) -> Result<Vec<i64>> {
        for c in items {
            settings.check_purpose(&c.purpose)?;
            if c.patient_id.trim().is_empty() {
                return Err(StoreError::Usage("consent without a patient ID".into()));
            }
        }
        let keys = self.keys()?;
        let now = crate::time::now_utc();
        let _tip = self.tip.lock().unwrap_or_else(|p| p.into_inner());
        let (ids, head) = self.block_on(async {
            let mut tx = self.begin_write().await?;
            if self.backend() == crate::Backend::Postgres {
                sqlx::query("LOCK TABLE consent_records IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let mut next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM consent_records")
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>(0)?
                + 1;
            let mut ids = Vec::with_capacity(items.len());
            let mut stored: Vec<[String; 12]> = Vec::with_capacity(items.len());
            for c in items {
                let pref = crate::patient_ref(&keys.master, &c.patient_id, &c.issuer);
                ensure_patient(&mut tx, keys, &pref, &c.patient_id, &c.issuer, &now).await?;
                let columns = [
                    c.valid_from.clone(),
                    c.valid_until.clone(),
                    pref.clone(),
                    c.purpose.clone(),
                    c.state.as_str().to_string(),
                    c.scope.modalities.join(","),
                    c.scope.from.clone(),
                    c.scope.to.clone(),
                    if c.effective_at.is_empty() { now.clone() } else { c.effective_at.clone() },
                    now.clone(),
                    c.source.clone(),
                    keys.sealer.seal("consent.evidence", &c.evidence),
                ];
                let mut insert = sqlx::query(
                    "INSERT INTO consent_records (id, valid_from, valid_until, patient_ref, purpose, state, scope_modalities, scope_from, scope_to, effective_at, recorded_at, source, evidence_enc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(next);
                for c in &columns {
                    insert = insert.bind(c.as_str());
                }
                insert.execute(&mut *tx).await?;
                ids.push(next);
                stored.push(columns);
                next += 1;
            }
            let head = self.log_consents_in(&mut tx, &ids, &stored, &now).await?;
            tx.commit().await?;
            Ok::<_, StoreError>((ids, head))
        })?;
        if let Some(h) = head {
            self.witness(&h);
        }
        Ok(ids)
    }

    /// Appends the consent entries for records just inserted in `tx` and signs a tree head
    /// over them, in the same transaction (see [`crate::consent_log`]).
    async fn log_consents_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        ids: &[i64],
        stored: &[[String; 12]],
        now: &str,
    ) -> Result<Option<crate::tree_head::TreeHead>> {
        if ids.is_empty() {
            return Ok(None);
        }
        let (tip, mut prev) = crate::ledger::tip_in(tx, self.backend()).await?;
        let mut entries = Vec::with_capacity(ids.len());
        for (i, (id, cols)) in ids.iter().zip(stored).enumerate() {
            let cols: [&str; 12] = std::array::from_fn(|k| cols[k].as_str());
            let e = crate::consent_log::consent_entry(tip + 1 + i as i64, &prev, *id, &cols, now);
            prev.clone_from(&e.entry_hash);
            entries.push(e);
        }
        crate::ledger::insert_entries(tx, self.backend(), &entries).await?;
        let hashes: Vec<&str> = entries.iter().map(|e| e.entry_hash.as_str()).collect();
        Ok(Some(self.sign_head_in(tx, tip + 1, &hashes).await?))
    }

    /// Every record of a patient, in entry order. Records made without an issuer apply to all
    /// issuers and are included.
    pub fn consent_history(&self, patient_id: &str, issuer: &str) -> Result<Vec<ConsentRecord>> {
        let keys = self.keys()?;
        let mut refs = vec![crate::patient_ref(&keys.master, patient_id, issuer)];
        if !issuer.trim().is_empty() {
            refs.push(crate::patient_ref(&keys.master, patient_id, ""));
        }
        self.consent_records_for_refs(&refs)
    }

    pub(crate) fn consent_records_for_refs(&self, refs: &[String]) -> Result<Vec<ConsentRecord>> {
        let keys = self.keys()?;
        let mut out = Vec::new();
        self.block_on(async {
            for r in refs {
                // The literal `release_id` lets both engines use the partial index
                // `ledger_consent_entries` (a bound parameter would not).
                let logged: std::collections::HashMap<String, String> = sqlx::query(&format!(
                    "SELECT consent_ref, entry_hash FROM ledger WHERE patient_ref = $1 AND release_id = '{}'",
                    crate::consent_log::CONSENT_RELEASE_ID
                ))
                .bind(r)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
                let rows = sqlx::query(
                    "SELECT id, patient_ref, purpose, state, scope_modalities, scope_from, scope_to, effective_at, recorded_at, source, evidence_enc, valid_from, valid_until FROM consent_records WHERE patient_ref = $1 ORDER BY id",
                )
                .bind(r)
                .fetch_all(&self.pool)
                .await?;
                for row in rows {
                    let state: String = row.try_get(3)?;
                    let mods: String = row.try_get(4)?;
                    out.push(ConsentRecord {
                        id: row.try_get(0)?,
                        patient_ref: row.try_get(1)?,
                        purpose: row.try_get(2)?,
                        state: ConsentState::parse(&state)
                            .ok_or_else(|| StoreError::Schema(format!("consent record state `{state}`")))?,
                        scope: Scope {
                            modalities: mods.split(',').filter(|m| !m.is_empty()).map(String::from).collect(),
                            from: row.try_get(5)?,
                            to: row.try_get(6)?,
                        },
                        effective_at: row.try_get(7)?,
                        recorded_at: row.try_get(8)?,
                        valid_from: row.try_get(11)?,
                        valid_until: row.try_get(12)?,
                        source: row.try_get(9)?,
                        evidence: keys.sealer.open("consent.evidence", &row.try_get::<String, _>(10)?)?,
                        ledger_entry: {
                            let id: i64 = row.try_get(0)?;
                            logged.get(&format!("C-{id}")).cloned().unwrap_or_default()
                        },
                    });
                }
            }
            Ok::<_, StoreError>(())
        })?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// The effective state per known purpose for a patient (scope: all imaging).
    pub fn consent_summary(
        &self,
        patient_id: &str,
        issuer: &str,
        settings: &Settings,
    ) -> Result<Vec<(String, Vec<ConsentRecord>, Decision)>> {
        let records = self.consent_history(patient_id, issuer)?;
        Ok(settings
            .purposes
            .iter()
            .map(|p| {
                let mine: Vec<ConsentRecord> = records
                    .iter()
                    .filter(|r| &r.purpose == p)
                    .cloned()
                    .collect();
                // The decision for an instance with no modality/date restriction match beyond
                // whole-purpose records.
                let whole: Vec<ConsentRecord> =
                    mine.iter().filter(|r| r.scope.is_all()).cloned().collect();
                let d = decide(&whole, settings, p, "", "");
                (p.clone(), mine, d)
            })
            .collect())
    }
}

pub(crate) async fn ensure_patient(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    keys: &crate::StoreKeys,
    pref: &str,
    patient_id: &str,
    issuer: &str,
    now: &str,
) -> Result<()> {
    let exists = sqlx::query("SELECT 1 FROM patients WHERE patient_ref = $1")
        .bind(pref)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !exists {
        sqlx::query("INSERT INTO patients (patient_ref, patient_id_enc, issuer_enc, created_at) VALUES ($1, $2, $3, $4)")
            .bind(pref)
            .bind(keys.sealer.seal("patient.id", patient_id.trim()))
            .bind(keys.sealer.seal("patient.issuer", issuer.trim()))
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, purpose: &str, state: ConsentState, scope: Scope, at: &str) -> ConsentRecord {
        ConsentRecord {
            id,
            patient_ref: "p".into(),
            purpose: purpose.into(),
            state,
            scope,
            effective_at: at.into(),
            recorded_at: at.into(),
            valid_from: String::new(),
            valid_until: String::new(),
            source: "t".into(),
            evidence: String::new(),
            ledger_entry: String::new(),
        }
    }

    #[test]
    fn latest_covering_record_wins_else_default() {
        let s = Settings::default();
        let ct_only = Scope {
            modalities: vec!["CT".into()],
            ..Scope::default()
        };
        let recs = vec![
            rec(
                1,
                "internal-research",
                ConsentState::Refused,
                Scope::default(),
                "2024-01-01",
            ),
            rec(
                2,
                "internal-research",
                ConsentState::Granted,
                ct_only,
                "2024-02-01",
            ),
            rec(
                3,
                "commercial-ai-training",
                ConsentState::Granted,
                Scope::default(),
                "2024-01-01",
            ),
            rec(
                4,
                "commercial-ai-training",
                ConsentState::Withdrawn,
                Scope::default(),
                "2024-06-01",
            ),
        ];
        assert_eq!(
            decide(&recs, &s, "internal-research", "CT", "20230101"),
            Decision::Admit {
                consent_ref: "C-2".into()
            }
        );
        assert!(
            matches!(decide(&recs, &s, "internal-research", "MR", "20230101"), Decision::Exclude { reason, .. } if reason == "refused")
        );
        assert!(
            matches!(decide(&recs, &s, "commercial-ai-training", "CT", "20230101"), Decision::Exclude { reason, .. } if reason == "withdrawn")
        );
        // No record: defaults. Research is opt-out, commercial AI opt-in.
        assert_eq!(
            decide(&[], &s, "internal-research", "CT", ""),
            Decision::Admit {
                consent_ref: "default:internal-research".into()
            }
        );
        assert!(
            matches!(decide(&[], &s, "commercial-ai-training", "CT", ""), Decision::Exclude { reason, .. } if reason == "default-refused")
        );
    }

    #[test]
    fn date_scope_fails_closed_without_a_date() {
        let sc = Scope {
            modalities: vec![],
            from: "20200101".into(),
            to: "20201231".into(),
        };
        assert!(sc.covers("MR", "20200615"));
        assert!(!sc.covers("MR", "20210615"));
        assert!(
            !sc.covers("MR", ""),
            "an undated instance is not inside a date range"
        );
        let s = Settings::default();
        let recs = vec![rec(
            1,
            "commercial-ai-training",
            ConsentState::Granted,
            sc,
            "2024-01-01",
        )];
        assert!(matches!(
            decide(&recs, &s, "commercial-ai-training", "MR", ""),
            Decision::Exclude { .. }
        ));
    }
}
