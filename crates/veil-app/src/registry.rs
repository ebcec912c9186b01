//! What the registry front ends share (`veil consent/recipient/ledger/disclosures/breach/
//! trace/withdraw` today, the portal next): finding the institution settings and the store,
//! the patient's disclosure record as a document, the breach summary, and the UIDs a released
//! file carries. Printing stays with the front end.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use veil_store::ledger::Uids;
use veil_store::queries::BreachRow;
use veil_store::{Settings, Store};

use crate::AppError;

/// Institution settings: `config`, else `$VEIL_CONFIG`, else `./.veil/config.toml` when it
/// exists, else the built-in defaults.
pub fn institution_settings(config: Option<&Path>) -> Result<Settings, AppError> {
    let path = config
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("VEIL_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(".veil/config.toml")).filter(|p| p.exists()));
    match path {
        Some(p) => Ok(Settings::load(&p)?),
        None => Ok(Settings::default()),
    }
}

/// Opens the store (`db`: a SQLite path or `postgres://` URL; `None`: `$VEIL_DB`, else
/// `./.veil/veil.db`). With `need_key` a key must be found (`key`, `VEIL_KEY_FILE`,
/// `VEIL_KEY`); without, the store opens keyless when none is given (what is encrypted stays
/// unreadable).
pub fn open_store(db: Option<&str>, key: Option<&Path>, need_key: bool) -> Result<Store, AppError> {
    let key = match (key, need_key) {
        (_, true) => Some(crate::build::load_key(key)?),
        (Some(p), false) => Some(veil_keys::Key::load(p)?),
        (None, false) => veil_keys::Key::from_env()?,
    };
    Ok(Store::open(db, key.as_ref())?)
}

/// How the patient's disclosure record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    Html,
    Json,
}

impl DocumentFormat {
    /// `html` or `json`; anything else is the user's to fix.
    pub fn parse(s: &str) -> Result<DocumentFormat, AppError> {
        match s {
            "html" => Ok(DocumentFormat::Html),
            "json" => Ok(DocumentFormat::Json),
            f => Err(AppError::Usage(format!("--format `{f}`: html or json"))),
        }
    }
}

/// The patient's record of every disclosure, as a page for the patient or as JSON.
pub fn disclosures_document(
    store: &Store,
    patient: &str,
    issuer: &str,
    format: DocumentFormat,
) -> Result<Vec<u8>, AppError> {
    let d = disclosures_with_proofs(store, patient, issuer)?;
    let pref = veil_store::short_ref(&store.patient_ref(patient, issuer)?);
    Ok(match format {
        DocumentFormat::Json => serde_json::to_vec_pretty(&serde_json::json!({
            "patient_ref": pref,
            "generated_at": veil_store::time::now_utc(),
            "ledger_public_key": store.ledger_public_key(),
            "disclosures": d,
        }))
        .expect("JSON of plain data"),
        DocumentFormat::Html => crate::pages::disclosures_html(&pref, &d)?.into_bytes(),
    })
}

/// The patient's disclosures, each with its entries' inclusion proofs checked against the
/// latest signed tree head (what the record documents and the portal's pages show).
pub fn disclosures_with_proofs(
    store: &Store,
    patient: &str,
    issuer: &str,
) -> Result<Vec<veil_store::queries::Disclosure>, AppError> {
    require_known_patient(store, patient, issuer)?;
    let mut d = store.disclosures(patient, issuer)?;
    attach_proofs(store, &mut d)?;
    Ok(d)
}

/// Attaches to each disclosure the inclusion proofs of its ledger entries against the latest
/// signed tree head, each checked here with the ledger's public key before it is called
/// verified.
fn attach_proofs(
    store: &Store,
    disclosures: &mut [veil_store::queries::Disclosure],
) -> Result<(), AppError> {
    use veil_store::queries::{EntryProof, ProofStatus};
    let seqs: Vec<i64> = disclosures
        .iter()
        .flat_map(|d| d.ledger_entries.iter().copied())
        .collect();
    if seqs.is_empty() {
        return Ok(());
    }
    let mut receipts = store.receipts(&seqs)?.into_iter();
    let key = store.ledger_public_key();
    for d in disclosures.iter_mut() {
        let mut status = ProofStatus {
            status: "verified".into(),
            tree_size: 0,
            tree_head_signed_at: String::new(),
            proofs: Vec::new(),
        };
        for _ in 0..d.ledger_entries.len() {
            match receipts.next().flatten() {
                None if status.status != "failed" => status.status = "pending".into(),
                None => {}
                Some(r) => {
                    if key.as_deref().is_none_or(|k| r.check(k).is_err()) {
                        status.status = "failed".into();
                    }
                    status.tree_size = r.tree_head.size;
                    status.tree_head_signed_at = r.tree_head.signed_at.clone();
                    status.proofs.push(EntryProof {
                        seq: r.entry.seq,
                        leaf_index: r.leaf_index,
                        inclusion_path: r.inclusion_path,
                    });
                }
            }
        }
        d.proof = Some(status);
    }
    Ok(())
}

