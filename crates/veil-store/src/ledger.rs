//! The disclosure ledger: one entry per released instance, append-only and hash-chained.
//!
//! Entry `n` stores `prev_hash` (entry `n-1`'s hash; 64 zeros for entry 1) and `entry_hash` =
//! SHA-256 over a canonical encoding: a version label, the sequence number (8 bytes big-endian),
//! every field as 8-byte big-endian length + UTF-8 bytes in a fixed order, and the previous hash.
//! Changing, removing, inserting or reordering a row breaks either the recomputed hash or the
//! link to the previous entry, and verification names the first entry where that happens.
//! A plain hash chain can be rebuilt by whoever can write the database, so checkpoints sign the
//! tip (sequence number + hash) with an Ed25519 key derived from Veil's key
//! (`key.subkey("ledger", "ed25519")`): a rewritten history no longer matches the signed hashes,
//! and truncation below a checkpoint is detected.
//!
//! Entries are never changed or removed, so an instance recorded as released and then taken
//! back before its release finished (the first version of an instance another input of the run
//! contradicts: the pipeline holds both back) gets a second, **retraction** entry: a copy of the
//! first with `output_sha256` = `retracted:<seq of the retracted entry>`. Queries (disclosures,
//! breach, trace, holders) count neither; the export and verification see both.

use std::io::{BufRead, Write};

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::tree_head::TreeHead;
use crate::{Result, Store, StoreError};

/// Hash of "no previous entry".
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A checkpoint is signed at least every this many entries (and at the end of every release).
pub const CHECKPOINT_EVERY: i64 = 1000;
const LABEL: &[u8] = b"veil-ledger-entry-v1";
/// `output_sha256` of a retraction entry: this prefix and the retracted entry's `seq`.
pub const RETRACTED_PREFIX: &str = "retracted:";
const CHECKPOINT_LABEL: &[u8] = b"veil-ledger-checkpoint-v1";

/// Study/Series/SOP Instance UIDs of one instance.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Uids {
    pub study: String,
    pub series: String,
    pub sop: String,
}

/// What a release asks the ledger to record (originals in clear; the store seals them).
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub release_id: String,
    pub recipient: String,
    pub purpose: String,
    pub consent_ref: String,
    pub patient_ref: String,
    /// The original patient ID and issuer (sealed into the patient table, never into the ledger).
    pub patient_id: String,
    pub issuer: String,
    pub patient_pseudonym: String,
    pub original: Uids,
    pub released: Uids,
    pub output_path: String,
    pub output_sha256: String,
    pub policy_hash: String,
    pub veil_version: String,
}

/// A stored entry, as in the database (originals sealed).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    pub seq: i64,
    pub release_id: String,
    pub recipient: String,
    pub purpose: String,
    pub consent_ref: String,
    pub patient_ref: String,
    pub patient_pseudonym: String,
    pub original_study_enc: String,
    pub original_series_enc: String,
    pub original_sop_enc: String,
    pub released_study: String,
    pub released_series: String,
    pub released_sop: String,
    pub output_path: String,
    pub output_sha256: String,
    pub recorded_at: String,
    pub policy_hash: String,
    pub veil_version: String,
    pub prev_hash: String,
    pub entry_hash: String,
}

pub(crate) const COLUMNS: &str = "seq, release_id, recipient, purpose, consent_ref, patient_ref, patient_pseudonym, original_study_enc, original_series_enc, original_sop_enc, released_study, released_series, released_sop, output_path, output_sha256, recorded_at, policy_hash, veil_version, prev_hash, entry_hash";

/// Number of hashed text fields of an entry (everything but `seq` and `entry_hash`, with
/// `prev_hash` last).
pub const HASHED_FIELDS: usize = 18;

/// The canonical hash of an entry: SHA-256 over the label, `seq` (8 bytes big-endian) and every
/// field as 8-byte big-endian length + UTF-8 bytes, in stored column order (`prev_hash` last).
pub fn hash_fields(seq: i64, fields: &[&str; HASHED_FIELDS]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LABEL);
    h.update(seq.to_be_bytes());
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().into()
}

/// Does `stored` (hex, as kept in the database) spell exactly this digest? Compared as text, so a
/// re-cased or re-encoded hash is an edit too.
fn hash_matches(digest: &[u8; 32], stored: &str) -> bool {
    let mut buf = [0u8; 64];
    hex::encode_to_slice(digest, &mut buf).expect("64 bytes hold 32 in hex");
    buf == stored.as_bytes()
}

impl LedgerEntry {
    /// The hashed fields, in order.
    pub fn fields(&self) -> [&str; HASHED_FIELDS] {
        [
            &self.release_id,
            &self.recipient,
            &self.purpose,
            &self.consent_ref,
            &self.patient_ref,
            &self.patient_pseudonym,
            &self.original_study_enc,
            &self.original_series_enc,
            &self.original_sop_enc,
            &self.released_study,
            &self.released_series,
            &self.released_sop,
            &self.output_path,
            &self.output_sha256,
            &self.recorded_at,
            &self.policy_hash,
            &self.veil_version,
            &self.prev_hash,
        ]
    }

