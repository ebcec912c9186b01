//! The independent leak verifier.
//!
//! This crate owns deciding whether a de-identified DICOM file is clean: its own reading of
//! PS3.15 Table E.1-1 and of the Safe Private Attributes table (embedded from `reference/`, see
//! [`table`]), its own byte walker ([`walk`]), the collection of identifying values from source
//! files ([`Known`]), and the checks: `removed_attribute`, `private`, `marker`, `uid`, `date`,
//! `known_identifier`, `pattern` and `free_text` ([`CATEGORIES`], [`freetext`]).
//!
//! Independence from the engine is the point: nothing here depends on `veil-deid`,
//! `veil-pipeline` or `veil-profile`, and no value is read through `dicom-object`, so a bug in
//! the engine's rules or in the DICOM library is not repeated here. Findings name the file,
//! path, tag, category and rule, and show a masked form of the value, never the value.
//!
//! Use: [`Verifier::new`] for a policy, [`Verifier::prepare`] (one source, as in `veil deid`)
//! or [`Verifier::sources`] (many, as in `veil verify --against`), then [`Verifier::check`] on
//! the output bytes.

pub mod freetext;
pub mod ocr;
pub mod pattern;
pub mod table;
pub mod walk;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Serialize;

pub use table::{Act, PolicySpec, Rules};
use walk::{Elem, Parsed};

/// A value without its trailing padding (spaces, NULs).
fn trimmed(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | 0))
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// Every finding category, in report order.
pub const CATEGORIES: [&str; 8] = [
    "removed_attribute",
    "private",
    "marker",
    "uid",
    "date",
    "known_identifier",
    "pattern",
    "free_text",
];

/// Veil's Implementation Class UID (file meta). Written here as a literal rather than imported
/// from the engine, so the verifier links nothing of it; a test in the `veil` crate keeps the
/// two equal.
pub const VEIL_IMPLEMENTATION_CLASS_UID: &str = "2.25.178130449622113585301931962153932416393";

/// Values shorter than this are too common to mean anything ("M", "01", "CT").
pub const MIN_TOKEN_CHARS: usize = 3;
/// Values made only of digits need this many to be distinctive (a study ID "12" or a series
/// number "1001" occurs in every archive).
pub const MIN_DIGIT_TOKEN: usize = 5;
/// Tokens at least this long are searched in every byte, pixel data included: a random match of
/// 6 case-insensitive letters with word boundaries is about once per 10^13 bytes. Shorter ones
/// are searched everywhere except pixel data, where 3–5 letter matches occur by chance.
pub const BINARY_SAFE_CHARS: usize = 6;

/// Words tools write as dummies or that people put where a name or ID is unknown; a source
/// holding one of them is not identified by it, and an output holding it is not a leak.
const GENERIC: &[&str] = &[
    "anonymized",
    "anonymised",
    "anonymous",
    "anon",
    "removed",
    "unknown",
    "none",
    "null",
    "n/a",
    "deleted",
    "redacted",
    "xxx",
    "xxxx",
    "test",
    "patient",
    "dummy",
    "yes",
    "no",
];

/// Titles and suffixes in person names: not names.
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "dr", "prof", "jr", "sr", "ii", "iii", "iv", "md", "phd", "rn",
];

/// Attributes of coded entries: terminology, not free text.
const CODE_TAGS: &[u32] = &[
    0x0040_A040, // ValueType (SR)
    0x0040_A010, // RelationshipType (SR)
    0x0040_A050, // ContinuityOfContent (SR)
    0x0008_0100, // CodeValue
    0x0008_0102, // CodingSchemeDesignator
    0x0008_0103, // CodingSchemeVersion
    0x0008_0119, // LongCodeValue
    0x0008_0120, // URNCodeValue
    0x0008_010F, // ContextIdentifier
    0x0008_0105, // MappingResource
    0x0008_0117, // ContextUID
];

/// CID 7050 codes of the profile and of each option column of Table E.1-1.
const CID7050: &[(&str, &str)] = &[
    ("basic_profile", "113100"),
    ("retain_safe_private", "113111"),
    ("retain_uids", "113110"),
    ("retain_device_identity", "113109"),
    ("retain_institution_identity", "113112"),
    ("retain_patient_characteristics", "113108"),
    ("retain_longitudinal_full_dates", "113106"),
    ("retain_longitudinal_modified_dates", "113107"),
    ("clean_descriptors", "113105"),
    ("clean_structured_content", "113104"),
    ("clean_graphics", "113103"),
];
/// Clean Pixel Data and Clean Recognizable Visual Features: claimed by the stages that do them,
/// not by the header policy.
const STAGE_CODES: [&str; 2] = ["113101", "113102"];

const PATIENT_IDENTITY_REMOVED: u32 = 0x0012_0062;
const DEIDENTIFICATION_METHOD: u32 = 0x0012_0063;
const DEIDENTIFICATION_METHOD_CODE_SEQUENCE: u32 = 0x0012_0064;
const IMAGE_TYPE: u32 = 0x0008_0008;
const CODE_VALUE: u32 = 0x0008_0100;
const PATIENT_ID: u32 = 0x0010_0020;

/// One problem in one output. `masked` shows the first character of the offending value and
/// asterisks (at most 8 characters in all), never the value.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub path: String,
    /// `(gggg,eeee)`, or empty for bytes outside any element (preamble, item headers).
    pub tag: String,
    pub category: String,
    pub rule: String,
    pub masked: String,
}

/// The masked form of a value: its first character, then one asterisk per further character,
/// capped at 8 characters.
pub fn mask(value: &str) -> String {
    let mut chars = value.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => {
            let rest = chars.count().min(7);
            format!("{first}{}", "*".repeat(rest))
        }
    }
}

/// The result of checking one output.
#[derive(Debug, Default)]
pub struct Checked {
    pub findings: Vec<Finding>,
    /// Days between the paired source's dates and this output's (when paired and shifted).
    pub date_shift_days: Option<i64>,
    /// The output's Patient ID (kept in memory only, to compare date shifts per patient).
    pub patient_id: Option<String>,
}

/// What a policy requires of every output, compiled once.
pub struct Verifier {
    rules: Rules,
    spec: PolicySpec,
    /// Compare the code sequence with the options even for files not written by Veil.
    policy_explicit: bool,
    scan_pixel_data: bool,
    /// The policy's free-text terms, lower case.
    free_text_allow: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Name,
    Value,
    /// A date the policy removes: a leak anywhere.
    Date,
    /// A date the policy shifts: a leak outside date values (those are compared path by path).
    ShiftedDate,
    Uid,
}

