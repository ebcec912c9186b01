//! Screening free text for identifiers: the dataset's own identifying values (name parts, IDs,
//! institution and staff names, birth date in common formats, UIDs) and identifier patterns
//! (dates, phone numbers, e-mail addresses, long digit runs). Used by Clean Descriptors, Clean
//! Structured Content, and for every kept text value of an attribute the table does not list.
//! Also the check of values kept without text cleaning (numbers, binary values) for text hidden
//! in them: [`Screen::hides_text`].

use std::ops::Range;
use std::sync::OnceLock;

use dicom_core::value::PrimitiveValue;
use dicom_core::VR;
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
    /// Single words of person names (folded), matched in free text in every case, accent and
    /// transliteration ([`crate::freetext::variants`]).
    words: Vec<String>,
    /// Initials of person names ("jd", "dj", "jqd").
    initials: Vec<String>,
    /// Identifier digit strings (MRNs, accession and other IDs, phone numbers, dates as
    /// YYYYMMDD), leading zeros dropped, at least [`MIN_IDENTIFIER_DIGITS`] digits: what a number
    /// that carries an identifier would hold.
    digits: Vec<String>,
}

/// Identifier digit strings shorter than this are not looked for in numbers and codes: "1234"
/// is also an ordinary instance number or a slice count.
pub const MIN_IDENTIFIER_DIGITS: usize = 5;

/// The digits of a number as written in IS, DS or a binary value, without sign, leading zeros
/// or a zero fraction ("+0012345.00" → "12345"); `None` when it is not a whole number.
pub fn whole_number_digits(v: &str) -> Option<String> {
    let v = v.trim_matches(|c: char| c == ' ' || c == '\0');
    let v = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b == b'0')
    {
        return None;
    }
    let d = int.trim_start_matches('0');
    Some(if d.is_empty() {
        "0".into()
    } else {
        d.to_string()
    })
}