/// A usage error unless a consent record or a release names the patient: a mistyped ID or a
/// missing issuer must not print an empty accounting or record a withdrawal for nobody. (The
/// message does not repeat the identifier.)
pub fn require_known_patient(store: &Store, patient: &str, issuer: &str) -> Result<(), AppError> {
    if store.knows_patient(patient, issuer)? {
        return Ok(());
    }
    Err(AppError::Usage(format!(
        "no consent record and no release names this patient ID{}: check the ID and --issuer (IDs are matched exactly); to record a decision for a patient Veil has not seen yet, use `veil consent set`",
        if issuer.is_empty() { " (without an issuer)" } else { " under this issuer" }
    )))
}

/// Who and what a breach at one recipient exposed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreachReport {
    pub recipient: String,
    pub since: Option<String>,
    pub patients: usize,
    pub studies: usize,
    pub instances: i64,
    pub rows: Vec<BreachRow>,
}

/// The breach report for `recipient`, releases from `since` on (YYYY-MM-DD or RFC 3339).
pub fn breach_report(
    store: &Store,
    recipient: &str,
    since: Option<&str>,
) -> Result<BreachReport, AppError> {
    let since = match since {
        None => None,
        Some(s) => Some(veil_store::time::normalize_timestamp(s).ok_or_else(|| {
            AppError::Usage(format!("--since `{s}`: expected YYYY-MM-DD or RFC 3339"))
        })?),
    };
    let rows = store.breach(recipient, since.as_deref())?;
    let patients: BTreeSet<&str> = rows.iter().map(|r| r.patient_ref.as_str()).collect();
    let studies: BTreeSet<&str> = rows.iter().map(|r| r.released_study_uid.as_str()).collect();
    Ok(BreachReport {
        recipient: recipient.to_string(),
        patients: patients.len(),
        studies: studies.len(),
        instances: rows
            .iter()
            .flat_map(|r| r.released_sops.iter())
            .collect::<BTreeSet<_>>()
            .len() as i64,
        since,
        rows,
    })
}

impl BreachReport {
    /// As `csv` (one row per patient's study, for notification letters) or `json`.
    pub fn document(&self, format: &str) -> Result<Vec<u8>, AppError> {
        match format {
            "json" => Ok(serde_json::to_vec_pretty(self).expect("JSON of plain data")),
            "csv" => Ok(veil_store::queries::breach_csv(&self.rows)?),
            f => Err(AppError::Usage(format!("--format `{f}`: csv or json"))),
        }
    }
}

/// The Study, Series and SOP Instance UIDs of a (released) file, to find it in the ledger.
pub fn read_uids(path: &Path) -> Result<Uids, AppError> {
    use dicom_dictionary_std::tags;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| {
            AppError::Usage(format!(
                "{}: not a readable DICOM file: {e}",
                path.display()
            ))
        })?;
    let get = |t| {
        obj.get(t)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Ok(Uids {
        study: get(tags::STUDY_INSTANCE_UID),
        series: get(tags::SERIES_INSTANCE_UID),
        sop: get(tags::SOP_INSTANCE_UID),
    })
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    write_atomic_with(path, |w| {
        w.write_all(bytes)
            .map_err(AppError::io("cannot write", path))
    })
}

/// Streams a document into `path` atomically: a temporary file in the same directory, written
/// through `write`, synced, then persisted over the name; a reader never sees half a document,
/// and a failed write leaves the old one.
pub fn write_atomic_with<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<T, AppError>,
) -> Result<T, AppError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(AppError::io("cannot create", dir))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(AppError::io("cannot write in", dir))?;
    let mut w = std::io::BufWriter::new(tmp);
    let value = write(&mut w)?;
    let tmp = w
        .into_inner()
        .map_err(|e| AppError::io("cannot write", path)(e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(AppError::io("cannot write", path))?;
    tmp.persist(path)
        .map_err(|e| AppError::io("cannot write", path)(e.error))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("page.html");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn formats_are_checked() {
        assert!(DocumentFormat::parse("pdf").unwrap_err().is_usage());
        assert_eq!(DocumentFormat::parse("json").unwrap(), DocumentFormat::Json);
    }

    #[test]
    fn a_non_dicom_file_is_a_usage_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, "hello").unwrap();
        let e = read_uids(&p).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("notes.txt"), "{e}");
    }
}
