//! Policy files (TOML): which options apply, how pseudonyms look, the date-shift range, per-tag
//! overrides and generalisation. Errors name the line, column and field.

use std::collections::BTreeSet;
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::action::Action;
use crate::generalize::GeneralizeSpec;
use crate::options::ProfileOption;

/// A problem in a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field, e.g. `override[2].action`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => {
                write!(f, "line {l}, column {c}: {}: {}", self.field, self.message)
            }
            (Some(l), None) => write!(f, "line {l}: {}: {}", self.field, self.message),
            _ => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {origin}: cannot read it: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {origin}: {}", .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        origin: String,
        issues: Vec<PolicyIssue>,
    },
}

/// One piece of a pseudonym template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    /// `{hex:N}`: N upper-case hexadecimal digits.
    Hex(usize),
    /// `{dec:N}`: N decimal digits.
    Dec(usize),
    /// `{alnum:N}`: N characters of A-Z0-9.
    Alnum(usize),
    /// `{id}`: the patient ID pseudonym (only in the name template).
    Id,
}

/// A pseudonym template such as `VEIL-{hex:12}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub text: String,
    pub parts: Vec<TemplatePart>,
}

impl Template {
    /// Parses a template; `allow_id` permits `{id}`.
    pub fn parse(text: &str, allow_id: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(start) = rest.find('{') {
                if start > 0 {
                    parts.push(TemplatePart::Literal(rest[..start].to_string()));
                }
                let end = rest[start..].find('}').ok_or("unclosed '{' in template")? + start;
                let inner = &rest[start + 1..end];
                let part = match inner.split_once(':') {
                    None if inner == "id" && allow_id => TemplatePart::Id,
                    None if inner == "id" => {
                        return Err("{id} is only allowed in patient_name".into())
                    }
                    Some((kind, n)) => {
                        let n: usize = n.parse().map_err(|_| {
                            format!("'{{{inner}}}': expected a number of characters")
                        })?;
                        if n == 0 || n > 32 {
                            return Err(format!("'{{{inner}}}': length must be 1 to 32"));
                        }
                        match kind {
                            "hex" => TemplatePart::Hex(n),
                            "dec" => TemplatePart::Dec(n),
                            "alnum" => TemplatePart::Alnum(n),
                            _ => return Err(format!("unknown placeholder '{{{inner}}}' (use hex:N, dec:N, alnum:N or id)")),
                        }
                    }
                    None => {
                        return Err(format!(
                            "unknown placeholder '{{{inner}}}' (use hex:N, dec:N, alnum:N or id)"
                        ))
                    }
                };
                parts.push(part);
                rest = &rest[end + 1..];
            } else {
                parts.push(TemplatePart::Literal(rest.to_string()));
                rest = "";
            }
        }
        for p in &parts {
            if let TemplatePart::Literal(l) = p {
                if let Some(c) = l
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                {
                    return Err(format!(
                        "character {c:?} is not allowed (letters, digits, '-', '_' and '.' keep pseudonyms valid in every VR and path)"
                    ));
                }
            }
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// Bits of keyed randomness in the template.
    pub fn entropy_bits(&self) -> f64 {
        self.parts
            .iter()
            .map(|p| match p {
                TemplatePart::Hex(n) => *n as f64 * 4.0,
                TemplatePart::Dec(n) => *n as f64 * 10f64.log2(),
                TemplatePart::Alnum(n) => *n as f64 * 36f64.log2(),
                _ => 0.0,
            })
            .sum()
    }

    /// Longest output length.
    pub fn max_len(&self, id_len: usize) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                TemplatePart::Literal(l) => l.len(),
                TemplatePart::Hex(n) | TemplatePart::Dec(n) | TemplatePart::Alnum(n) => *n,
                TemplatePart::Id => id_len,
            })
            .sum()
    }
}

/// What a per-attribute override targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideTarget {
    /// A standard (or any public) attribute.
    Tag(u32),
    /// A private attribute: odd group, private creator, low byte of the element.
    Private {
        group: u16,
        creator: String,
        element_low: u8,
    },
}

