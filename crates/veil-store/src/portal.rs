//! The web portal's tables (migration 3): one-time patient access codes, privacy-office
//! accounts, the portal's audit log, recorded breaches and withdrawal notices, and the read-only
//! summaries the privacy office's pages show. The portal (crate `veil-portal`) owns the rules
//! (code format, lockout limits, sessions); this module only stores and finds.
//!
//! Nothing identifying is stored in clear: a code is found by a keyed hash of it, the patient it
//! opens is sealed like every identifier, a TOTP secret is sealed, and audit rows name patients
//! by their short keyed reference only.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::studies::StudyDetails;
use crate::{Result, Store, StoreError};

/// The patient an access code opened.
#[derive(Debug, Clone)]
pub struct CodeHolder {
    pub patient_id: String,
    pub issuer: String,
    /// The short keyed reference (for audit rows and pages; not identifying).
    pub short_ref: String,
}

/// A privacy-office account as stored.
#[derive(Debug, Clone)]
pub struct Officer {
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub totp_secret: Vec<u8>,
    pub failed_sign_ins: i64,
    /// Empty, or the normalised UTC time until which sign-in is refused.
    pub locked_until: String,
    pub last_totp_step: i64,
}

/// One row of the portal's audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// A breach the privacy office recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedBreach {
    pub id: i64,
    pub recipient: String,
    pub since: String,
    pub description: String,
    pub reported_at: String,
    pub reported_by: String,
}

/// A release as the privacy office lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseRow {
    pub id: String,
    pub recipient: String,
    pub purpose: String,
    pub started_at: String,
    pub finished_at: String,
    pub released: i64,
    pub excluded: i64,
    pub held_back: i64,
}

/// A withdrawal after which recipients hold the patient's data for that purpose.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Withdrawal {
    pub consent_id: i64,
    pub patient: String,
    pub purpose: String,
    pub recorded_at: String,
    pub source: String,
    /// (recipient, instances released to it for the purpose before the withdrawal).
    pub holders: Vec<(String, i64)>,
    /// Empty until the privacy office marks the recipients notified.
    pub notified_at: String,
    pub notified_by: String,
}

/// The ledger's size and latest signed tree head, without verifying it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LedgerSummary {
    pub entries: i64,
    pub head_size: i64,
    pub head_signed_at: String,
}

fn code_ref(master: &veil_keys::Key, code: &str) -> String {
    hex::encode(master.mac("veil-portal/access-code", code.as_bytes()))
}

impl Store {
    /// Stores a new access code (its keyed hash) for a patient, valid until `expires_at`.
    pub fn portal_store_code(
        &self,
        code: &str,
        patient_id: &str,
        issuer: &str,
        issued_by: &str,
        expires_at: &str,
    ) -> Result<CodeHolder> {
        let keys = self.keys()?;
        let pref = self.patient_ref(patient_id, issuer)?;
        self.block_on(
            sqlx::query("INSERT INTO portal_codes (code_ref, patient_ref, patient_id_enc, issuer_enc, issued_by, issued_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, '')")
                .bind(code_ref(&keys.master, code))
                .bind(&pref)
                .bind(keys.sealer.seal("portal.patient_id", patient_id.trim()))
                .bind(keys.sealer.seal("portal.issuer", issuer.trim()))
                .bind(issued_by)
                .bind(crate::time::now_utc())
                .bind(expires_at)
                .execute(&self.pool),
        )?;
        Ok(CodeHolder {
            patient_id: patient_id.trim().to_string(),
            issuer: issuer.trim().to_string(),
            short_ref: crate::short_ref(&pref),
        })
    }

