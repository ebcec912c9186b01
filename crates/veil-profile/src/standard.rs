//! Facts of the DICOM standard that the engine needs beyond Table E.1-1, as data generated from
//! public tables (`reference/*.csv`, written by `scripts/gen-reference.py`; provenance in
//! `reference/README.md`):
//!
//! - the registered UIDs of PS3.6 Annex A (SOP classes, transfer syntaxes, well-known instances
//!   and frames of reference, coding schemes), which name classes and stay as they are;
//! - the enumerated values and defined terms of every CS attribute (PS3.3), which tell a code
//!   from a word someone typed into a code string;
//! - which attributes are Type 1 or Type 2 in each IOD, and the IOD of each storage SOP class
//!   (PS3.3, PS3.4), so that a required value is never emptied.
//!
//! Read once per process. Nothing here looks at a data set.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

const UID_REGISTRY: &str = include_str!("../../../reference/uid-registry.csv");
const CS_TERMS: &str = include_str!("../../../reference/cs-terms.csv");
const IOD_TYPES: &str = include_str!("../../../reference/iod-attribute-types.csv");
const SOP_IOD: &str = include_str!("../../../reference/sop-class-iod.csv");
/// The free-text allowlist (`scripts/gen-vocabulary.py`): one folded token per line.
const VOCABULARY: &str = include_str!("../../../reference/vocabulary.txt");

const SHORT_NAMES: &str = include_str!("../../../reference/vocabulary-short-names.txt");
const NAME_WORDS: &str = include_str!("../../../reference/vocabulary-name-words.txt");

/// Surnames and places that are also common words (Smith, White, Stone): in the vocabulary, but
/// removed where the text shows they are names.
pub fn name_words() -> &'static WordList {
    static WORDS: std::sync::OnceLock<WordList> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| WordList::parse(NAME_WORDS))
}

/// Names and places of 2–4 Latin letters, which free text does not keep as abbreviations.
pub fn short_names() -> &'static WordList {
    static WORDS: std::sync::OnceLock<WordList> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| WordList::parse(SHORT_NAMES))
}

/// A generated word list: one word per line, `#` comments, sorted by the generator (checked
/// when parsed). Looked up by binary search, so loading costs a line split, not a hash set of
/// a hundred thousand entries in every process.
#[derive(Debug)]
pub struct WordList(Vec<&'static str>);

impl WordList {
    fn parse(text: &'static str) -> WordList {
        let words: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(
            words.windows(2).all(|w| w[0] < w[1]),
            "a generated word list is sorted (rerun scripts/gen-vocabulary.py)"
        );
        WordList(words)
    }

    /// Is the word on the list?
    pub fn contains(&self, word: &str) -> bool {
        self.0.binary_search(&word).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The free-text allowlist: tokens (NFKC, lower case) that may stay in cleaned free text.
pub fn vocabulary() -> &'static WordList {
    static WORDS: std::sync::OnceLock<WordList> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| WordList::parse(VOCABULARY))
}

/// The DICOM root: UIDs under it are the standard's own.
pub const DICOM_ROOT: &str = "1.2.840.10008.";

/// Context Group UIDs (PS3.6 Table A-3) are `1.2.840.10008.6.1.<n>`, numbered from 1 (about
/// 1,400 by 2024). The registry the tables come from (pydicom's) does not carry Table A-3, so a
/// UID of that form with a small number is taken as registered: a number below this bound holds
/// fewer than 5 digits, shorter than any identifier the engine compares.
const CONTEXT_GROUP_PREFIX: &str = "1.2.840.10008.6.1.";
const CONTEXT_GROUP_BOUND: u32 = 10_000;

/// The defined terms and enumerated values of one CS attribute, over every module that lists
/// them.
#[derive(Debug, Default)]
pub struct CsTerms {
    /// Terms that apply to every value.
    every: BTreeSet<String>,
    /// Terms for one value (1-based), e.g. Image Type value 1: ORIGINAL, DERIVED, MIXED.
    by_value: HashMap<usize, BTreeSet<String>>,
    /// Enumerated values for one value (1-based, 0 = every value), sorted.
    enumerated: HashMap<usize, BTreeSet<String>>,
}

impl CsTerms {
    /// Is `value` a term of this attribute at position `index` (1-based)? A position without
    /// a list of its own accepts any term of the attribute.
    pub fn allows(&self, index: usize, value: &str) -> bool {
        if self.every.contains(value) {
            return true;
        }
        match self.by_value.get(&index) {
            Some(terms) => terms.contains(value),
            None => self.by_value.values().any(|t| t.contains(value)),
        }
    }

    /// The first enumerated value listed for exactly this position (1-based), if any.
    pub fn enumerated_at(&self, index: usize) -> Option<&str> {
        self.enumerated
            .get(&index)
            .and_then(|t| t.iter().next())
            .map(String::as_str)
    }

    /// The first enumerated value for a position (1-based), for a required value that must be
    /// replaced: a valid code that says nothing about the patient.
    pub fn first_enumerated(&self, index: usize) -> Option<&str> {
        self.enumerated
            .get(&index)
            .or_else(|| self.enumerated.get(&0))
            .and_then(|t| t.iter().next())
            .map(String::as_str)
    }
}

/// The tables, parsed.
#[derive(Debug, Default)]
pub struct Standard {
    uids: HashSet<String>,
    terms: HashMap<u32, CsTerms>,
    vocabulary: HashSet<String>,
    iod_types: HashMap<String, HashMap<u32, u8>>,
    sop_iod: HashMap<String, String>,
}

/// Fields of a CSV line (the tables are plain: no quotes in the generated ones).
fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().skip(1).filter(|l| !l.is_empty()).map(|l| {
        // uid-registry names may hold commas inside quotes; only the leading fields are used.
        l.split(',').collect()
    })
}

