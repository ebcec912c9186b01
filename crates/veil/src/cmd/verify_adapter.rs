//! The verify stage of `veil deid`: a byte-level leak check that shares no rule code with the
//! engine. From each source it gathers the values that identify a person directly (names, IDs,
//! birth date, address, phone, institution, instance UIDs) by its own short list, then searches
//! every byte of the output for them; it also re-reads the output's header and requires the
//! de-identification markers. An output that fails is quarantined with the finding (never the
//! value).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use veil_pipeline::{OutputVerifier, PreparedCheck, VerifyFinding};
use veil_profile::{Policy, ProfileOption};

/// Tokens shorter than this are only searched outside pixel data: a 3–5 letter name part matches
/// random image bytes now and then (about once per 16 MB for 3 letters), a 6-letter one about
/// once per 280 TB.
const BINARY_SAFE_LEN: usize = 6;
/// Shorter values ("M", "01") are too common to mean anything.
const MIN_LEN: usize = 3;

/// What the verifier looks for, given the options (retained attributes are not leaks).
pub struct ByteScanVerifier {
    /// Attributes a policy override keeps on purpose.
    kept: Vec<Tag>,
    keep_uids: bool,
    keep_institution: bool,
    keep_device: bool,
}

struct Prepared {
    long: Option<AhoCorasick>,
    short: Option<AhoCorasick>,
}

fn values(e: &dicom_object::mem::InMemElement) -> Vec<String> {
    match e.value() {
        Value::Primitive(p) => p
            .to_multi_str()
            .iter()
            .map(|s| s.trim_matches(['\0', ' ']).to_string())
            .collect(),
        _ => Vec::new(),
    }
}

impl ByteScanVerifier {
    fn collect(&self, obj: &InMemDicomObject, out: &mut Vec<String>) {
        let mut direct: Vec<Tag> = vec![
            tags::PATIENT_ID,
            tags::ISSUER_OF_PATIENT_ID,
            Tag(0x0010, 0x1000), // Other Patient IDs (retired, still exported)
            tags::ACCESSION_NUMBER,
            tags::PATIENT_BIRTH_DATE,
            tags::PATIENT_ADDRESS,
            tags::PATIENT_TELEPHONE_NUMBERS,
            tags::MILITARY_RANK,
            Tag(0x0010, 0x1090), // Medical Record Locator (retired)
        ];
        if !self.keep_institution {
            direct.extend([tags::INSTITUTION_NAME, tags::INSTITUTION_ADDRESS]);
        }
        if !self.keep_device {
            direct.extend([tags::DEVICE_SERIAL_NUMBER, tags::STATION_NAME]);
        }
        for e in obj.iter() {
            let tag = e.tag();
            if let Value::Sequence(seq) = e.value() {
                for item in seq.items() {
                    self.collect(item, out);
                }
                continue;
            }
            if tag.group() & 1 == 1 || self.kept.contains(&tag) {
                continue;
            }
            match e.vr() {
                VR::PN => {
                    for v in values(e) {
                        out.extend(
                            v.split(['^', '=', ' ', ','])
                                .filter(|p| p.len() >= MIN_LEN)
                                .map(String::from),
                        );
                    }
                }
                VR::UI if !self.keep_uids && !names_a_class(tag) => {
                    // Class, syntax and coding scheme UIDs are public; instance UIDs are not.
                    out.extend(
                        values(e)
                            .into_iter()
                            .filter(|v| v.len() >= 10 && !v.starts_with("1.2.840.10008.")),
                    );
                }
                _ if direct.contains(&tag) => {
                    out.extend(values(e).into_iter().filter(|v| v.len() >= MIN_LEN))
                }
                _ => {}
            }
        }
    }
}

/// UIDs that name a class, a transfer syntax or a coding scheme (public registries), by keyword.
fn names_a_class(tag: Tag) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| {
            let k = e.alias();
            k.ends_with("ClassUID") || k.ends_with("SyntaxUID") || k.contains("CodingScheme")
        })
}

/// Coded-entry attributes hold terminology ("TEST", "DCM", "121071"), not free text.
const CODE_TAGS: [Tag; 4] = [
    tags::CODE_VALUE,
    tags::CODING_SCHEME_DESIGNATOR,
    tags::CODING_SCHEME_VERSION,
    tags::LONG_CODE_VALUE,
];

/// Every text value of a dataset at any depth, outside coded entries.
fn texts(obj: &InMemDicomObject, out: &mut Vec<String>) {
    for e in obj.iter() {
        match e.value() {
            Value::Sequence(seq) => seq.items().iter().for_each(|i| texts(i, out)),
            Value::Primitive(_) if !CODE_TAGS.contains(&e.tag()) => {
                if let Ok(t) = e.to_str() {
                    out.push(t.into_owned());
                }
            }
            _ => {}
        }
    }
}

fn matcher(tokens: Vec<String>) -> Option<AhoCorasick> {
    if tokens.is_empty() {
        return None;
    }
    // Built once per file and run over the header bytes only (a few KB): a contiguous NFA
    // builds several times faster than a DFA, which would only pay off on megabytes.
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
        .build(tokens)
        .ok()
}

/// Offset of the last Pixel Data tag (explicit or implicit little endian, or big endian), or the
/// file length when there is none.
fn pixel_data_offset(bytes: &[u8]) -> usize {
    [[0xE0u8, 0x7F, 0x10, 0x00], [0x7F, 0xE0, 0x00, 0x10]]
        .iter()
        .filter_map(|t| memchr::memmem::rfind(bytes, t))
        .max()
        .unwrap_or(bytes.len())
}