    /// Uses a code: marks it used and returns its patient when it exists, is unused and has
    /// not expired at `now`, in one statement, so two sign-ins racing with one code cannot both
    /// succeed. `Err(why)` says why not, for the audit log only (never shown to the person).
    pub fn portal_redeem_code(
        &self,
        code: &str,
        now: &str,
    ) -> Result<std::result::Result<CodeHolder, &'static str>> {
        let keys = self.keys()?;
        let cref = code_ref(&keys.master, code);
        let used = self.block_on(
            sqlx::query("UPDATE portal_codes SET used_at = $1 WHERE code_ref = $2 AND used_at = '' AND expires_at > $1")
                .bind(now)
                .bind(&cref)
                .execute(&self.pool),
        )?;
        let row = self.block_on(
            sqlx::query("SELECT patient_ref, patient_id_enc, issuer_enc, used_at, expires_at FROM portal_codes WHERE code_ref = $1")
                .bind(&cref)
                .fetch_optional(&self.pool),
        )?;
        let Some(row) = row else {
            return Ok(Err("unknown code"));
        };
        if used.rows_affected() != 1 {
            let expired = row.try_get::<String, _>(4)?.as_str() <= now;
            return Ok(Err(if expired {
                "expired code"
            } else {
                "code already used"
            }));
        }
        Ok(Ok(CodeHolder {
            short_ref: crate::short_ref(&row.try_get::<String, _>(0)?),
            patient_id: keys
                .sealer
                .open("portal.patient_id", &row.try_get::<String, _>(1)?)?,
            issuer: keys
                .sealer
                .open("portal.issuer", &row.try_get::<String, _>(2)?)?,
        }))
    }

    /// Adds a privacy-office account; refuses a name that exists.
    pub fn portal_add_officer(&self, name: &str, password_hash: &str, totp: &[u8]) -> Result<()> {
        let keys = self.keys()?;
        if self.portal_officer(name)?.is_some() {
            return Err(StoreError::Usage(format!(
                "officer `{name}` exists already; choose another name"
            )));
        }
        self.block_on(
            sqlx::query("INSERT INTO portal_officers (name, password_hash, totp_secret_enc, created_at, failed_sign_ins, locked_until, last_totp_step) VALUES ($1, $2, $3, $4, 0, '', 0)")
                .bind(name)
                .bind(password_hash)
                .bind(keys.sealer.seal("portal.totp", &hex::encode(totp)))
                .bind(crate::time::now_utc())
                .execute(&self.pool),
        )?;
        Ok(())
    }

    /// A privacy-office account by name.
    pub fn portal_officer(&self, name: &str) -> Result<Option<Officer>> {
        let keys = self.keys()?;
        let row = self.block_on(
            sqlx::query("SELECT password_hash, totp_secret_enc, failed_sign_ins, locked_until, last_totp_step FROM portal_officers WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool),
        )?;
        let Some(r) = row else { return Ok(None) };
        let secret = keys
            .sealer
            .open("portal.totp", &r.try_get::<String, _>(1)?)?;
        Ok(Some(Officer {
            name: name.to_string(),
            password_hash: r.try_get(0)?,
            totp_secret: hex::decode(secret).map_err(|_| StoreError::Decrypt("portal.totp"))?,
            failed_sign_ins: r.try_get(2)?,
            locked_until: r.try_get(3)?,
            last_totp_step: r.try_get(4)?,
        }))
    }

    /// Counts a failed sign-in; at `limit` failures the account is locked until `lock_until`
    /// and the count starts again. Returns whether it is now locked.
    pub fn portal_officer_failed(&self, name: &str, limit: i64, lock_until: &str) -> Result<bool> {
        self.block_on(async {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE portal_officers SET failed_sign_ins = failed_sign_ins + 1 WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let failed: i64 = sqlx::query("SELECT failed_sign_ins FROM portal_officers WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(0);
            let locked = failed >= limit;
            if locked {
                sqlx::query("UPDATE portal_officers SET failed_sign_ins = 0, locked_until = $1 WHERE name = $2")
                    .bind(lock_until)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<bool, StoreError>(locked)
        })
    }

    /// Records a successful sign-in with TOTP time step `step`; false (nothing changed) when a
    /// code of that step or a later one was accepted already (a replayed code).
    pub fn portal_officer_signed_in(&self, name: &str, step: i64) -> Result<bool> {
        let done = self.block_on(
            sqlx::query("UPDATE portal_officers SET failed_sign_ins = 0, locked_until = '', last_totp_step = $1 WHERE name = $2 AND last_totp_step < $1")
                .bind(step)
                .bind(name)
                .execute(&self.pool),
        )?;
        Ok(done.rows_affected() == 1)
    }

    /// Appends to the portal's audit log. `detail` must carry no identifying value.
    pub fn portal_audit(&self, actor: &str, action: &str, detail: &str) -> Result<()> {
        self.block_on(async {
            let mut tx = self.begin_write().await?;
            if self.backend() == crate::Backend::Postgres {
                sqlx::query("LOCK TABLE portal_audit IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM portal_audit")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            sqlx::query("INSERT INTO portal_audit (id, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)")
                .bind(next)
                .bind(crate::time::now_utc())
                .bind(actor)
                .bind(action)
                .bind(detail)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })
    }

    /// The latest `limit` audit rows, newest first.
    pub fn portal_audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = self.block_on(
            sqlx::query(
                "SELECT id, at, actor, action, detail FROM portal_audit ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool),
        )?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    detail: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Records a breach at `recipient` exposing what it received from `since` on.
    pub fn portal_record_breach(
        &self,
        recipient: &str,
        since: &str,
        description: &str,
        by: &str,
    ) -> Result<i64> {
        if self.recipient(recipient)?.is_none() {
            return Err(StoreError::Usage(format!(
                "no recipient `{recipient}` (see the list of recipients)"
            )));
        }
        self.block_on(async {
            let mut tx = self.begin_write().await?;
            if self.backend() == crate::Backend::Postgres {
                sqlx::query("LOCK TABLE portal_breaches IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM portal_breaches")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            sqlx::query("INSERT INTO portal_breaches (id, recipient, since, description, reported_at, reported_by) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(next)
                .bind(recipient)
                .bind(since)
                .bind(description)
                .bind(crate::time::now_utc())
                .bind(by)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<i64, StoreError>(next)
        })
    }

    /// Every recorded breach, newest first.
    pub fn portal_breaches(&self) -> Result<Vec<RecordedBreach>> {
        let rows = self.block_on(
            sqlx::query("SELECT id, recipient, since, description, reported_at, reported_by FROM portal_breaches ORDER BY id DESC")
                .fetch_all(&self.pool),
        )?;
        rows.iter()
            .map(|r| {
                Ok(RecordedBreach {
                    id: r.try_get(0)?,
                    recipient: r.try_get(1)?,
                    since: r.try_get(2)?,
                    description: r.try_get(3)?,
                    reported_at: r.try_get(4)?,
                    reported_by: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The patient's studies the store knows (date, modalities, description), by date.
    pub fn portal_patient_studies(
        &self,
        patient_id: &str,
        issuer: &str,
    ) -> Result<Vec<StudyDetails>> {
        let keys = self.keys()?;
        let mut by: BTreeMap<String, StudyDetails> = BTreeMap::new();
        for pref in self.patient_refs(patient_id, issuer)? {
            let rows = self.block_on(
                sqlx::query("SELECT study_ref, study_date_enc, modality_enc, description_enc FROM released_studies WHERE patient_ref = $1 ORDER BY recorded_at")
                    .bind(pref)
                    .fetch_all(&self.pool),
            )?;
            for r in &rows {
                by.entry(r.try_get(0)?)
                    .or_default()
                    .add_recorded(keys, r, 1)?;
            }
        }
        let mut v: Vec<StudyDetails> = by.into_values().collect();
        v.sort_by(|a, b| b.date.cmp(&a.date));
        Ok(v)
    }

    /// The latest `limit` releases with their counts, newest first.
    pub fn portal_releases(&self, limit: i64) -> Result<Vec<ReleaseRow>> {
        let rows = self.block_on(
            sqlx::query("SELECT id, recipient, purpose, started_at, finished_at, released, excluded, held_back FROM releases ORDER BY started_at DESC LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool),
        )?;
        rows.iter()
            .map(|r| {
                Ok(ReleaseRow {
                    id: r.try_get(0)?,
                    recipient: r.try_get(1)?,
                    purpose: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    finished_at: r.try_get(4)?,
                    released: r.try_get(5)?,
                    excluded: r.try_get(6)?,
                    held_back: r.try_get(7)?,
                })
            })
            .collect()
    }

    /// Patients per purpose and state of their latest whole-purpose record (patients with no
    /// record follow the institution default and are not counted here).
    pub fn portal_consent_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = self.block_on(
            sqlx::query("SELECT c.purpose, c.state, COUNT(*) FROM consent_records c WHERE c.scope_modalities = '' AND c.scope_from = '' AND c.scope_to = '' AND c.id = (SELECT MAX(d.id) FROM consent_records d WHERE d.patient_ref = c.patient_ref AND d.purpose = c.purpose AND d.scope_modalities = '' AND d.scope_from = '' AND d.scope_to = '') GROUP BY c.purpose, c.state ORDER BY c.purpose, c.state")
                .fetch_all(&self.pool),
        )?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Withdrawals (newest first, at most `limit`) after which recipients hold the patient's
    /// data for the purpose, with whether the privacy office has notified them.
    pub fn portal_withdrawals(&self, limit: i64) -> Result<Vec<Withdrawal>> {
        let rows = self.block_on(
            sqlx::query("SELECT c.id, c.patient_ref, c.purpose, c.recorded_at, c.source, COALESCE(n.notified_at, ''), COALESCE(n.notified_by, '') FROM consent_records c LEFT JOIN portal_withdrawal_notices n ON n.consent_id = c.id WHERE c.state = 'withdrawn' ORDER BY c.id DESC LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool),
        )?;
        let mut out = Vec::new();
        for r in rows {
            let pref: String = r.try_get(1)?;
            let purpose: String = r.try_get(2)?;
            let recorded_at: String = r.try_get(3)?;
            let holders = self.block_on(
                sqlx::query("SELECT recipient, COUNT(*) FROM ledger WHERE patient_ref = $1 AND purpose = $2 AND release_id <> 'consent' AND recorded_at < $3 GROUP BY recipient ORDER BY recipient")
                    .bind(&pref)
                    .bind(&purpose)
                    .bind(&recorded_at)
                    .fetch_all(&self.pool),
            )?;
            let holders: Vec<(String, i64)> = holders
                .iter()
                .map(|h| Ok((h.try_get(0)?, h.try_get(1)?)))
                .collect::<Result<_>>()?;
            if holders.is_empty() {
                continue;
            }
            out.push(Withdrawal {
                consent_id: r.try_get(0)?,
                patient: crate::short_ref(&pref),
                purpose,
                recorded_at,
                source: r.try_get(4)?,
                holders,
                notified_at: r.try_get(5)?,
                notified_by: r.try_get(6)?,
            });
        }
        Ok(out)
    }

    /// Marks a withdrawal's recipients notified (once; later calls change nothing).
    pub fn portal_mark_notified(&self, consent_id: i64, by: &str) -> Result<bool> {
        let done = self.block_on(
            sqlx::query("INSERT INTO portal_withdrawal_notices (consent_id, notified_at, notified_by) VALUES ($1, $2, $3) ON CONFLICT (consent_id) DO NOTHING")
                .bind(consent_id)
                .bind(crate::time::now_utc())
                .bind(by)
                .execute(&self.pool),
        )?;
        Ok(done.rows_affected() == 1)
    }

    /// The ledger's entry count and its latest signed tree head (not verified here).
    pub fn portal_ledger_summary(&self) -> Result<LedgerSummary> {
        let entries: i64 = self
            .block_on(sqlx::query("SELECT COUNT(*) FROM ledger").fetch_one(&self.pool))?
            .try_get(0)?;
        let head = self.block_on(
            sqlx::query("SELECT size, signed_at FROM ledger_tree_heads ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool),
        )?;
        let (head_size, head_signed_at) = match head {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, String::new()),
        };
        Ok(LedgerSummary {
            entries,
            head_size,
            head_signed_at,
        })
    }
}