/// A per-attribute override of the table's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub target: OverrideTarget,
    pub action: Action,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it came from (a path, or `built-in default`).
    pub origin: String,
    pub options: BTreeSet<ProfileOption>,
    pub patient_id_template: Template,
    pub patient_name_template: Template,
    /// Per-patient date offsets are drawn from this inclusive range of days.
    pub date_shift_days: (i64, i64),
    pub overrides: Vec<Override>,
    pub generalize: Option<GeneralizeSpec>,
    /// Whole-slide OVERVIEW images go through the pixel stage instead of being held back
    /// (`[slides] release_overviews = true`; LABEL images are always held back).
    pub release_slide_overviews: bool,
    /// The pixel stage's settings (`[pixels]`).
    pub pixels: PixelSettings,
    /// Terms a site adds to the free-text allowlist (`[free_text] allow`), as written.
    pub free_text_allow: Vec<String>,
    /// The defacing stage's settings (`[faces]`).
    pub faces: FaceSettings,
    /// SHA-256 of the effective rules (see `with_effective_digest`), written into every output's
    /// De-identification Method and into reports and ledgers.
    pub digest: String,
}

/// The options applied when no policy is given: what AI teams need.
pub const DEFAULT_OPTIONS: [ProfileOption; 3] = [
    ProfileOption::RetainLongitudinalModifiedDates,
    ProfileOption::RetainPatientCharacteristics,
    ProfileOption::CleanDescriptors,
];

const DEFAULT_PATIENT_ID: &str = "VEIL-{hex:12}";
const DEFAULT_PATIENT_NAME: &str = "{id}";
const DEFAULT_SHIFT: (i64, i64) = (-3650, -365);
/// Pseudonyms below this many keyed bits collide too often in a large archive (birthday bound:
/// 40 bits gives ~0.5 % chance of any collision among 100,000 patients).
const MIN_PSEUDONYM_BITS: f64 = 40.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    profile: Option<RawProfile>,
    pseudonyms: Option<RawPseudonyms>,
    dates: Option<RawDates>,
    #[serde(rename = "override", default)]
    overrides: Vec<Spanned<RawOverride>>,
    generalize: Option<GeneralizeSpec>,
    slides: Option<RawSlides>,
    pixels: Option<PixelSettings>,
    free_text: Option<RawFreeText>,
    faces: Option<FaceSettings>,
}

/// Settings of the defacing stage (`[faces]`, docs/faces.md); a field left out keeps the
/// default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaceSettings {
    /// Remove the face from head CT and MR series (default true). Off: head series are
    /// released with their faces, and every run report warns so.
    pub deface: Option<bool>,
    /// Distance kept between what is removed and the brain as Veil finds it, in mm (default
    /// 10, 5–40).
    pub clearance_mm: Option<f64>,
    /// Remove the ears too (default true).
    pub ears: Option<bool>,
    /// Hold back photographs and video of the body surface (visible-light photographic,
    /// endoscopic and video classes), which nothing yet proves free of faces (default: the
    /// value of `deface`).
    pub hold_photographs: Option<bool>,
}

impl FaceSettings {
    /// Is defacing on?
    pub fn deface(&self) -> bool {
        self.deface.unwrap_or(true)
    }
    /// Clearance from the brain in mm.
    pub fn clearance_mm(&self) -> f64 {
        self.clearance_mm.unwrap_or(10.0)
    }
    /// Are the ears removed too?
    pub fn ears(&self) -> bool {
        self.ears.unwrap_or(true)
    }
    /// Are photographic and video classes held back?
    pub fn hold_photographs(&self) -> bool {
        self.hold_photographs.unwrap_or_else(|| self.deface())
    }

    fn out_of_range(&self) -> Option<(&'static str, &'static str)> {
        (!self.clearance_mm.is_none_or(|c| (5.0..=40.0).contains(&c)))
            .then_some(("clearance_mm", "5 to 40 mm"))
    }
}

/// `[free_text]`: terms the site's descriptions use that the built-in vocabulary lacks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreeText {
    #[serde(default)]
    allow: Vec<String>,
}

