//! Signed tree heads: the ledger's Merkle root (see [`crate::merkle`]) at a size, signed with the
//! ledger's Ed25519 key, in the sense of RFC 9162's signed tree heads.
//!
//! Every transaction that appends entries (a release's batch, a retraction, a consent batch)
//! signs a head over the new size in the same transaction, so a committed entry is always
//! covered by a head, and an entry no head covers was written outside Veil. Each head is also
//! appended to a **witness file** outside the database (one JSON object per line; by default
//! `<db>.tree-heads.jsonl` beside a SQLite store, or the file `--tree-heads` / `VEIL_TREE_HEADS`
//! names): an auditor keeps copies, and `veil ledger verify --sth FILE` shows that today's log
//! still contains, unchanged, every entry a saved head covers (truncation, rollback and rewriting
//! are caught even when whoever did it could also rewrite the database's own heads).
//!
//! Receipts: [`Receipt`] (an entry, its inclusion proof, a head) and [`ConsistencyReceipt`] (two
//! heads and the proof that one extends the other) are checked offline with only the public key.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use sqlx::Row;

use crate::ledger::LedgerEntry;
use crate::merkle::{self, Frontier, Hash, Tree};
use crate::{Result, Store, StoreError};

const HEAD_LABEL: &[u8] = b"veil-tree-head-v1";
/// Environment variable naming the witness file.
pub const TREE_HEADS_ENV: &str = "VEIL_TREE_HEADS";

/// A signed tree head.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of entries the tree covers (entries 1..=size).
    pub size: i64,
    /// The Merkle root (hex).
    pub root: String,
    pub signed_at: String,
    /// The signing key (hex). Informational: checks use the key the auditor pinned.
    pub public_key: String,
    pub signature: String,
}

impl TreeHead {
    /// The signed message: label, size (8 bytes big-endian), then the root and the time, each
    /// as 8-byte big-endian length + text.
    fn message(size: i64, root: &str, signed_at: &str) -> Vec<u8> {
        let mut m = HEAD_LABEL.to_vec();
        m.extend_from_slice(&size.to_be_bytes());
        for f in [root, signed_at] {
            m.extend_from_slice(&(f.len() as u64).to_be_bytes());
            m.extend_from_slice(f.as_bytes());
        }
        m
    }

    /// Signs a head now. (Public for tests that play a forger holding another key.)
    pub fn sign(key: &ed25519_dalek::SigningKey, size: i64, root: &Hash) -> TreeHead {
        let root = hex::encode(root);
        let signed_at = crate::time::now_utc();
        let sig = key.sign(&Self::message(size, &root, &signed_at));
        TreeHead {
            size,
            root,
            signed_at,
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(sig.to_bytes()),
        }
    }

    /// The root as bytes (None when malformed).
    pub fn root_hash(&self) -> Option<Hash> {
        hex::decode(&self.root).ok()?.try_into().ok()
    }

    /// Checks the signature with `key` (hex), the auditor's pinned key, or with the head's own
    /// key when none is pinned (which shows only that the head was not edited since signing).
    pub fn check_signature(&self, key: Option<&str>) -> Result<(), String> {
        let key = key.unwrap_or(&self.public_key);
        if key != self.public_key {
            return Err(format!(
                "tree head of size {} (signed {}) is signed by a key other than the pinned one",
                self.size, self.signed_at
            ));
        }
        let bad = |what: &str| format!("tree head of size {}: {what}", self.size);
        let pk: [u8; 32] = hex::decode(key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("malformed public key"))?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("malformed signature"))?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|_| bad("invalid public key"))?;
        vk.verify(
            &Self::message(self.size, &self.root, &self.signed_at),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| bad("signature does not verify (head edited)"))
    }
}

/// Reads saved heads: one JSON object, or one per line (a witness file).
pub fn read_heads(path: &Path) -> Result<Vec<TreeHead>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StoreError::Usage(format!("{}: {e}", path.display())))?;
    let bad = |n: usize, e: serde_json::Error| {
        StoreError::Usage(format!(
            "{} line {n}: not a tree head ({e}); expected what `veil ledger head` prints",
            path.display()
        ))
    };
    if let Ok(one) = serde_json::from_str::<TreeHead>(&text) {
        return Ok(vec![one]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| bad(i + 1, e)))
        .collect()
}