impl TokenKind {
    fn rule(self) -> &'static str {
        match self {
            TokenKind::Name => "known:person_name_part",
            TokenKind::Value => "known:removed_value",
            TokenKind::Date => "known:removed_date",
            TokenKind::ShiftedDate => "known:original_date",
            TokenKind::Uid => "known:original_uid",
        }
    }
}

#[derive(Debug, Default)]
struct SourceDates {
    /// (path, value) of every DA/DT value that the policy shifts.
    by_path: HashMap<String, String>,
}

/// Identifying values gathered from source files, ready to search outputs for.
pub struct Known {
    /// Token, kind, and for short tokens the sources it came from (see [`Known::from_source`]).
    tokens: Vec<(String, TokenKind, Vec<u32>)>,
    /// Token index of each byte pattern of the matcher.
    owner: Vec<usize>,
    matcher: Matcher,
    /// Values per tag of attributes the policy replaces (upper case), for "kept" checks.
    tag_values: HashMap<u32, HashSet<String>>,
    /// Values per tag of text attributes the policy keeps (upper case): a source value found
    /// inside one of them is there by policy (a manufacturer that shares a word with a name).
    kept_text: HashMap<u32, HashSet<String>>,
    sources: Vec<SourceDates>,
    by_fingerprint: HashMap<u64, Vec<u32>>,
    hasher: std::collections::hash_map::RandomState,
    /// One source for one output (the pipeline): always paired.
    single: bool,
    /// Identifier digit strings (see [`identifier_digits`]) and the sources they came from.
    digits: HashMap<String, Vec<u32>>,
}

/// How the tokens are searched.
enum Matcher {
    None,
    /// Many sources, many outputs, whole files: an automaton built once (DFA).
    Automaton(AhoCorasick),
    /// One source, one output's header (a few KB): a SIMD substring search per token over a
    /// lower-cased copy costs less than building any automaton.
    Each(Vec<memchr::memmem::Finder<'static>>),
}

/// Collects [`Known`] values from many sources.
pub struct SourceSet<'v> {
    verifier: &'v Verifier,
    tokens: HashMap<String, (TokenKind, Vec<u32>)>,
    tag_values: HashMap<u32, HashSet<String>>,
    kept_text: HashMap<u32, HashSet<String>>,
    sources: Vec<SourceDates>,
    by_fingerprint: HashMap<u64, Vec<u32>>,
    hasher: std::collections::hash_map::RandomState,
    files: usize,
    digits: HashMap<String, Vec<u32>>,
    /// Compute pairing fingerprints (not needed when there is one source per output).
    pairing: bool,
}

/// The file meta's Source, Sending and Receiving AE Titles (0002,0016-0018) name the sites that
/// sent and stored the file. The table covers only the data set, so they count as removed here:
/// a copy in an output is a leak.
fn is_site_ae_title(tag: u32) -> bool {
    matches!(tag, 0x0002_0016..=0x0002_0018)
}

fn is_text_vr(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"LO" | b"SH" | b"ST" | b"LT" | b"UT" | b"UC" | b"AE" | b"PN"
    )
}

fn is_removing(a: Act) -> bool {
    !a.retains()
}

/// Is this a meaningful identifier token (see [`MIN_TOKEN_CHARS`], [`MIN_DIGIT_TOKEN`],
/// the generic words)?
fn meaningful(t: &str) -> bool {
    let n = t.chars().count();
    if n < MIN_TOKEN_CHARS {
        return false;
    }
    if t.chars().all(|c| c.is_ascii_digit()) && n < MIN_DIGIT_TOKEN {
        return false;
    }
    if !t.chars().any(|c| c.is_alphanumeric()) {
        return false;
    }
    // "000000", "XXXX", "1111": fillers, not identifiers.
    if low_entropy(t) {
        return false;
    }
    let lower = t.to_lowercase();
    !GENERIC.contains(&lower.as_str())
}

/// The common written forms of a YYYYMMDD date.
fn date_forms(d: &str) -> Vec<String> {
    let d: String = d.chars().take(8).collect();
    if d.len() != 8 || !d.bytes().all(|c| c.is_ascii_digit()) || days_from_civil(&d).is_none() {
        return Vec::new();
    }
    let (y, m, dd) = (&d[0..4], &d[4..6], &d[6..8]);
    vec![
        d.clone(),
        format!("{y}-{m}-{dd}"),
        format!("{y}/{m}/{dd}"),
        format!("{y}.{m}.{dd}"),
        format!("{dd}/{m}/{y}"),
        format!("{m}/{dd}/{y}"),
        format!("{dd}.{m}.{y}"),
    ]
}

/// Days since 1970-01-01 of a `YYYYMMDD` date (proleptic Gregorian).
fn days_from_civil(d: &str) -> Option<i64> {
    let d = d.get(..8)?;
    if !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok()?;
    Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days())
}

/// Does a UI attribute name a class, a syntax or a coding scheme (public registry values)?
fn names_a_class(tag: u32, value: &str) -> bool {
    if table::Registry::get().registered(value) || (tag >> 16) == 0x0002 && tag != 0x0002_0003 {
        return true;
    }
    if value.starts_with("1.2.840.10008.") {
        // Under the DICOM root but not registered: made up, and it can carry anything.
        return false;
    }
    walk::keyword(tag).is_some_and(|k| {
        k.ends_with("ClassUID")
            || k.ends_with("SyntaxUID")
            || k.contains("CodingScheme")
            || k == "ContextGroupExtensionCreatorUID"
            || k == "PrivateInformationCreatorUID"
    })
}

/// Identifier digit strings in a value: each run of at least [`MIN_DIGIT_TOKEN`] digits, and
/// the value's digits together when only separators split them ("555-0142-77"), leading zeros
/// dropped (a number loses them).
fn identifier_digits(value: &str) -> Vec<String> {
    let mut out: Vec<String> = value
        .split(|c: char| !c.is_ascii_digit())
        .map(|r| r.trim_start_matches('0').to_string())
        .collect();
    if value
        .chars()
        .all(|c| c.is_ascii_digit() || " -./()+".contains(c))
    {
        out.push(
            value
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .trim_start_matches('0')
                .to_string(),
        );
    }
    out.retain(|d| d.len() >= MIN_DIGIT_TOKEN);
    out.sort();
    out.dedup();
    out
}