impl PreparedCheck for Prepared {
    fn verify(&self, output: &[u8]) -> Vec<VerifyFinding> {
        let mut findings = Vec::new();
        let mut report = |m: aho_corasick::Match, region: &str| {
            findings.push(VerifyFinding {
                path: format!("offset {} ({region})", m.start()),
                category: "known_identifier".into(),
                rule: "a value identifying the source patient, staff, institution or instance is present".into(),
            });
        };
        if let Some(long) = &self.long {
            // Every byte before the Pixel Data value: preamble, file meta and every element at
            // any depth. Pixel Data itself is the source's bytes unchanged (or the pixel stage's
            // redaction); scanning it here would double a run's cost, and `veil verify` does.
            for m in long.find_iter(&output[..pixel_data_offset(output)]) {
                report(m, "before pixel data");
            }
        }
        // The header must re-read independently of the engine, with the markers.
        let header = (output.len() > 132)
            .then(|| {
                dicom_object::OpenFileOptions::new()
                    .read_preamble(dicom_object::file::ReadPreamble::Never)
                    .read_until(tags::PIXEL_DATA)
                    .from_reader(&output[128..])
                    .ok()
            })
            .flatten();
        if let (Some(short), Some(header)) = (&self.short, &header) {
            // Short tokens are searched in text values, as whole words: "Ann" is no leak inside
            // "Scanner", and a coding scheme "TEST" is not the patient "Test".
            let mut values = Vec::new();
            texts(header, &mut values);
            for v in &values {
                let b = v.as_bytes();
                let word = |i: Option<usize>| {
                    i.and_then(|i| b.get(i))
                        .is_some_and(|c| c.is_ascii_alphanumeric())
                };
                for m in short.find_iter(b) {
                    if !word(m.start().checked_sub(1)) && !word(Some(m.end())) {
                        report(m, "in a text value");
                    }
                }
            }
        }
        let header_ok = header
            .as_ref()
            .and_then(|o| {
                o.get(tags::PATIENT_IDENTITY_REMOVED)
                    .and_then(|e| e.to_str().ok())
                    .map(|s| s.trim() == "YES")
            })
            .unwrap_or(false);
        if !header_ok {
            findings.push(VerifyFinding {
                path: "(0012,0062)".into(),
                category: "missing_marker".into(),
                rule: "the output must re-read as DICOM with Patient Identity Removed = YES".into(),
            });
        }
        findings
    }
}

impl OutputVerifier for ByteScanVerifier {
    fn prepare(&self, source: &InMemDicomObject) -> Box<dyn PreparedCheck> {
        let mut tokens = Vec::new();
        self.collect(source, &mut tokens);
        tokens.sort();
        tokens.dedup();
        let (long, short): (Vec<String>, Vec<String>) =
            tokens.into_iter().partition(|t| t.len() >= BINARY_SAFE_LEN);
        Box::new(Prepared {
            long: matcher(long),
            short: matcher(short),
        })
    }
}

/// The verifier every `veil deid` output passes before it is written.
pub fn pipeline_verifier(policy: &Policy) -> Option<Box<dyn OutputVerifier>> {
    Some(Box::new(ByteScanVerifier {
        kept: policy.kept_tags(),
        keep_uids: policy.has(ProfileOption::RetainUids),
        keep_institution: policy.has(ProfileOption::RetainInstitutionIdentity),
        keep_device: policy.has(ProfileOption::RetainDeviceIdentity),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::PrimitiveValue;
    use dicom_core::DataElement;
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
    fn catches_a_name_a_uid_and_a_missing_marker_but_not_codes() {
        let v = pipeline_verifier(&Policy::default_policy()).unwrap();
        let source = InMemDicomObject::from_element_iter([
            el(tags::PATIENT_NAME, VR::PN, "Quixley^Ann"),
            el(tags::PATIENT_ID, VR::LO, "MRN-40071233"),
            el(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                "1.2.826.0.1.3680043.10.1137.1.1.1.1",
            ),
        ]);
        let check = v.prepare(&source);
        let clean = file_bytes(vec![
            el(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"),
            el(tags::MANUFACTURER, VR::LO, "Scanner Company"),
            el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "ANN"),
        ]);
        assert!(
            check.verify(&clean).is_empty(),
            "{:?}",
            check.verify(&clean)
        );
        let leaky = file_bytes(vec![
            el(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"),
            el(tags::STUDY_DESCRIPTION, VR::LO, "CT for QUIXLEY and ann"),
            el(
                Tag(0x0009, 0x1001),
                VR::LO,
                "1.2.826.0.1.3680043.10.1137.1.1.1.1",
            ),
        ]);
        let f = check.verify(&leaky);
        assert_eq!(
            f.iter()
                .filter(|f| f.category == "known_identifier")
                .count(),
            3,
            "{f:?}"
        );
        let text = serde_json::to_string(&f).unwrap();
        assert!(!text.to_lowercase().contains("quixley") && !text.contains("1137"));
        let unmarked = file_bytes(vec![el(tags::MANUFACTURER, VR::LO, "x")]);
        assert!(check
            .verify(&unmarked)
            .iter()
            .any(|f| f.category == "missing_marker"));
    }
}
