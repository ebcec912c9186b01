//! What looks like a person, a place, a date, an old age or an identifying number in released
//! free text, found the verifier's own way: a hand-written scanner over the text's words and
//! numbers (no regular expressions) and its own list of person and place names
//! (`reference/verify-names.txt`: census names and GeoNames places that are not common words).
//!
//! The engine keeps what its allowlist knows; this looks for what must not be there, with other
//! lists and another method, so the two do not share a blind spot. Nothing here comes from the
//! engine crates.

use std::collections::HashSet;
use std::sync::OnceLock;

const NAMES: &str = include_str!("../../../reference/verify-names.txt");
const PERSON_NAMES: &str = include_str!("../../../reference/verify-person-names.txt");

fn person_names() -> &'static Sorted {
    static SET: OnceLock<Sorted> = OnceLock::new();
    SET.get_or_init(|| Sorted::parse(PERSON_NAMES))
}

/// Words after which a given name is a person's, whatever else the word means ("husband
/// Mark", "née Rose").
const KIN_WORDS: &[&str] = &[
    "mother",
    "father",
    "husband",
    "wife",
    "son",
    "daughter",
    "brother",
    "sister",
    "partner",
    "spouse",
    "friend",
    "neighbour",
    "neighbor",
    "uncle",
    "aunt",
    "cousin",
    "grandmother",
    "grandfather",
    "née",
    "nee",
    "mr",
    "mrs",
    "ms",
    "miss",
    "dr",
    "sir",
    "madam",
    "mutter",
    "vater",
    "ehemann",
    "ehefrau",
    "tochter",
    "sohn",
    "mère",
    "père",
    "mari",
    "femme",
];

/// Is the letter of a script other than Latin (CJK, kana, Hangul, Cyrillic, Greek, Arabic,
/// Hebrew, Thai...)? Released free text is cleaned to vocabulary terms, which are Latin; a word
/// in another script is someone's name or words nobody checked.
fn other_script(c: char) -> bool {
    c.is_alphabetic()
        && !matches!(c as u32, 0..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF | 0xFB00..=0xFB06)
}

/// Latin letters without their accents, for the name lists (which are ASCII): ü → u, é → e.
fn unaccented(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => 'a',
            'ç' | 'č' | 'ć' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ě' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'ů' => 'u',
            'ý' | 'ÿ' => 'y',
            'š' | 'ś' => 's',
            'ž' | 'ź' | 'ż' => 'z',
            'ł' => 'l',
            'ř' => 'r',
            c => c,
        })
        .collect()
}

fn names() -> &'static Sorted {
    static SET: OnceLock<Sorted> = OnceLock::new();
    SET.get_or_init(|| Sorted::parse(NAMES))
}

