//! The spool: received instances, kept until they are processed.
//!
//! The spool holds originals (every identifier a PACS sends), so each instance is encrypted at
//! rest with XChaCha20-Poly1305 under a sub-key of the site key, in a 0700 directory. An instance
//! is written to `tmp/`, fsync'd, renamed into `incoming/` and the directory fsync'd before
//! [`Spool::put`] returns: only then does the SCP answer success, so nothing acknowledged can be
//! lost to a crash or power cut. A sender that disconnects mid-transfer leaves at most a file in
//! `tmp/`, which the next start removes ([`Spool::open`]).
//!
//! Names are a keyed MAC of the content: the same instance sent twice (a retry after a lost
//! response) lands once, and a name says nothing about the patient.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use veil_keys::Key;

const MAGIC: &[u8] = b"veil-spool-v1\0";
const AAD: &[u8] = b"veil/gateway-spool/v1";
const NONCE_LEN: usize = 24;
/// File name suffix of a spooled instance.
pub const SUFFIX: &str = ".dcm.enc";

/// File of the drain's state in the spool directory.
const STATUS: &str = "status.json";
/// Keyed marks of the series already planned, one per line.
const SERIES_DONE: &str = "series-done";

/// What the drain has done, kept across restarts (counts, and why the destination fails, if it
/// does; never an identifier).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrainStatus {
    /// Instances delivered since the spool was created.
    pub delivered: u64,
    /// Instances held back since the spool was created.
    pub held_back: u64,
    /// Instances a consent-gated route left unsent (the patient's consent does not allow the
    /// route's purpose), since the spool was created.
    #[serde(default)]
    pub excluded: u64,
    /// The destination's last failure, while it lasts.
    pub failing: Option<String>,
    /// Seconds since the Unix epoch: when the current failure began.
    pub failing_since: Option<u64>,
}

/// A spool directory and the key its instances are sealed with.
pub struct Spool {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
    names: Key,
    /// Lanes a received instance is put into, one per route and destination (empty: the spool
    /// is its own single lane).
    lanes: Vec<String>,
}

/// Why the spool cannot take or give back an instance.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {what}: {error}")]
    Io {
        path: PathBuf,
        what: &'static str,
        error: std::io::Error,
    },
    #[error("{path}: not a spooled instance, or sealed with another key")]
    Unreadable { path: PathBuf },
}

fn io<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |error| SpoolError::Io {
        path: path.to_path_buf(),
        what,
        error,
    }
}

impl Spool {
    /// Opens (creating, 0700) the spool at `dir`, and clears what an interrupted transfer left
    /// in `tmp/` (never acknowledged, so the sender still has it).
    pub fn open(dir: &Path, key: &Key) -> Result<Spool, SpoolError> {
        let spool = Spool::join(dir, key)?;
        spool.clear_tmp()?;
        Ok(spool)
    }

    /// Opens (creating, 0700) a spool a running gateway may be writing to, to add instances
    /// (a C-GET or WADO-RS pull): clears nothing, since `tmp/` may hold the gateway's own
    /// transfers in progress.
    pub fn join(dir: &Path, key: &Key) -> Result<Spool, SpoolError> {
        for sub in ["", "tmp", "incoming", "outgoing"] {
            let d = dir.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(io(&d, "cannot create the spool directory"))?;
        }
        Ok(Spool::sealed_with(dir, key))
    }