/// The whole numbers of a numeric element as digit strings: IS and DS text, and binary US, SS,
/// UL, SL, UV, SV, FL, FD values in the data set's byte order.
fn element_numbers(p: &Parsed, bytes: &[u8], e: &Elem) -> Vec<String> {
    let whole = |t: &str| -> Option<String> {
        let t = t.trim().trim_start_matches(['+', '-']);
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        (!int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b == b'0'))
        .then(|| int.trim_start_matches('0').to_string())
    };
    if matches!(&e.vr, b"IS" | b"DS") {
        return p.values(bytes, e).iter().filter_map(|v| whole(v)).collect();
    }
    let raw = p.bytes(bytes, e);
    let be = p.transfer_syntax.trim_end_matches('\0') == "1.2.840.10008.1.2.2";
    let size = match &e.vr {
        b"US" | b"SS" => 2,
        b"UL" | b"SL" | b"FL" => 4,
        b"UV" | b"SV" | b"FD" => 8,
        _ => return Vec::new(),
    };
    raw.chunks_exact(size)
        .filter_map(|c| {
            let mut b = [0u8; 8];
            if be {
                b[8 - size..].copy_from_slice(c);
                b.reverse();
            } else {
                b[..size].copy_from_slice(c);
            }
            let u = u64::from_le_bytes(b);
            let n: Option<u64> = match &e.vr {
                b"US" | b"UL" | b"UV" => Some(u),
                b"SS" => Some((u as u16 as i16).unsigned_abs() as u64),
                b"SL" => Some((u as u32 as i32).unsigned_abs() as u64),
                b"SV" => Some((u as i64).unsigned_abs()),
                b"FL" => {
                    let f = f32::from_bits(u as u32) as f64;
                    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e18).then(|| f.abs() as u64)
                }
                _ => {
                    let f = f64::from_bits(u);
                    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e18).then(|| f.abs() as u64)
                }
            };
            n.map(|n| n.to_string())
        })
        .collect()
}

/// Above this many candidate sources, an output is not compared date by date (a coincidence
/// among hundreds of same-geometry instances would be noise, not evidence).
const MAX_DATE_CANDIDATES: usize = 64;

/// Tags whose values survive de-identification unchanged and together tell instances apart;
/// with the pixel data they pair an output with its source.
const PAIRING_TAGS: [u32; 8] = [
    0x0020_0011, // SeriesNumber
    0x0020_0012, // AcquisitionNumber
    0x0020_0013, // InstanceNumber
    0x0020_0032, // ImagePositionPatient
    0x0020_0037, // ImageOrientationPatient
    0x0020_1041, // SliceLocation
    0x0028_0010, // Rows
    0x0028_0011, // Columns
];

/// How closely an output is paired with sources: pixel data, position and the scalar values
/// the policy keeps; pixel data and position; position only (a pixel stage may have changed
/// the pixels, another tool the kept values).
const PAIRING_LEVELS: [(bool, bool); 3] = [(true, true), (true, false), (false, false)];

/// A hash of the pairing attributes at one level.
fn fingerprint(
    v: &Verifier,
    p: &Parsed,
    bytes: &[u8],
    hasher: &std::collections::hash_map::RandomState,
    (with_pixels, with_kept): (bool, bool),
) -> Option<u64> {
    let mut h = hasher.build_hasher();
    h.write_u8(with_pixels as u8 | (with_kept as u8) << 1);
    let mut any = false;
    for e in p.elems.iter().filter(|e| e.parent.is_none()) {
        let kept_scalar = with_kept
            && v.act(e.tag) == Some(Act::K)
            && matches!(
                &e.vr,
                b"CS" | b"IS" | b"DS" | b"US" | b"SS" | b"UL" | b"SL" | b"FL" | b"FD"
            );
        if (with_pixels && e.tag == walk::PIXEL_DATA)
            || PAIRING_TAGS.contains(&e.tag)
            || kept_scalar
        {
            h.write_u32(e.tag);
            let v = p.bytes(bytes, e);
            if is_text_vr(&e.vr) || matches!(&e.vr, b"IS" | b"DS" | b"CS") {
                h.write(p.text(bytes, e).trim().as_bytes());
            } else {
                h.write(v);
            }
            any = true;
        }
    }
    any.then(|| h.finish())
}

impl Verifier {
    /// A verifier for a policy. `policy_explicit`: the user named the policy, so the
    /// de-identification method codes of every output must match its options (otherwise only
    /// outputs written by Veil are held to the default policy's codes).
    pub fn new(spec: PolicySpec, policy_explicit: bool) -> Verifier {
        let free_text_allow = spec
            .free_text_allow
            .iter()
            .flat_map(|t| {
                t.split(|c: char| !c.is_alphanumeric())
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            })
            .collect();
        Verifier {
            rules: Rules::new(&spec),
            spec,
            policy_explicit,
            scan_pixel_data: true,
            free_text_allow,
        }
    }

    /// Search pixel data for known identifiers too (default: yes).
    pub fn scan_pixel_data(mut self, yes: bool) -> Verifier {
        self.scan_pixel_data = yes;
        self
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn keeps_uids(&self) -> bool {
        self.spec.has("retain_uids")
    }

    fn full_dates(&self) -> bool {
        self.spec.has("retain_longitudinal_full_dates")
    }

    /// The action for a public tag, `None` when the table does not list it.
    fn act(&self, tag: u32) -> Option<Act> {
        self.rules.public(tag)
    }

    /// Starts collecting identifying values from many sources.
    pub fn sources(&self) -> SourceSet<'_> {
        SourceSet {
            verifier: self,
            tokens: HashMap::new(),
            tag_values: HashMap::new(),
            kept_text: HashMap::new(),
            sources: Vec::new(),
            by_fingerprint: HashMap::new(),
            hasher: Default::default(),
            files: 0,
            digits: HashMap::new(),
            pairing: true,
        }
    }

    /// The identifying values of the one source an output was made from.
    pub fn prepare(&self, source: &[u8]) -> Known {
        let mut s = self.sources();
        s.pairing = false;
        s.add(source);
        let mut k = s.build(true);
        k.single = true;
        k
    }

    /// Checks one output file. With `known`, also searches for the sources' values.
    pub fn check(&self, output: &[u8], known: Option<&Known>) -> Checked {
        let p = walk::parse(output);
        // Which sources the output may come from: found once (it hashes the pixel data), used
        // by the date, byte and number checks.
        let candidates = known.and_then(|k| k.candidates(self, &p, output));
        let mut c = Check {
            v: self,
            p: &p,
            bytes: output,
            known,
            candidates,
            charset: freetext::charset_of(&p, output),
            flagged: vec![false; p.elems.len()],
            skipped: vec![false; p.elems.len()],
            findings: Vec::new(),
        };
        c.run()
    }
}