/// A generated list, sorted by its generator: binary search, no hash set to build per process.
struct Sorted(Vec<&'static str>);

impl Sorted {
    fn parse(text: &'static str) -> Sorted {
        let mut v: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        if !v.windows(2).all(|w| w[0] < w[1]) {
            v.sort_unstable();
        }
        Sorted(v)
    }

    fn contains(&self, w: &str) -> bool {
        self.0.binary_search(&w).is_ok()
    }
}

/// Month words (English, German, French, Spanish, Italian, Dutch), lower case, accents as
/// written and without.
const MONTH_WORDS: &[&str] = &[
    "january",
    "jan",
    "januar",
    "janvier",
    "enero",
    "ene",
    "gennaio",
    "gen",
    "januari",
    "february",
    "feb",
    "februar",
    "fevrier",
    "février",
    "fév",
    "fev",
    "febrero",
    "febbraio",
    "februari",
    "march",
    "mar",
    "märz",
    "marz",
    "maerz",
    "mars",
    "marzo",
    "maart",
    "april",
    "apr",
    "avril",
    "avr",
    "abril",
    "abr",
    "aprile",
    "may",
    "mai",
    "mayo",
    "maggio",
    "mei",
    "june",
    "jun",
    "juni",
    "juin",
    "junio",
    "giugno",
    "giu",
    "july",
    "jul",
    "juli",
    "juillet",
    "juil",
    "julio",
    "luglio",
    "lug",
    "august",
    "aug",
    "août",
    "aout",
    "agosto",
    "ago",
    "augustus",
    "september",
    "sep",
    "sept",
    "septembre",
    "septiembre",
    "settembre",
    "set",
    "october",
    "oct",
    "oktober",
    "okt",
    "octobre",
    "octubre",
    "ottobre",
    "ott",
    "november",
    "nov",
    "novembre",
    "noviembre",
    "december",
    "dec",
    "dezember",
    "dez",
    "décembre",
    "decembre",
    "déc",
    "diciembre",
    "dicembre",
    "dic",
];

const ROMAN_MONTHS: &[&str] = &[
    "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii",
];

/// Words that say a number before them is an age in years.
const YEAR_WORDS: &[&str] = &[
    "y", "yo", "yr", "yrs", "year", "years", "j", "jahr", "jahre", "ans", "an", "años", "anos",
    "anni", "jaar",
];

/// Words that say a number after them is an age.
const AGE_WORDS: &[&str] = &["age", "aged", "ages", "alter", "âge", "edad", "età", "eta"];

/// Street words: a number next to one makes an address.
const STREET_WORDS: &[&str] = &[
    "street",
    "st",
    "road",
    "rd",
    "avenue",
    "ave",
    "lane",
    "ln",
    "drive",
    "boulevard",
    "blvd",
    "highway",
    "terrace",
    "crescent",
    "strasse",
    "straße",
    "str",
    "weg",
    "gasse",
    "allee",
    "platz",
    "rue",
    "via",
    "viale",
    "calle",
    "avenida",
    "piazza",
    "straat",
    "laan",
];

/// One word or number of the text, with its byte span.
#[derive(Debug, Clone)]
struct Piece {
    start: usize,
    end: usize,
    /// Lower-case, full-width forms turned into ASCII.
    text: String,
    number: bool,
    /// The characters between this piece and the next.
    gap: String,
}

/// Full-width ASCII (U+FF01..U+FF5E) as ASCII, then lower case.
fn plain(c: char) -> impl Iterator<Item = char> {
    let c = match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    c.to_lowercase()
}

fn pieces(text: &str) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, c) in text.char_indices() {
        let word_char = plain(c).all(char::is_alphanumeric);
        match (&mut cur, word_char) {
            (Some((_, s)), true) => s.extend(plain(c)),
            (None, true) => {
                cur = Some((i, plain(c).collect()));
            }
            (Some(_), false) => {
                let (start, s) = cur.take().expect("a piece");
                push(&mut out, start, i, s);
                out.last_mut().expect("pushed").gap.push(c);
            }
            (None, false) => {
                if let Some(last) = out.last_mut() {
                    last.gap.push(c);
                }
            }
        }
    }
    if let Some((start, s)) = cur {
        push(&mut out, start, text.len(), s);
    }
    out
}

fn push(out: &mut Vec<Piece>, start: usize, end: usize, text: String) {
    let number = text.chars().all(|c| c.is_ascii_digit());
    out.push(Piece {
        start,
        end,
        text,
        number,
        gap: String::new(),
    });
}

/// A finding in one text value: which rule, and the byte range.
#[derive(Debug, PartialEq)]
pub struct Hit {
    pub rule: &'static str,
    pub start: usize,
    pub end: usize,
}

fn value(p: &Piece) -> Option<u32> {
    if p.number && p.text.len() <= 4 {
        p.text.parse().ok()
    } else {
        None
    }
}

fn is_year(p: &Piece) -> bool {
    p.text.len() == 4 && value(p).is_some_and(|y| (1800..=2099).contains(&y))
}

/// Days written as ordinal words ("fifth", "twenty-first" is two pieces: "first" counts).
const DAY_WORDS: &[&str] = &[
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "thirtieth",
];

fn is_day(p: &Piece) -> bool {
    if DAY_WORDS.contains(&p.text.as_str()) {
        return true;
    }
    let digits: String = p.text.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &p.text[digits.len()..];
    !digits.is_empty()
        && digits.len() <= 2
        && matches!(suffix, "" | "st" | "nd" | "rd" | "th" | "er" | "e")
        && digits.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
}

