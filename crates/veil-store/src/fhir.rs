//! Import of FHIR R4 `Consent` resources (JSON: one resource or a `Bundle` of them).
//!
//! Mapping: `status` active → the provision's `type` (permit = granted, deny = refused),
//! inactive → withdrawn, rejected → refused (draft, proposed and entered-in-error are not in
//! force and are reported). `patient.identifier.value` (or the id in `patient.reference`) is the
//! patient ID, recorded without issuer (it applies to that ID under any issuer). `dateTime` is when
//! it took effect. Purposes come from `provision.purpose[].code`: Veil's purpose names, or the
//! HL7 v3 ActReason codes TREAT (clinical care), HQUALIMP (quality improvement), HRESCH
//! (internal research). `provision.code[].coding[].code` restricts to modalities,
//! `provision.dataPeriod` to study dates, `provision.period` to when the rule is in force (a
//! nested rule's period within its parent's). Nested `provision.provision[]` are exceptions: each
//! gives its own records (type and purposes default to the parent's). A base provision that
//! denies (or a rejected or inactive Consent) without naming a purpose is an opt-out of all its
//! `scope` covers (research: every purpose but clinical care; treatment: clinical care; other:
//! every purpose); its nested permits are the exceptions. A permit must name its purposes.
//! Each bad resource is reported with its index and the field at fault; good ones are imported.

use serde_json::Value;

use crate::config::Settings;
use crate::consent::{ConsentInput, ConsentState, Scope};

/// A resource that could not be imported: where and why (never its identifying values).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct BadResource {
    /// Position: the Bundle entry index, or 0 for a single resource.
    pub index: usize,
    /// JSON path of the field at fault.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for BadResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resource {} ({}): {}",
            self.index, self.field, self.message
        )
    }
}

/// Parses a FHIR JSON document into consent statements plus the resources refused.
pub fn parse(
    text: &str,
    origin: &str,
    settings: &Settings,
) -> Result<(Vec<ConsentInput>, Vec<BadResource>), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("{origin}: not JSON: {e}"))?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    match doc.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {
            let entries = doc
                .get("entry")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{origin}: Bundle without an `entry` array"))?;
            for (i, e) in entries.iter().enumerate() {
                let base = format!("entry[{i}].resource");
                match e.get("resource") {
                    Some(r) => match consent(r, &base, origin, settings) {
                        Ok(v) => good.extend(v),
                        Err((field, message)) => bad.push(BadResource {
                            index: i,
                            field,
                            message,
                        }),
                    },
                    None => bad.push(BadResource {
                        index: i,
                        field: base,
                        message: "missing".into(),
                    }),
                }
            }
        }
        Some("Consent") => match consent(&doc, "Consent", origin, settings) {
            Ok(v) => good.extend(v),
            Err((field, message)) => bad.push(BadResource {
                index: 0,
                field,
                message,
            }),
        },
        Some(other) => {
            return Err(format!(
                "{origin}: resourceType `{other}`: expected Consent or Bundle"
            ))
        }
        None => {
            return Err(format!(
                "{origin}: no resourceType: expected a FHIR Consent or Bundle"
            ))
        }
    }
    Ok((good, bad))
}

type Bad = (String, String);

