//! Screening free text for identifiers: the dataset's own identifying values (name parts, IDs,
//! institution and staff names, birth date in common formats, UIDs) and identifier patterns
//! (dates, phone numbers, e-mail addresses, long digit runs). Used by Clean Descriptors, Clean
//! Structured Content, and for every kept text value of an attribute the table does not list.

use std::ops::Range;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;

/// Name tokens that are titles or suffixes, not names: removing them from descriptors would strip
/// words such as "MR" from "MR BRAIN" without protecting anyone.
const NAME_NOISE: &[&str] = &[
    "MR", "MRS", "MS", "MISS", "DR", "PROF", "JR", "SR", "II", "III", "IV", "MD", "PHD", "RN",
];

/// Identifying values of one dataset, gathered before any change, to remove from its text.
#[derive(Debug, Default, Clone)]
pub struct Identifiers {
    tokens: Vec<String>,
}

impl Identifiers {
    /// Adds the parts of a person name (any component group, any order, any case).
    pub fn add_person_name(&mut self, value: &str) {
        for part in value.split(|c: char| c == '^' || c == '=' || c == ',' || c.is_whitespace()) {
            let part = part.trim_matches(|c: char| !c.is_alphanumeric());
            if part.chars().count() >= 2 && !NAME_NOISE.iter().any(|n| n.eq_ignore_ascii_case(part))
            {
                self.tokens.push(part.to_string());
            }
        }
    }

    /// Adds a whole identifying value (an ID, an institution name, a UID...).
    pub fn add_value(&mut self, value: &str) {
        let v = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        // Values shorter than 3 characters ("M", "01") would strip ordinary words and numbers.
        if v.chars().count() >= 3 {
            self.tokens.push(v.to_string());
        }
    }

    /// Adds a date (YYYYMMDD) in the formats people type it in.
    pub fn add_date(&mut self, value: &str) {
        let d: String = value.trim().chars().take(8).collect();
        if d.len() != 8 || !d.chars().all(|c| c.is_ascii_digit()) {
            return;
        }
        let (y, m, dd) = (&d[0..4], &d[4..6], &d[6..8]);
        let (mi, di) = (m.trim_start_matches('0'), dd.trim_start_matches('0'));
        for f in [
            d.clone(),
            format!("{y}-{m}-{dd}"),
            format!("{y}/{m}/{dd}"),
            format!("{y}.{m}.{dd}"),
            format!("{dd}/{m}/{y}"),
            format!("{m}/{dd}/{y}"),
            format!("{dd}.{m}.{y}"),
            format!("{dd}-{m}-{y}"),
            format!("{m}-{dd}-{y}"),
            format!("{di}/{mi}/{y}"),
            format!("{mi}/{di}/{y}"),
        ] {
            self.tokens.push(f);
        }
        if let Some(name) = month_name(m) {
            self.tokens.push(format!("{di} {name} {y}"));
            self.tokens.push(format!("{name} {di}, {y}"));
            self.tokens.push(format!("{di} {} {y}", &name[..3]));
            self.tokens.push(format!("{} {di}, {y}", &name[..3]));
        }
    }

    /// Is there anything to screen for?
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Builds the matcher.
    pub fn build(mut self) -> Screen {
        self.tokens.sort();
        self.tokens.dedup();
        let matcher = if self.tokens.is_empty() {
            None
        } else {
            // Built once per dataset and run over a few short strings: a contiguous NFA builds
            // several times faster than a DFA, and search speed does not matter here.
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .match_kind(MatchKind::LeftmostLongest)
                .build(&self.tokens)
                .ok()
        };
        let short: Vec<bool> = self.tokens.iter().map(|t| t.chars().count() <= 3).collect();
        Screen { matcher, short }
    }
}

fn month_name(m: &str) -> Option<&'static str> {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    m.parse::<usize>()
        .ok()
        .filter(|n| (1..=12).contains(n))
        .map(|n| NAMES[n - 1])
}

