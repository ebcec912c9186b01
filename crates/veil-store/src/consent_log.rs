//! Consent under the chain: every consent record (set, import, withdraw) is also a ledger entry,
//! appended in the transaction that inserts the record, so the same hash chain, checkpoints and
//! signed tree heads protect it.
//!
//! A consent entry uses the ledger's columns as follows (the entry hash formula is unchanged):
//! `release_id` = `consent`, `consent_ref` = `C-<id>`, `patient_ref` and `purpose` as in the
//! record, `output_sha256` = `consent:<state>:<digest>` where the digest is SHA-256 over every
//! column of the stored record ([`record_digest`]), `recorded_at` the record's time; the other
//! text columns are empty. A release entry's `consent_ref` is `C-<id>@<hash of that consent
//! entry>`: what the release relied on, fixed by hash.
//!
//! `ledger verify` recomputes each record's digest from the registry and compares: an edited
//! record, one deleted from the registry and one inserted outside Veil are each named. It also
//! checks that each release names a consent entry that exists earlier in the log, for the same
//! purpose, and granted.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::ledger::LedgerEntry;
use crate::{Result, Store};

/// `release_id` of a consent entry.
pub const CONSENT_RELEASE_ID: &str = "consent";
/// Prefix of a consent entry's `output_sha256`.
pub const CONSENT_PREFIX: &str = "consent:";
const RECORD_LABEL: &[u8] = b"veil-consent-record-v1";

/// The columns of `consent_records` a digest covers, in order (after `id`).
pub(crate) const RECORD_COLUMNS: &str = "id, valid_from, valid_until, patient_ref, purpose, state, scope_modalities, scope_from, scope_to, effective_at, recorded_at, source, evidence_enc";

/// Positions in a record's columns (after `id`).
const PATIENT: usize = 2;
const PURPOSE: usize = 3;
const STATE: usize = 4;

