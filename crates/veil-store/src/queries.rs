//! Recipients, releases, and the questions the ledger answers: a patient's accounting of
//! disclosures, the patients affected by a recipient's breach, the release a leaked file came
//! from, and who must be asked to delete after a withdrawal.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::consent::{describe_purpose, ConsentInput, ConsentState, Scope};
use crate::ledger::{LedgerEntry, Uids, COLUMNS};
use crate::{Result, Settings, Store, StoreError};

/// A recipient of releases and the purposes it may receive data for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recipient {
    pub name: String,
    pub purposes: Vec<String>,
    pub contact: String,
    pub created_at: String,
}

/// One study disclosed to one recipient in one release.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disclosure {
    pub release_id: String,
    pub recipient: String,
    pub recipient_contact: String,
    pub purpose: String,
    pub purpose_description: String,
    pub consent_ref: String,
    pub first_released_at: String,
    pub last_released_at: String,
    pub original_study_uid: String,
    pub released_study_uid: String,
    pub patient_pseudonym: String,
    pub instances: i64,
    /// The original study's date, modalities and description (the patient's own data, for the
    /// patient's record only).
    pub study: crate::studies::StudyDetails,
    /// The consent record as people read it: `C-<id>` (without the entry hash), or
    /// `default:<purpose>`.
    pub consent_label: String,
    /// The ledger entries of this disclosure (their inclusion proofs make it checkable).
    pub ledger_entries: Vec<i64>,
    /// Whether the entries are in the log the latest signed tree head describes (filled by
    /// the application layer, which checks the proofs).
    pub proof: Option<ProofStatus>,
}

/// The inclusion-proof status of a disclosure's ledger entries against the latest head.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProofStatus {
    /// `verified` (every entry's proof checks against the signed head), `pending` (an entry
    /// is newer than the latest head) or `failed`.
    pub status: String,
    pub tree_size: i64,
    pub tree_head_signed_at: String,
    /// Per entry: (sequence number, leaf index, inclusion path in hex).
    pub proofs: Vec<EntryProof>,
}

/// One entry's inclusion proof.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryProof {
    pub seq: i64,
    pub leaf_index: u64,
    pub inclusion_path: Vec<String>,
}

/// One affected patient's study for a breach notice.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreachRow {
    pub patient_ref: String,
    pub patient_id: String,
    pub issuer: String,
    pub original_study_uid: String,
    pub released_study_uid: String,
    pub release_id: String,
    pub purpose: String,
    /// Distinct instances of the study released in this release.
    pub instances: i64,
    pub first_released_at: String,
    pub last_released_at: String,
    /// The released SOP Instance UIDs: an instance released twice (a re-run, another release
    /// to the same recipient) is one exposed instance, not two.
    #[serde(skip)]
    pub released_sops: std::collections::BTreeSet<String>,
}

/// What a leaked file traces back to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trace {
    /// How the file was matched: `sop` (exact instance) or `study`.
    pub matched_by: String,
    pub entry: LedgerEntry,
    pub recipient_contact: String,
    /// Filled for a key holder.
    pub original: Option<Uids>,
    pub patient_id: Option<String>,
    pub issuer: Option<String>,
}

/// A recipient that holds a patient's data for a purpose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Holder {
    pub recipient: String,
    pub contact: String,
    pub releases: Vec<String>,
    pub released_study_uids: Vec<String>,
    pub patient_pseudonym: String,
    pub instances: i64,
}