/// Settings of the pixel stage a policy may change (`[pixels]`); a field left out keeps the
/// stage's default (docs/pixels.md gives them and what they trade).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PixelSettings {
    /// OCR confidence (0–100) a word needs to be removed on its own (default 60).
    pub min_confidence: Option<f32>,
    /// Extra pixels around each removed word, plus a quarter of its height (default 4, ≤ 64).
    pub margin: Option<u32>,
    /// Screen every image nobody flagged for burned-in text (default true; the option
    /// `clean_pixel_data` needs it on).
    pub screen: Option<bool>,
    /// Frames of one multi-frame instance that go to OCR at most (default 6, 1–1000).
    pub max_ocr_frames: Option<u32>,
    /// OCR upscale factor, 0 = automatic (default 0, ≤ 4).
    pub ocr_scale: Option<u32>,
    /// Closer looks at unread text-like blocks per OCR'd frame (default 16, ≤ 256).
    pub max_second_looks: Option<u32>,
    /// Closer looks at pixel text lines per OCR'd frame (default 24, ≤ 256).
    pub max_line_looks: Option<u32>,
    /// Word boxes taller than this many pixels are not annotation text (default 64, 16–512).
    pub max_text_height: Option<u32>,
}

impl PixelSettings {
    /// The first setting out of its range, as (field, what is allowed).
    fn out_of_range(&self) -> Option<(&'static str, &'static str)> {
        let bad = |ok: bool, field, allowed| (!ok).then_some((field, allowed));
        bad(
            self.min_confidence
                .is_none_or(|c| (0.0..=100.0).contains(&c)),
            "min_confidence",
            "a confidence from 0 to 100",
        )
        .or_else(|| {
            bad(
                self.margin.is_none_or(|m| m <= 64),
                "margin",
                "0 to 64 pixels",
            )
        })
        .or_else(|| {
            bad(
                self.max_ocr_frames.is_none_or(|f| (1..=1000).contains(&f)),
                "max_ocr_frames",
                "1 to 1000 frames",
            )
        })
        .or_else(|| {
            bad(
                self.ocr_scale.is_none_or(|k| k <= 4),
                "ocr_scale",
                "0 (automatic) to 4",
            )
        })
        .or_else(|| {
            bad(
                self.max_second_looks.is_none_or(|n| n <= 256),
                "max_second_looks",
                "0 to 256 looks",
            )
        })
        .or_else(|| {
            bad(
                self.max_line_looks.is_none_or(|n| n <= 256),
                "max_line_looks",
                "0 to 256 looks",
            )
        })
        .or_else(|| {
            bad(
                self.max_text_height.is_none_or(|h| (16..=512).contains(&h)),
                "max_text_height",
                "16 to 512 pixels",
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlides {
    /// Release whole-slide OVERVIEW images after the pixel stage (LABEL images never).
    release_overviews: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    options: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPseudonyms {
    patient_id: Option<Spanned<String>>,
    patient_name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDates {
    shift_min_days: Option<Spanned<i64>>,
    shift_max_days: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    keyword: Option<Spanned<String>>,
    tag: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    creator: Option<Spanned<String>>,
    element: Option<Spanned<String>>,
    action: Spanned<String>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// The field a TOML error is about: for an unknown key, its dotted path (`dates.foo`, or `foo`
/// at the top level) from the table header above its line; otherwise `policy`.
fn syntax_field(text: &str, line: Option<usize>, message: &str) -> String {
    let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return "policy".into();
    };
    let table = line.and_then(|l| {
        text.lines()
            .take(l.saturating_sub(1))
            .filter_map(|t| {
                let t = t.trim();
                t.starts_with('[')
                    .then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
            })
            .last()
    });
    match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    }
}

/// Parses `(gggg,eeee)`, `gggg,eeee` or `ggggeeee`.
pub fn parse_tag(text: &str) -> Option<u32> {
    let t: String = text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .chars()
        .filter(|c| *c != ',' && !c.is_whitespace())
        .collect();
    if t.len() != 8 {
        return None;
    }
    u32::from_str_radix(&t, 16).ok()
}

/// Looks a keyword up in the standard data dictionary.
pub fn tag_for_keyword(keyword: &str) -> Option<u32> {
    StandardDataDictionary.by_name(keyword).map(|e| {
        let t = e.tag();
        ((t.group() as u32) << 16) | t.element() as u32
    })
}

/// Problems found in a policy, each with its line and column.
struct Issues<'t> {
    text: &'t str,
    list: Vec<PolicyIssue>,
}

impl Issues<'_> {
    fn add(&mut self, span: std::ops::Range<usize>, field: String, message: String) {
        let (l, c) = line_col(self.text, span.start);
        self.list.push(PolicyIssue {
            line: Some(l),
            column: Some(c),
            field,
            message,
        });
    }
}

/// The policy's TOML, or the syntax error with its line, column and field.
fn parse_raw(text: &str, origin: &str) -> Result<RawPolicy, PolicyError> {
    let invalid = |issues| PolicyError::Invalid {
        origin: origin.to_string(),
        issues,
    };
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_col(text, s.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        let message = e.message().trim().to_string();
        invalid(vec![PolicyIssue {
            line,
            column,
            field: syntax_field(text, line, &message),
            message,
        }])
    })
}

impl Policy {
    /// The built-in default: Basic Profile + Retain Longitudinal Modified Dates + Retain Patient
    /// Characteristics + Clean Descriptors.
    pub fn default_policy() -> Policy {
        Policy::from_toml_str("", "built-in default").expect("the empty policy is valid")
    }

    /// Loads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            origin: path.display().to_string(),
            source,
        })?;
        Policy::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates policy text; every problem found is reported, not just the first.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let raw = parse_raw(text, origin)?;
        let mut issues = Issues {
            text,
            list: Vec::new(),
        };
        let options = Self::options_of(&raw, &mut issues);
        let (pid, pname) = Self::templates_of(&raw, &mut issues);
        let shift = Self::dates_of(&raw, &mut issues);
        let overrides = Self::overrides_of(&raw, &mut issues);
        Self::check_sections(&raw, text, &mut issues);
        if !issues.list.is_empty() {
            // In the order a person reads the file.
            let mut list = issues.list;
            list.sort_by_key(|i| (i.line, i.column));
            return Err(PolicyError::Invalid {
                origin: origin.to_string(),
                issues: list,
            });
        }
        Ok(Policy {
            origin: origin.to_string(),
            options,
            patient_id_template: pid.expect("checked"),
            patient_name_template: pname.expect("checked"),
            date_shift_days: shift,
            overrides,
            generalize: raw.generalize,
            release_slide_overviews: raw
                .slides
                .as_ref()
                .and_then(|s| s.release_overviews)
                .unwrap_or(false),
            pixels: raw.pixels.clone().unwrap_or_default(),
            faces: raw.faces.clone().unwrap_or_default(),
            free_text_allow: raw
                .free_text
                .as_ref()
                .map(|f| f.allow.clone())
                .unwrap_or_default(),
            digest: String::new(),
        }
        .with_effective_digest())
    }

