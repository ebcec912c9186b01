//! The verifier's own reading of PS3.15 Table E.1-1 and of the Safe Private Attributes table.
//!
//! Both CSV files are embedded from the repository's `reference/` folder and parsed here by a
//! small parser of our own; nothing is shared with the engine's rule resolution (`veil-profile`),
//! so a mistake there is not repeated here.

use std::collections::{BTreeSet, HashMap, HashSet};

const TABLE_E1_1: &str = include_str!("../../../reference/ps3.15-table-e.1-1.csv");
/// Veil's additions to Table E.1-1 (issuer sequences), read here by the same parser.
const VEIL_ADDITIONS: &str = include_str!("../../../reference/veil-additions.csv");
const UID_REGISTRY: &str = include_str!("../../../reference/uid-registry.csv");
const CS_TERMS: &str = include_str!("../../../reference/cs-terms.csv");
const SAFE_PRIVATE: &str = include_str!("../../../reference/safe_private_attributes.csv");

/// A PS3.15 action code (E.1.1), compounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Act {
    /// D: replace with a dummy value.
    D,
    /// Z: zero length or dummy.
    Z,
    /// X: remove.
    X,
    /// K: keep.
    K,
    /// C: clean (keep, with identifying content removed or dates modified).
    C,
    /// U: replace the UID.
    U,
    /// X/Z, X/D, Z/D, X/Z/D: remove, empty or dummy.
    XZ,
    XD,
    ZD,
    XZD,
    /// X/Z/U*: remove, empty or replace UIDs.
    XZU,
}

impl Act {
    /// Parses a table cell or an override action (`X/Z/D`, `XZD`, `x`...).
    pub fn parse(code: &str) -> Option<Act> {
        let c: String = code
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Some(match c.as_str() {
            "D" => Act::D,
            "Z" => Act::Z,
            "X" => Act::X,
            "K" => Act::K,
            "C" => Act::C,
            "U" => Act::U,
            "XZ" => Act::XZ,
            "XD" => Act::XD,
            "ZD" => Act::ZD,
            "XZD" => Act::XZD,
            "XZU" => Act::XZU,
            _ => return None,
        })
    }

    /// The code as the table writes it.
    pub fn code(self) -> &'static str {
        match self {
            Act::D => "D",
            Act::Z => "Z",
            Act::X => "X",
            Act::K => "K",
            Act::C => "C",
            Act::U => "U",
            Act::XZ => "X/Z",
            Act::XD => "X/D",
            Act::ZD => "Z/D",
            Act::XZD => "X/Z/D",
            Act::XZU => "X/Z/U*",
        }
    }

    /// Does the attribute keep its original content (K), or a cleaned version of it (C)?
    pub fn retains(self) -> bool {
        matches!(self, Act::K | Act::C)
    }

    /// How much of the original survives, for choosing between options that disagree.
    fn retention(self) -> u8 {
        match self {
            Act::K => 2,
            Act::C => 1,
            _ => 0,
        }
    }
}

/// Which tags a table row covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Exact(u32),
    /// `(50XX,XXXX)`-style rows: tag & mask == value.
    Masked {
        value: u32,
        mask: u32,
    },
    /// `(GGGG,EEEE) WHERE GGGG IS ODD`.
    OddGroup,
}

fn parse_pattern(text: &str) -> Option<Pattern> {
    if text.contains("ODD") {
        return Some(Pattern::OddGroup);
    }
    let hex: String = text
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == 'X' || *c == 'x')
        .collect();
    if hex.len() != 8 {
        return None;
    }
    let (mut value, mut mask) = (0u32, 0u32);
    for c in hex.chars() {
        value <<= 4;
        mask <<= 4;
        if let Some(d) = c.to_digit(16) {
            value |= d;
            mask |= 0xF;
        }
    }
    Some(if mask == u32::MAX {
        Pattern::Exact(value)
    } else {
        Pattern::Masked { value, mask }
    })
}

