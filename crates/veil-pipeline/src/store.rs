//! Run state on disk: the journal that makes runs resumable, temp files for atomic writes, the
//! quarantine, and the run report. Everything here is written temp + rename.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use veil_keys::Key;

use crate::heldback::{HeldBackList, HeldBackLog, HeldBackRecord};
use crate::report::{FileOutcome, RunReport, Status};
use crate::{Config, VerifyFinding};

/// A failure of the output or quarantine area: the run stops, nothing half-written remains.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    // The cause is part of the message, not a `source`: a CLI printing the chain would repeat it.
    #[error("{what} {path}: {error}; free space or fix permissions there, then rerun (finished files are kept)")]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("release could not be recorded: {0}")]
    Commit(#[from] crate::RecordError),
    #[error("{0}; a quarantine directory belongs to one key: pass --quarantine DIR for runs with another key")]
    HeldBack(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |error| StateError::Io {
        what,
        path: path.to_path_buf(),
        error,
    }
}

/// What an earlier run finished for an input.
#[derive(Debug, Clone)]
pub struct Done {
    pub status: Status,
    pub relative: Option<PathBuf>,
    /// Fingerprint of the output an earlier run wrote (journals of older versions lack it).
    pub digest: Option<[u8; 16]>,
}

/// Is this the name of a temp file of ours (`.<pid>-<n>.part`)?
fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    let Some(core) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) else {
        return false;
    };
    core.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// The input references of the entries in a quarantine directory (`<ref>.json`, `<ref>.dcm`).
fn quarantine_entries(dir: &Path) -> std::collections::HashSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (stem, ext) = name.rsplit_once('.')?;
            (ext == "json" || ext == "dcm").then(|| stem.to_string())
        })
        .collect()
}

/// Removes the temp files an interrupted run left in `dir` (they are never outputs): the files
/// whose name `is_temp` accepts.
fn remove_temp_files(dir: &Path, is_temp: impl Fn(&std::ffi::OsStr) -> bool) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if is_temp(&e.file_name()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

pub struct State {
    out: PathBuf,
    quarantine: PathBuf,
    /// The operator's run state: `<quarantine>/.veil/` (journal, run report, held-back list).
    operator: PathBuf,
    tmp: PathBuf,
    ref_key: Key,
    policy_digest: String,
    journal: Mutex<File>,
    done: HashMap<String, Done>,
    held_log: HeldBackLog,
    /// Inputs held back now (by path), across this and earlier runs.
    held_now: Mutex<BTreeMap<String, ()>>,
    /// Input references with a quarantine entry when the run started. A run killed after
    /// quarantining an input but before journaling it leaves an entry that the resumed run may
    /// decide differently (it releases the input): the entry is then removed, so the quarantine
    /// ends as an uninterrupted run leaves it.
    quarantined_before: Mutex<std::collections::HashSet<String>>,
}

/// Creates a directory readable only by its owner: quarantined inputs are identifying.
fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Reads a journal: what earlier runs finished, by input reference.
fn read_journal(path: &Path) -> HashMap<String, Done> {
    let mut done = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return done;
    };
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (Some(r), Some(s), Some(rel)) = (parts.next(), parts.next(), parts.next()) else {
            continue; // a line cut short by a crash
        };
        let Some(status) = Status::parse(s) else {
            continue;
        };
        let relative = (rel != "-").then(|| PathBuf::from(rel));
        let mut digest = None;
        if let Some(d) = parts.next() {
            let mut b = [0u8; 16];
            if hex::decode_to_slice(d, &mut b).is_ok() {
                digest = Some(b);
            } else if d != "-" {
                continue; // cut short by a crash
            }
        }
        done.insert(
            r.to_string(),
            Done {
                status,
                relative,
                digest,
            },
        );
    }
    done
}