impl Store {
    /// Registers a recipient.
    pub fn add_recipient(
        &self,
        name: &str,
        purposes: &[String],
        contact: &str,
        settings: &Settings,
    ) -> Result<Recipient> {
        if name.trim().is_empty() || name.chars().any(|c| c.is_control()) {
            return Err(StoreError::Usage(
                "recipient name must be non-empty printable text".into(),
            ));
        }
        if purposes.is_empty() {
            return Err(StoreError::Usage(
                "a recipient needs at least one --purpose".into(),
            ));
        }
        for p in purposes {
            settings.check_purpose(p)?;
        }
        if self.recipient(name)?.is_some() {
            return Err(StoreError::Usage(format!(
                "recipient `{name}` already exists"
            )));
        }
        let r = Recipient {
            name: name.to_string(),
            purposes: purposes.to_vec(),
            contact: contact.to_string(),
            created_at: crate::time::now_utc(),
        };
        self.block_on(
            sqlx::query("INSERT INTO recipients (name, purposes, contact, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&r.name)
                .bind(r.purposes.join(","))
                .bind(&r.contact)
                .bind(&r.created_at)
                .execute(&self.pool),
        )?;
        Ok(r)
    }

    /// A recipient by name.
    pub fn recipient(&self, name: &str) -> Result<Option<Recipient>> {
        let row = self.block_on(
            sqlx::query(
                "SELECT name, purposes, contact, created_at FROM recipients WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool),
        )?;
        row.map(|r| recipient_from_row(&r)).transpose()
    }

    /// Every recipient.
    pub fn recipients(&self) -> Result<Vec<Recipient>> {
        let rows = self.block_on(
            sqlx::query("SELECT name, purposes, contact, created_at FROM recipients ORDER BY name")
                .fetch_all(&self.pool),
        )?;
        rows.iter().map(recipient_from_row).collect()
    }

    /// Does the registry know this patient (a consent record or a release names them)?
    pub fn knows_patient(&self, patient_id: &str, issuer: &str) -> Result<bool> {
        let pref = self.patient_ref(patient_id, issuer)?;
        let row = self.block_on(
            sqlx::query("SELECT patient_ref FROM patients WHERE patient_ref = $1")
                .bind(&pref)
                .fetch_optional(&self.pool),
        )?;
        Ok(row.is_some())
    }

    /// Has any patient a consent record granting `purpose` (whatever its scope or later
    /// records)? A purpose refused by default that nobody granted admits nobody.
    pub fn anyone_granted(&self, purpose: &str) -> Result<bool> {
        let row = self.block_on(
            sqlx::query("SELECT id FROM consent_records WHERE purpose = $1 AND state = $2 LIMIT 1")
                .bind(purpose)
                .bind(crate::consent::ConsentState::Granted.as_str())
                .fetch_optional(&self.pool),
        )?;
        Ok(row.is_some())
    }

    /// Opens a release record; returns its id (`R0001`, `R0002`, …).
    pub fn begin_release(
        &self,
        recipient: &str,
        purpose: &str,
        policy_hash: &str,
        veil_version: &str,
    ) -> Result<String> {
        self.block_on(async {
            let mut tx = self.begin_write().await?;
            if self.backend() == crate::Backend::Postgres {
                sqlx::query("LOCK TABLE releases IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let n: i64 = sqlx::query("SELECT COUNT(*) FROM releases").fetch_one(&mut *tx).await?.try_get(0)?;
            let id = format!("R{:04}", n + 1);
            sqlx::query("INSERT INTO releases (id, recipient, purpose, policy_hash, veil_version, started_at, finished_at, released, excluded, held_back) VALUES ($1, $2, $3, $4, $5, $6, '', 0, 0, 0)")
                .bind(&id)
                .bind(recipient)
                .bind(purpose)
                .bind(policy_hash)
                .bind(veil_version)
                .bind(crate::time::now_utc())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Closes a release record with its counts and signs a checkpoint over the ledger's tip.
    pub fn finish_release(
        &self,
        id: &str,
        released: i64,
        excluded: i64,
        held_back: i64,
    ) -> Result<()> {
        self.block_on(
            sqlx::query("UPDATE releases SET finished_at = $1, released = $2, excluded = $3, held_back = $4 WHERE id = $5")
                .bind(crate::time::now_utc())
                .bind(released)
                .bind(excluded)
                .bind(held_back)
                .bind(id)
                .execute(&self.pool),
        )?;
        self.checkpoint()?;
        Ok(())
    }

    fn entries_where(&self, clause: &str, binds: &[&str]) -> Result<Vec<LedgerEntry>> {
        // Disclosures only: consent entries (crate::consent_log) share the table.
        let sql = format!(
            "SELECT {COLUMNS} FROM ledger WHERE release_id <> '{}' AND {clause} ORDER BY seq",
            crate::consent_log::CONSENT_RELEASE_ID
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b.to_string());
        }
        let rows = self.block_on(q.fetch_all(&self.pool))?;
        let entries = rows
            .iter()
            .map(|r| LedgerEntry::from_row(r).map_err(StoreError::from))
            .collect::<Result<Vec<_>>>()?;
        // Every clause used here selects a retraction together with what it retracts.
        Ok(crate::ledger::without_retracted(entries))
    }

    pub(crate) fn patient_refs(&self, patient_id: &str, issuer: &str) -> Result<Vec<String>> {
        let mut refs = vec![self.patient_ref(patient_id, issuer)?];
        if !issuer.trim().is_empty() {
            refs.push(self.patient_ref(patient_id, "")?);
        }
        Ok(refs)
    }

    fn entries_of_patient(&self, patient_id: &str, issuer: &str) -> Result<Vec<LedgerEntry>> {
        let mut out = Vec::new();
        for r in self.patient_refs(patient_id, issuer)? {
            out.extend(self.entries_where("patient_ref = $1", &[&r])?);
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    fn contacts(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .recipients()?
            .into_iter()
            .map(|r| (r.name, r.contact))
            .collect())
    }

    /// The patient's accounting of disclosures: one row per study per release, oldest first.
    pub fn disclosures(&self, patient_id: &str, issuer: &str) -> Result<Vec<Disclosure>> {
        let keys = self.keys()?;
        let contacts = self.contacts()?;
        let mut by: BTreeMap<(String, String), Disclosure> = BTreeMap::new();
        for e in self.entries_of_patient(patient_id, issuer)? {
            let k = (e.release_id.clone(), e.released_study.clone());
            let d = match by.get_mut(&k) {
                Some(d) => d,
                None => {
                    let original = keys
                        .sealer
                        .open("ledger.original_study", &e.original_study_enc)?;
                    by.entry(k).or_insert(Disclosure {
                        release_id: e.release_id.clone(),
                        recipient: e.recipient.clone(),
                        recipient_contact: contacts.get(&e.recipient).cloned().unwrap_or_default(),
                        purpose: e.purpose.clone(),
                        purpose_description: describe_purpose(&e.purpose),
                        consent_ref: e.consent_ref.clone(),
                        first_released_at: e.recorded_at.clone(),
                        last_released_at: e.recorded_at.clone(),
                        released_study_uid: e.released_study.clone(),
                        patient_pseudonym: e.patient_pseudonym.clone(),
                        instances: 0,
                        consent_label: crate::consent::reference_label(&e.consent_ref).to_string(),
                        ledger_entries: Vec::new(),
                        proof: None,
                        study: self.study_details(&original)?,
                        original_study_uid: original,
                    })
                }
            };
            d.instances += 1;
            d.ledger_entries.push(e.seq);
            d.last_released_at = d.last_released_at.clone().max(e.recorded_at.clone());
        }
        let mut v: Vec<Disclosure> = by.into_values().collect();
        v.sort_by(|a, b| {
            (&a.first_released_at, &a.release_id).cmp(&(&b.first_released_at, &b.release_id))
        });
        Ok(v)
    }

    /// Patients and studies released to `recipient` (since `since`, a normalised timestamp).
    pub fn breach(&self, recipient: &str, since: Option<&str>) -> Result<Vec<BreachRow>> {
        if self.recipient(recipient)?.is_none() {
            return Err(StoreError::Usage(format!(
                "no recipient `{recipient}` (see `veil recipient list`)"
            )));
        }
        let keys = self.keys()?;
        let entries = match since {
            Some(s) => {
                self.entries_where("recipient = $1 AND recorded_at >= $2", &[recipient, s])?
            }
            None => self.entries_where("recipient = $1", &[recipient])?,
        };
        let mut by: BTreeMap<(String, String, String), BreachRow> = BTreeMap::new();
        let mut patients: BTreeMap<String, (String, String)> = BTreeMap::new();
        for e in entries {
            if !patients.contains_key(&e.patient_ref) {
                let p = self.patient_by_ref(&e.patient_ref)?;
                patients.insert(e.patient_ref.clone(), p);
            }
            let (pid, issuer) = patients[&e.patient_ref].clone();
            let k = (
                e.patient_ref.clone(),
                e.released_study.clone(),
                e.release_id.clone(),
            );
            let row = match by.get_mut(&k) {
                Some(r) => r,
                None => by.entry(k).or_insert(BreachRow {
                    patient_ref: crate::short_ref(&e.patient_ref),
                    patient_id: pid,
                    issuer,
                    original_study_uid: keys
                        .sealer
                        .open("ledger.original_study", &e.original_study_enc)?,
                    released_study_uid: e.released_study.clone(),
                    release_id: e.release_id.clone(),
                    purpose: e.purpose.clone(),
                    instances: 0,
                    first_released_at: e.recorded_at.clone(),
                    last_released_at: e.recorded_at.clone(),
                    released_sops: Default::default(),
                }),
            };
            row.released_sops.insert(e.released_sop.clone());
            row.instances = row.released_sops.len() as i64;
            row.last_released_at = row.last_released_at.clone().max(e.recorded_at.clone());
        }
        Ok(by.into_values().collect())
    }

    /// The patient ID and issuer behind a reference (key holders only).
    pub fn patient_by_ref(&self, patient_ref: &str) -> Result<(String, String)> {
        let keys = self.keys()?;
        let row = self
            .block_on(
                sqlx::query(
                    "SELECT patient_id_enc, issuer_enc FROM patients WHERE patient_ref = $1",
                )
                .bind(patient_ref)
                .fetch_optional(&self.pool),
            )?
            .ok_or_else(|| {
                StoreError::Schema(format!(
                    "patient {} is in the ledger but not in the patient table",
                    crate::short_ref(patient_ref)
                ))
            })?;
        Ok((
            keys.sealer
                .open("patient.id", &row.try_get::<String, _>(0)?)?,
            keys.sealer
                .open("patient.issuer", &row.try_get::<String, _>(1)?)?,
        ))
    }

    /// Finds the ledger entries of a released file from its UIDs: by SOP Instance UID, else by
    /// Study Instance UID. Originals and the patient are filled in when the key is loaded.
    pub fn trace(&self, released: &Uids) -> Result<Vec<Trace>> {
        let contacts = self.contacts()?;
        let (matched_by, entries) = {
            let by_sop = if released.sop.is_empty() {
                Vec::new()
            } else {
                self.entries_where("released_sop = $1", &[&released.sop])?
            };
            if !by_sop.is_empty() {
                ("sop", by_sop)
            } else if !released.study.is_empty() {
                (
                    "study",
                    self.entries_where("released_study = $1", &[&released.study])?,
                )
            } else {
                ("sop", Vec::new())
            }
        };
        let mut out = Vec::new();
        for e in entries {
            let (original, patient_id, issuer) = match &self.keys {
                Some(k) => {
                    let o = Uids {
                        study: k
                            .sealer
                            .open("ledger.original_study", &e.original_study_enc)?,
                        series: k
                            .sealer
                            .open("ledger.original_series", &e.original_series_enc)?,
                        sop: k.sealer.open("ledger.original_sop", &e.original_sop_enc)?,
                    };
                    let (p, i) = self.patient_by_ref(&e.patient_ref)?;
                    (Some(o), Some(p), Some(i))
                }
                None => (None, None, None),
            };
            out.push(Trace {
                matched_by: matched_by.to_string(),
                recipient_contact: contacts.get(&e.recipient).cloned().unwrap_or_default(),
                entry: e,
                original,
                patient_id,
                issuer,
            });
        }
        Ok(out)
    }

    /// Records a withdrawal (a new consent record, never an update) and lists the recipients
    /// that already hold the patient's data for that purpose.
    pub fn withdraw(
        &self,
        patient_id: &str,
        issuer: &str,
        purpose: &str,
        source: &str,
        evidence: &str,
        settings: &Settings,
    ) -> Result<(i64, Vec<Holder>)> {
        settings.check_purpose(purpose)?;
        let id = self.record_consent(
            &ConsentInput {
                patient_id: patient_id.to_string(),
                issuer: issuer.to_string(),
                purpose: purpose.to_string(),
                state: ConsentState::Withdrawn,
                scope: Scope::default(),
                effective_at: String::new(),
                valid_from: String::new(),
                valid_until: String::new(),
                source: source.to_string(),
                evidence: evidence.to_string(),
            },
            settings,
        )?;
        Ok((id, self.holders(patient_id, issuer, purpose)?))
    }

    /// Recipients holding a patient's data released for `purpose`.
    pub fn holders(&self, patient_id: &str, issuer: &str, purpose: &str) -> Result<Vec<Holder>> {
        let contacts = self.contacts()?;
        let mut by: BTreeMap<String, Holder> = BTreeMap::new();
        for e in self.entries_of_patient(patient_id, issuer)? {
            if e.purpose != purpose {
                continue;
            }
            let h = by.entry(e.recipient.clone()).or_insert_with(|| Holder {
                recipient: e.recipient.clone(),
                contact: contacts.get(&e.recipient).cloned().unwrap_or_default(),
                releases: Vec::new(),
                released_study_uids: Vec::new(),
                patient_pseudonym: e.patient_pseudonym.clone(),
                instances: 0,
            });
            if !h.releases.contains(&e.release_id) {
                h.releases.push(e.release_id.clone());
            }
            if !h.released_study_uids.contains(&e.released_study) {
                h.released_study_uids.push(e.released_study.clone());
            }
            h.instances += 1;
        }
        Ok(by.into_values().collect())
    }
}

fn recipient_from_row(r: &sqlx::any::AnyRow) -> Result<Recipient> {
    let purposes: String = r.try_get(1)?;
    Ok(Recipient {
        name: r.try_get(0)?,
        purposes: purposes
            .split(',')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
        contact: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

/// Breach rows as CSV with a header.
pub fn breach_csv(rows: &[BreachRow]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .map_err(|e| StoreError::Usage(format!("csv: {e}")))?;
    }
    w.into_inner()
        .map_err(|e| StoreError::Usage(format!("csv: {e}")))
}
