//! The instance's own identifying values, as tokens OCR text can be compared with.
//! Held in memory only for the instance being processed; never printed.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// What kind of identifier a token is (reported instead of the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    PatientName,
    PatientId,
    OtherId,
    Accession,
    Date,
    Institution,
    Staff,
}

pub struct Identifiers {
    tokens: Vec<(String, Kind)>,
    /// Dates as digit strings in the common orders (YYYYMMDD, MMDDYYYY, DDMMYYYY, YYMMDD…).
    dates: Vec<String>,
}

fn value(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    obj.get(tag)
        .and_then(|e| {
            e.to_multi_str()
                .ok()
                .map(|v| v.iter().map(|s| s.trim().to_string()).collect())
        })
        .unwrap_or_default()
}

/// Upper-case letters and digits only.
pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

impl Identifiers {
    pub fn of(obj: &InMemDicomObject) -> Identifiers {
        let mut tokens = Vec::new();
        let mut add = |s: &str, kind: Kind, min: usize| {
            for part in s.split(|c: char| c == '^' || c == '=' || c.is_whitespace() || c == ',') {
                let n = normalize(part);
                if n.chars().count() >= min && !tokens.iter().any(|(t, _)| *t == n) {
                    tokens.push((n, kind));
                }
            }
        };
        for v in value(obj, tags::PATIENT_NAME) {
            add(&v, Kind::PatientName, 2);
        }
        for v in value(obj, tags::PATIENT_ID) {
            add(&v, Kind::PatientId, 1);
        }
        for tag in [
            Tag(0x0010, 0x1000),
            tags::ISSUER_OF_PATIENT_ID,
            Tag(0x0010, 0x1090),
        ] {
            for v in value(obj, tag) {
                add(&v, Kind::OtherId, 3);
            }
        }
        for v in value(obj, tags::ACCESSION_NUMBER) {
            add(&v, Kind::Accession, 3);
        }
        for tag in [tags::INSTITUTION_NAME, tags::INSTITUTION_ADDRESS] {
            for v in value(obj, tag) {
                add(&v, Kind::Institution, 4);
            }
        }
        for tag in [
            tags::REFERRING_PHYSICIAN_NAME,
            tags::OPERATORS_NAME,
            tags::PERFORMING_PHYSICIAN_NAME,
        ] {
            for v in value(obj, tag) {
                add(&v, Kind::Staff, 3);
            }
        }
        let mut dates = Vec::new();
        for tag in [
            tags::PATIENT_BIRTH_DATE,
            tags::STUDY_DATE,
            tags::SERIES_DATE,
            tags::ACQUISITION_DATE,
            tags::CONTENT_DATE,
        ] {
            for v in value(obj, tag) {
                let d: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
                if d.len() == 8 {
                    let (y, m, dd) = (&d[0..4], &d[4..6], &d[6..8]);
                    for form in [
                        d.clone(),
                        format!("{m}{dd}{y}"),
                        format!("{dd}{m}{y}"),
                        format!("{}{m}{dd}", &y[2..]),
                        format!("{m}{dd}{}", &y[2..]),
                        format!("{dd}{m}{}", &y[2..]),
                    ] {
                        if !dates.contains(&form) {
                            dates.push(form);
                        }
                    }
                }
            }
        }
        Identifiers { tokens, dates }
    }

    /// Does OCR text match one of the instance's identifiers? Tolerates OCR noise: a token of 4+
    /// characters inside the text (or the text inside a long token) counts.
    pub fn matches(&self, ocr_text: &str) -> Option<Kind> {
        let n = normalize(ocr_text);
        if n.is_empty() {
            return None;
        }
        let digits: String = n.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() >= 6 && self.dates.iter().any(|d| digits.contains(d.as_str())) {
            return Some(Kind::Date);
        }
        for (t, kind) in &self.tokens {
            let tl = t.chars().count();
            let nl = n.chars().count();
            if n == *t
                || (tl >= 4 && n.contains(t.as_str()))
                || (nl >= 4 && tl >= nl && t.contains(n.as_str()) && nl * 2 >= tl)
            {
                return Some(*kind);
            }
        }
        None
    }

    /// Number of tokens (for reports).
    pub fn len(&self) -> usize {
        self.tokens.len() + self.dates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Does text look like an identifier even without matching this file (a date, a long number)?
pub fn looks_identifying(text: &str) -> bool {
    let digits = text.chars().filter(|c| c.is_ascii_digit()).count();
    digits >= 4
        || (digits >= 2
            && text
                .chars()
                .any(|c| c == '/' || c == '-' || c == '.' || c == ':'))
}