/// Moves what Veil before 0.2 kept in `OUT/.veil/` to the operator's side: the journal names
/// held-back and consent-excluded inputs, the run report lists them. Neither may stay in a tree
/// that is shipped.
fn migrate_old_state(out_state: &Path, operator: &Path) -> std::io::Result<()> {
    let old_journal = out_state.join("journal.tsv");
    if old_journal.is_file() {
        let text = std::fs::read(&old_journal)?;
        let mut j = OpenOptions::new()
            .create(true)
            .append(true)
            .open(operator.join("journal.tsv"))?;
        j.write_all(&text)?;
        j.sync_all()?;
        std::fs::remove_file(&old_journal)?;
    }
    match std::fs::remove_file(out_state.join("run-report.json")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl State {
    pub fn open(config: &Config, key: &Key, policy_digest: &str) -> Result<State, StateError> {
        let state_dir = config.out.join(".veil");
        let tmp = state_dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io("cannot create the output directory", &tmp))?;
        let operator = config.quarantine.join(".veil");
        private_dir(&config.quarantine).map_err(io(
            "cannot create the quarantine directory",
            &config.quarantine,
        ))?;
        std::fs::create_dir_all(&operator)
            .map_err(io("cannot create the quarantine directory", &operator))?;
        migrate_old_state(&state_dir, &operator).map_err(io(
            "cannot move the run state to the quarantine side",
            &operator,
        ))?;
        // Temp files of an interrupted run are never outputs: remove them, from the temp area,
        // the state directories (run reports) and the quarantine (copies and reasons), or a
        // kill at the wrong moment leaves litter that no later run clears.
        // The temp area holds nothing else: any `.part` file there goes.
        remove_temp_files(&tmp, |name| {
            Path::new(name).extension().is_some_and(|x| x == "part")
        });
        remove_temp_files(&state_dir, is_temp_name);
        remove_temp_files(&operator, is_temp_name);
        remove_temp_files(&config.quarantine, is_temp_name);
        let journal_path = operator.join("journal.tsv");
        let done = read_journal(&journal_path);
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(io("cannot open the run journal", &journal_path))?;
        let listed =
            HeldBackList::read(&operator, key).map_err(|e| StateError::HeldBack(e.to_string()))?;
        let held_now = listed
            .current()
            .into_iter()
            .map(|r| (r.input.clone(), ()))
            .collect();
        Ok(State {
            out: config.out.clone(),
            quarantine: config.quarantine.clone(),
            held_log: HeldBackLog::new(&operator, key),
            operator,
            tmp,
            ref_key: key.subkey("pipeline", "input-ref"),
            policy_digest: policy_digest.to_string(),
            journal: Mutex::new(journal),
            done,
            held_now: Mutex::new(held_now),
            quarantined_before: Mutex::new(quarantine_entries(&config.quarantine)),
        })
    }

    /// Inputs held back now, counting earlier runs' that are still held back.
    pub fn held_back_total(&self) -> u64 {
        self.held_now.lock().unwrap().len() as u64
    }

    /// Keeps the operator's held-back list in step with an outcome: held-back inputs are added,
    /// a released input that was listed gets a `released` record.
    fn track_held_back(&self, outcome: &FileOutcome) -> Result<(), StateError> {
        let input = outcome.input.display().to_string();
        let held = matches!(outcome.status, Status::Quarantined | Status::Rejected);
        let released = matches!(outcome.status, Status::Written | Status::Duplicate);
        let mut now = self.held_now.lock().unwrap();
        if !(held || released && now.contains_key(&input)) {
            return Ok(());
        }
        let record = HeldBackRecord {
            input: input.clone(),
            input_ref: outcome.input_ref.clone(),
            status: if held {
                outcome.status.as_str()
            } else {
                "released"
            }
            .to_string(),
            reason: outcome.reason.clone().unwrap_or_default(),
            detail: outcome.detail.clone().unwrap_or_default(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.held_log.append(&record).map_err(io(
            "cannot append to the held-back list",
            self.held_log.path(),
        ))?;
        if held {
            now.insert(input, ());
        } else {
            now.remove(&input);
        }
        Ok(())
    }

    /// A keyed reference of an input (path, size, modification time, policy): stable across
    /// reruns of the same job, meaningless without the key, and safe to show in reports.
    pub fn input_ref(&self, path: &Path) -> String {
        input_ref_of(&self.ref_key, &self.policy_digest, path)
    }

    /// A keyed reference of an identifying label (e.g. a series' UID), safe in reports.
    pub fn keyed_ref(&self, kind: &str, label: &str) -> String {
        let material = format!("{kind}\u{1f}{label}\u{1f}{}", self.policy_digest);
        hex::encode(&self.ref_key.mac("veil/keyed-ref", material.as_bytes())[..16])
    }

    /// Was this input finished by an earlier run (and is its result still in place)?
    pub fn already_done(&self, input_ref: &str) -> Option<Done> {
        let d = self.done.get(input_ref)?;
        match d.status {
            Status::Written | Status::Duplicate => {
                let rel = d.relative.as_ref()?;
                self.out.join(rel).is_file().then(|| d.clone())
            }
            Status::Quarantined => self
                .quarantine
                .join(format!("{input_ref}.json"))
                .is_file()
                .then(|| d.clone()),
            // Rejections, consent exclusions and suppressions are cheap to decide again, and
            // consent may have changed since.
            _ => None,
        }
    }

    /// Did an earlier run finish anything in this output directory?
    pub fn resuming(&self) -> bool {
        !self.done.is_empty()
    }

    /// The output an earlier run released for this input and still in place, with its
    /// fingerprint: (relative path, digest).
    pub fn done_output(&self, input_ref: &str) -> Option<(PathBuf, [u8; 16])> {
        let d = self.already_done(input_ref)?;
        match (d.status, d.relative, d.digest) {
            (Status::Written, Some(rel), Some(digest)) => Some((rel, digest)),
            _ => None,
        }
    }

    /// The contested output path of an input an earlier run held back as a conflicting version
    /// (only those quarantine entries carry an output path in the journal).
    pub fn done_conflict(&self, input_ref: &str) -> Option<PathBuf> {
        let d = self.already_done(input_ref)?;
        if d.status == Status::Quarantined {
            d.relative
        } else {
            None
        }
    }

    /// Appends the outcome to the journal (after its files are in place).
    pub fn journal(&self, outcome: &FileOutcome) -> Result<(), StateError> {
        if outcome.status == Status::Skipped {
            return Ok(());
        }
        let rel = outcome
            .output
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into());
        let digest = outcome
            .output_digest
            .map(hex::encode)
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "{}\t{}\t{}\t{digest}\n",
            outcome.input_ref,
            outcome.status.as_str(),
            rel
        );
        {
            let mut j = self.journal.lock().unwrap();
            j.write_all(line.as_bytes())
                .map_err(io("cannot append to the run journal", &self.operator))?;
        }
        if outcome.status != Status::Quarantined {
            self.remove_stale_quarantine(&outcome.input_ref)?;
        }
        self.track_held_back(outcome)
    }

    /// Removes the quarantine entry an interrupted run left for an input this run did not
    /// hold back (the reason first: its presence marks an entry complete).
    fn remove_stale_quarantine(&self, input_ref: &str) -> Result<(), StateError> {
        if !self.quarantined_before.lock().unwrap().remove(input_ref) {
            return Ok(());
        }
        for ext in ["json", "dcm"] {
            let p = self.quarantine.join(format!("{input_ref}.{ext}"));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StateError::Io {
                        what: "cannot remove a stale quarantine entry",
                        path: p,
                        error: e,
                    })
                }
            }
        }
        Ok(())
    }

    fn temp_path(&self, dir: &Path) -> PathBuf {
        temp_path(dir)
    }

    /// Writes bytes to a new temp file in the output area and returns its path.
    pub fn write_temp(&self, bytes: &[u8], fsync: bool) -> Result<PathBuf, StateError> {
        let path = self.temp_path(&self.tmp);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&path)?;
            f.write_all(bytes)?;
            if fsync {
                f.sync_all()?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&path);
            return Err(StateError::Io {
                what: "cannot write an output file in",
                path: self.tmp.clone(),
                error: e,
            });
        }
        Ok(path)
    }

    /// Copies a held-back input into the quarantine with a JSON reason. The reason carries
    /// categories and attribute paths only; the input's path is in the encrypted held-back list
    /// (paths often carry names), found by the same keyed reference.
    pub fn quarantine(
        &self,
        input_ref: &str,
        bytes: &[u8],
        reason: &str,
        detail: &str,
        findings: &[VerifyFinding],
    ) -> Result<PathBuf, StateError> {
        quarantine_entry(&self.quarantine, input_ref, bytes, reason, detail, findings)
    }

    /// Writes the operator's run report into `<quarantine>/.veil/run-report.json` (it counts
    /// and names held-back and consent-excluded inputs, so it never goes into `OUT`).
    pub fn write_report(&self, report: &RunReport) -> Result<(), StateError> {
        let dir = &self.operator;
        let text = serde_json::to_vec_pretty(report).expect("JSON of plain data");
        let tmp = self.temp_path(dir);
        let dest = dir.join("run-report.json");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &dest))
            .map_err(io("cannot write the run report", &dest))
    }
}

