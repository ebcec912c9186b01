//! DICOM PS3.15 Table E.1-1 and Table E.3.10-1 as data, embedded at build time from
//! `reference/` (see reference/README.md for provenance).

use std::sync::OnceLock;

use crate::action::Action;
use crate::options::ProfileOption;

pub(crate) const TABLE_E1_1: &str = include_str!("../../../reference/ps3.15-table-e.1-1.csv");
pub(crate) const SAFE_PRIVATE: &str =
    include_str!("../../../reference/safe_private_attributes.csv");
/// Veil's additions to Table E.1-1: attributes the table does not list that carry identity by the
/// standard's own logic (issuer sequences name the institution; reference/README.md says why).
pub(crate) const VEIL_ADDITIONS: &str = include_str!("../../../reference/veil-additions.csv");

/// Which attributes a row of Table E.1-1 covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagPattern {
    /// One attribute, e.g. (0010,0010).
    Exact(u32),
    /// Repeating groups such as (50XX,XXXX) or (60XX,3000): `value` under `mask`.
    Masked { value: u32, mask: u32 },
    /// (GGGG,EEEE) WHERE GGGG IS ODD: every private attribute.
    Private,
}

impl TagPattern {
    /// Does this pattern cover `tag`?
    pub fn matches(&self, tag: u32) -> bool {
        match *self {
            TagPattern::Exact(t) => t == tag,
            TagPattern::Masked { value, mask } => tag & mask == value,
            TagPattern::Private => (tag >> 16) & 1 == 1,
        }
    }

    fn parse(text: &str) -> Option<TagPattern> {
        if text.contains("GGGG") {
            return Some(TagPattern::Private);
        }
        let inner = text.trim().strip_prefix('(')?.split(')').next()?;
        let (g, e) = inner.split_once(',')?;
        let hex: String = format!("{g}{e}");
        if hex.len() != 8 {
            return None;
        }
        let mut value = 0u32;
        let mut mask = 0u32;
        for c in hex.chars() {
            value <<= 4;
            mask <<= 4;
            if let Some(d) = c.to_digit(16) {
                value |= d;
                mask |= 0xF;
            } else if c != 'X' && c != 'x' {
                return None;
            }
        }
        Some(if mask == u32::MAX {
            TagPattern::Exact(value)
        } else {
            TagPattern::Masked { value, mask }
        })
    }
}

/// One row of Table E.1-1.
#[derive(Debug, Clone)]
pub struct TableRow {
    pub pattern: TagPattern,
    /// The tag as the standard writes it, e.g. `(0010,0010)`.
    pub tag_text: String,
    pub keyword: String,
    pub name: String,
    pub vr: String,
    /// The Basic Profile action.
    pub basic: Action,
    /// The action each option column gives, where it gives one.
    pub option_actions: Vec<(ProfileOption, Action)>,
}

/// One row of the safe private attributes table.
#[derive(Debug, Clone)]
pub struct SafePrivateRow {
    pub group: u16,
    pub element_low: u8,
    pub creator: String,
    pub vr: String,
    pub meaning: String,
}

/// The parsed Table E.1-1, parsed once per process.
pub fn table_e1_1() -> &'static [TableRow] {
    static TABLE: OnceLock<Vec<TableRow>> = OnceLock::new();
    TABLE.get_or_init(|| parse_table(TABLE_E1_1).expect("embedded Table E.1-1 is well-formed"))
}

/// Veil's additions to Table E.1-1, in the same columns (never a tag the table lists).
pub fn veil_additions() -> &'static [TableRow] {
    static TABLE: OnceLock<Vec<TableRow>> = OnceLock::new();
    TABLE.get_or_init(|| parse_table(VEIL_ADDITIONS).expect("embedded additions are well-formed"))
}

