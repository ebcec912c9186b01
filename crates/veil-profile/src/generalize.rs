//! The `[generalize]` section of a policy: generalisation of quasi-identifiers and record
//! suppression chosen by `veil risk` (owned by the risk work, issue 7).
//!
//! This module holds the generalisation hierarchies themselves, as pure functions on text
//! values, so that the risk search (`veil-risk`) and the de-identifier (`veil-deid`) compute
//! exactly the same generalised value for the same input: the released data then has the
//! equivalence classes, and so the risk, that `veil risk` measured.
//!
//! A fragment looks like this:
//!
//! ```toml
//! [generalize]
//! quasi = ["PatientAge", "PatientSex", "StudyDate", "Manufacturer"]
//! # Generalised tuples (in `quasi` order) whose records are withheld from release.
//! suppress = [["90+", "F", "2019", "OTHER"]]
//!
//! [generalize.field.PatientAge]
//! level = "5y"
//! [generalize.field.StudyDate]
//! level = "year"
//! [generalize.field.Manufacturer]
//! level = "common"
//! keep = ["GE MEDICAL SYSTEMS", "SIEMENS"]
//! ```
//!
//! Every value is first brought to a canonical text (`Hierarchy::generalize`): that text is
//! what equivalence classes and `suppress` tuples are made of. `Hierarchy::encode` turns a
//! canonical text into a value valid for the attribute's VR, which is what `veil deid` writes.
//! Encoding never splits a class (distinct canonical texts give distinct encodings, except
//! that merged categories may coincide with an existing value, which only merges classes),
//! so measuring the written files again can only show classes as large or larger.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;
use serde::{Deserialize, Serialize};

/// Canonical text of a value generalised away entirely (the whole field suppressed).
pub const SUPPRESSED: &str = "*";
/// Canonical text of a value that is absent or empty.
pub const MISSING: &str = "";

/// Generalisation applied by `veil deid` after the Annex E rules.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneralizeSpec {
    /// Quasi-identifiers (DICOM keywords, or table column names), in the order of `suppress`
    /// tuples. A field listed here without a `field` entry stays at level "exact".
    #[serde(default)]
    pub quasi: Vec<String>,
    /// Hierarchy level (and data such as an allow-list) per quasi-identifier.
    #[serde(default)]
    pub field: BTreeMap<String, FieldRule>,
    /// Generalised quasi-identifier tuples whose records must not be released (record
    /// suppression). These are generalised values of the de-identified data, not identifiers,
    /// but they are rare combinations: keep the policy file as private as the data.
    #[serde(default)]
    pub suppress: Vec<Vec<String>>,
    #[serde(skip)]
    suppress_set: OnceLock<HashSet<Vec<String>>>,
}

/// The level chosen for one quasi-identifier.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// A level name of the field's hierarchy (see [`Hierarchy::levels`]).
    pub level: String,
    /// Hierarchy kind, when the field name does not imply it: "age", "date", "number",
    /// "category".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For level "common": the values kept as they are; every other value becomes the
    /// field's merged value ("OTHER", or "OT" for Modality, "O" for PatientSex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
}

/// One quasi-identifier of a spec, resolved: hierarchy, level index and allow-list.
#[derive(Debug, Clone)]
pub struct ResolvedField {
    pub name: String,
    pub hierarchy: Hierarchy,
    pub level: usize,
    pub keep: HashSet<String>,
}

impl ResolvedField {
    /// Canonical generalised text of a raw value of this field.
    pub fn generalize(&self, raw: Option<&str>) -> String {
        self.hierarchy.generalize(self.level, raw, &self.keep)
    }
}

impl GeneralizeSpec {
    /// Builds a spec (used by `veil risk` when it writes a fragment).
    pub fn new(
        quasi: Vec<String>,
        field: BTreeMap<String, FieldRule>,
        suppress: Vec<Vec<String>>,
    ) -> Self {
        GeneralizeSpec {
            quasi,
            field,
            suppress,
            suppress_set: OnceLock::new(),
        }
    }

    /// Nothing to do: no quasi-identifier and no suppression.
    pub fn is_empty(&self) -> bool {
        self.quasi.is_empty() && self.field.is_empty() && self.suppress.is_empty()
    }