impl Identifiers {
    /// Adds the parts of a person name (any component group, any order, any case), and its
    /// initials as free text writes them ("JD", "DJ", "JQD").
    pub fn add_person_name(&mut self, value: &str) {
        for group in value.split('=') {
            let initials: Vec<char> = group
                .split('^')
                .filter_map(|p| p.trim().chars().next())
                .filter(|c| c.is_alphabetic())
                .flat_map(char::to_lowercase)
                .collect();
            if let [family, given, rest @ ..] = initials.as_slice() {
                let middle: String = rest.iter().take(1).collect();
                for w in [
                    format!("{given}{family}"),
                    format!("{family}{given}"),
                    format!("{given}{middle}{family}"),
                ] {
                    self.initials.push(w);
                }
            }
        }
        for part in value.split(|c: char| c == '^' || c == '=' || c == ',' || c.is_whitespace()) {
            let part = part.trim_matches(|c: char| !c.is_alphanumeric());
            if part.chars().count() >= 2 && !NAME_NOISE.iter().any(|n| n.eq_ignore_ascii_case(part))
            {
                self.tokens.push(part.to_string());
            }
            // Words of the name for free text: one character is a whole name part in Chinese,
            // Japanese and Korean (洪, 홍), so non-Latin parts count at any length.
            if part.chars().count() >= 2 || !part.is_ascii() {
                for (_, w) in crate::freetext::tokens(part) {
                    self.words.push(crate::freetext::fold(w));
                }
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

    /// Adds the digit strings of an identifying value: every run of digits, and all its digits
    /// together when separators split one number ("123-45-6789", "+44 20 7946 0958").
    pub fn add_digits(&mut self, value: &str) {
        let mut add = |d: &str| {
            let d = d.trim_start_matches('0');
            if d.len() >= MIN_IDENTIFIER_DIGITS && !self.digits.iter().any(|x| x == d) {
                self.digits.push(d.to_string());
            }
        };
        for run in value.split(|c: char| !c.is_ascii_digit()) {
            add(run);
        }
        let joined: String = value.chars().filter(|c| c.is_ascii_digit()).collect();
        let others = value
            .chars()
            .filter(|c| {
                !c.is_ascii_digit() && !matches!(c, ' ' | '-' | '.' | '/' | '(' | ')' | '+')
            })
            .count();
        if others <= 3 {
            add(&joined);
        }
    }

    /// Adds a date (YYYYMMDD) in the formats people type it in.
    pub fn add_date(&mut self, value: &str) {
        let d: String = value.trim().chars().take(8).collect();
        if d.len() != 8 || !d.chars().all(|c| c.is_ascii_digit()) {
            return;
        }
        self.add_digits(&d);
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
        self.tokens.retain(|t| !t.is_empty());
        let matcher = (!self.tokens.is_empty()).then(|| TokenMatcher::new(&self.tokens));
        let short: Vec<bool> = self.tokens.iter().map(|t| t.chars().count() <= 3).collect();
        let own_words = crate::freetext::Own {
            words: self
                .words
                .iter()
                .flat_map(|w| crate::freetext::variants(w))
                .collect(),
            initials: self.initials.into_iter().collect(),
        };
        Screen {
            matcher,
            short,
            digits: self.digits,
            own_words,
        }
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

/// Identifier tokens shorter than this are not looked for inside numbers and binary values: an
/// ID such as "123" is also an ordinary instance number.
const MIN_TOKEN_IN_NUMBERS: usize = 5;

/// Is this text value corrupt: does it hold a control character other than ESC (character set
/// switches), TAB, LF, FF or CR, once trailing padding (spaces, NULs) is set aside? No text VR
/// allows them; they are what an element header looks like read as text (group and element
/// bytes, a NUL in nearly every one), i.e. a value whose length swallowed the elements after it
/// — the patient's name among them, which the screen then does not know as a name (found by
/// veil-fuzz: a Study Description of 124 bytes holding Patient's Name, Patient ID and Study
/// Instance UID).
pub fn is_corrupt_text(s: &str) -> bool {
    s.trim_end_matches([' ', '\0'])
        .chars()
        .any(|c| (c as u32) < 0x20 && !matches!(c, '\u{1b}' | '\t' | '\n' | '\u{c}' | '\r'))
}

/// Is `s` a valid Integer String value (PS3.5 6.2: optional sign, digits)?
fn is_integer_string(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// Is `s` a valid Decimal String value (PS3.5 6.2: fixed or floating point)?
fn is_decimal_string(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = !(int.is_empty() && frac.is_empty()) && digits(int) && digits(frac);
    let exponent_ok = exponent.is_none_or(is_integer_string);
    mantissa_ok && exponent_ok
}

/// The bytes of a binary value as the file held them, in one byte order.
fn value_bytes(value: &PrimitiveValue, big_endian: bool) -> Vec<u8> {
    macro_rules! bytes_of {
        ($v:expr) => {
            $v.iter()
                .flat_map(|x| {
                    if big_endian {
                        x.to_be_bytes().to_vec()
                    } else {
                        x.to_le_bytes().to_vec()
                    }
                })
                .collect()
        };
    }
    match value {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::I16(v) => bytes_of!(v),
        PrimitiveValue::U16(v) => bytes_of!(v),
        PrimitiveValue::I32(v) => bytes_of!(v),
        PrimitiveValue::U32(v) => bytes_of!(v),
        PrimitiveValue::I64(v) => bytes_of!(v),
        PrimitiveValue::U64(v) => bytes_of!(v),
        PrimitiveValue::F32(v) => bytes_of!(v),
        PrimitiveValue::F64(v) => bytes_of!(v),
        PrimitiveValue::Tags(v) => v
            .iter()
            .flat_map(|t| {
                let (g, e) = (t.group(), t.element());
                if big_endian {
                    [g.to_be_bytes(), e.to_be_bytes()].concat()
                } else {
                    [g.to_le_bytes(), e.to_le_bytes()].concat()
                }
            })
            .collect(),
        PrimitiveValue::Str(s) => s.as_bytes().to_vec(),
        PrimitiveValue::Strs(v) => v.join("\\").into_bytes(),
        _ => Vec::new(),
    }
}

/// Is every character of `v` in the repertoire of a date, time or age VR (PS3.5 6.2)? Ranges
/// (`-`) and legacy separators (`.`, `:`) are allowed; letters only where the VR has them.
fn in_temporal_repertoire(vr: VR, v: &str) -> bool {
    v.chars().all(|c| {
        c.is_ascii_digit()
            || c == ' '
            || match vr {
                VR::DA => matches!(c, '.' | '-'),
                VR::TM => matches!(c, '.' | ':' | '-'),
                VR::DT => matches!(c, '.' | '+' | '-'),
                VR::AS => matches!(c, 'D' | 'W' | 'M' | 'Y'),
                _ => false,
            }
    })
}

/// Binary VRs that hold a few numbers: a value of these that reads as words is text in disguise.
fn is_binary_number_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV | VR::FL | VR::FD | VR::AT
    )
}

/// Binary VRs of arbitrary length (bitmaps, curves, unknown values).
fn is_binary_blob_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
    )
}

/// Does a value read as text: at least 4 bytes (trailing NUL and space padding aside), every
/// one printable ASCII, three or more of them letters?
fn reads_as_words(bytes: &[u8]) -> bool {
    let t = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(&bytes[..0], |i| &bytes[..=i]);
    t.len() >= 4
        && t.iter().all(|b| (0x20..=0x7E).contains(b))
        && t.iter().filter(|b| b.is_ascii_alphabetic()).count() >= 3
}

/// The data set's own tokens found in text: leftmost first, the longest token at that place,
/// ASCII letters in either case, then on after the match (the leftmost-longest, non-overlapping
/// matches of an Aho–Corasick automaton, which `tests::token_matcher_finds_what_an_automaton_finds`
/// checks it against).
///
/// Why not the automaton: a data set has a few dozen tokens, each file its own set (its UIDs
/// and dates differ), and the text they are looked for in is a few short values. Building an
/// automaton per file was an eighth of the CPU time on small files; indexing the tokens by
/// their first byte costs next to nothing, and each place in the text is compared with the few
/// tokens that start with its byte.
#[derive(Debug, Clone)]
pub struct TokenMatcher {
    tokens: Vec<Vec<u8>>,
    /// Token indices by ASCII-lowercased first byte, longest token first.
    by_first: Vec<Vec<u32>>,
}

/// One token found: where, and which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHit {
    pub range: Range<usize>,
    pub pattern: usize,
}

impl TokenMatcher {
    /// The matcher for these tokens (empty tokens are never found).
    pub fn new<T: AsRef<[u8]>>(tokens: &[T]) -> TokenMatcher {
        let tokens: Vec<Vec<u8>> = tokens.iter().map(|t| t.as_ref().to_vec()).collect();
        let mut by_first = vec![Vec::new(); 256];
        for (i, t) in tokens.iter().enumerate() {
            if let Some(b) = t.first() {
                by_first[b.to_ascii_lowercase() as usize].push(i as u32);
            }
        }
        for list in &mut by_first {
            // Longest first; among equal lengths the earlier token, as an automaton reports.
            list.sort_by_key(|&i| (std::cmp::Reverse(tokens[i as usize].len()), i));
        }
        TokenMatcher { tokens, by_first }
    }