    /// `[profile] options`: the options chosen (the default set when none are given).
    fn options_of(raw: &RawPolicy, issues: &mut Issues) -> BTreeSet<ProfileOption> {
        let mut options = BTreeSet::new();
        match raw.profile.as_ref().and_then(|p| p.options.as_ref()) {
            None => options.extend(DEFAULT_OPTIONS),
            Some(list) => {
                for (i, name) in list.iter().enumerate() {
                    match ProfileOption::from_name(name.get_ref()) {
                        Some(o) => {
                            options.insert(o);
                        }
                        None => issues.add(
                            name.span(),
                            format!("profile.options[{i}]"),
                            format!(
                                "unknown option {:?}; known options: {}",
                                name.get_ref(),
                                ProfileOption::ALL
                                    .iter()
                                    .map(|o| o.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ),
                    }
                }
            }
        }
        if options.contains(&ProfileOption::RetainLongitudinalFullDates)
            && options.contains(&ProfileOption::RetainLongitudinalModifiedDates)
        {
            let span = raw
                .profile
                .as_ref()
                .and_then(|p| p.options.as_ref())
                .and_then(|l| l.first())
                .map(|s| s.span())
                .unwrap_or(0..0);
            issues.add(
                span,
                "profile.options".into(),
                "retain_longitudinal_full_dates and retain_longitudinal_modified_dates exclude each other; choose one".into(),
            );
        }

        options
    }

    /// `[pseudonyms]`: the patient ID and name templates, checked for entropy and length.
    fn templates_of(raw: &RawPolicy, issues: &mut Issues) -> (Option<Template>, Option<Template>) {
        let mut template =
            |field: &str, value: Option<&Spanned<String>>, default: &str, allow_id: bool| {
                let (text_value, span) = match value {
                    Some(v) => (v.get_ref().as_str(), v.span()),
                    None => (default, 0..0),
                };
                match Template::parse(text_value, allow_id) {
                    Ok(t) => Some(t),
                    Err(m) => {
                        issues.add(span, field.to_string(), m);
                        None
                    }
                }
            };
        let pid = template(
            "pseudonyms.patient_id",
            raw.pseudonyms.as_ref().and_then(|p| p.patient_id.as_ref()),
            DEFAULT_PATIENT_ID,
            false,
        );
        let pname = template(
            "pseudonyms.patient_name",
            raw.pseudonyms
                .as_ref()
                .and_then(|p| p.patient_name.as_ref()),
            DEFAULT_PATIENT_NAME,
            true,
        );
        if let Some(t) = &pid {
            let span = raw
                .pseudonyms
                .as_ref()
                .and_then(|p| p.patient_id.as_ref())
                .map(|s| s.span())
                .unwrap_or(0..0);
            if t.entropy_bits() < MIN_PSEUDONYM_BITS {
                issues.add(
                    span.clone(),
                    "pseudonyms.patient_id".into(),
                    format!(
                        "has {:.0} bits of keyed randomness; at least {MIN_PSEUDONYM_BITS:.0} are needed to keep pseudonyms of different patients apart (e.g. {{hex:12}})",
                        t.entropy_bits()
                    ),
                );
            }
            if t.max_len(0) > 64 {
                issues.add(
                    span,
                    "pseudonyms.patient_id".into(),
                    "longer than 64 characters (LO)".into(),
                );
            }
        }
        if let (Some(n), Some(i)) = (&pname, &pid) {
            if n.max_len(i.max_len(0)) > 64 {
                let span = raw
                    .pseudonyms
                    .as_ref()
                    .and_then(|p| p.patient_name.as_ref())
                    .map(|s| s.span())
                    .unwrap_or(0..0);
                issues.add(
                    span,
                    "pseudonyms.patient_name".into(),
                    "longer than 64 characters (PN component)".into(),
                );
            }
        }

        (pid, pname)
    }

    /// `[dates]`: the range per-patient date offsets are drawn from.
    fn dates_of(raw: &RawPolicy, issues: &mut Issues) -> (i64, i64) {
        let dates = raw.dates.as_ref();
        let min = dates.and_then(|d| d.shift_min_days.as_ref());
        let max = dates.and_then(|d| d.shift_max_days.as_ref());
        let shift = (
            min.map(|v| *v.get_ref()).unwrap_or(DEFAULT_SHIFT.0),
            max.map(|v| *v.get_ref()).unwrap_or(DEFAULT_SHIFT.1),
        );
        let shift_span = min.or(max).map(|s| s.span()).unwrap_or(0..0);
        if shift.0 > shift.1 {
            issues.add(
                shift_span.clone(),
                "dates.shift_min_days".into(),
                format!(
                    "is greater than dates.shift_max_days ({} > {})",
                    shift.0, shift.1
                ),
            );
        } else if shift.0 <= 0 && shift.1 >= 0 {
            issues.add(
                shift_span.clone(),
                "dates".into(),
                "the shift range includes 0, which would leave some patients' real dates in place; use a range that excludes 0 (e.g. -3650 to -365)".into(),
            );
        }
        if shift.0.abs() > 36_500 || shift.1.abs() > 36_500 {
            issues.add(
                shift_span,
                "dates".into(),
                "shifts beyond 100 years are not supported".into(),
            );
        }

        shift
    }

    /// `[[override]]`: per-attribute actions, by keyword, tag, or private creator + element.
    fn overrides_of(raw: &RawPolicy, issues: &mut Issues) -> Vec<Override> {
        let mut overrides = Vec::new();
        for (i, o) in raw.overrides.iter().enumerate() {
            let span = o.span();
            let o = o.get_ref();
            let field = |name: &str| format!("override[{i}].{name}");
            let action = match Action::parse(o.action.get_ref()) {
                Some(a) => Some(a),
                None => {
                    issues.add(
                        o.action.span(),
                        field("action"),
                        format!(
                            "unknown action {:?} (use D, Z, X, K, C, U or a compound such as X/Z)",
                            o.action.get_ref()
                        ),
                    );
                    None
                }
            };
            let given = [o.keyword.is_some(), o.tag.is_some(), o.creator.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                issues.add(
                    span.clone(),
                    format!("override[{i}]"),
                    "give exactly one of keyword, tag, or creator (+ group and element)".into(),
                );
                continue;
            }
            let target = if let Some(k) = &o.keyword {
                match tag_for_keyword(k.get_ref()) {
                    Some(t) => Some(OverrideTarget::Tag(t)),
                    None => {
                        issues.add(
                            k.span(),
                            field("keyword"),
                            format!(
                                "{:?} is not a keyword of the DICOM data dictionary",
                                k.get_ref()
                            ),
                        );
                        None
                    }
                }
            } else if let Some(t) = &o.tag {
                match parse_tag(t.get_ref()) {
                    Some(tag) if (tag >> 16) & 1 == 1 && (tag & 0xFFFF) > 0xFF => {
                        issues.add(t.span(), field("tag"), "private attributes are matched by creator, group and element, not by raw tag (the block number differs between files)".into());
                        None
                    }
                    Some(tag) => Some(OverrideTarget::Tag(tag)),
                    None => {
                        issues.add(
                            t.span(),
                            field("tag"),
                            format!("{:?} is not a tag like \"(0008,1030)\"", t.get_ref()),
                        );
                        None
                    }
                }
            } else {
                let creator = o.creator.as_ref().expect("counted above");
                let group = o
                    .group
                    .as_ref()
                    .and_then(|g| u16::from_str_radix(g.get_ref().trim(), 16).ok());
                let element = o.element.as_ref().and_then(|e| {
                    let e = e.get_ref().trim();
                    let e = e
                        .strip_prefix("xx")
                        .or_else(|| e.strip_prefix("XX"))
                        .unwrap_or(e);
                    u8::from_str_radix(e, 16).ok()
                });
                match (group, element) {
                    (Some(g), Some(e)) if g & 1 == 1 => Some(OverrideTarget::Private {
                        group: g,
                        creator: creator.get_ref().trim().to_string(),
                        element_low: e,
                    }),
                    (Some(_), Some(_)) => {
                        issues.add(
                            o.group.as_ref().unwrap().span(),
                            field("group"),
                            "a private group is odd".into(),
                        );
                        None
                    }
                    _ => {
                        issues.add(creator.span(), format!("override[{i}]"), "a private override needs group = \"gggg\" (odd, hex) and element = \"xxEE\" (the low byte, hex)".into());
                        None
                    }
                }
            };
            if let (Some(target), Some(action)) = (target, action) {
                overrides.push(Override { target, action });
            }
        }

        overrides
    }

    /// `[pixels]` and `[generalize]`: settings checked as a whole.
    fn check_sections(raw: &RawPolicy, text: &str, issues: &mut Issues) {
        if let Some((field, allowed)) = raw.pixels.as_ref().and_then(PixelSettings::out_of_range) {
            let at = text.find(field).unwrap_or(0);
            issues.add(
                at..at,
                format!("pixels.{field}"),
                format!("expected {allowed}"),
            );
        }
        let claims_clean_pixels = raw
            .profile
            .as_ref()
            .and_then(|p| p.options.as_ref())
            .is_some_and(|o| o.iter().any(|s| s.get_ref() == "clean_pixel_data"));
        if claims_clean_pixels && raw.pixels.as_ref().and_then(|p| p.screen) == Some(false) {
            let at = text.find("screen").unwrap_or(0);
            issues.add(
                at..at,
                "pixels.screen".into(),
                "the option clean_pixel_data promises every image was looked at: leave screen on or drop the option".into(),
            );
        }
        if let Some((field, allowed)) = raw.faces.as_ref().and_then(FaceSettings::out_of_range) {
            let at = text.find(field).unwrap_or(0);
            issues.add(
                at..at,
                format!("faces.{field}"),
                format!("expected {allowed}"),
            );
        }
        if let Some(spec) = &raw.generalize {
            // A fragment that does not resolve would make every file suppressed: say so now.
            if let Err(m) = spec.resolve() {
                let at = text.find("[generalize").unwrap_or(0);
                issues.add(at..at, "generalize".into(), m);
            }
        }
    }

    /// Sets [`Policy::digest`] to the SHA-256 of the effective rules in a canonical form: the
    /// options, pseudonym templates, date range, overrides and generalisation as resolved, and
    /// the standard's tables they are applied with. Two policy files that mean the same give
    /// the same hash; the built-in default gets one of its own (not the hash of empty text).
    fn with_effective_digest(mut self) -> Policy {
        let mut h = Sha256::new();
        let mut line = |s: String| {
            h.update(s.as_bytes());
            h.update(b"\n");
        };
        line("veil effective policy v1".into());
        line(format!(
            "table e.1-1 {}",
            hex::encode(Sha256::digest(crate::table::TABLE_E1_1.as_bytes()))
        ));
        line(format!(
            "safe private {}",
            hex::encode(Sha256::digest(crate::table::SAFE_PRIVATE.as_bytes()))
        ));
        line(format!(
            "veil additions {}",
            hex::encode(Sha256::digest(crate::table::VEIL_ADDITIONS.as_bytes()))
        ));
        line(format!("standard tables {}", crate::standard::digest()));
        for o in &self.options {
            line(format!("option {}", o.name()));
        }
        line(format!("patient_id {}", self.patient_id_template.text));
        line(format!("patient_name {}", self.patient_name_template.text));
        line(format!(
            "dates {} {}",
            self.date_shift_days.0, self.date_shift_days.1
        ));
        for o in &self.overrides {
            let target = match &o.target {
                OverrideTarget::Tag(t) => format!("{t:08X}"),
                OverrideTarget::Private {
                    group,
                    creator,
                    element_low,
                } => format!("{group:04X} {creator:?} {element_low:02X}"),
            };
            line(format!("override {target} {}", o.action.code()));
        }
        if self.release_slide_overviews {
            line("slides release_overviews".into());
        }
        if self.pixels != PixelSettings::default() {
            line(format!(
                "pixels {}",
                serde_json::to_string(&self.pixels).expect("JSON of plain data")
            ));
        }
        if self.faces != FaceSettings::default() {
            line(format!(
                "faces {}",
                serde_json::to_string(&self.faces).expect("JSON of plain data")
            ));
        }
        for t in &self.free_text_allow {
            line(format!("free_text allow {t:?}"));
        }
        if let Some(g) = &self.generalize {
            line(format!(
                "generalize {}",
                serde_json::to_string(g).expect("JSON of plain data")
            ));
        }
        self.digest = hex::encode(h.finalize());
        self
    }

    /// Is this option on?
    pub fn has(&self, option: ProfileOption) -> bool {
        self.options.contains(&option)
    }

    /// The enabled options as Table E.1-1 column names (for the independent verifier).
    pub fn enabled_option_columns(&self) -> Vec<&'static str> {
        self.options
            .iter()
            .filter_map(|o| o.table_column())
            .collect()
    }

    /// Standard tags an override keeps (K or C), for the verifier.
    pub fn kept_tags(&self) -> Vec<dicom_core::Tag> {
        self.overrides
            .iter()
            .filter(|o| o.action.retains())
            .filter_map(|o| match o.target {
                OverrideTarget::Tag(t) => Some(dicom_core::Tag((t >> 16) as u16, t as u16)),
                _ => None,
            })
            .collect()
    }

    /// Private attributes an override keeps, for the verifier.
    pub fn kept_private(&self) -> Vec<(u16, String, u8)> {
        self.overrides
            .iter()
            .filter(|o| o.action.retains())
            .filter_map(|o| match &o.target {
                OverrideTarget::Private {
                    group,
                    creator,
                    element_low,
                } => Some((*group, creator.clone(), *element_low)),
                _ => None,
            })
            .collect()
    }

    /// Are dates shifted (Retain Longitudinal Temporal Information with Modified Dates)?
    pub fn shifts_dates(&self) -> bool {
        self.has(ProfileOption::RetainLongitudinalModifiedDates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_has_the_ai_options() {
        let p = Policy::default_policy();
        assert_eq!(p.options.len(), 3);
        assert!(p.shifts_dates());
        assert!(p.has(ProfileOption::CleanDescriptors));
        assert!(p.has(ProfileOption::RetainPatientCharacteristics));
    }

    #[test]
    fn errors_name_line_and_field() {
        let text = "[profile]\noptions = [\"clean_descriptors\", \"retain_everything\"]\n\n[[override]]\nkeyword = \"StudyDescriptio\"\naction = \"K\"\n\n[[override]]\ntag = \"(0008,1030)\"\naction = \"Q\"\n";
        let err = Policy::from_toml_str(text, "t.toml").unwrap_err();
        let PolicyError::Invalid { issues, .. } = err else {
            panic!()
        };
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert_eq!(issues[0].field, "profile.options[1]");
        assert_eq!(issues[0].line, Some(2));
        assert_eq!(issues[1].field, "override[0].keyword");
        assert_eq!(issues[1].line, Some(5));
        assert_eq!(issues[2].field, "override[1].action");
        assert_eq!(issues[2].line, Some(10));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = Policy::from_toml_str("[profile\noptions = 1", "t.toml").unwrap_err();
        let PolicyError::Invalid { issues, .. } = err else {
            panic!()
        };
        assert_eq!(issues[0].line, Some(1));
    }

    #[test]
    fn pixel_settings_are_checked_and_change_the_hash() {
        let ok = Policy::from_toml_str("[pixels]\nmin_confidence = 80\nmax_ocr_frames = 2\n", "t")
            .unwrap();
        assert_eq!(ok.pixels.min_confidence, Some(80.0));
        assert_ne!(ok.digest, Policy::default_policy().digest);
        let err = Policy::from_toml_str("[pixels]\nmax_ocr_frames = 0\n", "t").unwrap_err();
        let PolicyError::Invalid { issues, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(issues[0].field, "pixels.max_ocr_frames");
        assert_eq!(issues[0].line, Some(2));
        let off = Policy::from_toml_str("[pixels]\nscreen = false\n", "t").unwrap();
        assert_eq!(off.pixels.screen, Some(false));
        let err = Policy::from_toml_str(
            "[profile]\noptions = [\"clean_pixel_data\"]\n[pixels]\nscreen = false\n",
            "t",
        )
        .unwrap_err();
        let PolicyError::Invalid { issues, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(issues[0].field, "pixels.screen");
        let err =
            Policy::from_toml_str("[pixels]\nmargin = 4\nmax_text_height = 8\n", "t").unwrap_err();
        let PolicyError::Invalid { issues, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(issues[0].field, "pixels.max_text_height");
        assert_eq!(issues[0].line, Some(3));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(Policy::from_toml_str("[dates]\nshift_days = 3\n", "t").is_err());
    }

    #[test]
    fn weak_pseudonyms_and_zero_shift_are_refused() {
        assert!(Policy::from_toml_str("[pseudonyms]\npatient_id = \"P{dec:4}\"\n", "t").is_err());
        assert!(
            Policy::from_toml_str("[dates]\nshift_min_days = -10\nshift_max_days = 10\n", "t")
                .is_err()
        );
        assert!(Policy::from_toml_str("[pseudonyms]\npatient_id = \"P {hex:12}\"\n", "t").is_err());
    }

    #[test]
    fn private_overrides_use_creator() {
        let p = Policy::from_toml_str(
            "[[override]]\ncreator = \"ACME 1.0\"\ngroup = \"0009\"\nelement = \"xx10\"\naction = \"K\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            p.kept_private(),
            vec![(0x0009, "ACME 1.0".to_string(), 0x10)]
        );
        assert!(Policy::from_toml_str(
            "[[override]]\ntag = \"(0009,1010)\"\naction = \"K\"\n",
            "t"
        )
        .is_err());
    }

    #[test]
    fn bad_generalize_fragment_fails_at_load() {
        let e = Policy::from_toml_str(
            "[generalize]\nquasi = [\"PatientAge\"]\n[generalize.field.StudyDate]\nlevel = \"year\"\n",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("generalize"), "{e}");
    }

    #[test]
    fn full_and_modified_dates_conflict() {
        let e = Policy::from_toml_str(
            "[profile]\noptions = [\"retain_longitudinal_full_dates\", \"retain_longitudinal_modified_dates\"]\n",
            "t",
        );
        assert!(e.is_err());
    }
}