/// One row: the basic action and the action each option column gives (if any).
#[derive(Debug, Clone)]
struct Row {
    pattern: Pattern,
    keyword: String,
    basic: Act,
    options: Vec<(String, Act)>,
}

/// Keyword parts of attributes that hold descriptions and vocabulary rather than an identifier,
/// beyond those the table itself marks as descriptors (a C in any option column).
const DESCRIPTIVE_WORDS: &[&str] = &[
    "Description",
    "Comments",
    "Text",
    "Keywords",
    "Title",
    "Subject",
    "Arrangements",
    "Needs",
    "Medication",
    "EthnicGroup",
    "Religious",
    "Rank",
    "BranchOfService",
    "Country",
    "Region",
    "Timezone",
    "Make",
    "Model",
    "Datum",
    "Arbitrary",
    "Diagnos",
    "Reason",
    "History",
    "Alerts",
    "Allergies",
    "Occupation",
    "Label",
];

/// Splits CSV text into records (RFC 4180 quoting, quoted fields may hold newlines: the table
/// has one, in Icon Image Sequence's name).
pub(crate) fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            ('\r', false) => {}
            ('\n', false) => {
                fields.push(std::mem::take(&mut cur));
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push(std::mem::take(&mut fields));
                }
                fields.clear();
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() || !fields.is_empty() {
        fields.push(cur);
        records.push(fields);
    }
    records
}

fn rows() -> Vec<Row> {
    let mut rows = table_rows(TABLE_E1_1);
    rows.extend(table_rows(VEIL_ADDITIONS));
    rows
}

/// The registered UIDs (PS3.6 Annex A) and, per CS attribute, every term the standard lists
/// for it (any value position): the verifier's own reading of the generated tables.
pub struct Registry {
    uids: HashSet<String>,
    terms: HashMap<u32, HashSet<String>>,
}

impl Registry {
    fn parse() -> Registry {
        let uids = csv_records(UID_REGISTRY)
            .into_iter()
            .skip(1)
            .filter_map(|f| f.into_iter().next())
            .collect();
        let mut terms: HashMap<u32, HashSet<String>> = HashMap::new();
        for f in csv_records(CS_TERMS).into_iter().skip(1) {
            if let (Some(tag), Some(term)) = (
                f.first().and_then(|t| u32::from_str_radix(t, 16).ok()),
                f.last(),
            ) {
                terms.entry(tag).or_default().insert(term.clone());
            }
        }
        Registry { uids, terms }
    }

    /// The registry, parsed once.
    pub fn get() -> &'static Registry {
        static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
        R.get_or_init(Registry::parse)
    }

    /// Registered in PS3.6 (or a context group, `1.2.840.10008.6.1.<n>`, n < 10000, which the
    /// registry the table comes from does not list)?
    pub fn registered(&self, uid: &str) -> bool {
        let uid = uid.trim_end_matches(['\0', ' ']);
        self.uids.contains(uid)
            || uid
                .strip_prefix("1.2.840.10008.6.1.")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n > 0 && n < 10_000)
    }

    /// Is `value` a term the standard lists for this CS attribute?
    pub fn is_term(&self, tag: u32, value: &str) -> bool {
        self.terms.get(&tag).is_some_and(|t| t.contains(value))
    }
}

fn table_rows(text: &str) -> Vec<Row> {
    let mut records = csv_records(text).into_iter();
    let header = records.next().expect("table header");
    let col = |name: &str| header.iter().position(|h| h == name);
    let tag_col = col("tag").expect("tag column");
    let keyword_col = col("keyword").expect("keyword column");
    let basic_col = col("basic_profile").expect("basic_profile column");
    records
        .filter_map(|f| {
            let pattern = parse_pattern(f.get(tag_col)?)?;
            let basic = Act::parse(f.get(basic_col)?)?;
            let options = header
                .iter()
                .enumerate()
                .skip(basic_col + 1)
                .filter_map(|(i, name)| Some((name.clone(), Act::parse(f.get(i)?)?)))
                .collect();
            Some(Row {
                pattern,
                keyword: f.get(keyword_col).cloned().unwrap_or_default(),
                basic,
                options,
            })
        })
        .collect()
}

