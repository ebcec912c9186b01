//! The pipeline on its own, with instances it makes itself and fake stages: conflicting versions
//! of one instance, retraction, resume, holding back on a verifier finding or a pixel-stage
//! refusal, consent exclusion, and the operator's side. Needs no fetched data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use veil_deid::Deidentifier;
use veil_keys::Key;
use veil_pipeline::report::Status;
use veil_pipeline::{
    Admission, CommittedInstance, Config, OutputVerifier, PatientContext, Pipeline, PixelOutcome,
    PixelRefusal, PixelStage, PreparedCheck, RecordError, ReleaseObserver, VerifyFinding,
};
use veil_profile::Policy;

/// A small CT instance: 8×8 pixels, one patient, the UIDs given.
fn instance(dir: &Path, name: &str, patient: &str, sop: &str, description: &str) -> PathBuf {
    let el = |t, vr, v: &str| DataElement::new(t, vr, PrimitiveValue::from(v));
    let obj = InMemDicomObject::from_element_iter([
        el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        el(tags::SOP_INSTANCE_UID, VR::UI, sop),
        el(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3.4.100"),
        el(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4.100.1"),
        el(tags::MODALITY, VR::CS, "CT"),
        el(tags::PATIENT_ID, VR::LO, patient),
        el(tags::PATIENT_NAME, VR::PN, "Testperson^Alma"),
        el(tags::STUDY_DATE, VR::DA, "20240105"),
        el(tags::SERIES_DESCRIPTION, VR::LO, description),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(8u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(8u16)),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(12u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16((0..64u16).collect()),
        ),
    ]);
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(sop)
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .build()
        .unwrap();
    let path = dir.join(name);
    obj.with_exact_meta(meta).write_to_file(&path).unwrap();
    path
}

fn pipeline(out: &Path) -> Pipeline {
    let deid = Deidentifier::new(Policy::default_policy(), Key::from_bytes([7; 32]), None);
    Pipeline::new(deid, None, Config::new(out.to_path_buf()))
}

fn files(root: &Path) -> Vec<PathBuf> {
    fn rec(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                rec(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    rec(root, &mut v);
    v.sort();
    v
}

fn outputs(out: &Path) -> Vec<PathBuf> {
    files(out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect()
}

#[test]
fn conflicting_versions_are_all_held_back_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    instance(&input, "a.dcm", "P1", "1.2.3.4.100.1.1", "first");
    instance(&input, "b.dcm", "P1", "1.2.3.4.100.1.1", "second");
    instance(&input, "c.dcm", "P1", "1.2.3.4.100.1.2", "other");
    let out = tmp.path().join("out");
    let report = pipeline(&out)
        .run(std::slice::from_ref(&input), &|_| {})
        .unwrap();
    assert_eq!((report.written, report.quarantined), (1, 2), "{report:?}");
    assert_eq!(report.reasons.get("conflicting_duplicate"), Some(&2));
    assert_eq!(outputs(&out).len(), 1, "only the unconflicted instance");
    // Resume: nothing changes, nothing is redone.
    let again = pipeline(&out).run(&[input], &|_| {}).unwrap();
    assert_eq!(again.skipped_done_earlier, 3, "{again:?}");
    assert_eq!(again.held_back_total, 2);
    assert_eq!(outputs(&out).len(), 1);
}

/// Counts commits and retractions; excludes one patient.
#[derive(Default)]
struct Observer {
    commits: AtomicUsize,
    retracts: AtomicUsize,
    seen: Mutex<Vec<String>>,
}

impl ReleaseObserver for Observer {
    fn admit(&self, p: &PatientContext) -> Admission {
        self.seen.lock().unwrap().push(p.patient_id.clone());
        if p.patient_id == "REFUSED" {
            Admission::Exclude {
                reason: "consent-refused".into(),
            }
        } else {
            Admission::Admit {
                consent_ref: Some("c1".into()),
            }
        }
    }
    fn commit(
        &self,
        _: &CommittedInstance,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<(), RecordError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(rename()?)
    }
    fn retract(&self, _: &Path, _: &Path) -> Result<(), RecordError> {
        self.retracts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn the_gate_excludes_and_retracts_and_the_output_says_nothing_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    instance(&input, "a.dcm", "P1", "1.2.3.4.100.1.1", "first");
    instance(&input, "b.dcm", "P1", "1.2.3.4.100.1.1", "second");
    instance(&input, "r.dcm", "REFUSED", "1.2.3.4.100.1.9", "refused");
    let out = tmp.path().join("out");
    let obs = Observer::default();
    let report = pipeline(&out).run_with(&[input], &obs, &|_| {}).unwrap();
    assert_eq!(report.excluded, 1);
    assert_eq!(report.quarantined, 2);
    // The first version was committed, then taken back when the second contradicted it.
    assert_eq!(obs.commits.load(Ordering::Relaxed), 1);
    assert_eq!(obs.retracts.load(Ordering::Relaxed), 1);
    assert!(outputs(&out).is_empty());
    for f in files(&out) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_lowercase();
        assert!(
            !text.contains("refus") && !text.contains("exclu"),
            "{} speaks of the excluded patient",
            f.display()
        );
    }
    let report =
        std::fs::read_to_string(tmp.path().join("out.quarantine/.veil/run-report.json")).unwrap();
    assert!(
        report.contains("consent-refused"),
        "the operator's report has it"
    );
}

/// Finds a problem in every output whose bytes hold "second".
struct Picky;
struct PickyCheck;
impl OutputVerifier for Picky {
    fn prepare(&self, _: &InMemDicomObject, _: &[u8]) -> Box<dyn PreparedCheck> {
        Box::new(PickyCheck)
    }
}
impl PreparedCheck for PickyCheck {
    fn verify(&self, output: &[u8]) -> Vec<VerifyFinding> {
        if output.windows(6).any(|w| w == b"second") {
            vec![VerifyFinding {
                path: "SeriesDescription".into(),
                category: "known_identifier".into(),
                rule: "test".into(),
            }]
        } else {
            Vec::new()
        }
    }
}

/// Refuses every instance it is asked to clean.
struct Refusing;
impl PixelStage for Refusing {
    fn clean(
        &self,
        _: &mut FileDicomObject<InMemDicomObject>,
        risk: Option<&str>,
    ) -> Result<PixelOutcome, PixelRefusal> {
        match risk {
            Some(_) => Err(PixelRefusal("cannot decode this test's pixels".into())),
            None => Ok(PixelOutcome::default()),
        }
    }
}

#[test]
fn findings_and_pixel_refusals_hold_back_with_their_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    instance(&input, "ok.dcm", "P1", "1.2.3.4.100.1.1", "first");
    instance(&input, "bad.dcm", "P1", "1.2.3.4.100.1.2", "second");
    let flagged = instance(&input, "us.dcm", "P1", "1.2.3.4.100.1.3", "third");
    let mut f = dicom_object::open_file(&flagged).unwrap();
    f.put(DataElement::new(
        tags::BURNED_IN_ANNOTATION,
        VR::CS,
        PrimitiveValue::from("YES"),
    ));
    f.write_to_file(&flagged).unwrap();
    let out = tmp.path().join("out");
    let deid = Deidentifier::new(Policy::default_policy(), Key::from_bytes([7; 32]), None);
    let p = Pipeline::new(deid, Some(Box::new(Picky)), Config::new(out.clone()))
        .with_pixel_stage(Box::new(Refusing));
    let mut statuses = Vec::new();
    let seen = Mutex::new(&mut statuses);
    let report = p
        .run(&[input], &|o| {
            seen.lock().unwrap().push((
                o.input.file_name().unwrap().to_owned(),
                o.status,
                o.reason.clone(),
            ))
        })
        .unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.reasons.get("verification_failed"), Some(&1));
    assert_eq!(report.reasons.get("pixel_stage"), Some(&1));
    let held: Vec<_> = statuses
        .iter()
        .filter(|(_, st, _)| *st == Status::Quarantined)
        .map(|(name, _, reason)| (name.to_string_lossy().into_owned(), reason.clone()))
        .collect();
    assert_eq!(held.len(), 2, "{statuses:?}");
    assert!(held.contains(&("bad.dcm".into(), Some("verification_failed".into()))));
    assert!(held.contains(&("us.dcm".into(), Some("pixel_stage".into()))));
    // Quarantine copies are byte-identical to the inputs; their reasons name no input path.
    let q = tmp.path().join("out.quarantine");
    let copies: Vec<PathBuf> = std::fs::read_dir(&q)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(copies.len(), 2);
    for c in copies {
        let text = std::fs::read_to_string(&c).unwrap();
        assert!(!text.contains("/in/"), "{text}");
    }
}
