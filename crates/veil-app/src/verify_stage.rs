//! The verify stage of `veil deid`: every output passes `veil-verify` (an independent reading of
//! the standard's table and an independent byte walker) before it is renamed into place; an
//! output with any finding is quarantined with the findings (category, path, rule and a masked
//! value, never the value).
//!
//! The pipeline hands the verifier the input file's bytes as read as well as the parsed source;
//! the adapter gives `veil-verify` the bytes, which it reads with its own walker (file meta
//! included), so what the verifier collects from the source depends neither on the engine's
//! code nor on the DICOM library that parsed it for the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dicom_object::InMemDicomObject;
use veil_pipeline::{OutputVerifier, PreparedCheck, VerifyFinding};
use veil_profile::{OverrideTarget, Policy};
use veil_verify::{Act, Known, PolicySpec, Verifier};

/// The policy as `veil-verify` reads it: option column names and overrides, nothing resolved.
pub fn policy_spec(policy: &Policy) -> PolicySpec {
    let mut spec = PolicySpec {
        options: policy
            .enabled_option_columns()
            .into_iter()
            .map(String::from)
            .collect(),
        free_text_allow: policy.free_text_allow.clone(),
        ..PolicySpec::default()
    };
    for o in &policy.overrides {
        let Some(act) = Act::parse(o.action.code()) else {
            continue;
        };
        match &o.target {
            OverrideTarget::Tag(t) => spec.tag_overrides.push((*t, act)),
            OverrideTarget::Private {
                group,
                creator,
                element_low,
            } => spec
                .private_overrides
                .push((*group, creator.clone(), *element_low, act)),
        }
    }
    spec
}

/// CPU time of the calling thread, in nanoseconds (wall time would count the waits of a busy
/// machine as verification cost).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time spent in the verify stage, summed over workers (reported with
/// `VEIL_VERIFY_TIMING=1`; measuring costs two clock reads per stage).
#[derive(Default)]
struct Timing {
    prepare_ns: AtomicU64,
    check_ns: AtomicU64,
    outputs: AtomicU64,
}

pub struct VeilVerifier {
    verifier: Arc<Verifier>,
    timing: Arc<Timing>,
    report_timing: bool,
}

struct Prepared {
    verifier: Arc<Verifier>,
    known: Known,
    timing: Option<Arc<Timing>>,
}

impl OutputVerifier for VeilVerifier {
    fn prepare(&self, _source: &InMemDicomObject, raw: &[u8]) -> Box<dyn PreparedCheck> {
        let t = self.report_timing.then(thread_cpu_ns);
        // The input as read, by the verifier's own walker: what the engine's parser made of it
        // is not trusted (a value it misread would be missing from both sides), and the file
        // meta (AE titles of the sending sites) is in there too.
        let known = self.verifier.prepare(raw);
        if let Some(t) = t {
            self.timing
                .prepare_ns
                .fetch_add(thread_cpu_ns().saturating_sub(t), Ordering::Relaxed);
        }
        Box::new(Prepared {
            verifier: self.verifier.clone(),
            known,
            timing: self.report_timing.then(|| self.timing.clone()),
        })
    }
}

impl PreparedCheck for Prepared {
    fn verify(&self, output: &[u8]) -> Vec<VerifyFinding> {
        let t = self.timing.as_ref().map(|_| thread_cpu_ns());
        let findings = self
            .verifier
            .check(output, Some(&self.known))
            .findings
            .into_iter()
            .map(|f| VerifyFinding {
                path: format!("{} {}", f.path, f.tag).trim().to_string(),
                category: f.category,
                rule: if f.masked.is_empty() {
                    f.rule
                } else {
                    format!("{} (value {})", f.rule, f.masked)
                },
            })
            .collect();
        if let (Some(timing), Some(t)) = (&self.timing, t) {
            timing
                .check_ns
                .fetch_add(thread_cpu_ns().saturating_sub(t), Ordering::Relaxed);
            timing.outputs.fetch_add(1, Ordering::Relaxed);
        }
        findings
    }
}

