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
/// 8-byte big-endian length + UTF-8 bytes, in [`RECORD_COLUMNS`] order.
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

fn logged(e: &LedgerEntry) -> Option<(i64, LoggedConsent)> {
    let id: i64 = e.consent_ref.strip_prefix("C-")?.parse().ok()?;
    let (state, digest) = e
        .output_sha256
        .strip_prefix(CONSENT_PREFIX)?
        .split_once(':')?;
    Some((
        id,
        LoggedConsent {
            seq: e.seq,
            entry_hash: e.entry_hash.clone(),
            patient_ref: e.patient_ref.clone(),
            purpose: e.purpose.clone(),
            state: state.into(),
            digest: digest.into(),
        },
    ))
}

/// A release's consent reference as the log groups it: the reference, its purpose and the
/// first entry that names it.
struct ReleaseRef {
    consent_ref: String,
    purpose: String,
    first_seq: i64,
}

/// Checks that each release names a consent entry of the log, earlier, for the same purpose,
/// granted. `default:<purpose>` references (no record: the institution default) are not
/// checked here: the default is a setting, not a record.
fn check_release_refs(log: &HashMap<i64, LoggedConsent>, refs: &[ReleaseRef]) -> Vec<String> {
    let mut problems = Vec::new();
    for r in refs {
        let Some(rest) = r.consent_ref.strip_prefix("C-") else {
            continue;
        };
        let Some((id, hash)) = rest.split_once('@') else {
            problems.push(format!(
                "ledger entry {}: names consent C-{rest} without the hash of its consent entry (recorded before consent entered the ledger, or edited)",
                r.first_seq
            ));
            continue;
        };
        let found = id.parse::<i64>().ok().and_then(|id| log.get(&id));
        match found {
            Some(c) if c.entry_hash == hash && c.seq < r.first_seq && c.purpose == r.purpose && c.state == "granted" => {}
            Some(c) if c.entry_hash == hash && c.state != "granted" => problems.push(format!(
                "ledger entry {}: released under consent C-{id}, which the log records as {} (entry {})",
                r.first_seq, c.state, c.seq
            )),
            _ => problems.push(format!(
                "ledger entry {}: names consent C-{id} by a hash no earlier consent entry for {} carries",
                r.first_seq, r.purpose
            )),
        }
    }
    problems
}

/// The checks an export allows (it holds no registry rows): release references only.
pub fn check_entries(entries: &[LedgerEntry]) -> Vec<String> {
    let mut log = HashMap::new();
    let mut refs: HashMap<(String, String), i64> = HashMap::new();
    for e in entries {
        if e.release_id == CONSENT_RELEASE_ID {
            if let Some((id, c)) = logged(e) {
                log.insert(id, c);
            }
        } else if e.consent_ref.starts_with("C-") {
            refs.entry((e.consent_ref.clone(), e.purpose.clone()))
                .or_insert(e.seq);
        }
    }
    let refs: Vec<ReleaseRef> = refs
        .into_iter()
        .map(|((consent_ref, purpose), first_seq)| ReleaseRef {
            consent_ref,
            purpose,
            first_seq,
        })
        .collect();
    let mut p = check_release_refs(&log, &refs);
    p.sort();
    p
}

impl Store {
    /// Compares the consent registry with the consent entries of the log, and the releases'
    /// consent references with those entries. Assumes the chain itself verified.
    pub(crate) fn verify_consent_log(&self) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT {} FROM ledger WHERE release_id = $1 ORDER BY seq",
            crate::ledger::COLUMNS
        );
        let rows = self.block_on(
            sqlx::query(&sql)
                .bind(CONSENT_RELEASE_ID)
                .fetch_all(&self.pool),
        )?;
        let mut log = HashMap::new();
        let mut problems = Vec::new();
        for r in &rows {
            let e = LedgerEntry::from_row(r)?;
            match logged(&e) {
                Some((id, c)) => {
                    log.insert(id, c);
                }
                None => problems.push(format!(
                    "ledger entry {}: a consent entry that names no record",
                    e.seq
                )),
            }
        }
        let records = self.block_on(
            sqlx::query(&format!(
                "SELECT {RECORD_COLUMNS} FROM consent_records ORDER BY id"
            ))
            .fetch_all(&self.pool),
        )?;
        let mut seen = std::collections::HashSet::new();
        for row in &records {
            let id: i64 = row.try_get(0)?;
            let cols: Vec<String> = (1..=12)
                .map(|i| row.try_get::<String, _>(i))
                .collect::<Result<_, _>>()?;
            let cols: [&str; 12] = std::array::from_fn(|i| cols[i].as_str());
            seen.insert(id);
            match log.get(&id) {
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
        let mut missing: Vec<(&i64, &LoggedConsent)> =
            log.iter().filter(|(id, _)| !seen.contains(id)).collect();
        missing.sort_by_key(|(_, c)| c.seq);
        for (id, c) in missing {
            problems.push(format!(
                "consent record C-{id} (ledger entry {}) is missing from the registry: deleted",
                c.seq
            ));
        }
        let refs = self.block_on(
            sqlx::query("SELECT consent_ref, purpose, MIN(seq) FROM ledger WHERE release_id <> $1 AND consent_ref LIKE 'C-%' GROUP BY consent_ref, purpose")
                .bind(CONSENT_RELEASE_ID)
                .fetch_all(&self.pool),
        )?;
        let refs = refs
            .iter()
            .map(|r| {
                Ok(ReleaseRef {
                    consent_ref: r.try_get(0)?,
                    purpose: r.try_get(1)?,
                    first_seq: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let mut release_problems = check_release_refs(&log, &refs);
        release_problems.sort();
        problems.extend(release_problems);
        Ok(problems)
    }
}