    /// Builds an entry from its sequence number, hashed fields and stored hash.
    pub fn from_fields(seq: i64, f: &[&str; HASHED_FIELDS], entry_hash: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            release_id: f[0].into(),
            recipient: f[1].into(),
            purpose: f[2].into(),
            consent_ref: f[3].into(),
            patient_ref: f[4].into(),
            patient_pseudonym: f[5].into(),
            original_study_enc: f[6].into(),
            original_series_enc: f[7].into(),
            original_sop_enc: f[8].into(),
            released_study: f[9].into(),
            released_series: f[10].into(),
            released_sop: f[11].into(),
            output_path: f[12].into(),
            output_sha256: f[13].into(),
            recorded_at: f[14].into(),
            policy_hash: f[15].into(),
            veil_version: f[16].into(),
            prev_hash: f[17].into(),
            entry_hash: entry_hash.into(),
        }
    }

    /// The hash this entry must carry, recomputed from its fields and `prev_hash`.
    pub fn compute_hash(&self) -> String {
        hex::encode(hash_fields(self.seq, &self.fields()))
    }

    pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<LedgerEntry, sqlx::Error> {
        Ok(LedgerEntry {
            seq: row.try_get(0)?,
            release_id: row.try_get(1)?,
            recipient: row.try_get(2)?,
            purpose: row.try_get(3)?,
            consent_ref: row.try_get(4)?,
            patient_ref: row.try_get(5)?,
            patient_pseudonym: row.try_get(6)?,
            original_study_enc: row.try_get(7)?,
            original_series_enc: row.try_get(8)?,
            original_sop_enc: row.try_get(9)?,
            released_study: row.try_get(10)?,
            released_series: row.try_get(11)?,
            released_sop: row.try_get(12)?,
            output_path: row.try_get(13)?,
            output_sha256: row.try_get(14)?,
            recorded_at: row.try_get(15)?,
            policy_hash: row.try_get(16)?,
            veil_version: row.try_get(17)?,
            prev_hash: row.try_get(18)?,
            entry_hash: row.try_get(19)?,
        })
    }
}

/// A signed checkpoint over the ledger's tip at `seq`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub entry_hash: String,
    pub signed_at: String,
    pub public_key: String,
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: i64, entry_hash: &str, signed_at: &str) -> Vec<u8> {
        let mut m = CHECKPOINT_LABEL.to_vec();
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(entry_hash.as_bytes());
        m.extend_from_slice(signed_at.as_bytes());
        m
    }

    /// Checks the signature against the checkpoint's own public key, and (when given) that the
    /// key is the expected one.
    pub fn check_signature(&self, expected_key: Option<&str>) -> Result<(), String> {
        if let Some(k) = expected_key {
            if k != self.public_key {
                return Err(format!(
                    "checkpoint at entry {} is signed by a key other than this store's ledger key",
                    self.seq
                ));
            }
        }
        let pk: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| format!("checkpoint at entry {}: malformed public key", self.seq))?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| format!("checkpoint at entry {}: malformed signature", self.seq))?;
        let vk = VerifyingKey::from_bytes(&pk)
            .map_err(|_| format!("checkpoint at entry {}: invalid public key", self.seq))?;
        vk.verify(
            &Self::message(self.seq, &self.entry_hash, &self.signed_at),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| {
            format!(
                "checkpoint at entry {}: signature does not verify (checkpoint edited)",
                self.seq
            )
        })
    }
}

/// The first problem found in the chain.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The first bad entry's sequence number.
    pub seq: i64,
    pub what: String,
}

/// The outcome of `ledger verify`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub entries: i64,
    pub tip_seq: i64,
    pub tip_hash: String,
    /// The Merkle root over every entry read (hex; see [`crate::merkle`]).
    pub tree_root: String,
    pub checkpoints: usize,
    /// Highest entry covered by a valid signed checkpoint (0: none).
    pub signed_through: i64,
    /// Signed tree heads checked (the database's and any saved ones given).
    pub tree_heads: usize,
    /// Highest size of a valid tree head that matches the entries (0: none).
    pub tree_signed_through: i64,
    pub first_bad: Option<Problem>,
    pub checkpoint_problems: Vec<String>,
    /// Tree heads that do not match the entries, are not signed by the expected key, cover
    /// entries that are gone, or entries no head covers.
    pub head_problems: Vec<String>,
    /// Consent records that disagree with their ledger entries, and releases that name a
    /// consent the log does not hold (filled by [`Store::verify_ledger`]).
    pub consent_problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
            && self.checkpoint_problems.is_empty()
            && self.head_problems.is_empty()
            && self.consent_problems.is_empty()
    }
}

/// Walks entries in storage order and checks numbering, links and hashes.
#[derive(Default)]
pub struct ChainChecker {
    expected_seq: i64,
    prev: String,
    count: i64,
    first_bad: Option<Problem>,
    /// (seq, stored hash) of entries that passed, kept only at checkpoint positions.
    wanted: std::collections::HashMap<i64, Option<String>>,
    /// The Merkle tree's right edge over the entries that passed.
    frontier: crate::merkle::Frontier,
    /// Tree sizes some head claims, with the root computed there once reached.
    head_roots: std::collections::HashMap<i64, Option<crate::merkle::Hash>>,
    /// What the entries that passed say about consent (see [`crate::consent_log`]).
    pub consents: crate::consent_log::ConsentTrail,
}

