//! The demo's synthetic hospital export: three patients, CT series, SR reports and an
//! ultrasound full of planted identifiers (names, MRNs, birth dates, phones, e-mail addresses,
//! addresses, accession numbers, UIDs, staff and institution, in standard tags, sequences three
//! deep, an unknown private block with a UN value, free text and the file meta). `veil demo`
//! runs the real pipeline on it; tests use it as a kit that needs no fetched data.

use std::path::Path;

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

/// Why the demo data could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Usage(String),
    #[error("file meta: {0}")]
    Meta(#[from] dicom_object::meta::Error),
    #[error("cannot write a DICOM file: {0}")]
    Write(Box<dicom_object::WriteError>),
    #[error("cannot read a DICOM file: {0}")]
    Read(Box<dicom_object::ReadError>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Walk(#[from] walkdir::Error),
    #[error("{0}")]
    Search(#[from] aho_corasick::BuildError),
}

impl From<dicom_object::WriteError> for DemoError {
    fn from(e: dicom_object::WriteError) -> Self {
        DemoError::Write(Box::new(e))
    }
}

impl From<dicom_object::ReadError> for DemoError {
    fn from(e: dicom_object::ReadError) -> Self {
        DemoError::Read(Box::new(e))
    }
}

impl From<DemoError> for crate::AppError {
    fn from(e: DemoError) -> Self {
        match e {
            DemoError::Usage(m) => crate::AppError::Usage(m),
            other => crate::AppError::Demo(other.to_string()),
        }
    }
}

/// The pixel module of a real image, copied into every generated CT instance.
pub fn pixel_module(path: &Path) -> Result<Vec<InMemElement>, DemoError> {
    let file = dicom_object::open_file(path)?;
    let ts = file
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    if ts != uids::EXPLICIT_VR_LITTLE_ENDIAN && ts != uids::IMPLICIT_VR_LITTLE_ENDIAN {
        return Err(DemoError::Usage(format!(
            "--pixels-from {}: pixel data must be uncompressed little endian (transfer syntax {ts})",
            path.display()
        )));
    }
    let module = [
        tags::SAMPLES_PER_PIXEL,
        tags::PHOTOMETRIC_INTERPRETATION,
        tags::ROWS,
        tags::COLUMNS,
        tags::BITS_ALLOCATED,
        tags::BITS_STORED,
        tags::HIGH_BIT,
        tags::PIXEL_REPRESENTATION,
        tags::PIXEL_DATA,
    ];
    module
        .iter()
        .map(|t| {
            file.element(*t).cloned().map_err(|_| {
                DemoError::Usage(format!(
                    "--pixels-from {}: no {t} in the file",
                    path.display()
                ))
            })
        })
        .collect()
}

/// A Basic Text SR for the patient, with identifiers in TEXT, PNAME and DATE content items.
fn sr_document(p: &Patient, sop: &str, study: &str, series: &str) -> InMemDicomObject {
    let concept = |code: &str, meaning: &str| {
        seq(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                el(tags::CODE_VALUE, VR::SH, code),
                el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
                el(tags::CODE_MEANING, VR::LO, meaning),
            ])],
        )
    };
    let item = |value_type: &str, code: &str, meaning: &str, value: InMemElement| {
        InMemDicomObject::from_element_iter([
            el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
            el(tags::VALUE_TYPE, VR::CS, value_type),
            concept(code, meaning),
            value,
        ])
    };
    let name = p.name.replace('^', " ");
    let text = format!("{name} ({}) reports chest pain; call {}", p.id, p.phone);
    InMemDicomObject::from_element_iter([
        el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        el(tags::SOP_CLASS_UID, VR::UI, uids::BASIC_TEXT_SR_STORAGE),
        el(tags::SOP_INSTANCE_UID, VR::UI, sop),
        el(tags::STUDY_INSTANCE_UID, VR::UI, study),
        el(tags::SERIES_INSTANCE_UID, VR::UI, series),
        el(tags::MODALITY, VR::CS, "SR"),
        el(tags::PATIENT_NAME, VR::PN, p.name),
        el(tags::PATIENT_ID, VR::LO, p.id),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, p.birth),
        el(tags::CONTENT_DATE, VR::DA, "20230601"),
        el(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        el(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        concept("121070", "Findings"),
        seq(
            tags::CONTENT_SEQUENCE,
            vec![
                item(
                    "TEXT",
                    "121071",
                    "Finding",
                    el(tags::TEXT_VALUE, VR::UT, text),
                ),
                item(
                    "PNAME",
                    "121008",
                    "Person Observer Name",
                    el(tags::PERSON_NAME, VR::PN, p.name),
                ),
                item(
                    "DATE",
                    "121058",
                    "Procedure reported",
                    el(tags::DATE, VR::DA, p.birth),
                ),
            ],
        ),
    ])
}

pub const MARKER: &str = ".veil-demo";

/// A synthetic patient with identifiers that must not survive.
struct Patient {
    name: &'static str,
    id: &'static str,
    birth: &'static str,
    phone: &'static str,
    address: &'static str,
    email: &'static str,
}

const PATIENTS: [Patient; 3] = [
    Patient {
        name: "Quixley^Bernadette^M",
        id: "MRN-40071233",
        birth: "19470312",
        phone: "617-555-0142",
        address: "12 Larkspur Lane, Fallowfield",
        email: "b.quixley@example.org",
    },
    Patient {
        name: "Okonkwo-Hale^Tobias",
        id: "MRN-40089911",
        birth: "19830927",
        phone: "617-555-0187",
        address: "4 Juniper Row, Eastmere",
        email: "tobias.oh@example.net",
    },
    Patient {
        name: "Vandersloot^Imogen^R",
        id: "MRN-40102276",
        birth: "19591104",
        phone: "617-555-0119",
        address: "88 Quarry Hill, Westbrook",
        email: "imogen.v@example.com",
    },
];

/// The consent statement the demo records: the second patient refuses internal research.
pub fn refusing_patient() -> veil_store::ConsentInput {
    veil_store::ConsentInput {
        patient_id: PATIENTS[1].id.into(),
        issuer: String::new(),
        purpose: "internal-research".into(),
        state: veil_store::ConsentState::Refused,
        scope: veil_store::Scope::default(),
        effective_at: String::new(),
        valid_from: String::new(),
        valid_until: String::new(),
        source: "demo".into(),
        evidence: String::new(),
    }
}

const STAFF: [&str; 3] = [
    "Abernathy^Clement^Dr",
    "Featherstonehaugh^Priya",
    "Lindqvist^Osric",
];
const INSTITUTION: &str = "Saint Ottoline Memorial Hospital";

fn el(tag: Tag, vr: VR, v: impl Into<String>) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(v.into()))
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(
        tag,
        VR::SQ,
        Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED)),
    )
}