impl Drop for VeilVerifier {
    fn drop(&mut self) {
        if self.report_timing {
            let t = &self.timing;
            tracing::warn!(
                "verify stage: {} outputs, CPU {:.3} s preparing sources + {:.3} s checking outputs (summed over workers)",
                t.outputs.load(Ordering::Relaxed),
                t.prepare_ns.load(Ordering::Relaxed) as f64 / 1e9,
                t.check_ns.load(Ordering::Relaxed) as f64 / 1e9,
            );
        }
    }
}

/// The verifier every `veil deid` output passes before it is written.
///
/// Pixel data is not searched here: it is the source's bytes unchanged (the header engine never
/// touches it) or the pixel stage's redaction, so searching it cannot catch an engine bug, and
/// it would more than double the stage's cost (it is most of every file). `veil verify` searches
/// it.
pub fn pipeline_verifier(policy: &Policy) -> Option<Box<dyn OutputVerifier>> {
    // The engine always writes the codes of its policy, so they are always compared.
    let verifier = Verifier::new(policy_spec(policy), true).scan_pixel_data(false);
    Some(Box::new(VeilVerifier {
        verifier: Arc::new(verifier),
        timing: Arc::default(),
        report_timing: std::env::var_os("VEIL_VERIFY_TIMING").is_some_and(|v| v == "1"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, Tag, VR};
    use dicom_dictionary_std::tags;
    use dicom_dictionary_std::uids;
    use dicom_object::meta::FileMetaTableBuilder;

    fn file_bytes(elements: Vec<dicom_object::mem::InMemElement>) -> Vec<u8> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid("2.25.1")
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .build()
            .unwrap();
        let mut out = Vec::new();
        InMemDicomObject::from_element_iter(elements)
            .with_exact_meta(meta)
            .write_all(&mut out)
            .unwrap();
        out
    }

    fn el(tag: Tag, vr: VR, v: &str) -> dicom_object::mem::InMemElement {
        DataElement::new(tag, vr, PrimitiveValue::from(v))
    }

    #[test]
    fn the_verifier_knows_veils_implementation_uid() {
        assert_eq!(
            veil_verify::VEIL_IMPLEMENTATION_CLASS_UID,
            veil_deid::IMPLEMENTATION_CLASS_UID
        );
    }

    #[test]
    fn catches_a_name_and_a_uid_and_a_missing_marker() {
        let v = pipeline_verifier(&Policy::default_policy()).unwrap();
        let nested = InMemDicomObject::from_element_iter([el(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1137.9.9",
        )]);
        let source_elements = vec![
            DataElement::new(
                tags::REFERENCED_IMAGE_SEQUENCE,
                VR::SQ,
                dicom_core::value::Value::Sequence(dicom_core::value::DataSetSequence::new(
                    vec![nested],
                    dicom_core::Length::UNDEFINED,
                )),
            ),
            el(tags::PATIENT_NAME, VR::PN, "Quixley^Ann"),
            el(tags::PATIENT_ID, VR::LO, "MRN-40071233"),
            el(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                "1.2.826.0.1.3680043.10.1137.1.1.1.1",
            ),
        ];
        let raw = file_bytes(source_elements.clone());
        let source = InMemDicomObject::from_element_iter(source_elements);
        let check = v.prepare(&source, &raw);
        let leaky = file_bytes(vec![
            el(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"),
            el(tags::STUDY_DESCRIPTION, VR::LO, "CT for QUIXLEY"),
            el(
                Tag(0x0009, 0x1001),
                VR::LO,
                "1.2.826.0.1.3680043.10.1137.1.1.1.1",
            ),
            el(
                tags::CONTENT_DESCRIPTION,
                VR::LO,
                "see 1.2.826.0.1.3680043.10.1137.9.9",
            ),
        ]);
        let f = check.verify(&leaky);
        let cats: Vec<&str> = f.iter().map(|f| f.category.as_str()).collect();
        for c in ["known_identifier", "private", "marker", "uid"] {
            assert!(cats.contains(&c), "{c}: {f:?}");
        }
        let text = serde_json::to_string(&f).unwrap();
        assert!(!text.to_lowercase().contains("quixley") && !text.contains("1137"));
    }
}