impl ChainChecker {
    /// `checkpoint_seqs`: positions whose hashes checkpoints vouch for.
    pub fn new(checkpoint_seqs: impl IntoIterator<Item = i64>) -> ChainChecker {
        ChainChecker {
            expected_seq: 1,
            prev: GENESIS.to_string(),
            count: 0,
            first_bad: None,
            wanted: checkpoint_seqs.into_iter().map(|s| (s, None)).collect(),
            frontier: Default::default(),
            head_roots: Default::default(),
            consents: Default::default(),
        }
    }

    /// Also computes the Merkle root at these tree sizes (the sizes of the heads to check).
    pub fn with_head_sizes(mut self, sizes: impl IntoIterator<Item = i64>) -> ChainChecker {
        self.head_roots = sizes.into_iter().map(|s| (s, None)).collect();
        self
    }

    /// Feeds the next entry; returns false once a problem was found (stop reading).
    pub fn push(&mut self, e: &LedgerEntry) -> bool {
        let fields = e.fields();
        let digest = hash_fields(e.seq, &fields);
        self.push_fields(e.seq, &fields, &digest, &e.entry_hash)
    }

    /// [`ChainChecker::push_hashed`], then the fields of an entry that passed go to the consent
    /// trail.
    pub fn push_fields(
        &mut self,
        seq: i64,
        fields: &[&str; HASHED_FIELDS],
        recomputed: &[u8; 32],
        entry_hash: &str,
    ) -> bool {
        let ok = self.push_hashed(seq, fields[HASHED_FIELDS - 1], recomputed, entry_hash);
        if ok {
            self.consents.observe(seq, fields, entry_hash);
        }
        ok
    }

    /// Feeds the next entry as stored (`seq`, `prev_hash`, stored `entry_hash`) with the hash
    /// recomputed from its fields ([`hash_fields`], which callers may run in parallel): the links
    /// are checked here, in order.
    pub fn push_hashed(
        &mut self,
        seq: i64,
        prev_hash: &str,
        recomputed: &[u8; 32],
        entry_hash: &str,
    ) -> bool {
        if self.first_bad.is_some() {
            return false;
        }
        self.count += 1;
        let bad = |seq: i64, what: String| Some(Problem { seq, what });
        if seq != self.expected_seq {
            self.first_bad = if seq > self.expected_seq {
                bad(
                    self.expected_seq,
                    format!(
                        "entry {} is missing (the next stored entry is {}): deleted",
                        self.expected_seq, seq
                    ),
                )
            } else {
                bad(seq, format!("entry {seq} appears out of order"))
            };
            return false;
        }
        if prev_hash != self.prev {
            self.first_bad = bad(
                seq,
                format!(
                    "entry {} does not link to entry {} (its previous-hash differs): an entry was inserted, deleted or reordered here",
                    seq,
                    seq - 1
                ),
            );
            return false;
        }
        if !hash_matches(recomputed, entry_hash) {
            self.first_bad = bad(
                seq,
                format!("entry {seq}: its contents do not match its hash (edited)"),
            );
            return false;
        }
        if let Some(slot) = self.wanted.get_mut(&seq) {
            *slot = Some(entry_hash.to_string());
        }
        self.frontier.push(crate::merkle::leaf_hash(recomputed));
        if let Some(slot) = self.head_roots.get_mut(&seq) {
            *slot = Some(self.frontier.root());
        }
        self.prev.clear();
        self.prev.push_str(entry_hash);
        self.expected_seq += 1;
        true
    }

    /// Records that entry `seq` could not be read as text fields (a NULL or a non-text value).
    pub fn push_unreadable(&mut self, seq: i64) {
        if self.first_bad.is_none() {
            self.count += 1;
            self.first_bad = Some(Problem {
                seq,
                what: format!("entry {seq}: a field is missing or not text (edited)"),
            });
        }
    }

    /// Finishes with the checkpoints (signatures, hashes at their positions, truncation) and
    /// the tree heads: the database's own (`heads`) and heads saved outside it (`saved`).
    pub fn finish(
        self,
        checkpoints: &[Checkpoint],
        heads: &[TreeHead],
        saved: &[TreeHead],
        expected_key: Option<&str>,
    ) -> VerifyReport {
        let (head_problems, tree_signed_through) = self.check_heads(heads, saved, expected_key);
        let tip_seq = self.expected_seq - 1;
        let mut problems = Vec::new();
        let mut signed_through = 0;
        for c in checkpoints {
            if let Err(e) = c.check_signature(expected_key) {
                problems.push(e);
                continue;
            }
            if self.first_bad.is_some() && c.seq >= self.first_bad.as_ref().unwrap().seq {
                continue; // already reported at the first bad entry
            }
            match self.wanted.get(&c.seq) {
                Some(Some(h)) if *h == c.entry_hash => signed_through = signed_through.max(c.seq),
                Some(Some(_)) => problems.push(format!(
                    "entry {}: hash differs from the signed checkpoint (history before it was rewritten)",
                    c.seq
                )),
                _ => problems.push(format!(
                    "entry {} is vouched for by a signed checkpoint but is missing: the ledger was truncated after entry {tip_seq}",
                    c.seq
                )),
            }
        }
        VerifyReport {
            entries: self.count,
            tip_seq,
            tip_hash: self.prev,
            tree_root: hex::encode(self.frontier.root()),
            checkpoints: checkpoints.len(),
            signed_through,
            tree_heads: heads.len() + saved.len(),
            tree_signed_through,
            first_bad: self.first_bad,
            checkpoint_problems: problems,
            head_problems,
            consent_problems: Vec::new(),
        }
    }

