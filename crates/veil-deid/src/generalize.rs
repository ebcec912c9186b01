//! Applies a policy's `[generalize]` section to a de-identified dataset (owned by the risk work,
//! issue 7).
//!
//! The hierarchies live in `veil_profile::generalize`, shared with `veil risk`, so the value
//! written here and the value the risk search counted are computed by the same function.
//! Runs after the Annex E rules: it sees (and `veil risk` should have measured) the values as
//! they are after de-identification, e.g. dates already shifted.

use dicom_core::header::Header;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_object::InMemDicomObject;
use veil_profile::generalize::{tag_of, GeneralizeSpec, Hierarchy, ResolvedField};

/// What generalisation did to one dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneralizeOutcome {
    /// The record falls in a class the policy suppresses: it must not be released.
    pub suppressed: bool,
    /// How many attribute values were generalised.
    pub fields_generalized: usize,
}

/// Generalises quasi-identifiers of `obj` in place according to `spec`.
///
/// Fails closed: a spec that does not resolve (unknown level, bad tuple length; `veil policy
/// check` reports these with the field name) marks the record suppressed rather than releasing
/// it ungeneralised. When a date quasi-identifier is generalised, every other top-level DA and
/// DT value is generalised to the same level, since Series/Acquisition/Content Date would
/// otherwise give the exact day back.
pub fn apply(obj: &mut InMemDicomObject, spec: &GeneralizeSpec) -> GeneralizeOutcome {
    if spec.is_empty() {
        return GeneralizeOutcome::default();
    }
    let fields = match spec.resolve() {
        Ok(f) => f,
        Err(_) => {
            return GeneralizeOutcome {
                suppressed: true,
                fields_generalized: 0,
            }
        }
    };
    let mut outcome = GeneralizeOutcome::default();
    let mut tuple = Vec::with_capacity(fields.len());
    let mut date_level = 0usize;
    for field in &fields {
        let tag = tag_of(&field.name);
        let raw = tag.and_then(|t| read_text(obj, t));
        let canonical = field.generalize(raw.as_deref());
        if field.level > 0 {
            if let Some(tag) = tag {
                if write_generalized(obj, tag, field, &canonical, raw.as_deref()) {
                    outcome.fields_generalized += 1;
                }
            }
            if field.hierarchy == Hierarchy::Date {
                date_level = date_level.max(field.level);
            }
        }
        tuple.push(canonical);
    }
    if date_level > 0 {
        outcome.fields_generalized += generalize_other_dates(obj, &fields, date_level);
    }
    outcome.suppressed = spec.is_suppressed(&tuple);
    outcome
}

/// The text of a top-level attribute, `None` when absent or not text-convertible.
pub fn read_text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok()??;
    elem.to_str().ok().map(|s| s.into_owned())
}

fn write_generalized(
    obj: &mut InMemDicomObject,
    tag: Tag,
    field: &ResolvedField,
    canonical: &str,
    raw: Option<&str>,
) -> bool {
    let Some(existing) = obj.element_opt(tag).ok().flatten() else {
        return false;
    };
    let vr = existing.vr();
    let new = field.hierarchy.encode(canonical);
    if new.as_deref() == raw.map(|r| r.trim_end_matches(['\0', ' '])) {
        return false;
    }
    let value = match new {
        Some(v) => PrimitiveValue::from(v),
        None => PrimitiveValue::Empty,
    };
    obj.put(DataElement::new(tag, vr, value));
    true
}

fn generalize_other_dates(
    obj: &mut InMemDicomObject,
    fields: &[ResolvedField],
    level: usize,
) -> usize {
    let quasi_tags: Vec<Tag> = fields.iter().filter_map(|f| tag_of(&f.name)).collect();
    let targets: Vec<(Tag, VR)> = obj
        .iter()
        .filter(|e| matches!(e.vr(), VR::DA | VR::DT) && !quasi_tags.contains(&e.tag()))
        .map(|e| (e.tag(), e.vr()))
        .collect();
    let no_keep = Default::default();
    let mut n = 0;
    for (tag, vr) in targets {
        let Some(raw) = read_text(obj, tag) else {
            continue;
        };
        if raw.trim().is_empty() {
            continue;
        }
        let canonical = Hierarchy::Date.generalize(level, Some(&raw), &no_keep);
        let value = match Hierarchy::Date.encode(&canonical) {
            Some(v) => PrimitiveValue::from(v),
            None => PrimitiveValue::Empty,
        };
        obj.put(DataElement::new(tag, vr, value));
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;
    use veil_profile::generalize::FieldRule;

    fn rule(level: &str, keep: &[&str]) -> FieldRule {
        FieldRule {
            level: level.into(),
            kind: None,
            keep: keep.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn obj() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(
            tags::PATIENT_AGE,
            VR::AS,
            PrimitiveValue::from("047Y"),
        ));
        o.put(DataElement::new(
            tags::STUDY_DATE,
            VR::DA,
            PrimitiveValue::from("20190817"),
        ));
        o.put(DataElement::new(
            tags::SERIES_DATE,
            VR::DA,
            PrimitiveValue::from("20190818"),
        ));
        o.put(DataElement::new(
            tags::MANUFACTURER,
            VR::LO,
            PrimitiveValue::from("Acme "),
        ));
        o.put(DataElement::new(
            tags::PATIENT_WEIGHT,
            VR::DS,
            PrimitiveValue::from("72.5"),
        ));
        o
    }

    #[test]
    fn generalizes_and_suppresses_listed_tuples() {
        let spec = GeneralizeSpec::new(
            strings(&["PatientAge", "StudyDate", "Manufacturer", "PatientWeight"]),
            [
                ("PatientAge".to_string(), rule("5y", &[])),
                ("StudyDate".to_string(), rule("quarter", &[])),
                ("Manufacturer".to_string(), rule("common", &["SIEMENS"])),
                ("PatientWeight".to_string(), rule("10kg", &[])),
            ]
            .into(),
            vec![strings(&["45-49", "2019-Q3", "OTHER", "[70,80)"])],
        );
        let mut o = obj();
        let out = apply(&mut o, &spec);
        assert!(out.suppressed);
        assert_eq!(out.fields_generalized, 5);
        assert_eq!(read_text(&o, tags::PATIENT_AGE).unwrap(), "045Y");
        assert_eq!(read_text(&o, tags::STUDY_DATE).unwrap(), "20190701");
        assert_eq!(read_text(&o, tags::SERIES_DATE).unwrap(), "20190701");
        assert_eq!(read_text(&o, tags::MANUFACTURER).unwrap(), "OTHER");
        assert_eq!(read_text(&o, tags::PATIENT_WEIGHT).unwrap(), "70");
    }

    #[test]
    fn bad_spec_fails_closed() {
        let spec = GeneralizeSpec::new(
            strings(&["PatientAge"]),
            [("PatientAge".to_string(), rule("7y", &[]))].into(),
            vec![],
        );
        let mut o = obj();
        assert!(apply(&mut o, &spec).suppressed);
    }

    #[test]
    fn empty_spec_changes_nothing() {
        let mut o = obj();
        let out = apply(&mut o, &GeneralizeSpec::default());
        assert_eq!(out, GeneralizeOutcome::default());
        assert_eq!(read_text(&o, tags::PATIENT_AGE).unwrap(), "047Y");
    }
}
