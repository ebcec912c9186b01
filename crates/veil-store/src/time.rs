//! UTC timestamps as fixed-width RFC 3339 text (`2026-01-31T12:00:00.000000Z`), so they sort as
//! strings on both back-ends.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in UTC, microsecond precision.
pub fn now_utc() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_unix(d.as_secs() as i64, d.subsec_micros())
}

/// Formats seconds since the epoch.
pub fn format_unix(secs: i64, micros: u32) -> String {
    let t = chrono::DateTime::from_timestamp(secs, micros.min(999_999) * 1000)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH);
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Normalises a user or FHIR timestamp (`2024`, `2024-05`, `2024-05-01`, `2024-05-01T10:00:00Z`,
/// with or without fraction/offset) to the stored form; `None` when it is not one.
/// Offsets are kept as given only when `Z`; other offsets are converted to UTC.
pub fn normalize_timestamp(s: &str) -> Option<String> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    if !digits(0..4) {
        return None;
    }
    let year = num(0..4)?;
    let (mut month, mut day) = (1, 1);
    if b.len() >= 7 {
        if b[4] != b'-' || !digits(5..7) {
            return None;
        }
        month = num(5..7)?;
    }
    if b.len() >= 10 {
        if b[7] != b'-' || !digits(8..10) {
            return None;
        }
        day = num(8..10)?;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if b.len() == 4 || b.len() == 7 || b.len() == 10 {
        return Some(format!("{year:04}-{month:02}-{day:02}T00:00:00.000000Z"));
    }
    if b.len() < 19 || (b[10] != b'T' && b[10] != b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !digits(11..13) || !digits(14..16) || !digits(17..19) {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let mut f = frac[..n.min(6)].to_string();
        while f.len() < 6 {
            f.push('0');
        }
        micros = f.parse().ok()?;
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.as_bytes()[3] == b':' =>
        {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    let secs = midnight + h * 3600 + mi * 60 + se - offset_secs;
    Some(format_unix(secs, micros))
}

/// Normalises a date (`YYYYMMDD` or `YYYY-MM-DD`) to `YYYYMMDD` (the DICOM DA form).
pub fn normalize_date(s: &str) -> Option<String> {
    let s = s.trim();
    let compact: String = s.chars().filter(|c| *c != '-').collect();
    if compact.len() == 8
        && compact.bytes().all(|b| b.is_ascii_digit())
        && (s.len() == 8 || s.len() == 10)
    {
        let m: u32 = compact[4..6].parse().ok()?;
        let d: u32 = compact[6..8].parse().ok()?;
        if (1..=12).contains(&m) && (1..=31).contains(&d) {
            return Some(compact);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_leap_day() {
        assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_unix(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
    }

    #[test]
    fn normalises_fhir_forms() {
        assert_eq!(
            normalize_timestamp("2024").unwrap(),
            "2024-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            normalize_timestamp("2024-03-05").unwrap(),
            "2024-03-05T00:00:00.000000Z"
        );
        assert_eq!(
            normalize_timestamp("2024-03-05T10:00:00+02:00").unwrap(),
            "2024-03-05T08:00:00.000000Z"
        );
        assert_eq!(
            normalize_timestamp("2024-03-05T10:00:00.25Z").unwrap(),
            "2024-03-05T10:00:00.250000Z"
        );
        assert!(normalize_timestamp("yesterday").is_none());
        assert!(normalize_timestamp("2024-13-01").is_none());
        assert_eq!(normalize_date("2024-03-05").unwrap(), "20240305");
        assert!(normalize_date("2024035").is_none());
    }
}