    /// Checks each head against the root computed at its size. The database's heads must also
    /// cover the tip (every append signs one in its transaction); saved heads locate a rewrite
    /// between the last one that matches and the first one that does not.
    fn check_heads(
        &self,
        heads: &[TreeHead],
        saved: &[TreeHead],
        key: Option<&str>,
    ) -> (Vec<String>, i64) {
        let tip = self.expected_seq - 1;
        let stop = self.first_bad.as_ref().map(|b| b.seq);
        let mut problems = Vec::new();
        let mut through = 0;
        let judge = |h: &TreeHead, what: &str, problems: &mut Vec<String>| -> Option<bool> {
            if let Err(e) = h.check_signature(key) {
                problems.push(format!("{what} {e}"));
                return Some(false);
            }
            if stop.is_some_and(|s| h.size >= s) {
                return None; // reported at the first bad entry
            }
            match self.head_roots.get(&h.size).copied().flatten() {
                Some(r) if hex::encode(r) == h.root => Some(true),
                Some(_) => {
                    problems.push(format!(
                        "{what} of size {} (signed {}) does not match entries 1..{}: they were rewritten",
                        h.size, h.signed_at, h.size
                    ));
                    Some(false)
                }
                None => {
                    problems.push(format!(
                        "{what} of size {} (signed {}) covers entries the ledger no longer has: rolled back after entry {tip} (entries {}..{} removed)",
                        h.size, h.signed_at, tip + 1, h.size
                    ));
                    Some(false)
                }
            }
        };
        for h in heads {
            if judge(h, "tree head", &mut problems) == Some(true) {
                through = through.max(h.size);
            }
        }
        let mut by_size: Vec<&TreeHead> = saved.iter().collect();
        by_size.sort_by_key(|h| h.size);
        let mut last_good = 0;
        let mut located = false;
        for h in by_size {
            match judge(h, "saved tree head", &mut problems) {
                Some(true) => {
                    last_good = last_good.max(h.size);
                    through = through.max(h.size);
                }
                Some(false) if !located && h.size <= tip => {
                    located = true;
                    problems.push(format!(
                        "the first changed entry is among entries {}..{} (the last saved head that matches covers {last_good})",
                        last_good + 1,
                        h.size
                    ));
                }
                _ => {}
            }
        }
        if stop.is_none() && tip > through {
            problems.push(format!(
                "entries {}..{tip} are covered by no signed tree head: written outside Veil (or by a Veil from before tree heads: check them, then sign with `veil ledger head --sign`)",
                through + 1
            ));
        }
        (problems, through)
    }
}

impl Store {
    /// The ledger's Ed25519 public key (hex), when the key is loaded.
    pub fn ledger_public_key(&self) -> Option<String> {
        self.keys
            .as_ref()
            .map(|k| hex::encode(k.signer.verifying_key().as_bytes()))
    }