impl SourceSet<'_> {
    /// Adds one source file (Part 10 or a bare data set).
    pub fn add(&mut self, bytes: &[u8]) {
        let v = self.verifier;
        let p = walk::parse(bytes);
        self.files += 1;
        let mut dates = SourceDates::default();
        for (i, e) in p.elems.iter().enumerate() {
            let (g, el) = ((e.tag >> 16) as u16, e.tag as u16);
            if g & 1 == 1 || el == 0 || g == 0xFFFE || e.is_sequence {
                continue;
            }
            let act = v.act(e.tag);
            if matches!(act, None | Some(Act::K))
                && (is_text_vr(&e.vr) || &e.vr == b"CS")
                && !is_site_ae_title(e.tag)
            {
                let t = p.text(bytes, e);
                if !t.is_empty() && &e.vr != b"PN" {
                    self.kept_text
                        .entry(e.tag)
                        .or_default()
                        .insert(t.to_uppercase());
                }
            }
            if &e.vr == b"DA" || (is_text_vr(&e.vr) && act.is_some_and(is_removing)) {
                // A number or code that holds an MRN's, a phone number's or an original date's
                // digits is that identifier.
                let source = self.sources.len() as u32;
                for d in identifier_digits(&p.text(bytes, e)) {
                    let from = self.digits.entry(d).or_default();
                    if from.last() != Some(&source) {
                        from.push(source);
                    }
                }
            }
            if act == Some(Act::K) {
                continue;
            }
            let vr = &e.vr;
            match vr {
                b"PN" => {
                    for val in p.values(bytes, e) {
                        if act.is_some_and(is_removing) && meaningful(&val) {
                            self.tag_values
                                .entry(e.tag)
                                .or_default()
                                .insert(val.to_uppercase());
                        }
                        for part in val
                            .split(|c: char| c == '^' || c == '=' || c == ',' || c.is_whitespace())
                        {
                            let part = part.trim_matches(|c: char| !c.is_alphanumeric());
                            if meaningful(part) && !TITLES.contains(&part.to_lowercase().as_str()) {
                                self.token(part, TokenKind::Name);
                            }
                        }
                    }
                }
                b"UI" => {
                    if v.keeps_uids() {
                        continue;
                    }
                    for val in p.values(bytes, e) {
                        if val.len() >= 8 && !names_a_class(e.tag, &val) {
                            self.token(&val, TokenKind::Uid);
                        }
                    }
                }
                b"DA" | b"DT" => {
                    if v.full_dates() {
                        continue;
                    }
                    let shifted = matches!(act, None | Some(Act::C));
                    let path = p.path(i);
                    for val in p.values(bytes, e) {
                        let kind = if shifted {
                            TokenKind::ShiftedDate
                        } else {
                            TokenKind::Date
                        };
                        for f in date_forms(&val) {
                            self.token(&f, kind);
                        }
                    }
                    let t = p.text(bytes, e).trim().to_string();
                    if !t.is_empty() {
                        dates.by_path.insert(path, t);
                    }
                }
                vr if is_text_vr(vr)
                    && (act.is_some_and(is_removing) || is_site_ae_title(e.tag))
                    && !v.rules.descriptive(e.tag) =>
                {
                    for val in p.values(bytes, e) {
                        if meaningful(&val) {
                            self.token(&val, TokenKind::Value);
                            self.tag_values
                                .entry(e.tag)
                                .or_default()
                                .insert(val.to_uppercase());
                        }
                    }
                }
                _ => {}
            }
        }
        let index = self.sources.len() as u32;
        self.sources.push(dates);
        for level in PAIRING_LEVELS.into_iter().filter(|_| self.pairing) {
            if let Some(fp) = fingerprint(v, &p, bytes, &self.hasher, level) {
                self.by_fingerprint.entry(fp).or_default().push(index);
            }
        }
    }

    fn token(&mut self, t: &str, kind: TokenKind) {
        // A value seen as a name and as an ID keeps the first kind; the rule name is a hint.
        let source = self.sources.len() as u32;
        let short = t.chars().count() < BINARY_SAFE_CHARS;
        let entry = self
            .tokens
            .entry(t.to_string())
            .or_insert((kind, Vec::new()));
        if short && entry.1.last() != Some(&source) {
            entry.1.push(source);
        }
    }

    /// Source files added.
    pub fn len(&self) -> usize {
        self.files
    }

    pub fn is_empty(&self) -> bool {
        self.files == 0
    }

    /// Builds the matcher.
    pub fn finish(self) -> Known {
        self.build(false)
    }

    fn build(self, single: bool) -> Known {
        let mut tokens: Vec<(String, TokenKind, Vec<u32>)> = self
            .tokens
            .into_iter()
            .map(|(t, (k, s))| (t, k, s))
            .collect();
        tokens.sort_by(|a, b| a.0.cmp(&b.0));
        // Byte patterns: the token as UTF-8, and as Latin-1 when it has accented letters (the
        // default repertoire of most files; the sources' Latin-1 text was read into chars).
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, (t, _, _)) in tokens.iter().enumerate() {
            // The matcher folds ASCII case only: accented capitals ("RÜDIGER" for "Rüdiger")
            // are searched as upper- and lower-case forms of their own.
            let mut forms = vec![t.clone()];
            if !t.is_ascii() {
                forms.extend([t.to_uppercase(), t.to_lowercase()]);
                forms.sort();
                forms.dedup();
            }
            for f in forms {
                patterns.push(f.as_bytes().to_vec());
                owner.push(i);
                if !f.is_ascii() && f.chars().all(|c| (c as u32) < 0x100) {
                    patterns.push(f.chars().map(|c| c as u8).collect());
                    owner.push(i);
                }
            }
        }
        let matcher = if tokens.is_empty() {
            Matcher::None
        } else if single {
            Matcher::Each(
                patterns
                    .iter()
                    .map(|p| memchr::memmem::Finder::new(&p.to_ascii_lowercase()).into_owned())
                    .collect(),
            )
        } else {
            match AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .match_kind(MatchKind::Standard)
                .build(&patterns)
            {
                Ok(ac) => Matcher::Automaton(ac),
                // Too many tokens for a DFA: the automaton picks a smaller kind.
                Err(_) => Matcher::Automaton(
                    AhoCorasickBuilder::new()
                        .ascii_case_insensitive(true)
                        .build(&patterns)
                        .expect("tokens are plain strings"),
                ),
            }
        };
        Known {
            tokens,
            owner,
            matcher,
            tag_values: self.tag_values,
            kept_text: self.kept_text,
            sources: self.sources,
            by_fingerprint: self.by_fingerprint,
            hasher: self.hasher,
            single: false,
            digits: self.digits,
        }
    }
}