/// A separator a date or number chain may have between its parts: one or two of . / - space
/// ( ) +, nothing else.
fn joins(gap: &str) -> bool {
    !gap.is_empty()
        && gap.chars().count() <= 2
        && gap
            .chars()
            .all(|c| matches!(c, '.' | '/' | '-' | ' ' | '(' | ')' | '+'))
}

/// Three numbers that read as a date in some order (day, month, year of 2 or 4 digits).
fn numeric_date(a: &Piece, b: &Piece, c: &Piece) -> bool {
    let (Some(x), Some(y), Some(z)) = (value(a), value(b), value(c)) else {
        return false;
    };
    let month = |m: u32| (1..=12).contains(&m);
    let day = |d: u32| (1..=31).contains(&d);
    let year = |p: &Piece| is_year(p) || p.text.len() == 2;
    (is_year(a) && month(y) && day(z))
        || (is_year(a) && day(y) && month(z))
        || (year(c) && day(x) && month(y))
        || (year(c) && month(x) && day(y))
}

/// Numbers separated by single spaces that go up ("50 400 800 1200": b-values, echo times),
/// none with a leading zero, each at most two digits or a multiple of ten: measurements, not a
/// phone or chart number.
fn ascending_values(chain: &[Piece]) -> bool {
    let spaced = chain[..chain.len() - 1].iter().all(|p| p.gap == " ");
    let mut last: Option<u32> = None;
    spaced
        && chain.iter().all(|p| {
            let Some(v) = value(p) else { return false };
            let ok = (p.text.len() == 1 || !p.text.starts_with('0'))
                && (p.text.len() <= 2 || v % 10 == 0)
                && last.is_none_or(|l| l < v);
            last = Some(v);
            ok
        })
}