    /// Checks the spec and resolves each quasi-identifier to its hierarchy and level.
    /// Errors name the field and say what is allowed.
    pub fn resolve(&self) -> Result<Vec<ResolvedField>, String> {
        for name in self.field.keys() {
            if !self.quasi.contains(name) {
                return Err(format!(
                    "generalize.field.{name}: not listed in generalize.quasi; add it there"
                ));
            }
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(self.quasi.len());
        for name in &self.quasi {
            if !seen.insert(name.as_str()) {
                return Err(format!("generalize.quasi: {name} is listed twice"));
            }
            let rule = self.field.get(name);
            let hierarchy = match rule.and_then(|r| r.kind.as_deref()) {
                Some(kind) => Hierarchy::from_kind(name, kind).ok_or_else(|| {
                    format!(
                        "generalize.field.{name}.kind: unknown kind {kind:?}; use age, date, number or category"
                    )
                })?,
                None => Hierarchy::for_field(name),
            };
            let level_name = rule.map(|r| r.level.as_str()).unwrap_or("exact");
            let level = hierarchy.level_index(level_name).ok_or_else(|| {
                format!(
                    "generalize.field.{name}.level: unknown level {level_name:?}; {name} has levels {}",
                    hierarchy.levels().join(", ")
                )
            })?;
            let keep: HashSet<String> = rule
                .map(|r| r.keep.iter().cloned().collect())
                .unwrap_or_default();
            out.push(ResolvedField {
                name: name.clone(),
                hierarchy,
                level,
                keep,
            });
        }
        for (i, t) in self.suppress.iter().enumerate() {
            if t.len() != self.quasi.len() {
                return Err(format!(
                    "generalize.suppress[{i}]: has {} values, generalize.quasi has {}",
                    t.len(),
                    self.quasi.len()
                ));
            }
        }
        Ok(out)
    }

    /// Whether records with this generalised tuple are withheld from release.
    pub fn is_suppressed(&self, tuple: &[String]) -> bool {
        self.suppress_set
            .get_or_init(|| self.suppress.iter().cloned().collect())
            .contains(tuple)
    }
}

/// A generalisation hierarchy: an ordered list of levels from "exact" (0) to the most
/// general. Each level maps a raw value to a canonical text; a higher level never splits
/// what a lower level merged (this monotonicity is what lets the search prune the lattice).
#[derive(Debug, Clone, PartialEq)]
pub enum Hierarchy {
    /// Ages in years; 90 and over top-coded as "90+" at every level (HIPAA Safe Harbor and
    /// PS3.15's 090Y rule), then 5-, 10- and 20-year bands, then suppressed.
    Age,
    /// Calendar dates: day, month, quarter, year, suppressed.
    Date,
    /// Measurements in bands of the given widths (e.g. weight in kg, size in m), then
    /// suppressed. `unit` names the level ("5kg").
    Number {
        widths: [f64; 3],
        unit: &'static str,
        scale: f64,
    },
    /// Free categories: exact, rare values merged ("common"), then suppressed when the
    /// attribute may be empty (`suppressible`).
    Category {
        merged: &'static str,
        suppressible: bool,
    },
}

impl Hierarchy {
    /// The hierarchy of a DICOM keyword or table column (case-insensitive on the known names).
    pub fn for_field(name: &str) -> Hierarchy {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "patientage" | "age" => Hierarchy::Age,
            "patientweight" | "weight" => Hierarchy::Number {
                widths: [5.0, 10.0, 20.0],
                unit: "kg",
                scale: 1.0,
            },
            "patientsize" | "size" | "height" => Hierarchy::Number {
                widths: [0.05, 0.10, 0.20],
                unit: "cm",
                scale: 100.0,
            },
            "modality" => Hierarchy::Category {
                merged: "OT",
                suppressible: false,
            },
            "patientsex" | "sex" => Hierarchy::Category {
                merged: "O",
                suppressible: true,
            },
            _ if lower.ends_with("date") => Hierarchy::Date,
            _ => Hierarchy::Category {
                merged: "OTHER",
                suppressible: true,
            },
        }
    }

