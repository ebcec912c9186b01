//! Patient pseudonyms and date offsets, keyed on the patient's identity, and the optional map of
//! assigned subject IDs (clinical trials).

use std::collections::HashMap;
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use veil_keys::Key;
use veil_profile::{Policy, Template, TemplatePart};

/// A patient's pseudonyms and date offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientPseudonyms {
    /// Written to Patient ID; also the first level of the output tree.
    pub id: String,
    /// Written to Patient's Name.
    pub name: String,
    /// Days added to every date of this patient.
    pub offset_days: i64,
}

/// Original patient ID → assigned pseudonym, from a CSV with a header
/// `original_patient_id,pseudonym`. Identifying: it stays in memory, never in logs.
#[derive(Clone, Default)]
pub struct PatientMap {
    map: HashMap<String, String>,
}

impl std::fmt::Debug for PatientMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PatientMap({} entries)", self.map.len())
    }
}

/// A problem in a patient map file; names the line, never the value.
#[derive(Debug, thiserror::Error)]
#[error("patient map {path}: {message}")]
pub struct PatientMapError {
    pub path: String,
    pub message: String,
}

impl PatientMap {
    /// Loads the CSV. Every row needs both columns; pseudonyms must be unique and safe for the
    /// LO VR and for paths.
    pub fn load(path: &Path) -> Result<PatientMap, PatientMapError> {
        let err = |message: String| PatientMapError {
            path: path.display().to_string(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| err(format!("cannot read it: {e}")))?;
        let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
        let col = |n: &str| headers.iter().position(|h| h == n);
        let (Some(oi), Some(pi)) = (col("original_patient_id"), col("pseudonym")) else {
            return Err(err(
                "expected a header line `original_patient_id,pseudonym`".into(),
            ));
        };
        let mut map = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| err(format!("line {line}: {e}")))?;
            let (o, p) = (rec.get(oi).unwrap_or(""), rec.get(pi).unwrap_or(""));
            if o.is_empty() || p.is_empty() {
                return Err(err(format!(
                    "line {line}: both original_patient_id and pseudonym are required"
                )));
            }
            if p.len() > 64
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(err(format!(
                    "line {line}: pseudonym must be at most 64 letters, digits, '-', '_' or '.'"
                )));
            }
            if !seen.insert(p.to_string()) {
                return Err(err(format!(
                    "line {line}: pseudonym is assigned to two patients"
                )));
            }
            if map.insert(o.to_string(), p.to_string()).is_some() {
                return Err(err(format!(
                    "line {line}: the same original patient ID appears twice"
                )));
            }
        }
        Ok(PatientMap { map })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Is the map empty?
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn get(&self, original: &str) -> Option<&str> {
        self.map.get(original).map(|s| s.as_str())
    }
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    crate::text_of(obj, tag).unwrap_or_default()
}

/// The identity pseudonyms are keyed on: issuer + patient ID. A dataset with no patient ID is
/// its own pseudo-patient per study, so unrelated unidentified studies are never merged.
pub fn identity(obj: &InMemDicomObject) -> String {
    let pid = text(obj, tags::PATIENT_ID);
    if !pid.is_empty() {
        return format!(
            "pid\u{1f}{}\u{1f}{pid}",
            text(obj, tags::ISSUER_OF_PATIENT_ID)
        );
    }
    let study = text(obj, tags::STUDY_INSTANCE_UID);
    if !study.is_empty() {
        return format!("study\u{1f}{study}");
    }
    format!("sop\u{1f}{}", text(obj, tags::SOP_INSTANCE_UID))
}

fn render(key: &Key, template: &Template, domain: &str, identity: &str, id: &str) -> String {
    let mut out = String::new();
    for (i, part) in template.parts.iter().enumerate() {
        let d = format!("{domain}/{i}");
        match part {
            TemplatePart::Literal(l) => out.push_str(l),
            TemplatePart::Hex(n) => {
                out.push_str(&key.derive_chars(&d, identity.as_bytes(), b"0123456789ABCDEF", *n))
            }
            TemplatePart::Dec(n) => {
                out.push_str(&key.derive_chars(&d, identity.as_bytes(), b"0123456789", *n))
            }
            TemplatePart::Alnum(n) => out.push_str(&key.derive_chars(
                &d,
                identity.as_bytes(),
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                *n,
            )),
            TemplatePart::Id => out.push_str(id),
        }
    }
    out
}

/// The pseudonyms of the patient `obj` belongs to.
pub fn pseudonyms(
    key: &Key,
    policy: &Policy,
    map: Option<&PatientMap>,
    obj: &InMemDicomObject,
) -> PatientPseudonyms {
    let identity = identity(obj);
    let pid = text(obj, tags::PATIENT_ID);
    let id = map
        .and_then(|m| m.get(&pid))
        .map(|s| s.to_string())
        .unwrap_or_else(|| {
            render(
                key,
                &policy.patient_id_template,
                "veil/patient-id",
                &identity,
                "",
            )
        });
    let name = render(
        key,
        &policy.patient_name_template,
        "veil/patient-name",
        &identity,
        &id,
    );
    let (min, max) = policy.date_shift_days;
    let offset_days = key.derive_in_range("veil/date-offset", identity.as_bytes(), min, max);
    PatientPseudonyms {
        id,
        name,
        offset_days,
    }
}

/// Keyed pseudonym of another identifier (accession number, study ID...): 16 hex digits, fits SH.
pub fn other_id(key: &Key, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    key.derive_chars("veil/other-id", value.as_bytes(), b"0123456789ABCDEF", 16)
}