/// SHA-256 (hex) over the label, the record id (8 bytes big-endian) and each stored column as
/// 8-byte big-endian length + UTF-8 bytes, in the order of `consent_records` columns documented
/// in docs/consent-ledger.md (`valid_from`, `valid_until`, `patient_ref`, …).
pub fn record_digest(id: i64, columns: &[&str; 12]) -> String {
    let mut h = Sha256::new();
    h.update(RECORD_LABEL);
    h.update(id.to_be_bytes());
    for c in columns {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The ledger entry for a stored record (`columns` as in [`record_digest`]).
pub(crate) fn consent_entry(
    seq: i64,
    prev: &str,
    id: i64,
    columns: &[&str; 12],
    recorded_at: &str,
) -> LedgerEntry {
    let mut e = LedgerEntry {
        seq,
        release_id: CONSENT_RELEASE_ID.into(),
        recipient: String::new(),
        purpose: columns[PURPOSE].into(),
        consent_ref: format!("C-{id}"),
        patient_ref: columns[PATIENT].into(),
        patient_pseudonym: String::new(),
        original_study_enc: String::new(),
        original_series_enc: String::new(),
        original_sop_enc: String::new(),
        released_study: String::new(),
        released_series: String::new(),
        released_sop: String::new(),
        output_path: String::new(),
        output_sha256: format!(
            "{CONSENT_PREFIX}{}:{}",
            columns[STATE],
            record_digest(id, columns)
        ),
        recorded_at: recorded_at.into(),
        policy_hash: String::new(),
        veil_version: env!("CARGO_PKG_VERSION").into(),
        prev_hash: prev.into(),
        entry_hash: String::new(),
    };
    e.entry_hash = e.compute_hash();
    e
}

/// What the log says about one consent record.
struct LoggedConsent {
    seq: i64,
    entry_hash: String,
    patient_ref: String,
    purpose: String,
    state: String,
    digest: String,
}

/// What a walk over the log learns about consent: the consent entries, the consent references
/// releases name (with the first entry naming each), and consent entries that name no record.
/// Filled entry by entry during the chain walk, so no second pass over the ledger is needed.
#[derive(Default)]
pub struct ConsentTrail {
    log: HashMap<i64, LoggedConsent>,
    /// (consent reference, purpose) → first release entry naming it.
    refs: HashMap<(String, String), i64>,
    /// The previous release entry's (consent reference, purpose): consecutive entries usually
    /// share it, and comparing saves a lookup.
    last: (String, String),
    malformed: Vec<i64>,
}

impl ConsentTrail {
    /// Notes one entry that passed the chain checks (`fields` in hashed order).
    pub fn observe(
        &mut self,
        seq: i64,
        fields: &[&str; crate::ledger::HASHED_FIELDS],
        entry_hash: &str,
    ) {
        let (release_id, purpose, consent_ref) = (fields[0], fields[2], fields[3]);
        if release_id == CONSENT_RELEASE_ID {
            match logged(seq, consent_ref, fields[4], purpose, fields[13], entry_hash) {
                Some((id, c)) => {
                    self.log.insert(id, c);
                }
                None => self.malformed.push(seq),
            }
            return;
        }
        if !consent_ref.starts_with("C-") || (self.last.0 == consent_ref && self.last.1 == purpose)
        {
            return;
        }
        self.last = (consent_ref.to_string(), purpose.to_string());
        self.refs.entry(self.last.clone()).or_insert(seq);
    }

    /// Each release's consent reference must name a consent entry of the log, earlier, for the
    /// same purpose, granted. `default:<purpose>` references (no record: the institution
    /// default) are not checked here: the default is a setting, not a record.
    pub fn release_problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .malformed
            .iter()
            .map(|seq| format!("ledger entry {seq}: a consent entry that names no record"))
            .collect();
        let mut refs: Vec<(&(String, String), &i64)> = self.refs.iter().collect();
        refs.sort_by_key(|(_, seq)| **seq);
        for ((consent_ref, purpose), &first_seq) in refs {
            let rest = &consent_ref[2..];
            let Some((id, hash)) = rest.split_once('@') else {
                problems.push(format!(
                    "ledger entry {first_seq}: names consent C-{rest} without the hash of its consent entry (recorded before consent entered the ledger, or edited)"
                ));
                continue;
            };
            let found = id.parse::<i64>().ok().and_then(|id| self.log.get(&id));
            match found {
                Some(c)
                    if c.entry_hash == hash
                        && c.seq < first_seq
                        && c.purpose == *purpose
                        && c.state == "granted" => {}
                Some(c) if c.entry_hash == hash && c.state != "granted" => problems.push(format!(
                    "ledger entry {first_seq}: released under consent C-{id}, which the log records as {} (entry {})",
                    c.state, c.seq
                )),
                _ => problems.push(format!(
                    "ledger entry {first_seq}: names consent C-{id} by a hash no earlier consent entry for {purpose} carries"
                )),
            }
        }
        problems
    }
}

fn logged(
    seq: i64,
    consent_ref: &str,
    patient_ref: &str,
    purpose: &str,
    output_sha256: &str,
    entry_hash: &str,
) -> Option<(i64, LoggedConsent)> {
    let id: i64 = consent_ref.strip_prefix("C-")?.parse().ok()?;
    let (state, digest) = output_sha256
        .strip_prefix(CONSENT_PREFIX)?
        .split_once(':')?;
    Some((
        id,
        LoggedConsent {
            seq,
            entry_hash: entry_hash.into(),
            patient_ref: patient_ref.into(),
            purpose: purpose.into(),
            state: state.into(),
            digest: digest.into(),
        },
    ))
}

impl Store {
    /// Compares the consent registry with the consent entries the chain walk collected, and
    /// adds the trail's release checks. Assumes the chain itself verified.
    pub(crate) fn verify_consent_log(&self, trail: &ConsentTrail) -> Result<Vec<String>> {
        let records = self.block_on(
            sqlx::query(&format!(
                "SELECT {RECORD_COLUMNS} FROM consent_records ORDER BY id"
            ))
            .fetch_all(&self.pool),
        )?;
        let mut problems = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in &records {
            let id: i64 = row.try_get(0)?;
            let cols: Vec<String> = (1..=12)
                .map(|i| row.try_get::<String, _>(i))
                .collect::<Result<_, _>>()?;
            let cols: [&str; 12] = std::array::from_fn(|i| cols[i].as_str());
            seen.insert(id);
            match trail.log.get(&id) {
                None => problems.push(format!(
                    "consent record C-{id} has no ledger entry: inserted outside Veil"
                )),
                Some(c)
                    if c.digest != record_digest(id, &cols)
                        || c.patient_ref != cols[PATIENT]
                        || c.purpose != cols[PURPOSE]
                        || c.state != cols[STATE] =>
                {
                    problems.push(format!(
                        "consent record C-{id} differs from what ledger entry {} recorded: edited",
                        c.seq
                    ))
                }
                Some(_) => {}
            }
        }
        let mut missing: Vec<(&i64, &LoggedConsent)> = trail
            .log
            .iter()
            .filter(|(id, _)| !seen.contains(id))
            .collect();
        missing.sort_by_key(|(_, c)| c.seq);
        for (id, c) in missing {
            problems.push(format!(
                "consent record C-{id} (ledger entry {}) is missing from the registry: deleted",
                c.seq
            ));
        }
        problems.extend(trail.release_problems());
        Ok(problems)
    }
}