    /// The hierarchy for an explicit kind name.
    pub fn from_kind(name: &str, kind: &str) -> Option<Hierarchy> {
        match kind {
            "age" => Some(Hierarchy::Age),
            "date" => Some(Hierarchy::Date),
            "number" => match Hierarchy::for_field(name) {
                h @ Hierarchy::Number { .. } => Some(h),
                _ => Some(Hierarchy::Number {
                    widths: [5.0, 10.0, 20.0],
                    unit: "",
                    scale: 1.0,
                }),
            },
            "category" => match Hierarchy::for_field(name) {
                h @ Hierarchy::Category { .. } => Some(h),
                _ => Some(Hierarchy::Category {
                    merged: "OTHER",
                    suppressible: true,
                }),
            },
            _ => None,
        }
    }

    /// Short kind name ("age", "date", "number", "category").
    pub fn kind_name(&self) -> &'static str {
        match self {
            Hierarchy::Age => "age",
            Hierarchy::Date => "date",
            Hierarchy::Number { .. } => "number",
            Hierarchy::Category { .. } => "category",
        }
    }

    /// Level names, from exact (index 0) to most general.
    pub fn levels(&self) -> Vec<String> {
        match self {
            Hierarchy::Age => ["exact", "5y", "10y", "20y", "suppress"]
                .map(String::from)
                .to_vec(),
            Hierarchy::Date => ["day", "month", "quarter", "year", "suppress"]
                .map(String::from)
                .to_vec(),
            Hierarchy::Number {
                widths,
                unit,
                scale,
            } => {
                let mut v = vec!["exact".to_string()];
                v.extend(
                    widths
                        .iter()
                        .map(|w| format!("{}{unit}", fmt_num(w * scale))),
                );
                v.push("suppress".into());
                v
            }
            Hierarchy::Category {
                suppressible: true, ..
            } => ["exact", "common", "suppress"].map(String::from).to_vec(),
            Hierarchy::Category {
                suppressible: false,
                ..
            } => ["exact", "common"].map(String::from).to_vec(),
        }
    }

    /// Index of the most general level.
    pub fn top(&self) -> usize {
        self.levels().len() - 1
    }

    /// Index of a level name ("exact" is accepted for dates as a synonym of "day").
    pub fn level_index(&self, name: &str) -> Option<usize> {
        if name == "exact" {
            return Some(0);
        }
        self.levels().iter().position(|l| l == name)
    }

    /// Whether this level needs an allow-list of common values.
    pub fn uses_keep(&self, level: usize) -> bool {
        matches!(self, Hierarchy::Category { .. }) && level == 1
    }

    /// The canonical generalised text of `raw` at `level`. Missing or blank values stay
    /// missing (""), except at a "suppress" level where every value becomes "*". A value the
    /// hierarchy cannot parse (an age or date in no known format) is suppressed at every level
    /// above exact: it is never passed through unchanged when generalisation was asked for.
    pub fn generalize(&self, level: usize, raw: Option<&str>, keep: &HashSet<String>) -> String {
        let top = self.top();
        let suppress_top = !matches!(
            self,
            Hierarchy::Category {
                suppressible: false,
                ..
            }
        );
        if level >= top && suppress_top {
            return SUPPRESSED.to_string();
        }
        let value = match raw.map(normalize_raw) {
            Some(v) if !v.is_empty() => v,
            _ => return MISSING.to_string(),
        };
        match self {
            Hierarchy::Age => match parse_age_years(&value) {
                Some(years) => age_band(years, level),
                None if level == 0 => value,
                None => SUPPRESSED.to_string(),
            },
            Hierarchy::Date => match parse_date(&value) {
                Some((y, m, d)) => match level {
                    0 => format!("{y:04}-{m:02}-{d:02}"),
                    1 => format!("{y:04}-{m:02}"),
                    2 => format!("{y:04}-Q{}", (m - 1) / 3 + 1),
                    _ => format!("{y:04}"),
                },
                None if level == 0 => value,
                None => SUPPRESSED.to_string(),
            },
            Hierarchy::Number { widths, .. } => match value.parse::<f64>() {
                Ok(x) if x.is_finite() => {
                    if level == 0 {
                        fmt_num(x)
                    } else {
                        let w = widths[level - 1];
                        let lo = (x / w).floor() * w;
                        format!("[{},{})", fmt_num(lo), fmt_num(lo + w))
                    }
                }
                _ if level == 0 => value,
                _ => SUPPRESSED.to_string(),
            },
            Hierarchy::Category { merged, .. } => {
                if level == 0 || keep.contains(&value) {
                    value
                } else {
                    merged.to_string()
                }
            }
        }
    }

    /// A value valid for the attribute's VR that stands for a canonical text; `None` means
    /// "write an empty value". Only called for levels above exact.
    pub fn encode(&self, canonical: &str) -> Option<String> {
        if canonical == SUPPRESSED || canonical == MISSING {
            return None;
        }
        match self {
            Hierarchy::Age => {
                let lo: u32 = canonical
                    .trim_end_matches('+')
                    .split('-')
                    .next()
                    .and_then(|s| s.parse().ok())?;
                Some(format!("{lo:03}Y"))
            }
            Hierarchy::Date => {
                // "2019-03" -> 20190301, "2019-Q2" -> 20190401, "2019" -> 20190101.
                let mut parts = canonical.split('-');
                let y = parts.next()?;
                let (m, d) = match (parts.next(), parts.next()) {
                    (Some(q), None) if q.starts_with('Q') => {
                        let q: u32 = q[1..].parse().ok()?;
                        (format!("{:02}", (q - 1) * 3 + 1), "01".to_string())
                    }
                    (Some(m), None) => (m.to_string(), "01".to_string()),
                    (Some(m), Some(d)) => (m.to_string(), d.to_string()),
                    (None, _) => ("01".to_string(), "01".to_string()),
                };
                Some(format!("{y}{m}{d}"))
            }
            Hierarchy::Number { .. } => {
                // "[70,75)" -> "70": the band's lower bound, a valid DS.
                let lo = canonical.trim_start_matches('[').split(',').next()?;
                Some(lo.to_string())
            }
            Hierarchy::Category { .. } => Some(canonical.to_string()),
        }
    }
}

