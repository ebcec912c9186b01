//! The operator's list of held-back inputs: every input a run quarantined or rejected, by path,
//! with its reason, kept across reruns in the quarantine directory (`held-back.log`).
//!
//! Input paths often carry patients' names (`/export/SMITH^JOHN/...`), so every record is
//! encrypted at rest with XChaCha20-Poly1305 under a sub-key of the run's key, one record per
//! line (hex of nonce ‖ ciphertext). Lines are appended with one write each; a line a crash cut
//! short fails authentication and is counted, never guessed at. An input released by a later
//! run gets a `released` record, which takes it off the list.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use veil_keys::Key;

/// File name of the list inside the quarantine directory.
pub const FILE_NAME: &str = "held-back.log";
const HEADER: &str = "veil held-back list v1: one XChaCha20-Poly1305 record per line; read it with `veil quarantine list`\n";
const AAD: &[u8] = b"veil/held-back/v1";

/// One record of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBackRecord {
    /// The input's path as the run saw it (identifying: only ever decrypted for the operator).
    pub input: String,
    /// The keyed reference that names the quarantine copy and reason (`<ref>.dcm`, `<ref>.json`).
    pub input_ref: String,
    /// `quarantined`, `rejected`, or `released` (a later run released it).
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub detail: String,
    /// Seconds since the Unix epoch when the record was written.
    pub at: u64,
}

/// Why the list cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HeldBackError {
    #[error("{path}: cannot read the held-back list: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a Veil held-back list (no header line)")]
    NotAList { path: PathBuf },
    #[error("{path}: none of its {lines} record(s) opens with this key (fingerprint {fingerprint}); use the key the runs were made with")]
    WrongKey {
        path: PathBuf,
        lines: usize,
        fingerprint: String,
    },
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.subkey("pipeline", "held-back").as_bytes().into())
}

/// Appends records to a quarantine directory's list.
pub struct HeldBackLog {
    cipher: XChaCha20Poly1305,
    file: Mutex<Option<File>>,
    path: PathBuf,
}

impl HeldBackLog {
    /// The list of `quarantine_dir` (opened, and created with its header, on the first append).
    pub fn new(quarantine_dir: &Path, key: &Key) -> HeldBackLog {
        HeldBackLog {
            cipher: cipher(key),
            file: Mutex::new(None),
            path: quarantine_dir.join(FILE_NAME),
        }
    }

    fn open(&self) -> std::io::Result<File> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        if !self.path.exists() {
            // The header goes in whole before any record, even when several processes (a Spark
            // job's tasks) start the list at once: written to a temp file, then linked into
            // place, which only one of them can do.
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let temp = tempfile::Builder::new()
                .prefix(".held-back")
                .tempfile_in(dir)?;
            temp.as_file().write_all(HEADER.as_bytes())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            match std::fs::hard_link(temp.path(), &self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let mut f = opts.open(&self.path)?;
        if f.metadata()?.len() == 0 {
            f.write_all(HEADER.as_bytes())?;
        }
        Ok(f)
    }

    /// Appends one record (one `write` of one line).
    pub fn append(&self, record: &HeldBackRecord) -> std::io::Result<()> {
        let plain = serde_json::to_vec(record).expect("JSON of plain data");
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .expect("encryption of an in-memory value cannot fail");
        let mut line = hex::encode(nonce);
        line.push_str(&hex::encode(sealed));
        line.push('\n');
        let mut guard = self.file.lock().unwrap();
        if guard.is_none() {
            *guard = Some(self.open()?);
        }
        guard
            .as_mut()
            .expect("opened above")
            .write_all(line.as_bytes())
    }

    /// Path of the list.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Everything a list holds, in the order written.
#[derive(Debug, Default)]
pub struct HeldBackList {
    pub records: Vec<HeldBackRecord>,
    /// Lines that did not open (cut short by a crash, or damaged).
    pub unreadable: usize,
}

impl HeldBackList {
    /// Reads the list of `quarantine_dir`; an absent list is an empty one.
    pub fn read(quarantine_dir: &Path, key: &Key) -> Result<HeldBackList, HeldBackError> {
        let path = quarantine_dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(error) => return Err(HeldBackError::Read { path, error }),
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER.trim_end()) {
            return Err(HeldBackError::NotAList { path });
        }
        let cipher = cipher(key);
        let mut list = HeldBackList::default();
        let mut total = 0;
        for line in lines.filter(|l| !l.is_empty()) {
            total += 1;
            match open_line(&cipher, line) {
                Some(r) => list.records.push(r),
                None => list.unreadable += 1,
            }
        }
        if total > 0 && list.records.is_empty() {
            return Err(HeldBackError::WrongKey {
                path,
                lines: total,
                fingerprint: key.fingerprint(),
            });
        }
        Ok(list)
    }

    /// The inputs still held back: the latest record of each input path, unless it says
    /// `released`. Sorted by path.
    pub fn current(&self) -> Vec<&HeldBackRecord> {
        let mut latest: BTreeMap<&str, &HeldBackRecord> = BTreeMap::new();
        for r in &self.records {
            latest.insert(&r.input, r);
        }
        latest
            .into_values()
            .filter(|r| r.status != "released")
            .collect()
    }
}

fn open_line(cipher: &XChaCha20Poly1305, line: &str) -> Option<HeldBackRecord> {
    let raw = hex::decode(line.trim()).ok()?;
    if raw.len() < 24 + 16 {
        return None;
    }
    let (nonce, sealed) = raw.split_at(24);
    let plain = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: AAD,
            },
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(input: &str, status: &str) -> HeldBackRecord {
        HeldBackRecord {
            input: input.into(),
            input_ref: "r".into(),
            status: status.into(),
            reason: "x".into(),
            detail: String::new(),
            at: 1,
        }
    }

    #[test]
    fn records_are_sealed_and_the_latest_per_input_counts() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::from_bytes([3; 32]);
        let log = HeldBackLog::new(dir.path(), &key);
        log.append(&record("/in/SMITH^JOHN/1.dcm", "quarantined"))
            .unwrap();
        log.append(&record("/in/b.dcm", "rejected")).unwrap();
        log.append(&record("/in/b.dcm", "released")).unwrap();
        let raw = std::fs::read_to_string(log.path()).unwrap();
        assert!(!raw.contains("SMITH"), "paths are encrypted at rest");
        // A line cut short by a crash is counted, not fatal.
        std::fs::write(log.path(), format!("{raw}abc123")).unwrap();
        let list = HeldBackList::read(dir.path(), &key).unwrap();
        assert_eq!(list.unreadable, 1);
        let current: Vec<_> = list.current().iter().map(|r| r.input.clone()).collect();
        assert_eq!(current, vec!["/in/SMITH^JOHN/1.dcm".to_string()]);
        let wrong = HeldBackList::read(dir.path(), &Key::from_bytes([4; 32])).unwrap_err();
        assert!(matches!(wrong, HeldBackError::WrongKey { .. }), "{wrong}");
    }
}