impl Known {
    /// Is a word read in pixels one of the sources' names or removed values (3 letters or more,
    /// any case)? Returns the kind, never the value.
    pub fn word_kind(&self, word: &str) -> Option<&'static str> {
        let w = word.to_uppercase();
        if w.chars().count() < 3 {
            return None;
        }
        self.tokens.iter().find_map(|(t, kind, _)| {
            let named = matches!(kind, TokenKind::Name | TokenKind::Value);
            (named && t.to_uppercase() == w).then_some(match kind {
                TokenKind::Name => "person name",
                _ => "removed value",
            })
        })
    }
    /// Number of distinct identifying values collected.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The sources an output may have been made from (same pixel data and position), when
    /// that can be told.
    fn candidates(&self, v: &Verifier, p: &Parsed, bytes: &[u8]) -> Option<&[u32]> {
        if self.single {
            return Some(&[0]);
        }
        PAIRING_LEVELS.into_iter().find_map(|level| {
            let fp = fingerprint(v, p, bytes, &self.hasher, level)?;
            self.by_fingerprint.get(&fp).map(Vec::as_slice)
        })
    }

    /// The source an output was made from, when it can be told.
    /// The candidate sources' dates, and whether they pair the output unambiguously (one
    /// source, or several that agree on every date).
    fn paired(&self, candidates: &[u32]) -> Option<(Vec<&SourceDates>, bool)> {
        if candidates.len() > MAX_DATE_CANDIDATES {
            return None;
        }
        let all: Vec<&SourceDates> = candidates
            .iter()
            .map(|c| &self.sources[*c as usize])
            .collect();
        let unique = all.iter().all(|s| s.by_path == all[0].by_path);
        Some((all, unique))
    }
}

struct Check<'a> {
    v: &'a Verifier,
    /// The sources the output may have been made from, when that can be told.
    candidates: Option<&'a [u32]>,
    p: &'a Parsed,
    bytes: &'a [u8],
    known: Option<&'a Known>,
    /// The output's character set when its text is neither UTF-8 nor Latin-1 (GB18030, an ISO
    /// 8859 part, ISO 2022 Japanese): free text is decoded with it before it is scanned.
    charset: Option<&'static encoding_rs::Encoding>,
    /// Elements already reported (their subtree is not reported again).
    flagged: Vec<bool>,
    /// Elements the element checks leave alone.
    skipped: Vec<bool>,
    findings: Vec<Finding>,
}