fn consent(
    r: &Value,
    base: &str,
    origin: &str,
    settings: &Settings,
) -> Result<Vec<ConsentInput>, Bad> {
    let at = |f: &str| format!("{base}.{f}");
    match r.get("resourceType").and_then(Value::as_str) {
        Some("Consent") => {}
        Some(t) => return Err((at("resourceType"), format!("`{t}` is not Consent"))),
        None => return Err((at("resourceType"), "missing".into())),
    }
    let status = r
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| (at("status"), "missing".into()))?;
    let status_state = match status {
        "active" => None,
        "inactive" => Some(ConsentState::Withdrawn),
        "rejected" => Some(ConsentState::Refused),
        "draft" | "proposed" | "entered-in-error" => {
            return Err((
                at("status"),
                format!("`{status}` is not in force; not imported"),
            ))
        }
        other => {
            return Err((
                at("status"),
                format!("`{other}` is not an R4 Consent status"),
            ))
        }
    };
    let patient = r
        .get("patient")
        .ok_or_else(|| (at("patient"), "missing".into()))?;
    let patient_id = match patient
        .get("identifier")
        .and_then(|i| i.get("value"))
        .and_then(Value::as_str)
    {
        Some(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => match patient.get("reference").and_then(Value::as_str) {
            Some(rf) if rf.starts_with("Patient/") && rf.len() > 8 => rf[8..].to_string(),
            _ => {
                return Err((
                    at("patient"),
                    "needs identifier.value or a reference `Patient/<id>`".into(),
                ))
            }
        },
    };
    let effective_at = match r.get("dateTime") {
        None => String::new(),
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| (at("dateTime"), "not a string".into()))?;
            crate::time::normalize_timestamp(s)
                .ok_or_else(|| (at("dateTime"), "not a FHIR dateTime".into()))?
        }
    };
    let id = r.get("id").and_then(Value::as_str).unwrap_or("");
    let source = if id.is_empty() {
        format!("fhir:{origin}")
    } else {
        format!("fhir:Consent/{id}")
    };
    let evidence = r
        .get("sourceReference")
        .and_then(|s| s.get("reference"))
        .and_then(Value::as_str)
        .or_else(|| {
            r.get("sourceAttachment")
                .and_then(|s| s.get("url"))
                .and_then(Value::as_str)
        })
        .map(String::from)
        .unwrap_or_else(|| {
            if id.is_empty() {
                String::new()
            } else {
                format!("Consent/{id}")
            }
        });
    let provision = r.get("provision").ok_or_else(|| {
        (
            at("provision"),
            "missing: Veil needs the purposes it covers".into(),
        )
    })?;
    let base_period = in_force(provision, &at("provision"), &Period::default())?;
    let mut out = blanket_refusal(r, provision, status_state, settings)
        .into_iter()
        .map(|purpose| ConsentInput {
            patient_id: patient_id.clone(),
            issuer: String::new(),
            purpose,
            state: ConsentState::Refused,
            scope: Scope::default(),
            effective_at: effective_at.clone(),
            valid_from: base_period.from.clone(),
            valid_until: base_period.until.clone(),
            source: source.clone(),
            evidence: evidence.clone(),
        })
        .collect::<Vec<_>>();
    let template = ConsentInput {
        patient_id,
        issuer: String::new(),
        purpose: String::new(),
        state: ConsentState::Granted,
        scope: Scope::default(),
        effective_at,
        valid_from: String::new(),
        valid_until: String::new(),
        source,
        evidence,
    };
    walk(
        provision,
        &at("provision"),
        None,
        &[],
        &Period::default(),
        status_state,
        &template,
        settings,
        &mut out,
        0,
    )?;
    if out.is_empty() {
        return Err((
            at("provision.purpose"),
            "no purpose: a permit must name the purposes it grants".into(),
        ));
    }
    Ok(out)
}

/// A base provision that denies (or a rejected or inactive Consent) without naming a purpose is
/// an opt-out of everything its scope covers (FHIR R4: the base rule applies to all purposes):
/// a `research` Consent refuses every purpose but clinical care, a `treatment` one clinical
/// care, any other every purpose the institution knows. Nested permits then record the
/// exceptions. A blanket permit gives nothing: agreeing to everything must name what.
fn blanket_refusal(
    resource: &Value,
    provision: &Value,
    status_state: Option<ConsentState>,
    settings: &Settings,
) -> Vec<String> {
    let denies = match (status_state, provision.get("type").and_then(Value::as_str)) {
        (Some(s), _) => matches!(s, ConsentState::Refused | ConsentState::Withdrawn),
        (None, t) => t == Some("deny"),
    };
    if !denies || provision.get("purpose").is_some() {
        return Vec::new();
    }
    let scope = resource
        .pointer("/scope/coding/0/code")
        .and_then(Value::as_str)
        .unwrap_or("");
    settings
        .purposes
        .iter()
        .filter(|p| match scope {
            "research" => p.as_str() != "clinical-care",
            "treatment" => p.as_str() == "clinical-care",
            _ => true,
        })
        .cloned()
        .collect()
}

/// When a provision is in force (normalised timestamps; empty: unbounded).
#[derive(Debug, Clone, Default)]
struct Period {
    from: String,
    until: String,
}