    async fn load_tip(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, entry_hash FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, GENESIS.to_string()),
        })
    }

    fn seal_entry(
        &self,
        e: &NewEntry,
        seq: i64,
        prev: &str,
        recorded_at: &str,
    ) -> Result<LedgerEntry> {
        let keys = self.keys()?;
        let mut le = LedgerEntry {
            seq,
            release_id: e.release_id.clone(),
            recipient: e.recipient.clone(),
            purpose: e.purpose.clone(),
            consent_ref: e.consent_ref.clone(),
            patient_ref: e.patient_ref.clone(),
            patient_pseudonym: e.patient_pseudonym.clone(),
            original_study_enc: keys.sealer.seal("ledger.original_study", &e.original.study),
            original_series_enc: keys
                .sealer
                .seal("ledger.original_series", &e.original.series),
            original_sop_enc: keys.sealer.seal("ledger.original_sop", &e.original.sop),
            released_study: e.released.study.clone(),
            released_series: e.released.series.clone(),
            released_sop: e.released.sop.clone(),
            output_path: e.output_path.clone(),
            output_sha256: e.output_sha256.clone(),
            recorded_at: recorded_at.to_string(),
            policy_hash: e.policy_hash.clone(),
            veil_version: e.veil_version.clone(),
            prev_hash: prev.to_string(),
            entry_hash: String::new(),
        };
        le.entry_hash = le.compute_hash();
        Ok(le)
    }

    /// Appends one entry in its own transaction; `publish` runs inside the transaction after the
    /// row is inserted and before commit (a release renames its output there). If `publish` fails
    /// nothing is recorded; if the commit fails after `publish`, the caller must undo it.
    pub fn append<F>(&self, entry: &NewEntry, publish: F) -> Result<i64>
    where
        F: FnOnce() -> std::io::Result<()>,
    {
        let _tip = self.tip.lock().unwrap_or_else(|p| p.into_inner());
        let le = self.block_on(async {
            let mut tx = self.begin_write().await?;
            let (seq, prev) = tip_in(&mut tx, self.backend()).await?;
            let le = self.seal_entry(entry, seq + 1, &prev, &crate::time::now_utc())?;
            self.ensure_patient_in(&mut tx, entry).await?;
            insert(&mut tx, &le).await?;
            let head = self
                .sign_head_in(&mut tx, le.seq, &[&le.entry_hash])
                .await?;
            publish()?;
            tx.commit().await?;
            Ok::<_, StoreError>((le, head))
        })?;
        let (le, head) = le;
        self.witness(&head);
        self.known_patients
            .lock()
            .unwrap()
            .insert(entry.patient_ref.clone());
        if le.seq % CHECKPOINT_EVERY == 0 {
            self.checkpoint()?;
        }
        Ok(le.seq)
    }

    /// Appends many entries in one transaction, in order (a release commits its outputs this
    /// way, see [`crate::publish`]). Rows go in as multi-row INSERTs; a checkpoint is signed
    /// whenever the batch crosses a multiple of [`CHECKPOINT_EVERY`]. Returns the new tip.
    pub fn append_batch(&self, entries: &[NewEntry]) -> Result<i64> {
        if entries.is_empty() {
            return Ok(self.block_on(self.load_tip())?.0);
        }
        let _tip = self.tip.lock().unwrap_or_else(|p| p.into_inner());
        let (first, last, head) = self.block_on(async {
            let mut tx = self.begin_write().await?;
            let (first, mut prev) = tip_in(&mut tx, self.backend()).await?;
            // One commit, one time: the entries of a batch are recorded together.
            let recorded_at = crate::time::now_utc();
            let mut seq = first;
            let mut sealed = Vec::with_capacity(entries.len());
            for e in entries {
                seq += 1;
                let le = self.seal_entry(e, seq, &prev, &recorded_at)?;
                prev.clone_from(&le.entry_hash);
                sealed.push(le);
            }
            for e in entries {
                self.ensure_patient_in(&mut tx, e).await?;
            }
            insert_entries(&mut tx, self.backend(), &sealed).await?;
            let hashes: Vec<&str> = sealed.iter().map(|e| e.entry_hash.as_str()).collect();
            let head = self.sign_head_in(&mut tx, first + 1, &hashes).await?;
            tx.commit().await?;
            Ok::<_, StoreError>((first, seq, head))
        })?;
        self.witness(&head);
        self.known_patients
            .lock()
            .unwrap()
            .extend(entries.iter().map(|e| e.patient_ref.clone()));
        if last / CHECKPOINT_EVERY > first / CHECKPOINT_EVERY {
            self.checkpoint()?;
        }
        Ok(last)
    }

    /// Is an output already recorded: an entry with this released SOP Instance UID, output path
    /// (relative to the release's output directory) and SHA-256, not retracted since?
    pub fn is_recorded(&self, released_sop: &str, output_path: &str, sha256: &str) -> Result<bool> {
        self.block_on(async {
            let mut conn = self.pool.acquire().await?;
            Ok(live_entry(&mut conn, released_sop, output_path, sha256)
                .await?
                .is_some())
        })
    }

    /// Records that the output at `output_path` (released SOP Instance UID and SHA-256 as
    /// recorded) was taken back before its release finished: appends a retraction entry for its
    /// latest entry not yet retracted, on behalf of release `release_id`. Returns the retracted
    /// entry (None when there is none: already retracted, or never recorded). Idempotent.
    pub fn retract(
        &self,
        released_sop: &str,
        output_path: &str,
        sha256: &str,
        release_id: &str,
    ) -> Result<Option<LedgerEntry>> {
        let _tip = self.tip.lock().unwrap_or_else(|p| p.into_inner());
        let done = self.block_on(async {
            let mut tx = self.begin_write().await?;
            let (tip, prev) = tip_in(&mut tx, self.backend()).await?;
            let Some(original) = live_entry(&mut tx, released_sop, output_path, sha256).await?
            else {
                return Ok::<_, StoreError>(None);
            };
            let mut r = original.clone();
            r.seq = tip + 1;
            r.release_id = release_id.to_string();
            r.output_sha256 = format!("{RETRACTED_PREFIX}{}", original.seq);
            r.recorded_at = crate::time::now_utc();
            r.prev_hash = prev;
            r.entry_hash = r.compute_hash();
            insert(&mut tx, &r).await?;
            let head = self.sign_head_in(&mut tx, r.seq, &[&r.entry_hash]).await?;
            tx.commit().await?;
            Ok(Some((original, r.seq, head)))
        })?;
        let Some((original, seq, head)) = done else {
            return Ok(None);
        };
        self.witness(&head);
        if seq % CHECKPOINT_EVERY == 0 {
            self.checkpoint()?;
        }
        Ok(Some(original))
    }

    async fn ensure_patient_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        e: &NewEntry,
    ) -> Result<()> {
        if self.known_patients.lock().unwrap().contains(&e.patient_ref) {
            return Ok(());
        }
        let keys = self.keys()?;
        if crate::patient_ref(&keys.master, &e.patient_id, &e.issuer) != e.patient_ref {
            return Err(StoreError::Usage(
                "ledger entry: patient reference does not match the patient".into(),
            ));
        }
        crate::consent::ensure_patient(
            tx,
            keys,
            &e.patient_ref,
            &e.patient_id,
            &e.issuer,
            &crate::time::now_utc(),
        )
        .await?;
        // Remembered only once the transaction commits would be exact; a rolled-back insert of
        // a patient row is re-done harmlessly because ensure_patient checks first.
        Ok(())
    }

    /// Signs a checkpoint over the current tip (no-op when the tip is already signed or empty).
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let keys = self.keys()?;
        let (seq, hash) = self.block_on(self.load_tip())?;
        if seq == 0 {
            return Ok(None);
        }
        self.block_on(async {
            let exists = sqlx::query("SELECT 1 FROM ledger_checkpoints WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?
                .is_some();
            if exists {
                return Ok(None);
            }
            let signed_at = crate::time::now_utc();
            let sig = keys.signer.sign(&Checkpoint::message(seq, &hash, &signed_at));
            let c = Checkpoint {
                seq,
                entry_hash: hash,
                signed_at,
                public_key: hex::encode(keys.signer.verifying_key().as_bytes()),
                signature: hex::encode(sig.to_bytes()),
            };
            // Several writers (a Spark job's tasks) may sign the same tip at once: one row stays,
            // and the writer whose row lost signed nothing that is kept.
            let inserted = sqlx::query("INSERT INTO ledger_checkpoints (seq, entry_hash, signed_at, public_key, signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING")
                .bind(c.seq)
                .bind(&c.entry_hash)
                .bind(&c.signed_at)
                .bind(&c.public_key)
                .bind(&c.signature)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok((inserted == 1).then_some(c))
        })
    }

    /// Every checkpoint, by position.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.block_on(async {
            let rows = sqlx::query("SELECT seq, entry_hash, signed_at, public_key, signature FROM ledger_checkpoints ORDER BY seq")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Checkpoint {
                        seq: r.try_get(0)?,
                        entry_hash: r.try_get(1)?,
                        signed_at: r.try_get(2)?,
                        public_key: r.try_get(3)?,
                        signature: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    /// Reads the whole ledger in order, streaming, handing each stored entry to `f` as its
    /// sequence number, hashed fields and stored hash (stops when `f` returns false). SQLite is
    /// read through rusqlite on the calling thread (`scan_sqlite`); a field that is not text is
    /// an error here (verification reports it as an edit instead).
    pub fn scan_stored(
        &self,
        f: &mut dyn FnMut(i64, &[&str; HASHED_FIELDS], &str) -> bool,
    ) -> Result<()> {
        use futures_util::TryStreamExt;
        let sql = format!("SELECT {COLUMNS} FROM ledger ORDER BY seq");
        if let Some(path) = &self.sqlite_path {
            return scan_sqlite(path, &sql, &mut |row| {
                let seq: i64 = row.get(0).map_err(sqlite_error)?;
                let (fields, stored) = sqlite_fields(row).ok_or_else(|| {
                    StoreError::Usage(format!(
                        "ledger entry {seq}: a field is missing or not text: run `veil ledger verify`"
                    ))
                })?;
                Ok(f(seq, &fields, stored))
            });
        }
        self.block_on(async {
            let mut rows = sqlx::query(&sql).fetch(&self.pool);
            let mut owned: Vec<String> = Vec::with_capacity(HASHED_FIELDS + 1);
            while let Some(r) = rows.try_next().await? {
                let seq: i64 = r.try_get(0)?;
                owned.clear();
                for i in 1..=HASHED_FIELDS + 1 {
                    owned.push(r.try_get(i)?);
                }
                let fields: [&str; HASHED_FIELDS] = std::array::from_fn(|i| owned[i].as_str());
                if !f(seq, &fields, &owned[HASHED_FIELDS]) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Reads the whole ledger in order, handing each entry to `f` (stops when `f` returns false).
    pub fn scan_ledger(&self, mut f: impl FnMut(&LedgerEntry) -> bool) -> Result<()> {
        self.scan_stored(&mut |seq, fields, hash| f(&LedgerEntry::from_fields(seq, fields, hash)))
    }

    /// Verifies the whole chain, every checkpoint and tree head, and the consent registry
    /// against the consent entries, with the key this store was opened with (if any).
    pub fn verify_ledger(&self) -> Result<VerifyReport> {
        self.verify_ledger_with(&[], None)
    }

    /// [`Store::verify_ledger`] with heads saved outside the database (`saved`) and the
    /// auditor's pinned public key (hex; else the key the store was opened with, else each
    /// signature is checked against the key it names, which shows only that it was not edited).
    pub fn verify_ledger_with(
        &self,
        saved: &[TreeHead],
        pinned: Option<&str>,
    ) -> Result<VerifyReport> {
        let cps = self.checkpoints()?;
        let heads = self.tree_heads()?;
        let sizes = heads.iter().chain(saved).map(|h| h.size);
        let mut checker = ChainChecker::new(cps.iter().map(|c| c.seq)).with_head_sizes(sizes);
        match &self.sqlite_path {
            Some(path) => self.verify_sqlite(path, &mut checker)?,
            None => self.scan_stored(&mut |seq, fields, stored| {
                let digest = hash_fields(seq, fields);
                checker.push_fields(seq, fields, &digest, stored)
            })?,
        }
        let expected = pinned
            .map(str::to_string)
            .or_else(|| self.ledger_public_key());
        let trail = std::mem::take(&mut checker.consents);
        let mut report = checker.finish(&cps, &heads, saved, expected.as_deref());
        if report.first_bad.is_none() {
            report.consent_problems = self.verify_consent_log(&trail)?;
        }
        Ok(report)
    }

    /// The chain walk on SQLite, through [`scan_sqlite`]. A hashed field that is not text (NULL,
    /// a number, a blob) is reported as an edit at its entry.
    fn verify_sqlite(&self, path: &std::path::Path, checker: &mut ChainChecker) -> Result<()> {
        let sql = format!("SELECT {COLUMNS} FROM ledger ORDER BY seq");
        scan_sqlite(path, &sql, &mut |row| {
            let seq: i64 = row.get(0).map_err(sqlite_error)?;
            let Some((fields, stored)) = sqlite_fields(row) else {
                checker.push_unreadable(seq);
                return Ok(false);
            };
            let digest = hash_fields(seq, &fields);
            Ok(checker.push_fields(seq, &fields, &digest, stored))
        })
    }

    /// Writes the chain for an external auditor as JSON Lines: a header, every entry (originals
    /// stay sealed) and every checkpoint. [`verify_export`] checks such a file without the
    /// database.
    pub fn export_ledger(&self, out: &mut dyn Write) -> Result<i64> {
        let cps = self.checkpoints()?;
        let header = serde_json::json!({
            "format": "veil-ledger-export-v1",
            "hash": "sha256 over label, seq, length-prefixed fields, previous hash (see docs/consent-ledger.md)",
            "exported_at": crate::time::now_utc(),
            "public_key": self.ledger_public_key(),
            "public_key_fingerprint": self.ledger_public_key().map(|k| public_key_fingerprint(&k)),
        });
        writeln!(out, "{header}")?;
        let mut n = 0;
        let mut err = None;
        self.scan_ledger(|e| {
            let mut v = serde_json::to_value(e).expect("entry serialises");
            v["type"] = "entry".into();
            if let Err(x) = writeln!(out, "{v}") {
                err = Some(x);
                return false;
            }
            n += 1;
            true
        })?;
        if let Some(e) = err {
            return Err(e.into());
        }
        for c in cps {
            let mut v = serde_json::to_value(&c).expect("checkpoint serialises");
            v["type"] = "checkpoint".into();
            writeln!(out, "{v}")?;
        }
        for h in self.tree_heads()? {
            let mut v = serde_json::to_value(&h).expect("tree head serialises");
            v["type"] = "tree_head".into();
            writeln!(out, "{v}")?;
        }
        Ok(n)
    }
}

/// Verifies an export written by [`Store::export_ledger`].
pub fn verify_export(
    input: &mut dyn BufRead,
    saved: &[TreeHead],
    expected_key: Option<&str>,
) -> Result<VerifyReport> {
    let mut entries = Vec::new();
    let mut cps = Vec::new();
    let mut heads = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| StoreError::Usage(format!("export line {}: {e}", i + 1)))?;
        match v.get("type").and_then(|t| t.as_str()) {
            Some("entry") => entries.push(
                serde_json::from_value::<LedgerEntry>(v)
                    .map_err(|e| StoreError::Usage(format!("export line {}: {e}", i + 1)))?,
            ),
            Some("checkpoint") => cps.push(
                serde_json::from_value::<Checkpoint>(v)
                    .map_err(|e| StoreError::Usage(format!("export line {}: {e}", i + 1)))?,
            ),
            Some("tree_head") => heads.push(
                serde_json::from_value::<TreeHead>(v)
                    .map_err(|e| StoreError::Usage(format!("export line {}: {e}", i + 1)))?,
            ),
            _ => {
                return Err(StoreError::Usage(format!(
                    "export line {}: no known `type`",
                    i + 1
                )))
            }
        }
    }
    let sizes = heads.iter().chain(saved).map(|h| h.size);
    let mut checker = ChainChecker::new(cps.iter().map(|c| c.seq)).with_head_sizes(sizes);
    for e in &entries {
        if !checker.push(e) {
            break;
        }
    }
    let trail = std::mem::take(&mut checker.consents);
    let mut report = checker.finish(&cps, &heads, saved, expected_key);
    if report.first_bad.is_none() {
        report.consent_problems = trail.release_problems();
    }
    Ok(report)
}

/// The ledger's tip, read inside a writing transaction after taking the append lock, so that
/// concurrent writers (other processes) chain one after another instead of colliding: SQLite
/// holds the write lock from `BEGIN IMMEDIATE`; PostgreSQL takes a transaction-scoped advisory
/// lock.
/// The latest entry with this released SOP Instance UID, output path and SHA-256 that no
/// retraction entry takes back.
async fn live_entry(
    conn: &mut sqlx::AnyConnection,
    released_sop: &str,
    output_path: &str,
    sha256: &str,
) -> Result<Option<LedgerEntry>> {
    // Both kinds of row carry the released SOP Instance UID (indexed): one query finds them.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM ledger WHERE released_sop = $1 AND output_path = $2 ORDER BY seq"
    ))
    .bind(released_sop)
    .bind(output_path)
    .fetch_all(&mut *conn)
    .await?;
    let entries = rows
        .iter()
        .map(LedgerEntry::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(without_retracted(entries)
        .into_iter()
        .rev()
        .find(|e| e.output_sha256 == sha256))
}

/// The entries less retraction entries and the entries they retract (both must be in
/// `entries`: a retraction copies the patient, recipient, UIDs and path of what it retracts and
/// is recorded later, so any query by those finds both).
pub fn without_retracted(entries: Vec<LedgerEntry>) -> Vec<LedgerEntry> {
    let retracted: std::collections::HashSet<i64> = entries
        .iter()
        .filter_map(|e| e.output_sha256.strip_prefix(RETRACTED_PREFIX)?.parse().ok())
        .collect();
    entries
        .into_iter()
        .filter(|e| !e.output_sha256.starts_with(RETRACTED_PREFIX) && !retracted.contains(&e.seq))
        .collect()
}

pub(crate) async fn tip_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::Backend,
) -> Result<(i64, String)> {
    if backend == crate::Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(5627302)")
            .execute(&mut **tx)
            .await?;
    }
    let row = sqlx::query("SELECT seq, entry_hash FROM ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, GENESIS.to_string()),
    })
}