impl Check<'_> {
    fn report(&mut self, index: Option<usize>, category: &str, rule: String, value: &str) {
        let (path, tag) = match index {
            Some(i) => (self.p.path(i), walk::tag_string(self.p.elems[i].tag)),
            None => ("preamble".to_string(), String::new()),
        };
        self.findings.push(Finding {
            path,
            tag,
            category: category.to_string(),
            rule,
            masked: mask(value),
        });
    }

    /// Marks a subtree as done for the element checks, without a finding.
    fn skip_subtree(&mut self, i: usize) {
        let depth = self.p.elems[i].depth;
        for j in i + 1..self.p.elems.len() {
            if self.p.elems[j].depth <= depth {
                break;
            }
            self.skipped[j] = true;
        }
    }

    fn flag(&mut self, i: usize) {
        let depth = self.p.elems[i].depth;
        self.flagged[i] = true;
        for j in i + 1..self.p.elems.len() {
            if self.p.elems[j].depth <= depth {
                break;
            }
            self.flagged[j] = true;
        }
    }

    fn run(&mut self) -> Checked {
        let mut out = Checked::default();
        if let Some(err) = &self.p.error {
            self.findings.push(Finding {
                path: String::new(),
                tag: String::new(),
                category: "marker".into(),
                rule: format!(
                    "unparseable: the file does not walk to its end ({err}); nothing in it can be proven"
                ),
                masked: String::new(),
            });
        }
        self.markers();
        self.slide_label();
        self.attributes();
        self.numbers();
        let dates = self.dates();
        out.date_shift_days = dates;
        self.byte_scan();
        out.patient_id = self
            .p
            .elems
            .iter()
            .find(|e| e.parent.is_none() && e.tag == PATIENT_ID)
            .map(|e| self.p.text(self.bytes, e).into_owned());
        self.findings.sort();
        self.findings.dedup();
        out.findings = std::mem::take(&mut self.findings);
        out
    }

    fn top(&self, tag: u32) -> Option<usize> {
        self.p
            .elems
            .iter()
            .position(|e| e.parent.is_none() && e.tag == tag)
    }

    fn markers(&mut self) {
        match self.top(PATIENT_IDENTITY_REMOVED) {
            Some(i) => {
                let t = self.p.text(self.bytes, &self.p.elems[i]).into_owned();
                if t.trim().to_uppercase() != "YES" {
                    self.report(
                        Some(i),
                        "marker",
                        "marker:patient_identity_removed (0012,0062) must be YES".into(),
                        &t,
                    );
                }
            }
            None => self.missing(
                "marker:patient_identity_removed (0012,0062) is missing",
                0x0012_0062,
            ),
        }
        match self.top(DEIDENTIFICATION_METHOD) {
            Some(i) if !self.p.is_empty_at(self.bytes, i) => {}
            _ => self.missing(
                "marker:deidentification_method (0012,0063) is missing or empty",
                DEIDENTIFICATION_METHOD,
            ),
        }
        let Some(seq) = self.top(DEIDENTIFICATION_METHOD_CODE_SEQUENCE) else {
            self.missing(
                "marker:deidentification_method_code_sequence (0012,0064) is missing",
                DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
            );
            return;
        };
        let codes: BTreeSet<String> = self
            .p
            .elems
            .iter()
            .filter(|e| e.parent == Some(seq as u32) && e.tag == CODE_VALUE)
            .map(|e| self.p.text(self.bytes, e).trim().to_string())
            .collect();
        if codes.is_empty() {
            self.report(
                Some(seq),
                "marker",
                "marker:deidentification_method_code_sequence (0012,0064) has no codes".into(),
                "",
            );
            return;
        }
        if !(self.v.policy_explicit || self.written_by_veil()) {
            return;
        }
        let expected: BTreeSet<&str> = CID7050
            .iter()
            .filter(|(col, _)| *col == "basic_profile" || self.v.spec.has(col))
            .map(|(_, code)| *code)
            .collect();
        for code in &expected {
            if !codes.contains(*code) {
                self.report(
                    Some(seq),
                    "marker",
                    format!("marker:code_missing de-identification method code {code} (DICOM context group CID 7050) required by the policy's options"),
                    "",
                );
            }
        }
        for code in &codes {
            if !expected.contains(code.as_str()) && !STAGE_CODES.contains(&code.as_str()) {
                self.report(
                    Some(seq),
                    "marker",
                    format!("marker:code_unexpected de-identification method code {code} (DICOM context group CID 7050) claims an option the policy does not have"),
                    "",
                );
            }
        }
    }

    /// A slide label photographed (whole-slide LABEL image, or an OVERVIEW image whose pixels
    /// no pixel stage cleaned) carries the patient's name and number.
    fn slide_label(&mut self) {
        let Some(i) = self.top(IMAGE_TYPE) else {
            return;
        };
        let values: Vec<String> = self
            .p
            .values(self.bytes, &self.p.elems[i])
            .iter()
            .map(|v| v.to_uppercase())
            .collect();
        let label = values.iter().any(|v| v == "LABEL");
        let overview = values.get(2).is_some_and(|v| v == "OVERVIEW");
        let cleaned = self
            .p
            .elems
            .iter()
            .any(|e| e.tag == CODE_VALUE && self.p.text(self.bytes, e).trim() == "113101");
        if label || (overview && !cleaned) {
            self.report(
                Some(i),
                "marker",
                "marker:slide_label a photograph of a slide label (Image Type LABEL, or OVERVIEW without Clean Pixel Data) is released; the label carries the patient's name and number".into(),
                "",
            );
        }
    }

    /// Numbers, codes and UIDs that hold a source's identifier digit strings (an MRN stored as
    /// Acquisition Number, a phone number in a code, MRN digits in a made-up UID).
    fn numbers(&mut self) {
        let Some(known) = self.known else {
            return;
        };
        if known.digits.is_empty() {
            return;
        }
        let candidates = self.candidates;
        for i in 0..self.p.elems.len() {
            let e = &self.p.elems[i];
            if self.flagged[i] || e.is_sequence || (e.tag >> 16) & 1 == 1 || e.tag >> 16 == 0x0002 {
                continue;
            }
            let texts: Vec<String> = match &e.vr {
                b"CS" => self.p.values(self.bytes, e),
                b"UI" => self
                    .p
                    .values(self.bytes, e)
                    .into_iter()
                    .filter(|u| !table::Registry::get().registered(u))
                    .collect(),
                _ => element_numbers(self.p, self.bytes, e),
            };
            // A UID's component must *be* the identifier (a derived 2.25 UID is 39 random
            // digits: any 5-digit string turns up in one by chance). A number or code may hold
            // it, when the output is paired with its own source; compared with every source,
            // only an equal number counts (thousands of IDs against thousands of numbers).
            let uid = &e.vr == b"UI";
            let hit = texts.iter().find(|t| {
                t.split(|c: char| !c.is_ascii_digit()).any(|run| {
                    let run = run.trim_start_matches('0');
                    run.len() >= MIN_DIGIT_TOKEN
                        && known.digits.iter().any(|(d, from)| {
                            let ours = candidates
                                .as_ref()
                                .map(|c| from.iter().any(|s| c.contains(s)));
                            match ours {
                                Some(false) => false,
                                Some(true) if !uid => run.contains(d.as_str()),
                                _ => run == d,
                            }
                        })
                })
            });
            if let Some(t) = hit.cloned() {
                let category = if &e.vr == b"UI" {
                    "uid"
                } else {
                    "known_identifier"
                };
                self.report(
                    Some(i),
                    category,
                    "known:digits the value holds the digits of a source's identifier (an ID, a phone number or an original date)".into(),
                    &t,
                );
                self.flag(i);
            }
        }
    }

    fn missing(&mut self, rule: &str, tag: u32) {
        self.findings.push(Finding {
            path: walk::tag_name(tag),
            tag: walk::tag_string(tag),
            category: "marker".into(),
            rule: rule.into(),
            masked: String::new(),
        });
    }

    fn written_by_veil(&self) -> bool {
        self.p.elems.iter().any(|e| {
            e.parent.is_none()
                && ((e.tag == 0x0002_0012
                    && self.p.text(self.bytes, e).trim_end_matches('\0')
                        == VEIL_IMPLEMENTATION_CLASS_UID)
                    || (e.tag == 0x0002_0013 && self.p.text(self.bytes, e).starts_with("VEIL_")))
        })
    }

    /// removed_attribute, private and pattern checks, element by element.
    fn attributes(&mut self) {
        let n = self.p.elems.len();
        for i in 0..n {
            if self.flagged[i] || self.skipped[i] {
                continue;
            }
            let e: &Elem = &self.p.elems[i];
            let (g, el) = ((e.tag >> 16) as u16, e.tag as u16);
            if g == 0xFFFE || g == 0x0002 {
                continue;
            }
            if g & 1 == 1 {
                self.private(i);
                continue;
            }
            if el == 0 {
                continue;
            }
            let act = self.v.act(e.tag);
            if act == Some(Act::X) && !self.p.is_empty_at(self.bytes, i) {
                let shown = if e.is_sequence {
                    String::new()
                } else {
                    self.p.text(self.bytes, e).into_owned()
                };
                self.report(
                    Some(i),
                    "removed_attribute",
                    "removed_attribute:X the policy removes this attribute; it is present with a value"
                        .into(),
                    &shown,
                );
                self.flag(i);
                continue;
            }
            if matches!(act, Some(Act::Z | Act::XZ))
                && e.is_sequence
                && !self.p.is_empty_at(self.bytes, i)
            {
                // Z on a sequence means zero length: items left in it are the source's.
                self.report(
                    Some(i),
                    "removed_attribute",
                    "removed_attribute:Z the policy empties this sequence; it still has items"
                        .into(),
                    "",
                );
                self.flag(i);
                continue;
            }
            if let (Some(a), Some(k)) = (act, self.known) {
                if !a.retains() && a != Act::X && !e.is_sequence && &e.vr != b"UI" {
                    if let Some(vals) = k.tag_values.get(&e.tag) {
                        let kept = self
                            .p
                            .values(self.bytes, e)
                            .into_iter()
                            .find(|v| vals.contains(&v.to_uppercase()));
                        if let Some(v) = kept {
                            self.report(
                                Some(i),
                                "removed_attribute",
                                format!(
                                    "removed_attribute:{} the source value is kept instead of being emptied or replaced by a dummy",
                                    a.code()
                                ),
                                &v,
                            );
                            self.flag(i);
                            continue;
                        }
                    }
                }
            }
            if e.tag == DEIDENTIFICATION_METHOD_CODE_SEQUENCE && e.parent.is_none() {
                // The method's own codes and meanings: checked by the marker rules.
                self.skip_subtree(i);
                continue;
            }
            if is_text_vr(&e.vr) && &e.vr != b"PN" && !CODE_TAGS.contains(&e.tag) {
                self.patterns(i);
            }
        }
    }

    fn private(&mut self, i: usize) {
        let e = &self.p.elems[i];
        let (g, el) = ((e.tag >> 16) as u16, e.tag as u16);
        if (0x10..=0xFF).contains(&el) && g > 0x0007 && g != 0xFFFF {
            // Private creator: not data; a block kept without data elements says nothing.
            return;
        }
        if self.p.is_empty_at(self.bytes, i) {
            return;
        }
        let valid = g > 0x0007 && g != 0xFFFF && el >= 0x1000;
        let allowed = valid
            && self
                .v
                .rules
                .private_allowed(g, self.p.creator(e), (el & 0xFF) as u8);
        if !allowed {
            let rule = if !valid {
                "private:invalid private tag (not a private data element); must be removed"
            } else if self.p.creator(e).is_none() {
                "private:private element without a private creator; must be removed"
            } else {
                "private:private element not on the retained safe list of the policy"
            };
            let shown = if e.is_sequence {
                String::new()
            } else {
                self.p.text(self.bytes, e).into_owned()
            };
            self.report(Some(i), "private", rule.into(), &shown);
            self.flag(i);
        } else if is_text_vr(&e.vr) {
            self.patterns(i);
        }
    }

    fn patterns(&mut self, i: usize) {
        let e = &self.p.elems[i];
        // Pseudonymous IDs are digit strings by design: record-number shapes are expected in
        // ID attributes (a real ID left there is found by the known-identifier search).
        let id_like = walk::keyword(e.tag).is_some_and(|k| {
            k.ends_with("ID")
                || k.ends_with("IDs")
                || k.ends_with("Number")
                || k.ends_with("Identifier")
                || k.ends_with("UID")
        }) || e.tag == DEIDENTIFICATION_METHOD;
        let text = self.p.text(self.bytes, e).into_owned();
        for hit in pattern::scan(&text) {
            if id_like && (hit.rule == "pattern:digit_run" || e.tag == DEIDENTIFICATION_METHOD) {
                continue;
            }
            self.report(
                Some(i),
                "pattern",
                hit.rule.to_string(),
                &text[hit.start..hit.end],
            );
        }
        if !id_like && freetext::is_free_text(&e.vr, walk::keyword(e.tag)) {
            let text = match self.charset {
                Some(enc) => enc
                    .decode_without_bom_handling(trimmed(self.p.bytes(self.bytes, e)))
                    .0
                    .into_owned(),
                None => text,
            };
            for hit in freetext::scan(&text, &self.v.free_text_allow) {
                self.report(
                    Some(i),
                    "free_text",
                    hit.rule.to_string(),
                    &text[hit.start..hit.end],
                );
            }
        }
    }

    /// Date checks against the paired source; returns the shift in days.
    fn dates(&mut self) -> Option<i64> {
        let known = self.known?;
        if self.v.full_dates() {
            return None;
        }
        // With several candidates (same pixels and position: e.g. one patient's repeated
        // studies), a date equal to any candidate's original date at the same path is still
        // unshifted; shift offsets are only measured against an unambiguous source.
        let (srcs, unique) = known.paired(self.candidates?)?;
        let mut deltas: BTreeMap<i64, usize> = BTreeMap::new();
        let mut per_elem = Vec::new();
        for i in 0..self.p.elems.len() {
            let e = &self.p.elems[i];
            if !matches!(&e.vr, b"DA" | b"DT") || self.flagged[i] || e.tag >> 16 & 1 == 1 {
                continue;
            }
            let path = self.p.path(i);
            let origs: Vec<&String> = srcs.iter().filter_map(|s| s.by_path.get(&path)).collect();
            let Some(orig) = origs.first().copied() else {
                continue;
            };
            let now = self.p.text(self.bytes, e).trim().to_string();
            if now.is_empty() {
                continue;
            }
            if origs.iter().any(|o| **o == now) {
                self.report(
                    Some(i),
                    "date",
                    "date:unshifted the date equals the source's date at the same path".into(),
                    &now,
                );
                self.flag(i);
                continue;
            }
            // Only dates the policy shifts measure the shift: one the table replaces (D) holds
            // a dummy such as 19000101, whatever the source had.
            if !unique || !matches!(self.v.act(e.tag), None | Some(Act::C)) {
                continue;
            }
            if let (Some(a), Some(b)) = (days_from_civil(orig), days_from_civil(&now)) {
                *deltas.entry(b - a).or_default() += 1;
                per_elem.push((i, b - a));
            }
        }
        let mode = deltas.iter().max_by_key(|(_, n)| **n).map(|(d, _)| *d)?;
        if deltas.len() > 1 {
            for (i, d) in per_elem {
                if d != mode {
                    self.report(
                        Some(i),
                        "date",
                        "date:inconsistent this date is shifted by a different offset than the instance's other dates".into(),
                        "",
                    );
                }
            }
        }
        Some(mode)
    }

    /// known_identifier and uid: every byte of the file (and of the inflated data set).
    fn byte_scan(&mut self) {
        let Some(known) = self.known else { return };
        if matches!(known.matcher, Matcher::None) {
            return;
        }
        let mut seen: HashSet<(Option<usize>, usize)> = HashSet::new();
        let candidates = self.candidates;
        for buf in [walk::Buf::File, walk::Buf::Inflated] {
            let hay: &[u8] = match buf {
                walk::Buf::File => self.bytes,
                walk::Buf::Inflated => &self.p.inflated,
            };
            if hay.is_empty() {
                continue;
            }
            let leaves = Leaves::new(self.p, buf);
            // Without the pixel scan, only the bytes outside bulk pixel values are searched.
            let mut segments: Vec<std::ops::Range<usize>> = Vec::new();
            if self.v.scan_pixel_data {
                segments.push(0..hay.len());
            } else {
                let mut bulk: Vec<std::ops::Range<usize>> = self
                    .p
                    .elems
                    .iter()
                    .filter(|e| e.buf == buf && is_bulk(e.tag))
                    .map(|e| e.value.clone())
                    .collect();
                bulk.sort_by_key(|r| r.start);
                let mut at = 0;
                for r in bulk {
                    if r.start > at {
                        segments.push(at..r.start);
                    }
                    at = at.max(r.end);
                }
                segments.push(at..hay.len());
            }
            // (token index, start, end) of every occurrence, overlapping ones included.
            let mut hits: Vec<(usize, usize, usize)> = Vec::new();
            for seg in segments {
                match &known.matcher {
                    Matcher::None => {}
                    Matcher::Automaton(m) => hits.extend(
                        m.find_overlapping_iter(aho_corasick::Input::new(hay).range(seg))
                            .map(|h| (h.pattern().as_usize(), h.start(), h.end())),
                    ),
                    Matcher::Each(finders) => {
                        let lower = hay[seg.clone()].to_ascii_lowercase();
                        for (t, f) in finders.iter().enumerate() {
                            let n = f.needle().len();
                            hits.extend(
                                f.find_iter(&lower)
                                    .map(|i| (t, seg.start + i, seg.start + i + n)),
                            );
                        }
                    }
                }
            }
            for (pattern, start, end) in hits {
                let hit = Hit {
                    pattern: known.owner[pattern],
                    start,
                    end,
                };
                let (token, kind, from) = &known.tokens[hit.pattern];
                if !bounded(hay, hit.start, hit.end, *kind) {
                    continue;
                }
                if let Some(c) = candidates {
                    // Short tokens (a 3–5 letter name part such as "new" or "soft") are
                    // ordinary words in other patients' text: an output paired with its source
                    // is searched for its own source's short tokens only.
                    if !from.is_empty() && !from.iter().any(|s| c.contains(s)) {
                        continue;
                    }
                }
                let elem = leaves.at(self.p, hit.start);
                if let Some(i) = elem {
                    if self.flagged[i] {
                        continue;
                    }
                    let e = &self.p.elems[i];
                    if is_bulk(e.tag)
                        && (!self.v.scan_pixel_data
                            || token.chars().count() < BINARY_SAFE_CHARS
                            || low_entropy(token))
                    {
                        continue;
                    }
                    // Codes are no text kept by policy: a word in a code string is judged by
                    // the term check below, never excused by the source holding it too.
                    if matches!(self.v.act(e.tag), None | Some(Act::K))
                        && &e.vr != b"CS"
                        && known.kept_text.get(&e.tag).is_some_and(|vals| {
                            let t = token.to_uppercase();
                            vals.iter().any(|v| v.contains(&t))
                        })
                    {
                        continue;
                    }
                    if CODE_TAGS.contains(&e.tag) {
                        // Terminology ("TEXT", "DCM", "121071"), never a person's data.
                        continue;
                    }
                    if &e.vr == b"CS"
                        && self.p.values(self.bytes, e).iter().any(|v| {
                            v.eq_ignore_ascii_case(token)
                                && table::Registry::get().is_term(e.tag, &v.to_uppercase())
                        })
                    {
                        // A defined term that happens to equal a name ("TEXT", "HEAD").
                        continue;
                    }
                    if *kind == TokenKind::ShiftedDate && matches!(&e.vr, b"DA" | b"DT") {
                        // Compared path by path with the paired source instead.
                        continue;
                    }
                }
                if !seen.insert((elem, hit.pattern)) {
                    continue;
                }
                let category = if *kind == TokenKind::Uid {
                    "uid"
                } else {
                    "known_identifier"
                };
                let shown = String::from_utf8_lossy(&hay[hit.start..hit.end]).into_owned();
                match elem {
                    Some(i) => self.report(Some(i), category, kind.rule().into(), &shown),
                    None => {
                        let path = if buf == walk::Buf::File && hit.start < 128 && self.p.part10 {
                            "preamble".to_string()
                        } else {
                            format!("offset {}", hit.start)
                        };
                        self.findings.push(Finding {
                            path,
                            tag: String::new(),
                            category: category.into(),
                            rule: kind.rule().into(),
                            masked: mask(&shown),
                        });
                    }
                }
            }
        }
    }
}