/// Identifier patterns that are removed whatever the dataset says.
fn patterns() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let month = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?";
        let parts = [
            // e-mail
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+".to_string(),
            // ISO-like dates 2019-03-05, 2019/3/5, 2019.03.05
            r"\b(?:1[89]|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b"
                .to_string(),
            // day-month-year or month-day-year with a 4-digit year
            r"\b(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:1[89]|20)\d{2}\b"
                .to_string(),
            // 05/03/19 (two-digit year only with slashes: dots and dashes are too often versions)
            r"\b(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])/\d{2}\b".to_string(),
            // 5 March 2019, 5-Mar-2019, March 5, 2019
            format!(r"(?i)\b\d{{1,2}}[\s-]+{month}[\s-]+\d{{2,4}}\b"),
            format!(r"(?i)\b{month}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"),
            // phone numbers: +44 20 7946 0958, (555) 123-4567, 555.123.4567
            r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}\b".to_string(),
            r"\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b".to_string(),
            // US SSN shape
            r"\b\d{3}-\d{2}-\d{4}\b".to_string(),
            // long digit runs (MRNs, accession numbers, YYYYMMDD), also inside alphanumerics
            r"\d{6,}".to_string(),
        ];
        Regex::new(&parts.join("|")).expect("identifier patterns compile")
    })
}

/// A compiled screen for one dataset.
#[derive(Debug, Clone)]
pub struct Screen {
    matcher: Option<AhoCorasick>,
    short: Vec<bool>,
}

impl Screen {
    /// A screen with only the generic patterns.
    pub fn patterns_only() -> Screen {
        Identifiers::default().build()
    }

    fn ranges(&self, text: &str) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        if let Some(m) = &self.matcher {
            let bytes = text.as_bytes();
            for hit in m.find_iter(text) {
                // Short tokens (2-3 letter name parts) only count as whole words.
                if self.short[hit.pattern().as_usize()] {
                    let before = hit.start().checked_sub(1).map(|i| bytes[i]);
                    let after = bytes.get(hit.end()).copied();
                    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
                    if word(before) || word(after) {
                        continue;
                    }
                }
                ranges.push(hit.range());
            }
        }
        ranges.extend(patterns().find_iter(text).map(|m| m.range()));
        ranges
    }

    /// Does the text carry anything this screen removes?
    pub fn finds(&self, text: &str) -> bool {
        !self.ranges(text).is_empty()
    }

    /// Removes every identifier occurrence, keeping the rest of the text; returns `None` when
    /// nothing was found.
    pub fn clean(&self, text: &str) -> Option<String> {
        let mut ranges = self.ranges(text);
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for r in ranges {
            if r.start > pos {
                out.push_str(&text[pos..r.start]);
            }
            pos = pos.max(r.end);
        }
        out.push_str(&text[pos.min(text.len())..]);
        // Collapse the gaps left behind, line by line so that multi-line text keeps its lines.
        let cleaned: Vec<String> = out
            .split('\n')
            .map(|line| {
                line.split_whitespace()
                    .filter(|w| {
                        !w.chars()
                            .all(|c| matches!(c, ',' | ';' | ':' | '^' | '-' | '/' | '.'))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        Some(cleaned.join("\n").trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen() -> Screen {
        let mut ids = Identifiers::default();
        ids.add_person_name("Doe^Jonathan^Q^Dr.");
        ids.add_value("MRN-448812");
        ids.add_value("St. Elsewhere General");
        ids.add_date("19630214");
        ids.build()
    }

    #[test]
    fn removes_name_parts_in_any_order_and_case() {
        let s = screen();
        assert_eq!(
            s.clean("CT head for JONATHAN doe follow-up").unwrap(),
            "CT head for follow-up"
        );
        assert_eq!(s.clean("doe, jonathan").unwrap(), "");
    }

    #[test]
    fn keeps_clean_text_and_titles() {
        let s = screen();
        assert_eq!(s.clean("MR BRAIN W/O CONTRAST"), None);
        assert_eq!(s.clean("CHEST PA 120 kVp 2.5 mm"), None);
    }

    #[test]
    fn removes_ids_dates_and_patterns() {
        let s = screen();
        assert_eq!(
            s.clean("ref MRN-448812 at St. Elsewhere General").unwrap(),
            "ref at"
        );
        assert_eq!(s.clean("born 14/02/1963").unwrap(), "born");
        assert_eq!(s.clean("born February 14, 1963 ok").unwrap(), "born ok");
        assert_eq!(
            s.clean("call +1 617 555 0199 or j.doe@example.org")
                .unwrap(),
            "call or"
        );
        assert_eq!(s.clean("scan 2021-07-04 acc 99812345").unwrap(), "scan acc");
        assert_eq!(s.clean("ID ABC1234567").unwrap(), "ID ABC");
    }

    #[test]
    fn short_name_parts_match_whole_words_only() {
        let mut ids = Identifiers::default();
        ids.add_person_name("Li^Wu");
        let s = ids.build();
        assert_eq!(s.clean("LIVER and WU"), Some("LIVER and".to_string()));
    }
}