/// The option columns Table E.1-1 has (everything after `basic_profile`).
pub fn option_columns() -> Vec<String> {
    let header = csv_records(TABLE_E1_1)
        .into_iter()
        .next()
        .unwrap_or_default();
    let basic = header
        .iter()
        .position(|h| h == "basic_profile")
        .unwrap_or(0);
    header[basic + 1..].to_vec()
}

/// What a policy asks for, as the verifier understands it: option column names and overrides.
#[derive(Debug, Clone, Default)]
pub struct PolicySpec {
    /// Enabled Table E.1-1 option columns (`retain_uids`, `clean_descriptors`...).
    pub options: BTreeSet<String>,
    /// Per-tag overrides (`(group << 16) | element`, action).
    pub tag_overrides: Vec<(u32, Act)>,
    /// Private overrides: (group, private creator, low byte of the element), action.
    pub private_overrides: Vec<(u16, String, u8, Act)>,
    /// Terms the site's policy allows in free text (`[free_text] allow`): not names here.
    pub free_text_allow: Vec<String>,
}

impl PolicySpec {
    /// The built-in default of `veil deid` (Basic Profile + Retain Longitudinal Modified Dates +
    /// Retain Patient Characteristics + Clean Descriptors), as option names.
    pub fn veil_default() -> PolicySpec {
        PolicySpec {
            options: [
                "retain_longitudinal_modified_dates",
                "retain_patient_characteristics",
                "clean_descriptors",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            ..PolicySpec::default()
        }
    }

    pub fn has(&self, option: &str) -> bool {
        self.options.contains(option)
    }
}

/// The effective action per attribute under one policy, resolved by the verifier's own rule:
/// an option column that gives an action replaces the basic action, and when several enabled
/// options give different actions the one that retains more is assumed (K over C over the
/// removing ones). The verifier then only demands what every reading of the options demands,
/// so it never flags an output for a choice the standard leaves open.
#[derive(Debug, Clone)]
pub struct Rules {
    exact: HashMap<u32, Act>,
    masked: Vec<(u32, u32, Act)>,
    private: Act,
    safe_private: HashSet<(u16, String, u8)>,
    /// Attributes whose values are descriptions or vocabulary, not identifiers.
    descriptive: HashSet<u32>,
    keep_safe_private: bool,
    private_overrides: HashMap<(u16, String, u8), Act>,
}

impl Rules {
    pub fn new(spec: &PolicySpec) -> Rules {
        let mut exact = HashMap::new();
        let mut masked = Vec::new();
        let mut private = Act::X;
        let mut descriptive = HashSet::new();
        for row in rows() {
            if let Pattern::Exact(t) = row.pattern {
                let cleaned_by_an_option = row.options.iter().any(|(_, a)| *a == Act::C);
                if cleaned_by_an_option || DESCRIPTIVE_WORDS.iter().any(|w| row.keyword.contains(w))
                {
                    descriptive.insert(t);
                }
            }
            let mut act = row.basic;
            let mut from_option: Option<Act> = None;
            for (name, a) in &row.options {
                if spec.options.contains(name) {
                    from_option = Some(match from_option {
                        Some(prev) if prev.retention() >= a.retention() => prev,
                        _ => *a,
                    });
                }
            }
            if let Some(a) = from_option {
                act = a;
            }
            match row.pattern {
                Pattern::Exact(t) => {
                    exact.insert(t, act);
                }
                Pattern::Masked { value, mask } => masked.push((value, mask, act)),
                Pattern::OddGroup => private = act,
            }
        }
        for (t, a) in &spec.tag_overrides {
            exact.insert(*t, *a);
        }
        let safe_private = csv_records(SAFE_PRIVATE)
            .into_iter()
            .skip(1)
            .filter_map(|f| {
                let group = u16::from_str_radix(f.first()?.trim(), 16).ok()?;
                let el = f.get(1)?.trim();
                let low = u8::from_str_radix(el.get(2..4)?, 16).ok()?;
                Some((group, normalize_creator(f.get(2)?), low))
            })
            .collect();
        Rules {
            exact,
            descriptive,
            masked,
            keep_safe_private: private.retains(),
            private,
            safe_private,
            private_overrides: spec
                .private_overrides
                .iter()
                .map(|(g, c, e, a)| ((*g, normalize_creator(c), *e), *a))
                .collect(),
        }
    }