/// Reads the rows of `sql` from a SQLite store through rusqlite on the calling thread, each
/// row's text borrowed straight from SQLite (stops when `f` returns false). sqlx hands every
/// row over a channel from its worker thread, which cost more than hashing the row: on a
/// 1M-entry ledger, verification took 7.2 s that way and 2.8-3.6 s this way.
pub(crate) fn scan_sqlite(
    path: &std::path::Path,
    sql: &str,
    f: &mut dyn FnMut(&rusqlite::Row) -> Result<bool>,
) -> Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    let mut stmt = conn.prepare(sql).map_err(sqlite_error)?;
    let mut rows = stmt.query([]).map_err(sqlite_error)?;
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        if !f(row)? {
            break;
        }
    }
    Ok(())
}

pub(crate) fn sqlite_error(e: rusqlite::Error) -> StoreError {
    StoreError::Usage(format!("ledger read: {e}"))
}

/// Column `i` of a row as text (None: NULL, a number, a blob, or not UTF-8).
pub(crate) fn sqlite_text<'r>(row: &'r rusqlite::Row, i: usize) -> Option<&'r str> {
    match row.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

/// The hashed fields and stored hash of a row selected as [`COLUMNS`] (None: one is not text).
fn sqlite_fields<'r>(row: &'r rusqlite::Row) -> Option<([&'r str; HASHED_FIELDS], &'r str)> {
    let mut fields = [""; HASHED_FIELDS];
    for (i, slot) in fields.iter_mut().enumerate() {
        *slot = sqlite_text(row, i + 1)?;
    }
    Some((fields, sqlite_text(row, HASHED_FIELDS + 1)?))
}

/// Rows per multi-row INSERT: 500 rows × 20 columns = 10,000 parameters, inside both SQLite's
/// (32,766) and PostgreSQL's (65,535) limits. Every statement is a round trip to sqlx's database
/// thread, which on a busy machine waits for a time slice each way: a release's batch of 256
/// goes in one statement.
const INSERT_ROWS: usize = 500;

/// Inserts entries in order, [`INSERT_ROWS`] per statement.
pub(crate) async fn insert_entries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::Backend,
    rows: &[LedgerEntry],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_ROWS) {
        insert_many(tx, backend, chunk).await?;
    }
    Ok(())
}