/// Strips DICOM padding (spaces, NULs) and surrounding whitespace.
pub fn normalize_raw(raw: &str) -> String {
    raw.trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string()
}

/// Years from a DICOM Age String ("045Y", "006M", "003W", "010D") or a plain number ("45").
pub fn parse_age_years(v: &str) -> Option<u32> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c.to_ascii_uppercase()),
        _ => (v, 'Y'),
    };
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let years = match unit {
        'Y' => n,
        'M' => n / 12.0,
        'W' => n / 52.0,
        'D' => n / 365.0,
        _ => return None,
    };
    Some(years.floor() as u32)
}

fn age_band(years: u32, level: usize) -> String {
    if years >= 90 {
        return "90+".to_string();
    }
    let width = match level {
        0 => return years.to_string(),
        1 => 5,
        2 => 10,
        _ => 20,
    };
    let lo = years / width * width;
    // Bands never reach past the 90+ top code.
    let hi = (lo + width - 1).min(89);
    format!("{lo}-{hi}")
}

/// (year, month, day) from DICOM DA ("20190317"), DT (first 8 digits), ISO ("2019-03-17") or
/// the old "2019.03.17".
pub fn parse_date(v: &str) -> Option<(u32, u32, u32)> {
    let b = v.as_bytes();
    let all_digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let (ys, ms, ds) = if b.len() >= 8 && all_digits(0..8) {
        (&v[0..4], &v[4..6], &v[6..8])
    } else if b.len() >= 10
        && matches!(b[4], b'-' | b'.' | b'/')
        && b[7] == b[4]
        && all_digits(0..4)
        && all_digits(5..7)
        && all_digits(8..10)
    {
        (&v[0..4], &v[5..7], &v[8..10])
    } else {
        return None;
    };
    let (y, m, d): (u32, u32, u32) = (ys.parse().ok()?, ms.parse().ok()?, ds.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((y, m, d))
}

fn fmt_num(x: f64) -> String {
    // Round away binary noise (0.1 * 3 = 0.30000000000000004) before printing.
    let r = (x * 1e6).round() / 1e6;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// The tag of a DICOM keyword (None for table columns that are not DICOM keywords).
pub fn tag_of(keyword: &str) -> Option<Tag> {
    StandardDataDictionary.by_name(keyword).map(|e| e.tag())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(h: &Hierarchy, level: usize, raw: &str) -> String {
        h.generalize(level, Some(raw), &HashSet::new())
    }

    #[test]
    fn age_bands_top_code_90() {
        let h = Hierarchy::Age;
        assert_eq!(g(&h, 0, "045Y"), "45");
        assert_eq!(g(&h, 1, "047Y"), "45-49");
        assert_eq!(g(&h, 2, "047Y"), "40-49");
        assert_eq!(g(&h, 3, "047Y"), "40-59");
        assert_eq!(g(&h, 3, "085Y"), "80-89");
        assert_eq!(g(&h, 0, "093Y"), "90+");
        assert_eq!(g(&h, 1, "006M"), "0-4");
        assert_eq!(g(&h, 4, "047Y"), "*");
        assert_eq!(g(&h, 1, "old"), "*");
        assert_eq!(g(&h, 0, "old"), "old");
        assert_eq!(h.generalize(1, None, &HashSet::new()), "");
        assert_eq!(h.encode("45-49").as_deref(), Some("045Y"));
        assert_eq!(h.encode("90+").as_deref(), Some("090Y"));
    }

    #[test]
    fn dates_month_quarter_year() {
        let h = Hierarchy::Date;
        assert_eq!(g(&h, 0, "20190817"), "2019-08-17");
        assert_eq!(g(&h, 1, "2019-08-17"), "2019-08");
        assert_eq!(g(&h, 2, "20190817"), "2019-Q3");
        assert_eq!(g(&h, 3, "20190817"), "2019");
        assert_eq!(g(&h, 2, "2019"), "*");
        assert_eq!(h.encode("2019-Q3").as_deref(), Some("20190701"));
        assert_eq!(h.encode("2019-08").as_deref(), Some("20190801"));
        assert_eq!(h.encode("2019").as_deref(), Some("20190101"));
    }

    #[test]
    fn numbers_in_bands() {
        let h = Hierarchy::for_field("PatientWeight");
        assert_eq!(h.levels(), vec!["exact", "5kg", "10kg", "20kg", "suppress"]);
        assert_eq!(g(&h, 1, "72.5"), "[70,75)");
        assert_eq!(g(&h, 3, "72.5"), "[60,80)");
        let s = Hierarchy::for_field("PatientSize");
        assert_eq!(s.levels(), vec!["exact", "5cm", "10cm", "20cm", "suppress"]);
        assert_eq!(g(&s, 2, "1.73"), "[1.7,1.8)");
        assert_eq!(s.encode("[1.7,1.8)").as_deref(), Some("1.7"));
    }

    #[test]
    fn categories_merge_rare_values() {
        let h = Hierarchy::for_field("Manufacturer");
        let keep: HashSet<String> = ["SIEMENS".to_string()].into();
        assert_eq!(h.generalize(1, Some("SIEMENS "), &keep), "SIEMENS");
        assert_eq!(h.generalize(1, Some("Acme"), &keep), "OTHER");
        assert_eq!(h.generalize(2, Some("Acme"), &keep), "*");
        let m = Hierarchy::for_field("Modality");
        assert_eq!(m.levels(), vec!["exact", "common"]);
        assert_eq!(m.generalize(1, Some("PT"), &keep), "OT");
    }

    #[test]
    fn spec_resolves_and_rejects_bad_levels() {
        let spec: GeneralizeSpec = toml::from_str(
            r#"
            quasi = ["PatientAge", "StudyDate", "Manufacturer"]
            suppress = [["90+", "2019", "OTHER"]]
            [field.PatientAge]
            level = "5y"
            [field.StudyDate]
            level = "year"
            "#,
        )
        .unwrap();
        let r = spec.resolve().unwrap();
        assert_eq!(r[0].level, 1);
        assert_eq!(r[1].level, 3);
        assert_eq!(r[2].level, 0);
        assert!(spec.is_suppressed(&["90+".into(), "2019".into(), "OTHER".into()]));
        assert!(!spec.is_suppressed(&["85-89".into(), "2019".into(), "OTHER".into()]));

        let bad: GeneralizeSpec =
            toml::from_str("quasi = [\"PatientAge\"]\n[field.PatientAge]\nlevel = \"7y\"\n")
                .unwrap();
        let err = bad.resolve().unwrap_err();
        assert!(err.contains("PatientAge") && err.contains("5y"), "{err}");
    }
}