/// One occurrence of a token in the bytes.
struct Hit {
    pattern: usize,
    start: usize,
    end: usize,
}

/// Fewer than 3 distinct characters (`11111111`, `20000202`): such runs occur by chance in image
/// bytes (a blanked region, a flat background), so they are not searched there.
fn low_entropy(token: &str) -> bool {
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct.len() < 3
}

/// Pixel data (and waveform samples): image bytes, where short tokens match by chance.
fn is_bulk(tag: u32) -> bool {
    tag >> 16 == 0x7FE0 || tag == 0x5400_1010
}

/// Is the match a whole token: not glued to more letters or digits (or, for UIDs and dates,
/// more digits and dots)?
fn bounded(hay: &[u8], start: usize, end: usize, kind: TokenKind) -> bool {
    let joins = |c: u8| match kind {
        TokenKind::Uid | TokenKind::Date | TokenKind::ShiftedDate => {
            c.is_ascii_digit() || c == b'.'
        }
        _ => c.is_ascii_alphanumeric(),
    };
    let before = start.checked_sub(1).map(|i| hay[i]);
    let after = hay.get(end).copied();
    !before.is_some_and(joins) && !after.is_some_and(joins)
}

/// Value ranges of the elements in one buffer, for finding which element holds an offset.
struct Leaves {
    ranges: Vec<(usize, usize, usize)>,
}

