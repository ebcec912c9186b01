//! Mutation tests: the engine (`veil-deid`) is run with one deliberate defect at a time through
//! its test-only fault hook, on a planted-identifier file and on pydicom's real test files; the
//! verifier must report each family of leak in its category, and must report nothing for the
//! same inputs de-identified without the defect.

use std::path::{Path, PathBuf};

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use veil_deid::{Deidentifier, Fault};
use veil_keys::Key;
use veil_profile::Policy;
use veil_verify::{Checked, PolicySpec, Verifier};

const FAULTS: [(Fault, &str); 6] = [
    (Fault::KeepRemovedAttributes, "removed_attribute"),
    (Fault::SkipNestedSequences, "nested"),
    (Fault::KeepPrivate, "private"),
    (Fault::SkipDescriptorCleaning, "known_identifier"),
    (Fault::SkipUidReferences, "uid"),
    (Fault::SkipDateShift, "date"),
];

fn el(tag: Tag, vr: VR, v: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn seq(tag: Tag, items: Vec<Vec<InMemElement>>) -> InMemElement {
    DataElement::new(
        tag,
        VR::SQ,
        Value::Sequence(DataSetSequence::new(
            items
                .into_iter()
                .map(InMemDicomObject::from_element_iter)
                .collect::<Vec<_>>(),
            Length::UNDEFINED,
        )),
    )
}

/// A CT instance with an identifier in every place the faults concern.
fn planted() -> Vec<u8> {
    let sop = "1.2.826.0.1.3680043.10.1137.7.1";
    let obj = InMemDicomObject::from_element_iter([
        el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        el(tags::SOP_INSTANCE_UID, VR::UI, sop),
        el(tags::STUDY_DATE, VR::DA, "20230511"),
        el(tags::CONTENT_DATE, VR::DA, "20230511"),
        el(tags::ACCESSION_NUMBER, VR::SH, "ACC99001234"),
        el(tags::MODALITY, VR::CS, "CT"),
        el(tags::INSTITUTION_NAME, VR::LO, "Saint Ottoline Memorial"),
        el(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "Castellanos^Osric"),
        el(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "CT CHEST Featherby follow-up",
        ),
        seq(
            tags::REFERENCED_IMAGE_SEQUENCE,
            vec![vec![
                el(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    uids::CT_IMAGE_STORAGE,
                ),
                el(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    "1.2.826.0.1.3680043.10.1137.7.2",
                ),
            ]],
        ),
        el(tags::PATIENT_NAME, VR::PN, "Featherby^Imogen"),
        el(tags::PATIENT_ID, VR::LO, "MRN-55120077"),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, "19520917"),
        el(tags::PATIENT_SEX, VR::CS, "F"),
        seq(
            tags::OTHER_PATIENT_I_DS_SEQUENCE,
            vec![vec![el(tags::PATIENT_ID, VR::LO, "OTH-77120331")]],
        ),
        el(tags::PATIENT_ADDRESS, VR::LO, "14 Larkspur Lane Dunmore"),
        el(Tag(0x0009, 0x0010), VR::LO, "ACME HOSPITAL"),
        el(Tag(0x0009, 0x1001), VR::LO, "Featherby Imogen ward seven"),
        el(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1137.7.3",
        ),
        el(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.10.1137.7.4",
        ),
        el(tags::INSTANCE_NUMBER, VR::IS, "1"),
        seq(
            tags::REQUEST_ATTRIBUTES_SEQUENCE,
            vec![vec![
                el(tags::ACCESSION_NUMBER, VR::SH, "ACC99001234"),
                el(
                    tags::REQUESTED_PROCEDURE_DESCRIPTION,
                    VR::LO,
                    "Biopsy for Featherby",
                ),
                el(tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP55190773"),
            ]],
        ),
        el(tags::ROWS, VR::US, "2"),
        el(tags::COLUMNS, VR::US, "2"),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16([1u16, 2, 3, 4][..].into()),
        ),
    ]);
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(sop)
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .build()
        .unwrap();
    let mut out = Vec::new();
    obj.with_exact_meta(meta).write_all(&mut out).unwrap();
    out
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/pydicom")
}

/// Real files the engine de-identifies (others are quarantined by the pipeline before it).
fn corpus() -> Vec<Vec<u8>> {
    let dir = testdata();
    if !dir.is_dir() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "testdata/pydicom is missing: run scripts/fetch-testdata.sh"
        );
        eprintln!("testdata/pydicom missing: real-file part skipped");
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() > 132 && &b[128..132] == b"DICM" && b.len() < 8 << 20)
        .collect()
}