/// The leaf hash of a ledger entry, from its stored hash (hex).
pub fn entry_leaf(entry_hash: &str) -> Option<Hash> {
    let raw: Hash = hex::decode(entry_hash).ok()?.try_into().ok()?;
    Some(merkle::leaf_hash(&raw))
}

fn hex_hashes(v: &[Hash]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

fn parse_hashes(v: &[String]) -> Option<Vec<Hash>> {
    v.iter()
        .map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect()
}

/// An entry with the proof that it is in the log a signed head describes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub format: String,
    pub entry: LedgerEntry,
    /// The entry's position in the tree (its sequence number − 1).
    pub leaf_index: u64,
    pub inclusion_path: Vec<String>,
    pub tree_head: TreeHead,
}

/// Two heads and the proof that the later log extends the earlier one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyReceipt {
    pub format: String,
    pub old_head: TreeHead,
    pub new_head: TreeHead,
    pub consistency_path: Vec<String>,
}

pub const RECEIPT_FORMAT: &str = "veil-ledger-receipt-v1";
pub const CONSISTENCY_FORMAT: &str = "veil-ledger-consistency-v1";

impl Receipt {
    /// Checks the receipt with the pinned public key only: the entry's hash from its fields,
    /// the inclusion proof against the head's root, and the head's signature.
    pub fn check(&self, public_key: &str) -> Result<(), String> {
        if self.format != RECEIPT_FORMAT {
            return Err(format!("not a receipt (format `{}`)", self.format));
        }
        self.tree_head.check_signature(Some(public_key))?;
        let e = &self.entry;
        if e.compute_hash() != e.entry_hash {
            return Err(format!(
                "entry {}: its fields do not match its hash (edited)",
                e.seq
            ));
        }
        if self.leaf_index + 1 != e.seq as u64 {
            return Err(format!(
                "entry {} is not at leaf {}",
                e.seq, self.leaf_index
            ));
        }
        let leaf = entry_leaf(&e.entry_hash).ok_or("entry hash is not 64 hex digits")?;
        let path = parse_hashes(&self.inclusion_path).ok_or("malformed inclusion path")?;
        let root = self.tree_head.root_hash().ok_or("malformed root")?;
        if !merkle::verify_inclusion(
            &leaf,
            self.leaf_index,
            self.tree_head.size as u64,
            &path,
            &root,
        ) {
            return Err(format!(
                "entry {} is not in the log of {} entries this head signs (proof fails)",
                e.seq, self.tree_head.size
            ));
        }
        Ok(())
    }
}

impl ConsistencyReceipt {
    /// Checks both heads' signatures with the pinned key and the consistency proof.
    pub fn check(&self, public_key: &str) -> Result<(), String> {
        if self.format != CONSISTENCY_FORMAT {
            return Err(format!(
                "not a consistency proof (format `{}`)",
                self.format
            ));
        }
        self.old_head.check_signature(Some(public_key))?;
        self.new_head.check_signature(Some(public_key))?;
        let (a, b) = (&self.old_head, &self.new_head);
        let path = parse_hashes(&self.consistency_path).ok_or("malformed consistency path")?;
        let ok = match (a.root_hash(), b.root_hash()) {
            (Some(ra), Some(rb)) => {
                merkle::verify_consistency(a.size as u64, b.size as u64, &ra, &rb, &path)
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "the log of {} entries is not an append-only extension of the log of {} entries (proof fails): rewritten or rolled back",
                b.size, a.size
            ));
        }
        Ok(())
    }
}

/// What checking a receipt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// It holds; what it proves, in words.
    Holds(String),
    /// It does not; why.
    Fails(String),
}