    /// Does the attribute hold a description or vocabulary ("ABDOMEN", "CT HEAD W/O") rather than
    /// an identifier? Such values, even removed ones, are not identifiers to search for whole:
    /// identifiers inside them are found through the names, IDs and dates they contain.
    pub fn descriptive(&self, tag: u32) -> bool {
        self.descriptive.contains(&tag)
    }

    /// The action for a public attribute, `None` when the table does not list it.
    pub fn public(&self, tag: u32) -> Option<Act> {
        self.exact.get(&tag).copied().or_else(|| {
            self.masked
                .iter()
                .find(|(v, m, _)| tag & m == *v)
                .map(|(_, _, a)| *a)
        })
    }

    /// May this private data element stay? (group, creator, low byte of the element.)
    pub fn private_allowed(&self, group: u16, creator: Option<&str>, low: u8) -> bool {
        let Some(creator) = creator else {
            return false;
        };
        let key = (group, normalize_creator(creator), low);
        if let Some(a) = self.private_overrides.get(&key) {
            return a.retains();
        }
        self.keep_safe_private && self.safe_private.contains(&key)
    }

    /// The action of the private row (X unless Retain Safe Private).
    pub fn private_action(&self) -> Act {
        self.private
    }

    /// Number of safe private entries read (for tests and docs).
    pub fn safe_private_len(&self) -> usize {
        self.safe_private.len()
    }
}

fn normalize_creator(c: &str) -> String {
    c.trim_matches(|c: char| c == ' ' || c == '\0')
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_whole_table_and_applies_options() {
        assert_eq!(table_rows(TABLE_E1_1).len(), 621);
        assert_eq!(rows().len(), 621 + table_rows(VEIL_ADDITIONS).len());
        let basic = Rules::new(&PolicySpec::default());
        // Veil's additions: issuer sequences follow Retain Institution Identity.
        assert_eq!(basic.public(0x0008_0051), Some(Act::X));
        assert_eq!(basic.public(0x0010_0010), Some(Act::Z)); // PatientName
        assert_eq!(basic.public(0x0008_1030), Some(Act::X)); // StudyDescription
        assert_eq!(basic.public(0x6002_3000), Some(Act::X)); // Overlay Data, any 60xx group
        assert_eq!(basic.public(0x0028_0010), None); // Rows: not listed
        let default = Rules::new(&PolicySpec::veil_default());
        assert_eq!(default.public(0x0008_1030), Some(Act::C));
        assert_eq!(default.public(0x0008_0020), Some(Act::C)); // StudyDate shifted
        assert_eq!(default.public(0x0010_0040), Some(Act::K)); // PatientSex
        assert_eq!(basic.safe_private_len(), 130);
        assert!(!basic.private_allowed(0x7053, Some("Philips PET Private Group"), 0x00));
        let mut spec = PolicySpec::default();
        spec.options.insert("retain_safe_private".into());
        let safe = Rules::new(&spec);
        assert!(safe.private_allowed(0x7053, Some("philips pet private group "), 0x00));
        assert!(!safe.private_allowed(0x7053, None, 0x00));
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_records("\"(0008,0020)\",a,\"b,\"\"c\"\"\",,\nx,\"y\nz\"\n"),
            [
                vec!["(0008,0020)", "a", "b,\"c\"", "", ""],
                vec!["x", "y\nz"]
            ]
        );
    }
}