/// The parsed safe private attributes table.
pub fn safe_private_table() -> &'static [SafePrivateRow] {
    static TABLE: OnceLock<Vec<SafePrivateRow>> = OnceLock::new();
    TABLE.get_or_init(|| {
        parse_safe_private(SAFE_PRIVATE).expect("embedded safe private table is well-formed")
    })
}

fn parse_table(text: &str) -> Result<Vec<TableRow>, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("Table E.1-1 has no column {name}"))
    };
    let (tag_i, kw_i, name_i, vr_i, basic_i) = (
        col("tag")?,
        col("keyword")?,
        col("name")?,
        col("vr")?,
        col("basic_profile")?,
    );
    let option_cols: Vec<(ProfileOption, usize)> = ProfileOption::ALL
        .iter()
        .filter_map(|o| o.table_column().map(|c| col(c).map(|i| (*o, i))))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        let tag_text = record[tag_i].to_string();
        let pattern = TagPattern::parse(&tag_text)
            .ok_or_else(|| format!("Table E.1-1 row {}: bad tag {tag_text}", line + 2))?;
        let basic = Action::parse(&record[basic_i])
            .ok_or_else(|| format!("Table E.1-1 row {}: bad action", line + 2))?;
        let mut option_actions = Vec::new();
        for (opt, i) in &option_cols {
            let code = record[*i].trim();
            if !code.is_empty() {
                let a = Action::parse(code).ok_or_else(|| {
                    format!("Table E.1-1 row {}: bad option action {code}", line + 2)
                })?;
                option_actions.push((*opt, a));
            }
        }
        rows.push(TableRow {
            pattern,
            tag_text,
            keyword: record[kw_i].to_string(),
            name: record[name_i].to_string(),
            vr: record[vr_i].to_string(),
            basic,
            option_actions,
        });
    }
    Ok(rows)
}

fn parse_safe_private(text: &str) -> Result<Vec<SafePrivateRow>, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let r = record.map_err(|e| e.to_string())?;
        let group = u16::from_str_radix(r[0].trim(), 16).map_err(|e| e.to_string())?;
        let element = r[1].trim();
        let low = element
            .strip_prefix("xx")
            .or_else(|| element.strip_prefix("XX"))
            .ok_or_else(|| format!("safe private element {element} is not of the form xxEE"))?;
        let element_low = u8::from_str_radix(low, 16).map_err(|e| e.to_string())?;
        rows.push(SafePrivateRow {
            group,
            element_low,
            creator: r[2].to_string(),
            vr: r[3].to_string(),
            meaning: r[5].to_string(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_row_and_pattern() {
        let t = table_e1_1();
        assert_eq!(t.len(), 621);
        assert!(t.iter().any(|r| r.pattern == TagPattern::Private));
        let curve = t.iter().find(|r| r.tag_text.starts_with("(50XX")).unwrap();
        assert!(curve.pattern.matches(0x5002_0010));
        assert!(!curve.pattern.matches(0x6002_0010));
        let overlay = t.iter().find(|r| r.tag_text == "(60XX,3000)").unwrap();
        assert!(overlay.pattern.matches(0x6002_3000));
        assert!(!overlay.pattern.matches(0x6002_0010));
        let name = t.iter().find(|r| r.keyword == "PatientName").unwrap();
        assert_eq!(name.basic, Action::Z);
    }

    #[test]
    fn additions_list_only_attributes_the_table_does_not() {
        let listed: std::collections::HashSet<&str> =
            table_e1_1().iter().map(|r| r.tag_text.as_str()).collect();
        assert!(veil_additions().len() >= 10);
        for r in veil_additions() {
            assert!(
                !listed.contains(r.tag_text.as_str()),
                "{} is in Table E.1-1",
                r.tag_text
            );
        }
    }

    #[test]
    fn safe_private_table_parses() {
        let t = safe_private_table();
        assert_eq!(t.len(), 130);
        assert!(t
            .iter()
            .any(|r| r.creator == "GEMS_ACQU_01" && r.group == 0x0019));
    }
}