/// Checks a receipt written by `veil ledger prove` (an entry's or a consistency proof, told
/// apart by its `format`) with the pinned public key alone. Err: the text is not a receipt.
pub fn check_receipt(text: &str, public_key: &str) -> Result<ReceiptOutcome, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let (outcome, what) = match v.get("format").and_then(|f| f.as_str()) {
        Some(RECEIPT_FORMAT) => {
            let r: Receipt = serde_json::from_value(v).map_err(|e| e.to_string())?;
            let what = format!(
                "entry {} is in the log of {} entries signed {}",
                r.entry.seq, r.tree_head.size, r.tree_head.signed_at
            );
            (r.check(public_key), what)
        }
        Some(CONSISTENCY_FORMAT) => {
            let r: ConsistencyReceipt = serde_json::from_value(v).map_err(|e| e.to_string())?;
            let what = format!(
                "the log of {} entries (signed {}) extends the log of {} entries (signed {}) by appending only",
                r.new_head.size, r.new_head.signed_at, r.old_head.size, r.old_head.signed_at
            );
            (r.check(public_key), what)
        }
        _ => return Err("not a receipt of `veil ledger prove`".into()),
    };
    Ok(match outcome {
        Ok(()) => ReceiptOutcome::Holds(what),
        Err(why) => ReceiptOutcome::Fails(why),
    })
}