fn hex_tag(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 16).ok()
}

impl Standard {
    fn parse() -> Standard {
        let mut s = Standard::default();
        for r in rows(UID_REGISTRY) {
            s.uids.insert(r[0].to_string());
        }
        for r in rows(CS_TERMS) {
            let (Some(tag), Some(term)) = (hex_tag(r[0]), r.last()) else {
                continue;
            };
            let index: usize = r[3].parse().unwrap_or(0);
            let entry = s.terms.entry(tag).or_default();
            let term = term.to_string();
            if index == 0 {
                entry.every.insert(term.clone());
            } else {
                entry
                    .by_value
                    .entry(index)
                    .or_default()
                    .insert(term.clone());
            }
            if r[4] == "enumerated" {
                entry
                    .enumerated
                    .entry(index)
                    .or_default()
                    .insert(term.clone());
            }
            s.vocabulary.insert(term);
        }
        for r in rows(IOD_TYPES) {
            let Some(tag) = hex_tag(r[1]) else {
                continue; // repeating groups (60XX...): the engine handles overlays whole
            };
            let t = if r[2] == "1" { 1 } else { 2 };
            s.iod_types
                .entry(r[0].to_string())
                .or_default()
                .insert(tag, t);
        }
        for r in rows(SOP_IOD) {
            s.sop_iod.insert(r[0].to_string(), r[1].to_string());
        }
        s
    }

    /// Is this UID registered in PS3.6 (a class, syntax, well-known instance, frame of
    /// reference, coding scheme or context group)?
    pub fn is_registered_uid(&self, uid: &str) -> bool {
        let uid = uid.trim_end_matches(['\0', ' ']);
        if self.uids.contains(uid) {
            return true;
        }
        uid.strip_prefix(CONTEXT_GROUP_PREFIX)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 0 && n < CONTEXT_GROUP_BOUND)
    }

    /// The terms of a CS attribute, when the standard lists any.
    pub fn cs_terms(&self, tag: u32) -> Option<&CsTerms> {
        self.terms.get(&tag)
    }

    /// Is this a term of some CS attribute of the standard?
    pub fn is_vocabulary(&self, term: &str) -> bool {
        self.vocabulary.contains(term)
    }

    /// The IOD of a storage SOP class (`ct-image`...).
    pub fn iod_of(&self, sop_class: &str) -> Option<&str> {
        self.sop_iod
            .get(sop_class.trim_end_matches(['\0', ' ']))
            .map(String::as_str)
    }

    /// 1 or 2 when the attribute is Type 1 or Type 2 at the top level of some module of the
    /// SOP class's IOD; `None` otherwise (Type 3, conditional, or an unknown class).
    pub fn attribute_type(&self, sop_class: &str, tag: u32) -> Option<u8> {
        let iod = self.iod_of(sop_class)?;
        self.iod_types.get(iod)?.get(&tag).copied()
    }
}