fn deidentify(engine: &Deidentifier, bytes: &[u8]) -> Option<Vec<u8>> {
    let file: FileDicomObject<InMemDicomObject> = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[128..])
        .ok()?;
    let (out, _) = engine.deidentify(file).ok()?;
    let mut buf = Vec::new();
    out.write_all(&mut buf).ok()?;
    Some(buf)
}

fn engine(fault: Option<Fault>) -> Deidentifier {
    let d = Deidentifier::new(Policy::default_policy(), Key::from_bytes([7; 32]), None);
    match fault {
        Some(f) => d.with_fault(f),
        None => d,
    }
}

fn verifier() -> Verifier {
    // The same reading of the default policy that `veil deid` gives the verifier: option names.
    let policy = Policy::default_policy();
    let spec = PolicySpec {
        options: policy
            .enabled_option_columns()
            .into_iter()
            .map(String::from)
            .collect(),
        ..PolicySpec::default()
    };
    Verifier::new(spec, true)
}

fn check(v: &Verifier, source: &[u8], output: &[u8]) -> Checked {
    v.check(output, Some(&v.prepare(source)))
}

/// Does this result show the family the fault breaks?
fn caught(c: &Checked, family: &str) -> bool {
    c.findings.iter().any(|f| match family {
        // A sequence copied without cleaning: something reported inside an item.
        "nested" => f.path.contains("]."),
        other => f.category == other,
    })
}

/// On real files, descriptor text rarely holds the file's own identifiers; what cleaning
/// removes there is mostly identifier shapes (a date in Software Versions), which the pattern
/// check reports.
fn caught_in_real(c: &Checked, family: &str) -> bool {
    caught(c, family)
        || (family == "known_identifier" && c.findings.iter().any(|f| f.category == "pattern"))
}

#[test]
fn every_fault_is_caught_on_the_planted_file_and_nothing_without_one() {
    let v = verifier();
    let source = planted();
    let clean = deidentify(&engine(None), &source).expect("the planted file de-identifies");
    let c = check(&v, &source, &clean);
    assert!(c.findings.is_empty(), "clean output: {:?}", c.findings);
    for (fault, family) in FAULTS {
        let out = deidentify(&engine(Some(fault)), &source).unwrap();
        assert_ne!(out, clean, "{fault:?} changes nothing on the planted file");
        let c = check(&v, &source, &out);
        assert!(caught(&c, family), "{fault:?} not caught: {:?}", c.findings);
        let json = serde_json::to_string(&c.findings).unwrap();
        for planted in [
            "Featherby",
            "MRN-55120077",
            "19520917",
            "3680043",
            "Ottoline",
        ] {
            assert!(!json.contains(planted), "{planted} shown in findings");
        }
    }
}

#[test]
fn real_files_clean_without_faults_and_caught_with_each() {
    let files = corpus();
    if files.is_empty() {
        return;
    }
    let v = verifier();
    let clean_engine = engine(None);
    let mut pairs = Vec::new();
    for src in &files {
        if let Some(out) = deidentify(&clean_engine, src) {
            let c = check(&v, src, &out);
            assert!(
                c.findings.is_empty(),
                "a real file's clean output has findings: {:?}",
                c.findings
            );
            pairs.push((src, out));
        }
    }
    assert!(
        pairs.len() >= 50,
        "only {} real files de-identified",
        pairs.len()
    );
    for (fault, family) in FAULTS {
        let e = engine(Some(fault));
        let (mut changed, mut flagged, mut family_hits) = (0, 0, 0);
        for (src, clean) in &pairs {
            let Some(out) = deidentify(&e, src) else {
                continue;
            };
            if &out == clean {
                continue;
            }
            changed += 1;
            let c = check(&v, src, &out);
            flagged += usize::from(!c.findings.is_empty());
            family_hits += usize::from(caught_in_real(&c, family));
        }
        eprintln!(
            "{fault:?}: {changed} of {} real outputs changed by the fault; {flagged} flagged, {family_hits} in the family's category",
            pairs.len()
        );
        assert!(
            family_hits > 0,
            "{fault:?} changed {changed} real outputs and none was reported as {family}"
        );
    }
}