/// The image pixel module of a square CT slice: 12 bits stored in 16, HU = stored − 1024.
fn ct_pixel_module(size: u16, pixels: Vec<u16>) -> [InMemElement; 11] {
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    [
        us(tags::SAMPLES_PER_PIXEL, 1),
        el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, size),
        us(tags::COLUMNS, size),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 12),
        us(tags::HIGH_BIT, 11),
        us(tags::PIXEL_REPRESENTATION, 0),
        el(tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
        el(tags::RESCALE_SLOPE, VR::DS, "1"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ]
}

/// A CT-like slice: an ellipse of soft tissue with a brighter disc, 128 × 128, 16-bit.
fn phantom(slice: u32) -> Vec<u16> {
    let n = 128i32;
    let mut px = vec![0u16; (n * n) as usize];
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = ((x - 64) as f32 / 52.0, (y - 64) as f32 / 40.0);
            let body = dx * dx + dy * dy <= 1.0;
            let (ox, oy) = ((x - 50 - slice as i32) as f32, (y - 60) as f32);
            let organ = ox * ox + oy * oy <= 144.0;
            px[(y * n + x) as usize] = match (body, organ) {
                (_, true) => 1100,
                (true, _) => 1040 + ((x * 7 + y * 13) % 11) as u16,
                _ => 24,
            };
        }
    }
    px
}

