//! Value-level helpers: VR-correct dummy values, date shifting, age handling.

use chrono::{Datelike, Duration, NaiveDate};
use dicom_core::value::PrimitiveValue;
use dicom_core::VR;

/// A dummy text value consistent with the VR (PS3.15 action D), or `None` where the VR has no
/// meaningful dummy (binary data), in which case the value is emptied instead.
pub fn dummy_text(vr: VR) -> Option<&'static str> {
    Some(match vr {
        VR::AE | VR::CS | VR::LO | VR::LT | VR::SH | VR::ST | VR::UT | VR::UC | VR::PN => {
            "ANONYMIZED"
        }
        VR::DA => "19000101",
        VR::TM => "000000",
        VR::DT => "19000101000000",
        VR::AS => "000D",
        VR::DS | VR::IS => "0",
        VR::UR => "urn:veil:anonymized",
        _ => return None,
    })
}

/// Is the VR a text VR whose values people write free text or names into?
pub fn is_text_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::LO | VR::SH | VR::ST | VR::LT | VR::UT | VR::UC | VR::PN | VR::AE
    )
}

/// Shifts a DA value (`YYYYMMDD`, also the legacy `YYYY.MM.DD`) by `days`. Partial dates
/// (`YYYY`, `YYYYMM`) are shifted through their first day and truncated back to their precision,
/// so a shifted value never claims more precision than the original. `None` if unparseable.
pub fn shift_da(value: &str, days: i64) -> Option<String> {
    let v: String = value.trim().chars().filter(|c| *c != '.').collect();
    // Byte slicing below: a corrupt value with multi-byte characters is simply not a date.
    if !v.is_ascii() {
        return None;
    }
    let (y, m, d, precision) = match v.len() {
        8 => (&v[0..4], &v[4..6], &v[6..8], 3),
        6 => (&v[0..4], &v[4..6], "01", 2),
        4 => (&v[0..4], "01", "01", 1),
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
    let shifted = date.checked_add_signed(Duration::days(days))?;
    if !(0..=9999).contains(&shifted.year()) {
        return None;
    }
    Some(match precision {
        3 => format!(
            "{:04}{:02}{:02}",
            shifted.year(),
            shifted.month(),
            shifted.day()
        ),
        2 => format!("{:04}{:02}", shifted.year(), shifted.month()),
        _ => format!("{:04}", shifted.year()),
    })
}

/// Shifts the date part of a DT value (`YYYYMMDDHHMMSS.FFFFFF&ZZXX`), keeping time and offset.
pub fn shift_dt(value: &str, days: i64) -> Option<String> {
    let v = value.trim();
    let date_len = v
        .char_indices()
        .take_while(|(i, c)| *i < 8 && c.is_ascii_digit())
        .count();
    if date_len < 4 {
        return None;
    }
    let date_len = match date_len {
        8 => 8,
        6 | 7 => 6,
        _ => 4,
    };
    let shifted = shift_da(&v[..date_len], days)?;
    Some(format!("{shifted}{}", &v[date_len..]))
}

/// Caps an AS value at 90 years: ages over 89 are reported as `090Y` (PS3.15 and HIPAA Safe
/// Harbor both treat ages above 89 as identifying). `None` if unparseable.
pub fn cap_age(value: &str) -> Option<String> {
    let v = value.trim();
    if v.len() != 4 || !v.is_ascii() {
        return None;
    }
    let n: u32 = v[..3].parse().ok()?;
    let years = match &v[3..] {
        "Y" => n as f64,
        "M" => n as f64 / 12.0,
        "W" => n as f64 / 52.18,
        "D" => n as f64 / 365.25,
        _ => return None,
    };
    Some(if years > 89.0 {
        "090Y".to_string()
    } else {
        v.to_string()
    })
}

/// Age in whole years at `on` for someone born on `birth` (both `YYYYMMDD`), as an AS value
/// capped at `090Y`.
pub fn age_between(birth: &str, on: &str) -> Option<String> {
    let parse = |s: &str| {
        let s = s.trim();
        // `get`: a corrupt value may hold multi-byte characters (found by veil-fuzz: a panic).
        NaiveDate::parse_from_str(s.get(..8)?, "%Y%m%d").ok()
    };
    let (b, o) = (parse(birth)?, parse(on)?);
    if o < b {
        return None;
    }
    let mut years = o.year() - b.year();
    if (o.month(), o.day()) < (b.month(), b.day()) {
        years -= 1;
    }
    Some(if years > 89 {
        "090Y".to_string()
    } else {
        format!("{years:03}Y")
    })
}

/// Binary VRs that hold numbers (US, SS, UL, SL, UV, SV, FL, FD): compared value by value with
/// the dataset's identifier digit strings.
pub fn is_binary_number_vr(vr: VR) -> bool {
    matches!(
        vr,
        VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV | VR::FL | VR::FD
    )
}

/// The digits of each whole number of a binary value (fractions: `None`).
fn binary_digits(value: &PrimitiveValue) -> Vec<Option<String>> {
    fn int<T: ToString>(v: &[T]) -> Vec<Option<String>> {
        v.iter()
            .map(|x| crate::screen::whole_number_digits(&x.to_string()))
            .collect()
    }
    fn float(v: impl Iterator<Item = f64>) -> Vec<Option<String>> {
        v.map(|x| {
            (x.is_finite() && x.fract() == 0.0 && x.abs() < 1e18)
                .then(|| crate::screen::whole_number_digits(&format!("{}", x.abs() as u64)))
                .flatten()
        })
        .collect()
    }
    match value {
        PrimitiveValue::U16(v) => int(v),
        PrimitiveValue::I16(v) => int(v),
        PrimitiveValue::U32(v) => int(v),
        PrimitiveValue::I32(v) => int(v),
        PrimitiveValue::U64(v) => int(v),
        PrimitiveValue::I64(v) => int(v),
        PrimitiveValue::F32(v) => float(v.iter().map(|x| *x as f64)),
        PrimitiveValue::F64(v) => float(v.iter().copied()),
        _ => Vec::new(),
    }
}

/// Does any number of a binary value carry an identifier (as `carries` judges its digits)?
pub fn numbers_carry(value: &PrimitiveValue, carries: impl Fn(&str) -> bool) -> bool {
    binary_digits(value).iter().flatten().any(|d| carries(d))
}

/// The value with every number that carries an identifier set to 0, and how many were; `None`
/// when none does.
pub fn replace_numbers(
    value: &PrimitiveValue,
    carries: impl Fn(&str) -> bool,
) -> Option<(PrimitiveValue, u64)> {
    let flags: Vec<bool> = binary_digits(value)
        .iter()
        .map(|d| d.as_deref().is_some_and(&carries))
        .collect();
    let n = flags.iter().filter(|f| **f).count() as u64;
    if n == 0 {
        return None;
    }
    macro_rules! zeroed {
        ($v:expr, $variant:ident, $zero:expr) => {
            PrimitiveValue::$variant(
                $v.iter()
                    .zip(&flags)
                    .map(|(x, f)| if *f { $zero } else { *x })
                    .collect(),
            )
        };
    }
    let out = match value {
        PrimitiveValue::U16(v) => zeroed!(v, U16, 0),
        PrimitiveValue::I16(v) => zeroed!(v, I16, 0),
        PrimitiveValue::U32(v) => zeroed!(v, U32, 0),
        PrimitiveValue::I32(v) => zeroed!(v, I32, 0),
        PrimitiveValue::U64(v) => zeroed!(v, U64, 0),
        PrimitiveValue::I64(v) => zeroed!(v, I64, 0),
        PrimitiveValue::F32(v) => zeroed!(v, F32, 0.0),
        PrimitiveValue::F64(v) => zeroed!(v, F64, 0.0),
        _ => return None,
    };
    Some((out, n))
}

#[cfg(test)]
mod tests {
    #[test]
    fn corrupt_multibyte_values_are_not_dates_and_do_not_panic() {
        let bad = "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}";
        assert_eq!(super::age_between(bad, "20200101"), None);
        assert_eq!(super::age_between("19500101", bad), None);
        assert_eq!(super::shift_da("\u{FFFD}\u{FFFD}ab", 3), None);
        assert_eq!(super::shift_da("ab\u{FFFD}", 3), None);
        assert_eq!(super::cap_age("12\u{e9}"), None);
    }

    use super::*;

    #[test]
    fn shifts_dates_preserving_precision() {
        assert_eq!(shift_da("20200301", -1).unwrap(), "20200229");
        assert_eq!(shift_da("2020.03.01", -1).unwrap(), "20200229");
        assert_eq!(shift_da("202003", -40).unwrap(), "202001");
        assert_eq!(shift_da("2020", -400).unwrap(), "2018");
        assert_eq!(shift_da("garbage", 3), None);
        assert_eq!(shift_da("20201340", 3), None);
    }

    #[test]
    fn shifts_datetimes_keeping_time_and_offset() {
        assert_eq!(
            shift_dt("20200301120000.5+0100", -1).unwrap(),
            "20200229120000.5+0100"
        );
        assert_eq!(shift_dt("2020", 366).unwrap(), "2021");
    }

    #[test]
    fn ages() {
        assert_eq!(cap_age("095Y").unwrap(), "090Y");
        assert_eq!(cap_age("089Y").unwrap(), "089Y");
        assert_eq!(cap_age("011M").unwrap(), "011M");
        assert_eq!(age_between("19300615", "20200614").unwrap(), "089Y");
        assert_eq!(age_between("19300615", "20200615").unwrap(), "090Y");
        assert_eq!(age_between("19800101", "20200101").unwrap(), "040Y");
    }
}