/// Temp files of this process: `.<pid>-<n>.part`, the names a resumed run clears.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(dir: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{}-{n}.part", std::process::id()))
}

/// Writes `bytes` as `dir/name` (mode 0600) through a temp file and a rename.
fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, StateError> {
    let tmp = temp_path(dir);
    let dest = dir.join(name);
    let result = (|| -> std::io::Result<()> {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, &dest)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StateError::Io {
            what: "cannot write to the quarantine",
            path: dir.to_path_buf(),
            error: e,
        });
    }
    Ok(dest)
}

/// The keyed reference of an input (path, size, modification time, policy) under `ref_key`.
fn input_ref_of(ref_key: &Key, policy_digest: &str, path: &Path) -> String {
    // Paths come from `walk_inputs`, under canonicalised roots: stable across reruns.
    let meta = std::fs::metadata(path).ok();
    let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let material = format!(
        "{}\u{1f}{size}\u{1f}{mtime}\u{1f}{policy_digest}",
        path.display()
    );
    hex::encode(&ref_key.mac("veil/input-ref", material.as_bytes())[..16])
}

/// A quarantine entry: the input's copy `<ref>.dcm`, then its reason `<ref>.json` (written
/// last: its presence marks the entry complete).
fn quarantine_entry(
    quarantine: &Path,
    input_ref: &str,
    bytes: &[u8],
    reason: &str,
    detail: &str,
    findings: &[VerifyFinding],
) -> Result<PathBuf, StateError> {
    private_dir(quarantine).map_err(io("cannot create the quarantine directory", quarantine))?;
    let copy = atomic_write(quarantine, &format!("{input_ref}.dcm"), bytes)?;
    let record = serde_json::json!({
        "input_ref": input_ref,
        "reason": reason,
        "detail": detail,
        "findings": findings,
        "veil_version": env!("CARGO_PKG_VERSION"),
    });
    let text = serde_json::to_vec_pretty(&record).expect("JSON of plain data");
    atomic_write(quarantine, &format!("{input_ref}.json"), &text)?;
    Ok(copy)
}

/// Holds back an input de-identified outside a run (a Spark task) as a run holds it back: its
/// copy and reason in `quarantine` under the run's keyed input reference, and a record in the
/// operator's held-back list, so that `veil quarantine list` names it. Several processes may
/// do this at once (each record is one appended line). Returns the input reference.
pub fn hold_back_outside_run(
    quarantine: &Path,
    key: &Key,
    policy_digest: &str,
    input: &Path,
    bytes: &[u8],
    reason: &str,
    detail: &str,
) -> Result<String, StateError> {
    let input_ref = input_ref_of(&key.subkey("pipeline", "input-ref"), policy_digest, input);
    quarantine_entry(quarantine, &input_ref, bytes, reason, detail, &[])?;
    let operator = quarantine.join(".veil");
    std::fs::create_dir_all(&operator)
        .map_err(io("cannot create the quarantine directory", &operator))?;
    let log = HeldBackLog::new(&operator, key);
    let record = HeldBackRecord {
        input: input.display().to_string(),
        input_ref: input_ref.clone(),
        status: "quarantined".into(),
        reason: reason.to_string(),
        detail: detail.to_string(),
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    log.append(&record)
        .map_err(io("cannot append to the held-back list", log.path()))?;
    Ok(input_ref)
}