impl Leaves {
    fn new(p: &Parsed, buf: walk::Buf) -> Leaves {
        let mut ranges: Vec<(usize, usize, usize)> = p
            .elems
            .iter()
            .enumerate()
            .filter(|(_, e)| e.buf == buf)
            .map(|(i, e)| (e.value.start, e.value.end, i))
            .collect();
        ranges.sort_by_key(|r| (r.0, std::cmp::Reverse(r.1)));
        Leaves { ranges }
    }

    /// The deepest element whose value holds `offset`.
    fn at(&self, p: &Parsed, offset: usize) -> Option<usize> {
        let upto = self.ranges.partition_point(|r| r.0 <= offset);
        let mut best: Option<usize> = None;
        for r in self.ranges[..upto].iter().rev().take(256) {
            if r.0 <= offset && offset < r.1 {
                match best {
                    Some(b) if p.elems[b].depth >= p.elems[r.2].depth => {}
                    _ => best = Some(r.2),
                }
                if !p.elems[r.2].is_sequence {
                    break;
                }
            }
        }
        best
    }
}

/// Flags outputs whose date shift differs from the other outputs of the same patient (by the
/// output's Patient ID). Returns (index into `shifts`, finding) pairs.
pub fn shift_consistency(shifts: &[(Option<String>, Option<i64>)]) -> Vec<(usize, Finding)> {
    let mut by_patient: HashMap<&str, BTreeMap<i64, usize>> = HashMap::new();
    for (pid, d) in shifts {
        if let (Some(pid), Some(d)) = (pid, d) {
            *by_patient.entry(pid).or_default().entry(*d).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (i, (pid, d)) in shifts.iter().enumerate() {
        let (Some(pid), Some(d)) = (pid, d) else {
            continue;
        };
        let counts = &by_patient[pid.as_str()];
        if counts.len() < 2 {
            continue;
        }
        let mode = counts.iter().max_by_key(|(_, n)| **n).map(|(d, _)| *d);
        if Some(*d) != mode {
            out.push((
                i,
                Finding {
                    path: "PatientID".into(),
                    tag: "(0010,0020)".into(),
                    category: "date".into(),
                    rule: "date:inconsistent_per_patient this instance's dates are shifted by a different offset than other instances of the same patient".into(),
                    masked: mask(pid),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
