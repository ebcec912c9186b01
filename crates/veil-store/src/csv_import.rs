//! Import of consent statements from CSV with a header row. Columns (any order):
//! `patient_id`, `purpose`, `state` (required); `issuer`, `modalities` (`CT;MR`), `date_from`,
//! `date_to` (`YYYYMMDD` or `YYYY-MM-DD`), `effective_at`, `valid_from`, `valid_until` (when the
//! statement is in force), `source`, `evidence` (optional).
//! Bad rows are reported by line and column; good rows are imported.

use crate::config::Settings;
use crate::consent::{ConsentInput, ConsentState, Scope};
use crate::fhir::BadResource;

/// Parses CSV text into statements plus the rows refused (`index` = line number).
pub fn parse(
    text: &str,
    origin: &str,
    settings: &Settings,
) -> Result<(Vec<ConsentInput>, Vec<BadResource>), String> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| format!("{origin}: header: {e}"))?
        .clone();
    let col = |n: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(n));
    const KNOWN: &[&str] = &[
        "patient_id",
        "issuer",
        "purpose",
        "state",
        "modalities",
        "date_from",
        "date_to",
        "effective_at",
        "valid_from",
        "valid_until",
        "source",
        "evidence",
    ];
    for h in headers.iter() {
        if !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(h)) {
            return Err(format!(
                "{origin}: line 1: unknown column `{h}` (known: {})",
                KNOWN.join(", ")
            ));
        }
    }
    for req in ["patient_id", "purpose", "state"] {
        if col(req).is_none() {
            return Err(format!("{origin}: line 1: missing column `{req}`"));
        }
    }
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                bad.push(BadResource {
                    index: line,
                    field: "row".into(),
                    message: "malformed CSV row (wrong number of fields or bad quoting)".into(),
                });
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let get = |n: &str| col(n).and_then(|i| rec.get(i)).unwrap_or("").to_string();
        let fail = |f: &str, m: &str| BadResource {
            index: line,
            field: f.to_string(),
            message: m.to_string(),
        };
        let patient_id = get("patient_id");
        if patient_id.is_empty() {
            bad.push(fail("patient_id", "empty"));
            continue;
        }
        let purpose = get("purpose");
        if settings.check_purpose(&purpose).is_err() {
            bad.push(fail("purpose", "not a known purpose"));
            continue;
        }
        let Some(state) = ConsentState::parse(&get("state")) else {
            bad.push(fail("state", "must be granted, refused or withdrawn"));
            continue;
        };
        let mut scope = Scope::default();
        for m in get("modalities")
            .split([';', ',', ' '])
            .filter(|m| !m.is_empty())
        {
            scope.modalities.push(m.to_ascii_uppercase());
        }
        let mut ok = true;
        for (f, slot) in [("date_from", &mut scope.from), ("date_to", &mut scope.to)] {
            let v = get(f);
            if !v.is_empty() {
                match crate::time::normalize_date(&v) {
                    Some(d) => *slot = d,
                    None => {
                        bad.push(fail(f, "not a date (YYYYMMDD or YYYY-MM-DD)"));
                        ok = false;
                        break;
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        let eff = get("effective_at");
        let effective_at = if eff.is_empty() {
            String::new()
        } else {
            match crate::time::normalize_timestamp(&eff) {
                Some(t) => t,
                None => {
                    bad.push(fail("effective_at", "not a timestamp"));
                    continue;
                }
            }
        };
        let mut period = [String::new(), String::new()];
        for (slot, f) in period.iter_mut().zip(["valid_from", "valid_until"]) {
            let v = get(f);
            if !v.is_empty() {
                match crate::time::normalize_timestamp(&v) {
                    Some(t) => *slot = t,
                    None => {
                        bad.push(fail(f, "not a timestamp"));
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        let [valid_from, valid_until] = period;
        let source = get("source");
        good.push(ConsentInput {
            patient_id,
            issuer: get("issuer"),
            purpose,
            state,
            scope,
            effective_at,
            valid_from,
            valid_until,
            source: if source.is_empty() {
                format!("csv:{origin}:{line}")
            } else {
                source
            },
            evidence: get("evidence"),
        });
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_errors_by_line() {
        let text = "patient_id,purpose,state,modalities,date_from\nA1,internal-research,granted,CT;MR,2020-01-01\nA2,bogus,granted,,\nA3,commercial-ai-training,maybe,,\nA4,commercial-ai-training,refused,,\n";
        let (good, bad) = parse(text, "c.csv", &Settings::default()).unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].scope.modalities, vec!["CT", "MR"]);
        assert_eq!(good[0].scope.from, "20200101");
        assert_eq!(
            bad.iter()
                .map(|b| (b.index, b.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(3, "purpose"), (4, "state")]
        );
        assert!(
            parse("patient,purpose,state\n", "c.csv", &Settings::default())
                .unwrap_err()
                .contains("unknown column")
        );
    }
}