    /// The matches in `hay`, left to right, not overlapping.
    pub fn find_iter<'a>(&'a self, hay: &'a [u8]) -> impl Iterator<Item = TokenHit> + 'a {
        let mut at = 0usize;
        std::iter::from_fn(move || {
            while at < hay.len() {
                let start = at;
                let found = self.by_first[hay[start].to_ascii_lowercase() as usize]
                    .iter()
                    .map(|&i| i as usize)
                    .find(|&i| {
                        let t = &self.tokens[i];
                        hay.get(start..start + t.len())
                            .is_some_and(|h| h.eq_ignore_ascii_case(t))
                    });
                match found {
                    Some(i) => {
                        at = start + self.tokens[i].len();
                        return Some(TokenHit {
                            range: start..at,
                            pattern: i,
                        });
                    }
                    None => at += 1,
                }
            }
            None
        })
    }
}

/// A compiled screen for one dataset.
#[derive(Debug, Clone)]
pub struct Screen {
    matcher: Option<TokenMatcher>,
    short: Vec<bool>,
    digits: Vec<String>,
    /// The person-name words and initials of the data set.
    own_words: crate::freetext::Own,
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
            for hit in m.find_iter(bytes) {
                // Short tokens (2-3 letter name parts) only count as whole words.
                if self.short[hit.pattern] {
                    let before = hit.range.start.checked_sub(1).map(|i| bytes[i]);
                    let after = bytes.get(hit.range.end).copied();
                    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
                    if word(before) || word(after) {
                        continue;
                    }
                }
                ranges.push(hit.range);
            }
        }
        ranges.extend(patterns().find_iter(text).map(|m| m.range()));
        ranges
    }

    /// Free text cleaned by allowlist ([`crate::freetext`]): `None` when it stays as written.
    pub fn clean_free_text(
        &self,
        text: &str,
        vocabulary: &crate::freetext::Vocabulary,
    ) -> Option<String> {
        crate::freetext::clean(text, self.ranges(text), &self.own_words, vocabulary)
    }

    /// Other kept text (technical values such as software versions and model names): the data
    /// set's own identifiers, the generic patterns and the free-text recognisers are removed,
    /// the rest stays without a vocabulary check.
    pub fn clean_kept_text(&self, text: &str) -> Option<String> {
        let mut spans = self.ranges(text);
        spans.extend(crate::freetext::recognised(text, false));
        crate::freetext::remove_spans(text, spans)
    }

    /// Does the text hold one of the dataset's own identifying values of at least
    /// `min_len` characters (the generic patterns aside)?
    fn holds_own_token(&self, text: &[u8], min_len: usize) -> bool {
        let Some(m) = &self.matcher else {
            return false;
        };
        m.find_iter(text).any(|hit| {
            if hit.range.len() < min_len {
                return false;
            }
            if self.short[hit.pattern] {
                let word = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
                let before = hit.range.start.checked_sub(1).and_then(|i| text.get(i));
                if word(before) || word(text.get(hit.range.end)) {
                    return false;
                }
            }
            true
        })
    }

    /// Does a value that the rules would keep as it is — a number (IS, DS, US, FL…) or a
    /// binary value (OB, OW, UN…) — hide text that must not leave? The engine screens text
    /// VRs; a file can put a name in an element of any VR (a wrong VR from a faulty
    /// converter, or on purpose), and a number is kept without a look. The rule:
    ///
    /// - IS and DS: a value that is not a number by PS3.5's grammar is text (a name in
    ///   Instance Number), and a number that holds one of the dataset's own identifying values
    ///   (a numeric patient ID, the birth date as digits) is that identifier.
    /// - DA, TM, DT, AS: a value with a character outside the VR's repertoire is text (a wrong
    ///   length can make a time swallow the elements after it, names included).
    /// - CS: a value with a character outside printable ASCII, or holding an identifying value
    ///   of the dataset.
    /// - US, SS, UL, SL, UV, SV, FL, FD, AT: a value whose bytes, in either byte order, read as
    ///   words (4+ printable ASCII bytes, 3+ letters) is text, whatever it says; and one holding
    ///   an identifying value of the dataset is that value.
    /// - OB, OW, OF, OD, OL, OV, UN: bytes holding one of the dataset's own identifying values.
    ///   (Pixel Data is the pixel stage's: do not pass it here.)
    ///
    /// `true` means the value must not be kept as it is (the engine empties it). Identifying
    /// values shorter than 5 characters are not looked for in numbers: "123" is also an
    /// ordinary instance number.
    pub fn hides_text(&self, vr: VR, value: &PrimitiveValue) -> bool {
        match vr {
            VR::IS | VR::DS => {
                let numeric = if vr == VR::IS {
                    is_integer_string
                } else {
                    is_decimal_string
                };
                let values = value.to_multi_str();
                values.iter().flat_map(|v| v.split('\\')).any(|v| {
                    let v = v.trim_matches(|c: char| c == ' ' || c == '\0');
                    !v.is_empty()
                        && (!numeric(v) || self.holds_own_token(v.as_bytes(), MIN_TOKEN_IN_NUMBERS))
                })
            }
            VR::DA | VR::TM | VR::DT | VR::AS | VR::CS => {
                let values = value.to_multi_str();
                values.iter().flat_map(|v| v.split('\\')).any(|v| {
                    let v = v.trim_matches(|c: char| c == ' ' || c == '\0');
                    if vr == VR::CS {
                        !v.bytes().all(|b| (0x20..=0x7E).contains(&b))
                            || self.holds_own_token(v.as_bytes(), MIN_TOKEN_IN_NUMBERS)
                    } else {
                        // Not the own-values check: a study date may rightly equal the birth
                        // date (a newborn) when the policy keeps full dates.
                        !in_temporal_repertoire(vr, v)
                    }
                })
            }
            vr if crate::values::is_text_vr(vr) || vr == VR::UR => {
                value.to_multi_str().iter().any(|v| is_corrupt_text(v))
            }
            vr if is_binary_number_vr(vr) => [false, true].into_iter().any(|be| {
                let bytes = value_bytes(value, be);
                reads_as_words(&bytes) || self.holds_own_token(&bytes, MIN_TOKEN_IN_NUMBERS)
            }),
            vr if is_binary_blob_vr(vr) => {
                let le = value_bytes(value, false);
                if self.holds_own_token(&le, MIN_TOKEN_IN_NUMBERS) {
                    return true;
                }
                // Words (8- and 32-bit values are the same in either order) swapped in pairs.
                matches!(value, PrimitiveValue::U16(_) | PrimitiveValue::I16(_))
                    && self.holds_own_token(&value_bytes(value, true), MIN_TOKEN_IN_NUMBERS)
            }
            _ => false,
        }
    }

    /// Does a number (its digits, as [`whole_number_digits`] gives them) carry one of the
    /// dataset's identifier digit strings: equal to it, or holding it?
    pub fn number_carries_identifier(&self, digits: &str) -> bool {
        digits.len() >= MIN_IDENTIFIER_DIGITS
            && self.digits.iter().any(|d| digits.contains(d.as_str()))
    }

    /// Does any text (a code string, a UID) hold one of the dataset's identifier digit strings
    /// as a run of its own digits?
    pub fn text_carries_identifier_digits(&self, text: &str) -> bool {
        text.split(|c: char| !c.is_ascii_digit())
            .any(|run| self.number_carries_identifier(run.trim_start_matches('0')))
    }

    /// Does the text carry anything this screen removes?
    pub fn finds(&self, text: &str) -> bool {
        !self.ranges(text).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the screen's spans leave of a text (the free-text cleaner adds the allowlist on top).
    fn clean(s: &Screen, text: &str) -> Option<String> {
        crate::freetext::remove_spans(text, s.ranges(text))
    }

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
            clean(&s, "CT head for JONATHAN doe follow-up").unwrap(),
            "CT head for follow-up"
        );
        assert_eq!(clean(&s, "doe, jonathan").unwrap(), "");
    }

    #[test]
    fn keeps_clean_text_and_titles() {
        let s = screen();
        assert_eq!(clean(&s, "MR BRAIN W/O CONTRAST"), None);
        assert_eq!(clean(&s, "CHEST PA 120 kVp 2.5 mm"), None);
    }

    #[test]
    fn removes_ids_dates_and_patterns() {
        let s = screen();
        assert_eq!(
            clean(&s, "ref MRN-448812 at St. Elsewhere General").unwrap(),
            "ref at"
        );
        assert_eq!(clean(&s, "born 14/02/1963").unwrap(), "born");
        assert_eq!(clean(&s, "born February 14, 1963 ok").unwrap(), "born ok");
        assert_eq!(
            clean(&s, "call +1 617 555 0199 or j.doe@example.org").unwrap(),
            "call or"
        );
        assert_eq!(
            clean(&s, "scan 2021-07-04 acc 99812345").unwrap(),
            "scan acc"
        );
        assert_eq!(clean(&s, "ID ABC1234567").unwrap(), "ID ABC");
    }

    #[test]
    fn numbers_that_are_not_numbers_or_hold_an_identifier_are_flagged() {
        let s = screen();
        let strs = |v: &str| PrimitiveValue::from(v);
        // Found by veil-fuzz: a name in a numeric element was kept unscreened.
        assert!(s.hides_text(VR::IS, &strs("DOE^JONATHAN")));
        assert!(s.hides_text(VR::DS, &strs("1.5\\Smith")));
        assert!(
            s.hides_text(VR::IS, &strs("19630214")),
            "birth date as digits"
        );
        assert!(!s.hides_text(VR::IS, &strs("448812")));
        for ok in ["12", " -3 ", "0", "+17"] {
            assert!(!s.hides_text(VR::IS, &strs(ok)), "{ok}");
        }
        for ok in ["1.5", "-0.25\\3", "1e-3", "2.5E+02", ".5", "7."] {
            assert!(!s.hides_text(VR::DS, &strs(ok)), "{ok}");
        }
        for bad in ["1,5", "12.0.1", "e5", "", "."] {
            let flagged = s.hides_text(VR::DS, &strs(bad));
            assert_eq!(flagged, !bad.is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn dates_times_and_codes_holding_other_text_are_flagged() {
        let s = screen();
        let strs = |v: &str| PrimitiveValue::from(v);
        // Found by veil-fuzz: a Study Time whose length was corrupted swallowed the elements
        // after it, the patient's name among them.
        let swallowed = "161900\u{8}\0P\0SH\u{2}\0\x31 \u{8}\0PN\u{c}\0Doe^Jonathan ";
        assert!(s.hides_text(VR::TM, &strs(swallowed)));
        for ok in ["161900", "161900.123456", "16:19:00", "1619-1700", ""] {
            assert!(!s.hides_text(VR::TM, &strs(ok)), "{ok}");
        }
        assert!(!s.hides_text(VR::DA, &strs("20200913")));
        assert!(!s.hides_text(VR::DA, &strs("2020.09.13")));
        assert!(s.hides_text(VR::DA, &strs("Jonathan")));
        assert!(
            !s.hides_text(VR::DA, &strs("19630214")),
            "a study date may equal the birth date"
        );
        assert!(!s.hides_text(VR::DT, &strs("20200913161900.5+0100")));
        assert!(!s.hides_text(VR::AS, &strs("045Y")));
        assert!(s.hides_text(VR::AS, &strs("Doe ")));
        assert!(!s.hides_text(VR::CS, &strs("ORIGINAL\\PRIMARY\\AXIAL")));
        assert!(!s.hides_text(VR::CS, &strs("MR")));
        assert!(s.hides_text(VR::CS, &strs("JONATHAN")));
        assert!(s.hides_text(VR::CS, &strs("A\u{1}B")));
    }

    #[test]
    fn binary_numbers_that_read_as_words_are_flagged() {
        let s = Screen::patterns_only();
        // "DOE^JOHN" written into a US element, in either byte order.
        let le: Vec<u16> = b"DOE^JOHN"
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let be: Vec<u16> = b"DOE^JOHN"
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert!(s.hides_text(VR::US, &PrimitiveValue::U16(le.into())));
        assert!(s.hides_text(VR::US, &PrimitiveValue::U16(be.into())));
        // Ordinary values: rows, a LUT descriptor, window values, a float, a tag.
        assert!(!s.hides_text(VR::US, &PrimitiveValue::from(512u16)));
        assert!(!s.hides_text(
            VR::US,
            &PrimitiveValue::U16([4096u16, 0, 12].as_slice().into())
        ));
        assert!(!s.hides_text(
            VR::FD,
            &PrimitiveValue::F64([0.5f64, 1.25, -3.0].as_slice().into())
        ));
        assert!(!s.hides_text(
            VR::AT,
            &PrimitiveValue::Tags([dicom_core::Tag(0x0018, 0x1060)].as_slice().into())
        ));
    }

    #[test]
    fn binary_values_holding_an_identifier_are_flagged() {
        let s = screen();
        let mut blob = vec![0u8, 1, 2, 255];
        blob.extend_from_slice(b"xxMRN-448812yy");
        blob.extend_from_slice(&[0, 0, 7]);
        assert!(s.hides_text(VR::OB, &PrimitiveValue::U8(blob.into())));
        assert!(s.hides_text(VR::UN, &PrimitiveValue::U8(b"ref Jonathan".to_vec().into())));
        // Random bytes and short name parts are not flagged.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(!s.hides_text(VR::OB, &PrimitiveValue::U8(noise.into())));
        assert!(!s.hides_text(VR::OB, &PrimitiveValue::U8(b"..Q..".to_vec().into())));
        // Text VRs are screened elsewhere.
        assert!(!s.hides_text(VR::LO, &PrimitiveValue::from("Jonathan")));
    }

    #[test]
    fn text_holding_an_element_header_is_corrupt() {
        // (0010,0010) PN, 12 bytes, read as part of the value before it.
        assert!(is_corrupt_text(
            "Testing\u{10}\0\u{10}\0PN\u{c}\0Citizen^Jan "
        ));
        for ok in [
            "CT CHEST",
            "line one\r\nline two\tend",
            "\u{1b}$B;3ED\u{1b}(B",
            "PADDED\0\0",
            "",
        ] {
            assert!(!is_corrupt_text(ok), "{ok:?}");
        }
    }

    #[test]
    fn short_name_parts_match_whole_words_only() {
        let mut ids = Identifiers::default();
        ids.add_person_name("Li^Wu");
        let s = ids.build();
        assert_eq!(clean(&s, "LIVER and WU"), Some("LIVER and".to_string()));
    }
}