/// The provision's own `period` within its parent's: FHIR R4 `Consent.provision.period` is
/// "the timeframe in which this rule is valid", and a nested rule lies inside its parent. A
/// period that ends before it starts is the sender's error.
fn in_force(p: &Value, path: &str, parent: &Period) -> Result<Period, Bad> {
    let mut out = parent.clone();
    let Some(period) = p.get("period") else {
        return Ok(out);
    };
    for (f, slot, later) in [
        ("start", &mut out.from, true),
        ("end", &mut out.until, false),
    ] {
        if let Some(v) = period.get(f) {
            let t = v
                .as_str()
                .and_then(crate::time::normalize_timestamp)
                .ok_or_else(|| (format!("{path}.period.{f}"), "not a FHIR dateTime".into()))?;
            let tighter = slot.is_empty() || (later && t > *slot) || (!later && t < *slot);
            if tighter {
                *slot = t;
            }
        }
    }
    if !out.from.is_empty() && !out.until.is_empty() && out.until <= out.from {
        return Err((
            format!("{path}.period"),
            "ends before it starts (or outside its parent's period)".into(),
        ));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn walk(
    p: &Value,
    path: &str,
    parent_type: Option<ConsentState>,
    parent_purposes: &[String],
    parent_period: &Period,
    status_state: Option<ConsentState>,
    template: &ConsentInput,
    settings: &Settings,
    out: &mut Vec<ConsentInput>,
    depth: usize,
) -> Result<(), Bad> {
    if depth > 8 {
        return Err((path.to_string(), "provisions nested deeper than 8".into()));
    }
    let period = in_force(p, path, parent_period)?;
    let ty = match p.get("type") {
        None => parent_type,
        Some(t) => match t.as_str() {
            Some("permit") => Some(ConsentState::Granted),
            Some("deny") => Some(ConsentState::Refused),
            _ => {
                return Err((
                    format!("{path}.type"),
                    "must be \"permit\" or \"deny\"".into(),
                ))
            }
        },
    };
    let mut purposes = Vec::new();
    if let Some(list) = p.get("purpose") {
        let list = list
            .as_array()
            .ok_or_else(|| (format!("{path}.purpose"), "not an array".into()))?;
        for (j, c) in list.iter().enumerate() {
            let code = c
                .get("code")
                .and_then(Value::as_str)
                .ok_or_else(|| (format!("{path}.purpose[{j}].code"), "missing".into()))?;
            let name = match code {
                "TREAT" => "clinical-care".to_string(),
                "HQUALIMP" => "quality-improvement".to_string(),
                "HRESCH" => "internal-research".to_string(),
                other => other.to_string(),
            };
            if settings.check_purpose(&name).is_err() {
                return Err((
                    format!("{path}.purpose[{j}].code"),
                    format!("`{code}` is not a known purpose"),
                ));
            }
            purposes.push(name);
        }
    }
    let own_purposes = !purposes.is_empty();
    if purposes.is_empty() {
        purposes = parent_purposes.to_vec();
    }
    let mut scope = Scope::default();
    if let Some(codes) = p.get("code") {
        let codes = codes
            .as_array()
            .ok_or_else(|| (format!("{path}.code"), "not an array".into()))?;
        for (j, cc) in codes.iter().enumerate() {
            let codings = cc
                .get("coding")
                .and_then(Value::as_array)
                .ok_or_else(|| (format!("{path}.code[{j}].coding"), "missing".into()))?;
            for (k, c) in codings.iter().enumerate() {
                let m = c.get("code").and_then(Value::as_str).unwrap_or("");
                if m.is_empty()
                    || m.len() > 16
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err((
                        format!("{path}.code[{j}].coding[{k}].code"),
                        "not a DICOM modality code".into(),
                    ));
                }
                scope.modalities.push(m.to_string());
            }
        }
    }
    if let Some(dp) = p.get("dataPeriod") {
        for (f, slot) in [("start", &mut scope.from), ("end", &mut scope.to)] {
            if let Some(v) = dp.get(f) {
                let s = v.as_str().unwrap_or("");
                let d = crate::time::normalize_timestamp(s)
                    .ok_or_else(|| (format!("{path}.dataPeriod.{f}"), "not a FHIR date".into()))?;
                *slot = d[..10].replace('-', "");
            }
        }
    }
    if own_purposes || depth == 0 {
        let state = match (status_state, ty) {
            (Some(s), _) => s,
            (None, Some(t)) => t,
            (None, None) => {
                return Err((format!("{path}.type"), "missing (permit or deny)".into()))
            }
        };
        for purpose in &purposes {
            out.push(ConsentInput {
                purpose: purpose.clone(),
                state,
                scope: scope.clone(),
                valid_from: period.from.clone(),
                valid_until: period.until.clone(),
                ..template.clone()
            });
        }
    }
    if let Some(children) = p.get("provision") {
        let children = children
            .as_array()
            .ok_or_else(|| (format!("{path}.provision"), "not an array".into()))?;
        for (j, c) in children.iter().enumerate() {
            walk(
                c,
                &format!("{path}.provision[{j}]"),
                ty,
                &purposes,
                &period,
                status_state,
                template,
                settings,
                out,
                depth + 1,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_with_exception_and_bad_entries() {
        let doc = r#"{"resourceType":"Bundle","type":"collection","entry":[
          {"resource":{"resourceType":"Consent","id":"c1","status":"active","patient":{"identifier":{"value":"MRN1"}},
            "dateTime":"2024-01-02T03:04:05Z",
            "provision":{"type":"permit","purpose":[{"code":"internal-research"},{"code":"HRESCH"}],
              "provision":[{"type":"deny","purpose":[{"code":"commercial-ai-training"}]}]}}},
          {"resource":{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/MRN2"},
            "provision":{"type":"perhaps","purpose":[{"code":"internal-research"}]}}},
          {"resource":{"resourceType":"Consent","status":"draft","patient":{"reference":"Patient/MRN3"},"provision":{}}},
          {"resource":{"resourceType":"Consent","status":"inactive","patient":{"reference":"Patient/MRN4"},
            "provision":{"purpose":[{"code":"marketing"}]}}},
          {"resource":{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/MRN5"},
            "provision":{"type":"permit","purpose":[{"code":"commercial-ai-training"}],
              "code":[{"coding":[{"code":"CT"}]}],"dataPeriod":{"start":"2020-01-01","end":"2022-12-31"}}}}
        ]}"#;
        let (good, bad) = parse(doc, "t.json", &Settings::default()).unwrap();
        assert_eq!(good.len(), 4, "{good:?}");
        assert_eq!(good[0].patient_id, "MRN1");
        assert_eq!(good[0].state, ConsentState::Granted);
        assert_eq!(good[2].purpose, "commercial-ai-training");
        assert_eq!(good[2].state, ConsentState::Refused);
        assert_eq!(good[0].effective_at, "2024-01-02T03:04:05.000000Z");
        assert_eq!(
            good[3].scope,
            Scope {
                modalities: vec!["CT".into()],
                from: "20200101".into(),
                to: "20221231".into()
            }
        );
        let shown: Vec<(usize, String)> = bad.iter().map(|b| (b.index, b.field.clone())).collect();
        assert_eq!(
            shown,
            vec![
                (1, "entry[1].resource.provision.type".to_string()),
                (2, "entry[2].resource.status".to_string()),
                (3, "entry[3].resource.provision.purpose[0].code".to_string()),
            ]
        );
        for b in &bad {
            assert!(!b.message.contains("MRN"), "no identifier in reports: {b}");
        }
    }

    // The opt-out patients most often send: deny, no purpose, perhaps with a permitted exception.
    #[test]
    fn a_blanket_deny_opts_out_of_every_purpose_but_its_exceptions() {
        let doc = r#"{"resourceType":"Bundle","type":"collection","entry":[
          {"resource":{"resourceType":"Consent","id":"optout","status":"active",
            "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"research"}]},
            "patient":{"reference":"Patient/MRN7"},"dateTime":"2025-02-03",
            "provision":{"type":"deny",
              "provision":[{"type":"permit","purpose":[{"code":"TREAT"}]}]}}},
          {"resource":{"resourceType":"Consent","status":"active","patient":{"reference":"Patient/MRN8"},
            "provision":{"type":"permit"}}}
        ]}"#;
        let settings = Settings::default();
        let (good, bad) = parse(doc, "t.json", &settings).unwrap();
        let refused: Vec<&str> = good
            .iter()
            .filter(|c| c.state == ConsentState::Refused)
            .map(|c| c.purpose.as_str())
            .collect();
        // A research opt-out: every purpose but clinical care.
        assert_eq!(refused.len(), settings.purposes.len() - 1, "{good:?}");
        assert!(!refused.contains(&"clinical-care"));
        assert!(
            refused.contains(&"internal-research") && refused.contains(&"commercial-ai-training")
        );
        let last = good.last().unwrap();
        assert_eq!(
            (last.purpose.as_str(), last.state),
            ("clinical-care", ConsentState::Granted)
        );
        // Decided as recorded: research refused, care granted by the exception.
        let records = as_records(&good);
        let d = |p| crate::consent::decide(&records, &settings, p, "CT", "20250101");
        assert!(matches!(
            d("internal-research"),
            crate::consent::Decision::Exclude { .. }
        ));
        assert!(matches!(
            d("clinical-care"),
            crate::consent::Decision::Admit { .. }
        ));
        assert_eq!(bad.len(), 1, "a blanket permit names nothing: {bad:?}");
        assert_eq!(bad[0].field, "entry[1].resource.provision.purpose");
    }

    fn as_records(good: &[ConsentInput]) -> Vec<crate::consent::ConsentRecord> {
        good.iter()
            .enumerate()
            .map(|(i, c)| crate::consent::ConsentRecord {
                id: i as i64 + 1,
                patient_ref: String::new(),
                purpose: c.purpose.clone(),
                state: c.state,
                scope: c.scope.clone(),
                effective_at: c.effective_at.clone(),
                recorded_at: String::new(),
                valid_from: c.valid_from.clone(),
                valid_until: c.valid_until.clone(),
                source: c.source.clone(),
                evidence: c.evidence.clone(),
                ledger_entry: String::new(),
            })
            .collect()
    }

    // Periods as FHIR R4 defines them (`provision.period`: when the rule is valid): a research
    // opt-out for 2020 with an internal-research exception from July, a commercial permit from
    // 2030 on, and a nested exception whose period lies outside its parent's (refused, named).
    #[test]
    fn provision_periods_bound_when_a_rule_is_in_force() {
        let doc = r#"{"resourceType":"Bundle","type":"collection","entry":[
          {"resource":{"resourceType":"Consent","id":"y2020","status":"active",
            "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"research"}]},
            "patient":{"reference":"Patient/MRN9"},"dateTime":"2019-12-15",
            "provision":{"type":"deny","period":{"start":"2020-01-01","end":"2021-01-01"},
              "provision":[{"type":"permit","purpose":[{"code":"HRESCH"}],
                "period":{"start":"2020-07-01"}}]}}},
          {"resource":{"resourceType":"Consent","id":"later","status":"active",
            "patient":{"reference":"Patient/MRN9"},"dateTime":"2024-01-01",
            "provision":{"type":"permit","purpose":[{"code":"commercial-ai-training"}],
              "period":{"start":"2030-01-01T00:00:00Z"}}}},
          {"resource":{"resourceType":"Consent","id":"bad","status":"active",
            "patient":{"reference":"Patient/MRN9"},"dateTime":"2024-01-01",
            "provision":{"type":"deny","purpose":[{"code":"internal-research"}],
              "period":{"start":"2024-01-01","end":"2025-01-01"},
              "provision":[{"type":"permit","period":{"start":"2026-01-01"},
                "purpose":[{"code":"internal-research"}]}]}}}
        ]}"#;
        let settings = Settings::default();
        let (good, bad) = parse(doc, "t.json", &settings).unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].index, 2);
        assert_eq!(
            bad[0].field,
            "entry[2].resource.provision.provision[0].period"
        );
        let records = as_records(&good);
        let at = |p: &str, now: &str| {
            matches!(
                crate::consent::decide_at(&records, &settings, p, "CT", "20190101", now),
                crate::consent::Decision::Admit { .. }
            )
        };
        // During the opt-out: refused, but research re-opened from July by the exception.
        assert!(!at("internal-research", "2020-03-01T00:00:00.000000Z"));
        assert!(!at(
            "external-academic-research",
            "2020-09-01T00:00:00.000000Z"
        ));
        assert!(at("internal-research", "2020-09-01T00:00:00.000000Z"));
        assert!(at("clinical-care", "2020-03-01T00:00:00.000000Z"));
        // The exception ends with its parent; after 2020 the institution defaults apply again.
        assert!(at(
            "external-academic-research",
            "2021-06-01T00:00:00.000000Z"
        ));
        let exception = good
            .iter()
            .find(|c| c.state == ConsentState::Granted && c.purpose == "internal-research")
            .unwrap();
        assert_eq!(exception.valid_until, "2021-01-01T00:00:00.000000Z");
        // Commercial AI: opt-in by default, granted only from 2030.
        assert!(!at("commercial-ai-training", "2026-12-07T00:00:00.000000Z"));
        assert!(at("commercial-ai-training", "2030-01-02T00:00:00.000000Z"));
    }
}