/// Slices, matrix, pixel size and slice step (mm) of the demo's head CT.
const HEAD_SLICES: u32 = 50;
const HEAD_MATRIX: u32 = 128;
const HEAD_PIXEL_MM: f64 = 1.8;
const HEAD_STEP_MM: f64 = 4.5;

/// Inside an axis-aligned ellipsoid (centre, semi-axes), patient coordinates in mm.
fn inside(p: [f64; 3], centre: [f64; 3], semi: [f64; 3]) -> bool {
    (0..3)
        .map(|a| ((p[a] - centre[a]) / semi[a]).powi(2))
        .sum::<f64>()
        <= 1.0
}

/// HU of a synthetic head at a patient position (LPS: +x left, +y posterior, +z up): soft
/// tissue, a closed skull, a brain, and a face in front (a nose, eyes, a mouth).
fn head_hu(p: [f64; 3]) -> i32 {
    let brain = ([0.0, 8.0, 28.0], [62.0, 82.0, 68.0]);
    let skull = ([0.0, 8.0, 28.0], [69.0, 89.0, 75.0]);
    let nose = inside(p, [0.0, -100.0, -20.0], [10.0, 16.0, 24.0]);
    let eye = inside(p, [30.0, -84.0, 8.0], [13.0, 13.0, 13.0])
        || inside(p, [-30.0, -84.0, 8.0], [13.0, 13.0, 13.0]);
    let mouth = p[0].abs() < 22.0 && p[1] < -86.0 && (-62.0..-56.0).contains(&p[2]);
    if inside(p, brain.0, brain.1) {
        30
    } else if inside(p, skull.0, skull.1) {
        1200
    } else if eye {
        10
    } else if mouth {
        -1000
    } else if nose || inside(p, [0.0, 0.0, 0.0], [78.0, 100.0, 112.0]) {
        40
    } else {
        -1000
    }
}