/// One INSERT for many rows (one round trip to the database's thread instead of one per row).
/// SQLite gets anonymous `?` parameters: sqlx looks every parameter's name up, and SQLite finds
/// numbered names by a linear search, which would make a 1,000-parameter statement quadratic.
async fn insert_many(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::Backend,
    rows: &[LedgerEntry],
) -> Result<(), sqlx::Error> {
    let mut sql = format!("INSERT INTO ledger ({COLUMNS}) VALUES ");
    let mut n = 0;
    for i in 0..rows.len() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..HASHED_FIELDS + 2 {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            if backend == crate::Backend::Sqlite {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for e in rows {
        q = q.bind(e.seq);
        for f in e.fields() {
            q = q.bind(f);
        }
        q = q.bind(&e.entry_hash);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &LedgerEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger (seq, release_id, recipient, purpose, consent_ref, patient_ref, patient_pseudonym, original_study_enc, original_series_enc, original_sop_enc, released_study, released_series, released_sop, output_path, output_sha256, recorded_at, policy_hash, veil_version, prev_hash, entry_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(e.seq)
    .bind(&e.release_id)
    .bind(&e.recipient)
    .bind(&e.purpose)
    .bind(&e.consent_ref)
    .bind(&e.patient_ref)
    .bind(&e.patient_pseudonym)
    .bind(&e.original_study_enc)
    .bind(&e.original_series_enc)
    .bind(&e.original_sop_enc)
    .bind(&e.released_study)
    .bind(&e.released_series)
    .bind(&e.released_sop)
    .bind(&e.output_path)
    .bind(&e.output_sha256)
    .bind(&e.recorded_at)
    .bind(&e.policy_hash)
    .bind(&e.veil_version)
    .bind(&e.prev_hash)
    .bind(&e.entry_hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The ledger's Ed25519 public key for a master key (what an auditor is given).
pub fn public_key_for(master: &veil_keys::Key) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(master.subkey("ledger", "ed25519").as_bytes())
        .verifying_key()
        .to_bytes()
}

/// A short fingerprint of a public key (hex): the first 8 bytes of its SHA-256, to read out
/// when the key is handed over.
pub fn public_key_fingerprint(public_key_hex: &str) -> String {
    let bytes = hex::decode(public_key_hex).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

/// [`public_key_for`], as hex.
pub fn public_key_hex_for(master: &veil_keys::Key) -> String {
    hex::encode(public_key_for(master))
}