/// The tables, parsed once per process.
pub fn standard() -> &'static Standard {
    static S: OnceLock<Standard> = OnceLock::new();
    S.get_or_init(Standard::parse)
}

/// SHA-256 of the tables and the vocabulary, for the policy digest: the same rules with other tables are
/// another policy.
pub fn digest() -> String {
    let mut h = Sha256::new();
    for t in [
        UID_REGISTRY,
        CS_TERMS,
        IOD_TYPES,
        SOP_IOD,
        VOCABULARY,
        SHORT_NAMES,
        NAME_WORDS,
    ] {
        h.update(Sha256::digest(t.as_bytes()));
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_loads_sorted_and_knows_terms_but_not_names() {
        let v = vocabulary();
        assert!(v.len() > 100_000);
        assert!(v.contains("flair") && v.contains("contrast") && v.contains("head"));
        assert!(!v.contains("london") && !v.contains("rose"));
        assert!(v.contains("smith") && name_words().contains("smith"));
        assert!(short_names().contains("lee") && !short_names().contains("xr"));
    }

    #[test]
    fn registered_uids_and_made_up_ones_under_the_root() {
        let s = standard();
        assert!(s.is_registered_uid("1.2.840.10008.5.1.4.1.1.2")); // CT Image Storage
        assert!(s.is_registered_uid("1.2.840.10008.1.2.1\0"));
        assert!(s.is_registered_uid("1.2.840.10008.6.1.308")); // a context group
        assert!(!s.is_registered_uid("1.2.840.10008.5.1.4.1.1.2.12345678"));
        assert!(!s.is_registered_uid("1.2.840.10008.6.1.12345678"));
        assert!(!s.is_registered_uid("1.2.826.0.1.3680043.8.498.1"));
    }

    #[test]
    fn code_strings_by_value_position() {
        let s = standard();
        let it = s.cs_terms(0x0008_0008).expect("Image Type has terms");
        assert!(it.allows(1, "ORIGINAL") && it.allows(2, "PRIMARY") && it.allows(3, "AXIAL"));
        assert!(it.allows(3, "LABEL") && it.allows(3, "OVERVIEW"));
        assert!(!it.allows(2, "SMITH") && !it.allows(1, "PRIMARY"));
        assert_eq!(it.first_enumerated(1), Some("DERIVED"));
        let modality = s.cs_terms(0x0008_0060).unwrap();
        assert!(modality.allows(1, "CT") && modality.allows(2, "MR"));
        assert!(!modality.allows(2, "SMITH"));
        assert!(s.is_vocabulary("MONOCHROME2"));
    }

    #[test]
    fn types_per_iod() {
        let s = standard();
        let ct = "1.2.840.10008.5.1.4.1.1.2";
        assert_eq!(s.iod_of(ct), Some("ct-image"));
        assert_eq!(
            s.attribute_type(ct, 0x0008_0008),
            Some(1),
            "Image Type in CT Image"
        );
        assert_eq!(s.attribute_type(ct, 0x0020_0010), Some(2), "Study ID");
        // Secondary capture: Image Type is Type 3 in General Image only.
        assert_eq!(
            s.attribute_type("1.2.840.10008.5.1.4.1.1.7", 0x0008_0008),
            None
        );
    }
}