/// Where heads are appended outside the database by default: `VEIL_TREE_HEADS`, else beside a
/// SQLite file (`<db>.tree-heads.jsonl`); None for PostgreSQL without the variable.
/// ([`Store::set_witness_file`] overrides it, for `--tree-heads`.)
pub fn witness_file(sqlite_path: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(TREE_HEADS_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    sqlite_path.map(|p| {
        let mut s = p.as_os_str().to_owned();
        s.push(".tree-heads.jsonl");
        PathBuf::from(s)
    })
}

impl Store {
    /// Sets the witness file heads are appended to (None: keep them in the database only).
    pub fn set_witness_file(&mut self, path: Option<PathBuf>) {
        self.witness = path;
    }

    /// The witness file, when there is one.
    pub fn witness_file(&self) -> Option<&Path> {
        self.witness.as_deref()
    }

    /// Signs a head over the log as it stands inside `tx`, after entries `first..` were
    /// inserted there (their hashes in `new_hashes`, in order), and records it in the same
    /// transaction. The tree is extended from the latest head's frontier when that head ends
    /// right before `first`; otherwise it is rebuilt from the stored entries.
    pub(crate) async fn sign_head_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        first: i64,
        new_hashes: &[&str],
    ) -> Result<TreeHead> {
        let keys = self.keys()?;
        let latest =
            sqlx::query("SELECT size, frontier FROM ledger_tree_heads ORDER BY size DESC LIMIT 1")
                .fetch_optional(&mut **tx)
                .await?;
        let cached = latest.and_then(|r| {
            let size: i64 = r.try_get(0).ok()?;
            let f = Frontier::decode(r.try_get::<&str, _>(1).ok()?)?;
            (size == first - 1 && f.size() == size as u64).then_some(f)
        });
        let mut frontier = match cached {
            Some(f) => f,
            None => frontier_from_entries(tx, first - 1).await?,
        };
        for h in new_hashes {
            frontier.push(entry_leaf(h).ok_or_else(|| {
                StoreError::Schema("a new ledger entry's hash is not hex".into())
            })?);
        }
        let size = first - 1 + new_hashes.len() as i64;
        let head = TreeHead::sign(&keys.signer, size, &frontier.root());
        sqlx::query("INSERT INTO ledger_tree_heads (size, root, signed_at, public_key, signature, frontier) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(head.size)
            .bind(&head.root)
            .bind(&head.signed_at)
            .bind(&head.public_key)
            .bind(&head.signature)
            .bind(frontier.encode())
            .execute(&mut **tx)
            .await?;
        Ok(head)
    }

    /// Appends a committed head to the witness file (fsync'd). The entries it covers are
    /// already committed, so a failure must not look like a failed append (a release would
    /// undo outputs that are recorded): it is kept for [`Store::take_witness_failure`], and the
    /// head stays in the database (`veil ledger head --out FILE` writes it again).
    pub(crate) fn witness(&self, head: &TreeHead) {
        if let Err(e) = self.witness_now(head) {
            *self
                .witness_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }

    fn witness_now(&self, head: &TreeHead) -> Result<()> {
        let Some(path) = &self.witness else {
            return Ok(());
        };
        let context = |e: std::io::Error| {
            StoreError::Usage(format!(
                "tree-head witness file {}: {e} (the head is in the database; `veil ledger head --out FILE` writes it)",
                path.display()
            ))
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(context)?;
        writeln!(
            f,
            "{}",
            serde_json::to_string(head).expect("head serialises")
        )
        .and_then(|_| f.sync_all())
        .map_err(context)
    }

    /// The last failure to write the witness file since the previous call, if any.
    pub fn take_witness_failure(&self) -> Option<String> {
        self.witness_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Every head recorded in the database, by size.
    pub fn tree_heads(&self) -> Result<Vec<TreeHead>> {
        let rows = self
            .block_on(sqlx::query(&format!("{HEAD_SELECT} ORDER BY size")).fetch_all(&self.pool))?;
        Ok(rows.iter().map(head_from_row).collect::<Result<_, _>>()?)
    }

    /// The latest head in the database.
    pub fn latest_tree_head(&self) -> Result<Option<TreeHead>> {
        let row = self.block_on(
            sqlx::query(&format!("{HEAD_SELECT} ORDER BY size DESC LIMIT 1"))
                .fetch_optional(&self.pool),
        )?;
        Ok(row.as_ref().map(head_from_row).transpose()?)
    }

    /// Signs a head over every entry when the latest one does not cover the tip (a store from
    /// before tree heads, or entries the operator has checked and vouches for). Returns the
    /// latest head either way (None: empty ledger).
    pub fn sign_tree_head(&self) -> Result<Option<TreeHead>> {
        let _tip = self.tip.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.block_on(async {
            let mut tx = self.begin_write().await?;
            let (tip, _) = crate::ledger::tip_in(&mut tx, self.backend()).await?;
            let covered: Option<i64> = sqlx::query("SELECT MAX(size) FROM ledger_tree_heads")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if tip == 0 || covered == Some(tip) {
                return Ok::<_, StoreError>(None);
            }
            let head = self.sign_head_in(&mut tx, tip + 1, &[]).await?;
            tx.commit().await?;
            Ok(Some(head))
        })?;
        match head {
            Some(h) => {
                self.witness_now(&h)?;
                Ok(Some(h))
            }
            None => self.latest_tree_head(),
        }
    }

    /// The whole Merkle tree over the stored entries (reads every entry's hash; about 64 bytes
    /// of memory per entry).
    pub fn ledger_tree(&self) -> Result<Tree> {
        let mut leaves = Vec::new();
        let mut problem = None;
        self.scan_entry_hashes(&mut |seq, h| {
            let next = leaves.len() as i64 + 1;
            match entry_leaf(h) {
                Some(leaf) if seq == next => {
                    leaves.push(leaf);
                    true
                }
                Some(_) => {
                    problem = Some(format!("ledger entry {next} is missing"));
                    false
                }
                None => {
                    problem = Some(format!("ledger entry {seq}: its hash is not hex"));
                    false
                }
            }
        })?;
        match problem {
            Some(p) => Err(StoreError::Usage(format!("{p}: run `veil ledger verify`"))),
            None => Ok(Tree::from_leaves(leaves)),
        }
    }

    /// Streams `(seq, entry_hash)` in order (stops when `f` returns false); SQLite through
    /// [`crate::ledger::scan_sqlite`], as the chain walk.
    fn scan_entry_hashes(&self, f: &mut dyn FnMut(i64, &str) -> bool) -> Result<()> {
        use futures_util::TryStreamExt;
        const SQL: &str = "SELECT seq, entry_hash FROM ledger ORDER BY seq";
        if let Some(path) = &self.sqlite_path {
            return crate::ledger::scan_sqlite(path, SQL, &mut |row| {
                let seq = row.get(0).map_err(crate::ledger::sqlite_error)?;
                Ok(f(seq, crate::ledger::sqlite_text(row, 1).unwrap_or("")))
            });
        }
        self.block_on(async {
            let mut rows = sqlx::query(SQL).fetch(&self.pool);
            while let Some(r) = rows.try_next().await? {
                if !f(r.try_get(0)?, r.try_get(1)?) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// A receipt for entry `seq` against the latest head (the tree is built once per call; use
    /// [`Store::receipts`] for many).
    pub fn receipt(&self, seq: i64) -> Result<Receipt> {
        let mut r = self.receipts(&[seq])?;
        r.pop().flatten().ok_or_else(|| {
            StoreError::Usage(format!(
                "ledger entry {seq}: no such entry under the latest signed tree head"
            ))
        })
    }

    /// The ledger's tree for receipts against `head`: the cached one when its root at the
    /// head's size is the head's root, else built afresh from the entries (and cached). A
    /// cached tree cannot make a wrong receipt check: every receipt is checked against the
    /// signed head, with the entry read from the database now.
    fn tree_for(&self, head: &TreeHead) -> Result<std::sync::Arc<Tree>> {
        let mut cache = self.tree_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.as_ref() {
            let size = head.size as u64;
            if t.size() >= size && head.root_hash() == Some(t.root_at(size)) {
                return Ok(t.clone());
            }
        }
        let t = std::sync::Arc::new(self.ledger_tree()?);
        *cache = Some(t.clone());
        Ok(t)
    }

    /// Receipts for these entries against the latest head (None for an entry the head does not
    /// cover).
    pub fn receipts(&self, seqs: &[i64]) -> Result<Vec<Option<Receipt>>> {
        let Some(head) = self.latest_tree_head()? else {
            return Ok(vec![None; seqs.len()]);
        };
        let tree = self.tree_for(&head)?;
        if (head.size as u64) > tree.size() {
            return Err(StoreError::Usage(format!(
                "the latest tree head covers {} entries but the ledger holds {}: run `veil ledger verify`",
                head.size,
                tree.size()
            )));
        }
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if seq < 1 || seq > head.size {
                out.push(None);
                continue;
            }
            let entry = self.entry_at(seq)?;
            let path = tree
                .inclusion_proof(seq as u64 - 1, head.size as u64)
                .expect("seq within the head");
            out.push(Some(Receipt {
                format: RECEIPT_FORMAT.into(),
                entry,
                leaf_index: seq as u64 - 1,
                inclusion_path: hex_hashes(&path),
                tree_head: head.clone(),
            }));
        }
        Ok(out)
    }

    /// The proof that the log under the latest head extends the log `old` describes.
    pub fn consistency_receipt(&self, old: &TreeHead) -> Result<ConsistencyReceipt> {
        let new = self
            .latest_tree_head()?
            .ok_or_else(|| StoreError::Usage("the ledger has no signed tree head yet".into()))?;
        if old.size < 1 || old.size > new.size {
            return Err(StoreError::Usage(format!(
                "the saved head covers {} entries, the latest head {}: a later log cannot be proved to extend it (rolled back?)",
                old.size, new.size
            )));
        }
        let tree = self.ledger_tree()?;
        let path = tree
            .consistency_proof(old.size as u64, new.size as u64)
            .ok_or_else(|| {
                StoreError::Usage("the ledger is shorter than its latest head".into())
            })?;
        Ok(ConsistencyReceipt {
            format: CONSISTENCY_FORMAT.into(),
            old_head: old.clone(),
            new_head: new,
            consistency_path: hex_hashes(&path),
        })
    }

    fn entry_at(&self, seq: i64) -> Result<LedgerEntry> {
        let row = self.block_on(
            sqlx::query(&format!(
                "SELECT {} FROM ledger WHERE seq = $1",
                crate::ledger::COLUMNS
            ))
            .bind(seq)
            .fetch_one(&self.pool),
        )?;
        Ok(LedgerEntry::from_row(&row)?)
    }
}

const HEAD_SELECT: &str =
    "SELECT size, root, signed_at, public_key, signature FROM ledger_tree_heads";

fn head_from_row(r: &sqlx::any::AnyRow) -> Result<TreeHead, sqlx::Error> {
    Ok(TreeHead {
        size: r.try_get(0)?,
        root: r.try_get(1)?,
        signed_at: r.try_get(2)?,
        public_key: r.try_get(3)?,
        signature: r.try_get(4)?,
    })
}

/// The frontier of the first `size` stored entries, read from the database.
async fn frontier_from_entries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    size: i64,
) -> Result<Frontier> {
    use futures_util::TryStreamExt;
    let mut f = Frontier::default();
    let mut rows = sqlx::query("SELECT entry_hash FROM ledger WHERE seq <= $1 ORDER BY seq")
        .bind(size)
        .fetch(&mut **tx);
    while let Some(r) = rows.try_next().await? {
        let h: &str = r.try_get(0)?;
        f.push(entry_leaf(h).ok_or_else(|| {
            StoreError::Schema(
                "a stored ledger entry's hash is not hex: run `veil ledger verify`".into(),
            )
        })?);
    }
    Ok(f)
}
