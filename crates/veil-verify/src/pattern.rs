//! Identifier shapes in text that remains, whatever the sources said: dates, phone numbers,
//! e-mail addresses, national-ID and record-number-like digit runs, and person names next to
//! words such as "patient", "Dr" or "name".

use std::sync::OnceLock;

use regex::Regex;

/// A pattern hit: which rule, and the byte range in the text.
pub struct Hit {
    pub rule: &'static str,
    pub start: usize,
    pub end: usize,
}

struct Rule {
    name: &'static str,
    re: Regex,
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let month = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?";
        let day = r"(?:0?[1-9]|[12]\d|3[01])";
        let mon = r"(?:0?[1-9]|1[0-2])";
        let year = r"(?:1[89]|20)\d\d";
        let specs: Vec<(&'static str, String)> = vec![
            (
                "pattern:email",
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}".into(),
            ),
            (
                "pattern:date",
                format!(r"\b{year}[-/.]{mon}[-/.]{day}\b|\b{day}[-/.]{mon}[-/.]{year}\b|\b{mon}/{day}/{year}\b|(?i:\b{day}[\s-]+{month}[\s-]+{year}\b|\b{month}\s+{day},?\s+{year}\b)"),
            ),
            // Compact dates in text (YYYYMMDD): a real calendar date between 1800 and 2099.
            (
                "pattern:date",
                format!(r"\b{year}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"),
            ),
            (
                "pattern:phone",
                r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\b\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b".into(),
            ),
            // US SSN, UK NHS number shapes; long digit runs (MRN, national IDs, accession).
            (
                "pattern:national_id",
                r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3}[ -]\d{3}[ -]\d{4}\b".into(),
            ),
            ("pattern:digit_run", r"\b[A-Za-z]{0,3}-?\d{7,}\b".into()),
            (
                "pattern:name_context",
                r"(?:\b(?i:patient|pt|name|dr|mr|mrs|ms|miss|doctor|physician|referred by|signed by)\b[.:]?\s*[:=]?\s*)([A-Z][a-z]+(?:[ ^,]+[A-Z][a-z]+)?)".into(),
            ),
        ];
        specs
            .into_iter()
            .map(|(name, re)| Rule {
                name,
                re: Regex::new(&re).expect("valid pattern"),
            })
            .collect()
    })
}

/// Words that follow "patient", "name" etc. in ordinary DICOM text without being names.
const NOT_NAMES: &[&str] = &[
    "Position",
    "Orientation",
    "Name",
    "Names",
    "Id",
    "Age",
    "Sex",
    "Weight",
    "Size",
    "Comments",
    "Identity",
    "Setup",
    "Support",
    "Positioning",
    "State",
    "Status",
    "Motion",
    "Table",
    "Prep",
    "Preparation",
    "Room",
    "Study",
    "Series",
    "Protocol",
    "Data",
    "Information",
    "Info",
    "Anonymized",
    "Anonymous",
    "Removed",
    "Unknown",
    "Body",
    "Head",
    "Feet",
    "Supine",
    "Prone",
    "Left",
    "Right",
    "The",
    "This",
    "Of",
    "Characteristics",
    "Characteristic",
];

/// Is text[start..end] glued to a dotted number (a '.' next to it with a digit beyond)?
fn dotted_number(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let before = start >= 2 && b[start - 1] == b'.' && b[start - 2].is_ascii_digit();
    let after = b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(|c| c.is_ascii_digit());
    before || after
}

/// Space-separated numbers that rise, each a multiple of ten without a leading zero: a list of
/// measurements, not a telephone number.
fn rising_measurements(s: &str) -> bool {
    let nums: Vec<&str> = s.split(' ').collect();
    nums.len() >= 2
        && nums
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
        && nums
            .iter()
            .map(|n| n.parse::<u64>().unwrap_or(0))
            .try_fold(0u64, |prev, v| (v > prev && v % 10 == 0).then_some(v))
            .is_some()
}

/// Identifier shapes found in one text value.
pub fn scan(text: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    // Every rule but the name one needs a digit (or '@'): most values have neither.
    let digit = text.bytes().any(|b| b.is_ascii_digit());
    let at = text.contains('@');
    for rule in rules() {
        let needs = match rule.name {
            "pattern:email" => at,
            "pattern:name_context" => true,
            _ => digit,
        };
        if !needs {
            continue;
        }
        for c in rule.re.captures_iter(text) {
            let m = c.get(1).unwrap_or_else(|| c.get(0).expect("whole match"));
            if rule.name == "pattern:name_context" {
                let first = m.as_str().split([' ', '^', ',']).next().unwrap_or("");
                if NOT_NAMES.contains(&first) {
                    continue;
                }
            }
            if rule.name == "pattern:phone" && dotted_number(text, m.start(), m.end()) {
                // Part of a version or a UID-like dotted number ("51.80.108.010").
                continue;
            }
            if rule.name == "pattern:phone" && rising_measurements(m.as_str()) {
                // b-values or echo times listed with spaces ("50 400 800 1200").
                continue;
            }
            if rule.name == "pattern:phone" || rule.name == "pattern:digit_run" {
                let digits = m.as_str().chars().filter(|c| c.is_ascii_digit()).count();
                if digits < 7 {
                    continue;
                }
            }
            if hits
                .iter()
                .any(|h: &Hit| h.start < m.end() && m.start() < h.end)
            {
                continue;
            }
            hits.push(Hit {
                rule: rule.name,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(t: &str) -> Vec<&'static str> {
        scan(t).into_iter().map(|h| h.rule).collect()
    }

    #[test]
    fn finds_shapes_and_leaves_ordinary_text() {
        assert_eq!(rules_of("call 020 7946 0958"), ["pattern:phone"]);
        assert_eq!(rules_of("mail j.doe@example.org now"), ["pattern:email"]);
        assert_eq!(rules_of("seen 03/05/2019"), ["pattern:date"]);
        assert_eq!(rules_of("on 2019-03-05"), ["pattern:date"]);
        assert_eq!(rules_of("scan 20190305 head"), ["pattern:date"]);
        assert_eq!(rules_of("MRN 40071233"), ["pattern:digit_run"]);
        assert_eq!(rules_of("SSN 123-45-6789"), ["pattern:national_id"]);
        assert_eq!(rules_of("Patient: Quixley"), ["pattern:name_context"]);
        assert_eq!(rules_of("Dr. Okonkwo reviewed"), ["pattern:name_context"]);
        for clean in [
            "CT CHEST W CONTRAST",
            "Patient Position HFS",
            "ORIGINAL\\PRIMARY\\AXIAL",
            "1.2.840.10008.5.1.4.1.1.2",
            "syngo MR B17",
            "T1 SE 3.5mm",
            "ep2d_diff_b 50 400 800 1200_ADC",
            "ANONYMIZED",
            "51.80.108.010",
            "Retain Patient Characteristics Option",
        ] {
            assert!(scan(clean).is_empty(), "{clean}: {:?}", rules_of(clean));
        }
    }
}