    /// Opens a spool a running gateway may be writing to, for reading (status, tests): creates
    /// nothing and clears nothing.
    pub fn attach(dir: &Path, key: &Key) -> Result<Spool, SpoolError> {
        let incoming = dir.join("incoming");
        if !incoming.is_dir() {
            return Err(SpoolError::Io {
                path: incoming,
                what: "no spool here (has the gateway run with this configuration?)",
                error: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(Spool::sealed_with(dir, key))
    }

    fn sealed_with(dir: &Path, key: &Key) -> Spool {
        let sealing = key.subkey("gateway", "spool-seal");
        Spool {
            dir: dir.to_path_buf(),
            cipher: XChaCha20Poly1305::new_from_slice(sealing.as_bytes())
                .expect("a Veil key is 32 bytes"),
            names: key.subkey("gateway", "spool-name"),
            lanes: Vec::new(),
        }
    }

    /// Gives the spool `names` lanes (`lanes/<name>/` each, created 0700, with the layout of a
    /// spool): [`Spool::put`] then puts every received instance into each lane, and each lane
    /// is drained on its own ([`Spool::lanes`]). One route to one destination needs none.
    pub fn with_lanes(mut self, names: &[String]) -> Result<Spool, SpoolError> {
        for name in names {
            let lane = self.at(&self.dir.join("lanes").join(name));
            for sub in ["", "tmp", "incoming", "outgoing"] {
                let d = lane.dir.join(sub);
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&d)
                    .map_err(io(&d, "cannot create the spool directory"))?;
            }
        }
        self.lanes = names.to_vec();
        Ok(self)
    }

    /// The lanes, each a spool of its own (the spool itself when it has none).
    pub fn lanes(&self) -> Vec<Spool> {
        match self.lanes.is_empty() {
            true => vec![self.at(&self.dir)],
            false => self
                .lanes
                .iter()
                .map(|n| self.at(&self.dir.join("lanes").join(n)))
                .collect(),
        }
    }

    /// The same keys over another directory.
    fn at(&self, dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            cipher: self.cipher.clone(),
            names: self.names.clone(),
            lanes: Vec::new(),
        }
    }

    /// Removes what interrupted transfers left in `tmp/` (never acknowledged, so the sender
    /// still has them); only while no transfer is under way, at start.
    pub fn clear_tmp(&self) -> Result<(), SpoolError> {
        let tmp = self.dir.join("tmp");
        for entry in fs::read_dir(&tmp)
            .map_err(io(&tmp, "cannot list"))?
            .flatten()
        {
            let _ = fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Seals and stores one received Part 10 instance durably, in every lane; returns its path
    /// in (the first lane's) `incoming/`.
    pub fn put(&self, part10: &[u8]) -> Result<PathBuf, SpoolError> {
        let name = format!(
            "{}{SUFFIX}",
            hex::encode(&self.names.mac("gateway/spool-name", part10)[..16])
        );
        let mut first = None;
        for lane in self.lanes() {
            let path = lane.seal_into("incoming", &name, part10)?;
            first.get_or_insert(path);
        }
        Ok(first.expect("a spool has at least one lane"))
    }

    /// Seals and stores the de-identified form of the received instance at `original` in
    /// `outgoing/`, under the same name, durably. The original stays until
    /// [`Spool::remove`]: a crash in between leaves both, and the original is then known to
    /// be done ([`Spool::is_done`]).
    pub fn put_outgoing(&self, original: &Path, part10: &[u8]) -> Result<PathBuf, SpoolError> {
        let name = original
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        self.seal_into("outgoing", &name, part10)
    }

    /// Whether the received instance at `original` was already de-identified (its outgoing
    /// form exists, or was delivered: then its original would be gone too).
    pub fn is_done(&self, original: &Path) -> bool {
        let name = original.file_name().unwrap_or_default();
        self.dir.join("outgoing").join(name).exists()
    }

    fn seal_into(&self, area: &str, name: &str, part10: &[u8]) -> Result<PathBuf, SpoolError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: part10,
                    aad: AAD,
                },
            )
            .expect("sealing does not fail");
        let temp = self.dir.join("tmp").join(format!("{area}-{name}.part"));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(&temp, "cannot write to the spool"))?;
        f.write_all(MAGIC)
            .and_then(|_| f.write_all(&nonce))
            .and_then(|_| f.write_all(&sealed))
            .and_then(|_| f.sync_all())
            .map_err(io(&temp, "cannot write to the spool"))?;
        let dir = self.dir.join(area);
        let path = dir.join(name);
        fs::rename(&temp, &path).map_err(io(&path, "cannot move into the spool"))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir, "cannot sync the spool directory"))?;
        Ok(path)
    }

    /// The received instances not yet de-identified, in name order (names are MACs, so this
    /// is a stable order).
    pub fn list(&self) -> Result<Vec<PathBuf>, SpoolError> {
        self.list_area("incoming")
    }

    /// The de-identified instances waiting to be delivered, in name order.
    pub fn list_outgoing(&self) -> Result<Vec<PathBuf>, SpoolError> {
        self.list_area("outgoing")
    }

    fn list_area(&self, area: &str) -> Result<Vec<PathBuf>, SpoolError> {
        let dir = self.dir.join(area);
        let mut out: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io(&dir, "cannot list the spool"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Whether a series (by its key) was already planned and its instances de-identified: a
    /// member arriving later cannot join its volume.
    pub fn series_done(&self, key: &str) -> bool {
        let mark = hex::encode(&self.names.mac("gateway/series", key.as_bytes())[..16]);
        fs::read_to_string(self.dir.join(SERIES_DONE))
            .map(|t| t.lines().any(|l| l == mark))
            .unwrap_or(false)
    }

    /// Records that a series was planned (a keyed MAC of its key, one line, fsync'd).
    pub fn mark_series_done(&self, key: &str) -> Result<(), SpoolError> {
        let mark = hex::encode(&self.names.mac("gateway/series", key.as_bytes())[..16]);
        let path = self.dir.join(SERIES_DONE);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path, "cannot record a finished series"))?;
        f.write_all(format!("{mark}\n").as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io(&path, "cannot record a finished series"))
    }

    /// Takes a delivered instance off the spool.
    pub fn remove(&self, path: &Path) -> Result<(), SpoolError> {
        fs::remove_file(path).map_err(io(path, "cannot remove from the spool"))
    }

    /// Moves an instance that is not to be forwarded to `held/`, still sealed, beside a JSON
    /// note of why (a reason code and a sentence; never an identifying value).
    pub fn hold(&self, path: &Path, reason: &str, detail: &str) -> Result<PathBuf, SpoolError> {
        let held = self.dir.join("held");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&held)
            .map_err(io(&held, "cannot create the held-back directory"))?;
        let name = path.file_name().unwrap_or_default();
        let target = held.join(name);
        let note = serde_json::json!({ "reason": reason, "detail": detail }).to_string();
        let note_path = held.join(format!("{}.json", name.to_string_lossy()));
        fs::write(&note_path, note).map_err(io(&note_path, "cannot write the reason"))?;
        fs::rename(path, &target).map_err(io(&target, "cannot move into held/"))?;
        Ok(target)
    }

    /// The instances held back, with their notes.
    pub fn held(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(self.dir.join("held"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(SUFFIX))
            .collect();
        out.sort();
        out
    }

    /// Why each held-back instance was held back: reason code → count.
    pub fn held_reasons(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for p in self.held() {
            let note = PathBuf::from(format!("{}.json", p.display()));
            let reason = fs::read(&note)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            *out.entry(reason).or_insert(0) += 1;
        }
        out
    }

    /// The drain's last recorded state (zeros before the first pass).
    pub fn status(&self) -> DrainStatus {
        fs::read(self.dir.join(STATUS))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records the drain's state (written whole and renamed: never half a file).
    pub fn set_status(&self, status: &DrainStatus) -> Result<(), SpoolError> {
        let path = self.dir.join(STATUS);
        let temp = self.dir.join("tmp").join(STATUS);
        let body = serde_json::to_vec_pretty(status).expect("a status serialises");
        fs::write(&temp, body)
            .and_then(|_| fs::rename(&temp, &path))
            .map_err(io(&path, "cannot record the drain's state"))
    }

    /// The Part 10 bytes of a spooled instance.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, SpoolError> {
        let sealed = fs::read(path).map_err(io(path, "cannot read from the spool"))?;
        let unreadable = || SpoolError::Unreadable {
            path: path.to_path_buf(),
        };
        let body = sealed.strip_prefix(MAGIC).ok_or_else(unreadable)?;
        if body.len() < NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: AAD,
                },
            )
            .map_err(|_| unreadable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn instances_are_sealed_durable_and_named_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::generate();
        let spool = Spool::open(&dir.path().join("s"), &key).unwrap();
        let mode = fs::metadata(dir.path().join("s"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let instance = b"DICM and the name SMITH^JOHN".to_vec();
        let p = spool.put(&instance).unwrap();
        let on_disk = fs::read(&p).unwrap();
        assert!(
            !on_disk.windows(5).any(|w| w == b"SMITH"),
            "stored in clear"
        );
        assert_eq!(spool.read(&p).unwrap(), instance);
        // The same instance again (a retry) lands on the same name, once.
        assert_eq!(spool.put(&instance).unwrap(), p);
        assert_eq!(spool.list().unwrap(), vec![p.clone()]);
        // Another key cannot open it, and says so.
        let other = Spool::open(&dir.path().join("s"), &Key::generate()).unwrap();
        assert!(matches!(other.read(&p), Err(SpoolError::Unreadable { .. })));
        // What an interrupted transfer left in tmp/ is cleared at the next start.
        fs::write(dir.path().join("s/tmp/x.part"), b"half").unwrap();
        Spool::open(&dir.path().join("s"), &key).unwrap();
        assert!(fs::read_dir(dir.path().join("s/tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}