/// Scans one free-text value. `allowed`: terms the policy added to the engine's vocabulary
/// (lower case), which are not findings here either.
pub fn scan(text: &str, allowed: &HashSet<String>) -> Vec<Hit> {
    let ps = pieces(text);
    let mut hits = Vec::new();
    let mut hit = |rule, from: &Piece, to: &Piece| {
        hits.push(Hit {
            rule,
            start: from.start,
            end: to.end,
        })
    };
    for (i, p) in ps.iter().enumerate() {
        let next = ps.get(i + 1);
        let after = ps.get(i + 2);
        // Names and places; given names after a kinship word or title; other scripts.
        let plain_text = unaccented(&p.text);
        if !p.number
            && p.text.chars().count() >= 3
            && (names().contains(&p.text) || names().contains(&plain_text))
            && !allowed.contains(&p.text)
        {
            hit(
                "free_text:name_or_place a person or place name in free text",
                p,
                p,
            );
        }
        if let Some(n) = next {
            if KIN_WORDS.contains(&p.text.as_str())
                && !n.number
                && n.text.chars().count() >= 3
                && person_names().contains(&unaccented(&n.text))
                && !allowed.contains(&n.text)
            {
                hit(
                    "free_text:name_or_place a person name after a kinship word or title",
                    p,
                    n,
                );
            }
        }
        if p.text.chars().any(other_script) && !allowed.contains(&p.text) {
            hit(
                "free_text:script a word in a script no vocabulary term uses",
                p,
                p,
            );
        }
        // Dates: three numbers; a month word next to a day or a year; year and month.
        if let (Some(n), Some(a)) = (next, after) {
            if joins(&p.gap) && joins(&n.gap) && numeric_date(p, n, a) {
                hit("free_text:date three numbers that read as a date", p, a);
            }
            if ROMAN_MONTHS.contains(&n.text.as_str()) && is_day(p) && a.number && joins(&p.gap) {
                hit("free_text:date a date with a Roman-numeral month", p, a);
            }
        }
        if MONTH_WORDS.contains(&p.text.as_str()) {
            let prev = i.checked_sub(1).map(|k| &ps[k]);
            let prev = match prev {
                Some(q) if q.text == "of" || q.text == "de" => i.checked_sub(2).map(|k| &ps[k]),
                q => q,
            };
            let near = |q: Option<&Piece>| q.is_some_and(|q| is_day(q) || is_year(q));
            if near(prev) || near(next) {
                hit(
                    "free_text:date a month name next to a day or year",
                    prev.unwrap_or(p),
                    next.unwrap_or(p),
                );
            }
        }
        if let Some(n) = next {
            let month = |q: &Piece| value(q).is_some_and(|m| (1..=12).contains(&m));
            if matches!(p.gap.as_str(), "/" | "-" | ".")
                && ((is_year(p) && month(n) && n.text.len() <= 2)
                    || (month(p) && p.text.len() <= 2 && is_year(n)))
            {
                hit("free_text:date a month and a year", p, n);
            }
            // Ages over 89.
            let years = YEAR_WORDS.contains(&n.text.as_str());
            if years && value(p).is_some_and(|a| (90..150).contains(&a)) {
                hit("free_text:age an age over 89", p, n);
            }
            if AGE_WORDS.contains(&p.text.as_str())
                && value(n).is_some_and(|a| (90..150).contains(&a))
            {
                hit("free_text:age an age over 89", p, n);
            }
            // A house number next to a street word.
            let street = |q: &Piece| {
                STREET_WORDS.contains(&q.text.as_str())
                    || ["strasse", "straße", "str", "weg", "gasse", "allee", "platz"]
                        .iter()
                        .any(|s| q.text.len() > s.len() && q.text.ends_with(s))
            };
            // A house number with a street word among the next four words, or after one.
            let ahead = ps[i + 1..(i + 5).min(ps.len())].iter().position(street);
            if p.number && p.text.len() <= 5 && ahead.is_some() {
                hit(
                    "free_text:address a house number and a street",
                    p,
                    &ps[i + 1 + ahead.unwrap_or(0)],
                );
            }
            if street(p) && n.number && n.text.len() <= 5 && !p.gap.contains('\n') {
                hit("free_text:address a house number and a street", p, n);
            }
        }
        // Ages written as DICOM ages (093Y).
        if p.text.len() == 4 && p.text.ends_with('y') {
            if let Ok(a) = p.text[..3].parse::<u32>() {
                if (90..150).contains(&a) {
                    hit("free_text:age an age over 89", p, p);
                }
            }
        }
        // Chains of digit groups: phone and chart numbers; long numbers.
        if p.number && (i == 0 || !(ps[i - 1].number && joins(&ps[i - 1].gap))) {
            let mut k = i;
            let mut digits = p.text.len();
            let mut dots_only = true;
            while k + 1 < ps.len() && ps[k + 1].number && joins(&ps[k].gap) {
                dots_only &= ps[k].gap == ".";
                k += 1;
                digits += ps[k].text.len();
            }
            let decimal = k == i + 1 && dots_only;
            if digits >= 5 && !decimal && !ascending_values(&ps[i..=k]) {
                hit(
                    "free_text:number digits of a phone, chart or record number",
                    p,
                    &ps[k],
                );
            }
        }
        // E-mail and web addresses.
        if p.gap.starts_with('@') || p.gap.starts_with("://") || p.text == "www" && p.gap == "." {
            hit(
                "free_text:address an e-mail or web address",
                p,
                next.unwrap_or(p),
            );
        }
    }
    hits
}