/// Writes the demo's head CT (50 axial slices, 128 × 128, the first patient's identifiers):
/// a volume with a face, which the face stage must remove before release.
pub fn head_phantom(input: &Path) -> Result<u32, DemoError> {
    let p = &PATIENTS[0];
    let (study, series) = (uid(&[1, 5]), uid(&[1, 5, 1]));
    let origin = -(HEAD_MATRIX as f64) * HEAD_PIXEL_MM / 2.0;
    for k in 0..HEAD_SLICES {
        let z = -115.0 + k as f64 * HEAD_STEP_MM;
        let mut px = Vec::with_capacity((HEAD_MATRIX * HEAD_MATRIX) as usize);
        for r in 0..HEAD_MATRIX {
            for c in 0..HEAD_MATRIX {
                let at = [
                    origin + c as f64 * HEAD_PIXEL_MM,
                    origin + r as f64 * HEAD_PIXEL_MM,
                    z,
                ];
                px.push((head_hu(at) + 1024) as u16);
            }
        }
        let sop = uid(&[1, 5, 1, k + 1]);
        let obj = InMemDicomObject::from_element_iter(
            [
                el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
                el(tags::SOP_INSTANCE_UID, VR::UI, sop.as_str()),
                el(tags::STUDY_INSTANCE_UID, VR::UI, study.as_str()),
                el(tags::SERIES_INSTANCE_UID, VR::UI, series.as_str()),
                el(tags::FRAME_OF_REFERENCE_UID, VR::UI, uid(&[1, 5, 9])),
                el(tags::PATIENT_NAME, VR::PN, p.name),
                el(tags::PATIENT_ID, VR::LO, p.id),
                el(tags::PATIENT_BIRTH_DATE, VR::DA, p.birth),
                el(tags::STUDY_DATE, VR::DA, "20230411"),
                el(tags::MODALITY, VR::CS, "CT"),
                el(tags::BODY_PART_EXAMINED, VR::CS, "HEAD"),
                el(tags::STUDY_DESCRIPTION, VR::LO, "CT HEAD WO CONTRAST"),
                el(tags::SERIES_DESCRIPTION, VR::LO, "HEAD 4.5 STANDARD"),
                el(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
                el(tags::INSTANCE_NUMBER, VR::IS, (k + 1).to_string()),
                el(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
                el(
                    tags::IMAGE_POSITION_PATIENT,
                    VR::DS,
                    format!("{origin}\\{origin}\\{z}"),
                ),
                el(
                    tags::PIXEL_SPACING,
                    VR::DS,
                    format!("{HEAD_PIXEL_MM}\\{HEAD_PIXEL_MM}"),
                ),
                el(tags::SLICE_THICKNESS, VR::DS, format!("{HEAD_STEP_MM}")),
            ]
            .into_iter()
            .chain(ct_pixel_module(HEAD_MATRIX as u16, px)),
        );
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid(sop.clone())
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .build()?;
        let path = input.join(format!("export/p1/head/slice{:02}.dcm", k + 1));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        obj.with_exact_meta(meta).write_to_file(&path)?;
    }
    Ok(HEAD_SLICES)
}

/// Writes the demo input; returns every planted value to look for afterwards.
/// Where one generated CT image sits: patient (1-based), study, series, instance.
#[derive(Clone, Copy)]
struct Slot {
    pi: u32,
    study: u32,
    series: u32,
    inst: u32,
}

/// The demo's UIDs, under a root of the demo's own.
fn uid(parts: &[u32]) -> String {
    let mut s = String::from("1.2.826.0.1.3680043.10.1137");
    for p in parts {
        s.push_str(&format!(".{p}"));
    }
    s
}

/// The elements of one CT image full of the patient's identifiers (names, IDs, dates, contact
/// details, free text, a request three levels deep, a private block, a UN value), and the
/// values it plants.
fn ct_elements(p: &Patient, at: Slot) -> (Vec<InMemElement>, Vec<String>) {
    let Slot {
        pi,
        study,
        series,
        inst,
    } = at;
    let mut planted = Vec::new();
    let study_uid = uid(&[pi, study]);
    let series_uid = uid(&[pi, study, series]);
    let sop = uid(&[pi, study, series, inst]);
    let accession = format!("ACC{pi}{study}7730591");
    let study_date = format!("2023{:02}{:02}", 2 + study * 3, 10 + pi);
    let surname = p.name.split('^').next().unwrap_or_default();
    let staff = STAFF[((pi + study) % 3) as usize];
    // Three levels deep: Request Attributes > Referenced Study > a name.
    let deepest = InMemDicomObject::from_element_iter([
        el(
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            uids::CT_IMAGE_STORAGE,
        ),
        el(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            uid(&[pi, study, 9, 9]),
        ),
        el(tags::PATIENT_NAME, VR::PN, p.name),
    ]);
    let request = InMemDicomObject::from_element_iter([
        el(
            tags::REQUESTED_PROCEDURE_ID,
            VR::SH,
            format!("RP{pi}{study}88412"),
        ),
        el(
            tags::SCHEDULED_PROCEDURE_STEP_ID,
            VR::SH,
            format!("SPS{pi}{study}3319"),
        ),
        seq(tags::REFERENCED_STUDY_SEQUENCE, vec![deepest]),
    ]);
    planted.extend([format!("RP{pi}{study}88412"), format!("SPS{pi}{study}3319")]);
    let mut elements = vec![
        el(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        el(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
        el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        el(tags::SOP_INSTANCE_UID, VR::UI, sop.clone()),
        el(tags::STUDY_DATE, VR::DA, study_date.clone()),
        el(tags::STUDY_TIME, VR::TM, "101500"),
        el(tags::ACCESSION_NUMBER, VR::SH, accession.clone()),
        el(tags::MODALITY, VR::CS, "CT"),
        el(tags::MANUFACTURER, VR::LO, "Veil Demo Scanners"),
        el(tags::INSTITUTION_NAME, VR::LO, INSTITUTION),
        el(tags::REFERRING_PHYSICIAN_NAME, VR::PN, staff),
        el(tags::STATION_NAME, VR::SH, "OTTOLINE-CT2"),
        el(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            format!("CT CHEST {surname} follow-up"),
        ),
        el(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            format!("AX 1.25mm lung {}", &study_date),
        ),
        el(tags::OPERATORS_NAME, VR::PN, STAFF[(pi % 3) as usize]),
        el(tags::PATIENT_NAME, VR::PN, p.name),
        el(tags::PATIENT_ID, VR::LO, p.id),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, p.birth),
        el(tags::PATIENT_SEX, VR::CS, if pi == 2 { "M" } else { "F" }),
        el(tags::PATIENT_ADDRESS, VR::LO, p.address),
        el(tags::PATIENT_TELEPHONE_NUMBERS, VR::SH, p.phone),
        // Other Patient IDs (0010,1000), retired but still exported by many PACS.
        el(Tag(0x0010, 0x1000), VR::LO, format!("NHS{pi}4420917")),
        el(
            tags::ADDITIONAL_PATIENT_HISTORY,
            VR::LT,
            format!(
                "Contact {} or {}; seen by {}",
                p.phone,
                p.email,
                staff.replace('^', " ")
            ),
        ),
        el(tags::DEVICE_SERIAL_NUMBER, VR::LO, "SN-77120034"),
        el(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.clone()),
        el(tags::SERIES_INSTANCE_UID, VR::UI, series_uid.clone()),
        el(tags::STUDY_ID, VR::SH, format!("S{pi}{study}")),
        el(tags::SERIES_NUMBER, VR::IS, series.to_string()),
        el(tags::INSTANCE_NUMBER, VR::IS, inst.to_string()),
        el(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            uid(&[pi, study, series, 0]),
        ),
        el(
            tags::IMAGE_COMMENTS,
            VR::LT,
            format!("{} {} DOB {}", p.name.replace('^', " "), p.id, p.birth),
        ),
        seq(tags::REQUEST_ATTRIBUTES_SEQUENCE, vec![request]),
        // A private block of a creator nobody knows, one value hidden as UN.
        el(Tag(0x0011, 0x0010), VR::LO, "OTTOLINE PACS 2.1"),
        el(Tag(0x0011, 0x1001), VR::LO, format!("{} {}", p.id, p.email)),
        DataElement::new(
            Tag(0x0011, 0x1002),
            VR::UN,
            PrimitiveValue::from(p.address.as_bytes().to_vec()),
        ),
    ];
    elements.extend(ct_pixel_module(128, phantom(inst)));
    if inst > 1 {
        // Each image points back at the first of its series.
        let reference = InMemDicomObject::from_element_iter([
            el(
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                uids::CT_IMAGE_STORAGE,
            ),
            el(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                uid(&[pi, study, series, 1]),
            ),
        ]);
        elements.push(seq(tags::REFERENCED_IMAGE_SEQUENCE, vec![reference]));
    }
    planted.extend([format!("NHS{pi}4420917"), uid(&[pi, study, series, 0])]);
    (elements, planted)
}

pub fn generate(input: &Path, pixels: Option<&[InMemElement]>) -> Result<Vec<String>, DemoError> {
    let mut planted: Vec<String> = Vec::new();
    for (pi, p) in PATIENTS.iter().enumerate() {
        let pi = pi as u32 + 1;
        for part in p.name.split('^').filter(|s| s.len() > 1) {
            planted.push(part.to_string());
        }
        planted.extend([p.id, p.birth, p.phone, p.address, p.email].map(String::from));
        for study in 1..=2u32 {
            planted.extend([uid(&[pi, study]), format!("ACC{pi}{study}7730591")]);
            for series in 1..=2u32 {
                planted.push(uid(&[pi, study, series]));
                for inst in 1..=4u32 {
                    let sop = uid(&[pi, study, series, inst]);
                    planted.push(sop.clone());
                    let at = Slot {
                        pi,
                        study,
                        series,
                        inst,
                    };
                    let (elements, more) = ct_elements(p, at);
                    planted.extend(more);
                    let mut obj = InMemDicomObject::from_element_iter(elements);
                    if let Some(module) = pixels {
                        for e in module {
                            obj.put(e.clone());
                        }
                    }
                    let meta = FileMetaTableBuilder::new()
                        .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
                        .media_storage_sop_instance_uid(sop.clone())
                        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                        .source_application_entity_title("OTTOLINE_PACS")
                        .build()?;
                    let path =
                        input.join(format!("export/p{pi}/s{study}/se{series}/img{inst}.dcm"));
                    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
                    obj.with_exact_meta(meta).write_to_file(&path)?;
                }
            }
        }
    }
    // One structured report per patient, with identifiers in its content items.
    for (pi, p) in PATIENTS.iter().enumerate() {
        let pi = pi as u32 + 1;
        let (study, series, sop) = (uid(&[pi, 1]), uid(&[pi, 1, 7]), uid(&[pi, 1, 7, 1]));
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(uids::BASIC_TEXT_SR_STORAGE)
            .media_storage_sop_instance_uid(sop.clone())
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .build()?;
        let path = input.join(format!("export/p{pi}/report.dcm"));
        sr_document(p, &sop, &study, &series)
            .with_exact_meta(meta)
            .write_to_file(&path)?;
        planted.extend([series, sop]);
    }
    planted.extend(
        STAFF
            .iter()
            .flat_map(|s| s.split('^').filter(|p| p.len() > 2).map(String::from)),
    );
    planted.extend([
        INSTITUTION.to_string(),
        "SN-77120034".into(),
        "OTTOLINE".into(),
    ]);

    // An ultrasound marked Burned In Annotation YES (a blank frame: the pixel stage looks at it,
    // finds no text and releases its pixels unchanged), and a stray non-DICOM file.
    let p = &PATIENTS[0];
    let us = InMemDicomObject::from_element_iter([
        el(tags::SOP_CLASS_UID, VR::UI, uids::ULTRASOUND_IMAGE_STORAGE),
        el(tags::SOP_INSTANCE_UID, VR::UI, uid(&[1, 9, 1, 1])),
        el(tags::STUDY_INSTANCE_UID, VR::UI, uid(&[1, 9])),
        el(tags::SERIES_INSTANCE_UID, VR::UI, uid(&[1, 9, 1])),
        el(tags::MODALITY, VR::CS, "US"),
        el(tags::PATIENT_NAME, VR::PN, p.name),
        el(tags::PATIENT_ID, VR::LO, p.id),
        el(tags::BURNED_IN_ANNOTATION, VR::CS, "YES"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
        el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(16u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16)),
        DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16)),
        DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16)),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::from(vec![0u8; 256]),
        ),
    ]);
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uids::ULTRASOUND_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(uid(&[1, 9, 1, 1]))
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .build()?;
    us.with_exact_meta(meta)
        .write_to_file(input.join("export/p1/ultrasound.dcm"))?;
    std::fs::write(
        input.join("export/worklist-notes.txt"),
        format!("call {} about {}\n", p.phone, p.id),
    )?;
    planted.sort();
    planted.dedup();
    Ok(planted)
}

/// Case-insensitive search of every byte of every file under `dir` for every planted value;
/// returns (files scanned, bytes scanned, hits).
pub fn scan(dir: &Path, planted: &[String]) -> Result<(usize, u64, Vec<String>), DemoError> {
    let matcher = aho_corasick::AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(planted)?;
    let (mut files, mut bytes, mut hits) = (0, 0u64, Vec::new());
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry?;
        if !entry.file_type().is_file()
            || entry.path().components().any(|c| c.as_os_str() == ".veil")
        {
            continue;
        }
        let data = std::fs::read(entry.path())?;
        files += 1;
        bytes += data.len() as u64;
        for m in matcher.find_iter(&data) {
            hits.push(format!(
                "{}: planted value #{}",
                entry.path().display(),
                m.pattern().as_usize()
            ));
        }
    }
    Ok((files, bytes, hits))
}