/// The encoding of the data set's text when it is one the walker does not read itself (it reads
/// UTF-8, else Latin-1): from the top-level Specific Character Set.
pub fn charset_of(p: &crate::walk::Parsed, bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let e = p
        .elems
        .iter()
        .find(|e| e.tag == 0x0008_0005 && e.parent.is_none())?;
    let value = p.text(bytes, e).to_string();
    let last = value.split('\\').map(str::trim).rfind(|v| !v.is_empty())?;
    Some(match last {
        "GB18030" | "GBK" | "ISO 2022 IR 58" => encoding_rs::GB18030,
        "ISO_IR 101" | "ISO 2022 IR 101" => encoding_rs::ISO_8859_2,
        "ISO_IR 109" | "ISO 2022 IR 109" => encoding_rs::ISO_8859_3,
        "ISO_IR 110" | "ISO 2022 IR 110" => encoding_rs::ISO_8859_4,
        "ISO_IR 144" | "ISO 2022 IR 144" => encoding_rs::ISO_8859_5,
        "ISO_IR 127" | "ISO 2022 IR 127" => encoding_rs::ISO_8859_6,
        "ISO_IR 126" | "ISO 2022 IR 126" => encoding_rs::ISO_8859_7,
        "ISO_IR 138" | "ISO 2022 IR 138" => encoding_rs::ISO_8859_8,
        "ISO_IR 148" | "ISO 2022 IR 148" => encoding_rs::WINDOWS_1254,
        "ISO_IR 166" | "ISO 2022 IR 166" => encoding_rs::WINDOWS_874,
        "ISO 2022 IR 87" | "ISO_IR 87" | "ISO 2022 IR 159" => encoding_rs::ISO_2022_JP,
        "ISO 2022 IR 149" | "ISO_IR 149" => encoding_rs::EUC_KR,
        "ISO_IR 13" | "ISO 2022 IR 13" => encoding_rs::SHIFT_JIS,
        _ => return None,
    })
}

/// Attributes people type prose or labels into, by keyword (the verifier's own reading): the
/// free-text VRs always, short texts when the keyword says so.
pub fn is_free_text(vr: &[u8; 2], keyword: Option<&str>) -> bool {
    const WORDS: [&str; 12] = [
        "Description",
        "Comment",
        "History",
        "Diagnos",
        "Label",
        "Reason",
        "Text",
        "Note",
        "Annotation",
        "AlgorithmName",
        "ROIName",
        "Occupation",
    ];
    match vr {
        b"ST" | b"LT" | b"UT" => true,
        b"LO" | b"SH" | b"UC" => {
            keyword.is_some_and(|k| k != "CodeMeaning" && WORDS.iter().any(|w| k.contains(w)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<&'static str> {
        scan(text, &HashSet::new())
            .into_iter()
            .map(|h| h.rule.split(' ').next().unwrap())
            .collect()
    }

    #[test]
    fn clean_descriptions_give_nothing() {
        for d in [
            "CT HEAD W/O CONTRAST",
            "AX T1 POST GAD",
            "Thorax 1.0 B31f",
            "Sag T2 FLAIR 3mm",
            "DWI b1000 ADC",
            "CHEST PA and LATERAL",
            "series 3 of 12",
            "0.625 mm",
            "age 45",
            "ep2d_diff_b 50 400 800 1200_ADC",
        ] {
            assert!(rules(d).is_empty(), "{d}: {:?}", rules(d));
        }
    }

    #[test]
    fn finds_every_kind() {
        for (text, rule) in [
            ("seen in Regensburg", "free_text:name_or_place"),
            ("Kowalczyk called", "free_text:name_or_place"),
            ("born 13th of February 1958", "free_text:date"),
            ("1958 02 13", "free_text:date"),
            ("13.II.1958", "free_text:date"),
            ("1958-Feb-13", "free_text:date"),
            ("since 02/1958", "free_text:date"),
            ("13 février 1958", "free_text:date"),
            ("on the fifth of March", "free_text:date"),
            ("93 y.o.", "free_text:age"),
            ("aged 97", "free_text:age"),
            ("tel 09419 155 769", "free_text:number"),
            ("chart 12-345-678", "free_text:number"),
            ("12 Main Street", "free_text:address"),
            ("Hauptstraße 5", "free_text:address"),
            ("j.doe@example.org", "free_text:address"),
            ("ＫＯＷＡＬＣＺＹＫ", "free_text:name_or_place"),
            ("husband Mark visited", "free_text:name_or_place"),
            ("reviewed by Dr Smith", "free_text:name_or_place"),
            ("RÜDIGER called", "free_text:name_or_place"),
            ("CT 山田 太郎", "free_text:script"),
            ("chest Иванов", "free_text:script"),
        ] {
            assert!(rules(text).contains(&rule), "{text}: {:?}", rules(text));
        }
    }
}
