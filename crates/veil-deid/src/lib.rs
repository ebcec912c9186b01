//! The de-identification engine: applies a policy's effective rules ([`veil_profile::Rules`]) to
//! one DICOM dataset, with keyed pseudonyms, UIDs and date offsets from a [`veil_keys::Key`].
//!
//! It owns: actions D, Z, X, K, C, U and the compound codes resolved so the output stays a valid
//! instance; recursion into sequences at any depth; private blocks matched by creator; text
//! screening of descriptors and of every kept free-text value; the de-identification markers and
//! the file meta rewrite. It does no I/O: reading, classifying, verifying and writing are the
//! pipeline's stages.

pub mod charset;
pub mod freetext;
pub mod generalize;
pub mod normalize;
pub mod patient;
pub mod screen;
pub mod values;

use std::collections::{HashMap, HashSet};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::mem::InMemElement;
use dicom_object::{FileDicomObject, InMemDicomObject};
use serde::Serialize;
use veil_keys::Key;
use veil_profile::{Action, Policy, PrivateDecision, ProfileOption, Rule, Rules};

pub use patient::{PatientMap, PatientPseudonyms};
use screen::{Identifiers, Screen};

/// Veil's Implementation Class UID (file meta), a fixed `2.25` UID of this implementation.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.178130449622113585301931962153932416393";
/// Veil's Implementation Version Name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("VEIL_", env!("CARGO_PKG_VERSION"));

/// A deliberate defect, for tests that prove the independent verifier catches each family of
/// leak (enabled only through the `fault-injection` feature's constructor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Attributes the rules remove are kept.
    KeepRemovedAttributes,
    /// Sequences are copied without cleaning their items.
    SkipNestedSequences,
    /// Private attributes are all kept.
    KeepPrivate,
    /// Descriptor text is not cleaned.
    SkipDescriptorCleaning,
    /// UIDs inside sequences keep their original values.
    SkipUidReferences,
    /// Dates are not shifted.
    SkipDateShift,
}

/// Why a dataset cannot be de-identified. Messages name attributes, never values.
#[derive(Debug, thiserror::Error)]
pub enum DeidError {
    #[error("no SOP Instance UID (0008,0018): the instance cannot be identified consistently")]
    MissingSopInstanceUid,
    #[error("no SOP Class UID (0008,0016)")]
    MissingSopClassUid,
    #[error("SOP Class UID (0008,0016) is not a valid UID (wrong VR, or characters other than digits and dots): the instance's type is unknown")]
    InvalidSopClassUid,
    #[error("SOP Instance UID (0008,0018) is not one UID (VR {vr}, {values} value(s)): it cannot be replaced consistently")]
    InvalidSopInstanceUid { vr: String, values: usize },
    #[error("attribute {0}: value cannot be read as text")]
    Unreadable(String),
    /// Bulk data that must be released byte-identical (waveform samples) holds an identifier:
    /// it cannot be cleaned without destroying it, so the instance is held back.
    #[error("{0}")]
    CannotClean(String),
}

/// How many values each kind of action touched in one dataset (or a whole run, when added up).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActionCounts {
    pub removed: u64,
    pub emptied: u64,
    pub dummied: u64,
    pub pseudonymised: u64,
    pub uids_replaced: u64,
    pub dates_shifted: u64,
    pub text_cleaned: u64,
    pub kept: u64,
    pub private_removed: u64,
    pub private_kept: u64,
    pub unknown_removed: u64,
    pub group_lengths_removed: u64,
    pub unparseable_values_emptied: u64,
    /// Numbers (IS, DS, binary) that carried an identifier's digits, replaced with 0.
    #[serde(default)]
    pub numbers_replaced: u64,
    /// Values of code strings that were not a term of their attribute (a name typed into a
    /// code), dropped or replaced with the attribute's enumerated value.
    #[serde(default)]
    pub code_values_dropped: u64,
}

impl ActionCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &ActionCounts) {
        self.removed += o.removed;
        self.emptied += o.emptied;
        self.dummied += o.dummied;
        self.pseudonymised += o.pseudonymised;
        self.uids_replaced += o.uids_replaced;
        self.dates_shifted += o.dates_shifted;
        self.text_cleaned += o.text_cleaned;
        self.kept += o.kept;
        self.private_removed += o.private_removed;
        self.private_kept += o.private_kept;
        self.unknown_removed += o.unknown_removed;
        self.group_lengths_removed += o.group_lengths_removed;
        self.numbers_replaced += o.numbers_replaced;
        self.code_values_dropped += o.code_values_dropped;
        self.unparseable_values_emptied += o.unparseable_values_emptied;
    }
}

/// Study, series and instance UIDs of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstanceUids {
    pub study: String,
    pub series: String,
    pub sop_instance: String,
}

/// What pixel stages did to an instance before its header is de-identified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Identifying text was looked for in the pixels (and removed where found): Clean Pixel
    /// Data (113101) and Burned In Annotation NO.
    pub pixel_text: bool,
    /// The face was removed from the pixels: Clean Recognizable Visual Features (113102) and
    /// Recognizable Visual Features NO.
    pub faces: bool,
    /// The series was examined for a face and none was there to remove (e.g. cut below the
    /// eyes): Recognizable Visual Features NO, without claiming the option.
    pub faces_examined: bool,
}

/// What de-identifying one dataset did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The patient pseudonym written to Patient ID.
    pub patient_pseudonym: String,
    /// Original UIDs (identifying: never log them).
    pub original: InstanceUids,
    /// UIDs in the output.
    pub released: InstanceUids,
    pub counts: ActionCounts,
    /// The record must not be released (generalisation suppresses its class).
    pub suppressed: bool,
}

/// Context modes while walking sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Attributes follow their own rules; unlisted text is screened.
    Normal,
    /// Inside a sequence whose action is D (e.g. Content Sequence without Clean Structured
    /// Content): unlisted free text is replaced by dummies, codes are kept.
    Dummy,
}

/// Coded-entry attributes: terminology, not free text. Inside a D sequence they are kept so the
/// structure stays a valid SR / code sequence (their text is still screened).
const CODE_ATTRIBUTES: [Tag; 13] = [
    tags::CODE_VALUE,
    tags::CODING_SCHEME_DESIGNATOR,
    tags::CODING_SCHEME_VERSION,
    tags::CODE_MEANING,
    tags::LONG_CODE_VALUE,
    tags::URN_CODE_VALUE,
    tags::MAPPING_RESOURCE,
    tags::CONTEXT_IDENTIFIER,
    tags::TEMPLATE_IDENTIFIER,
    tags::VALUE_TYPE,
    tags::RELATIONSHIP_TYPE,
    tags::CONTINUITY_OF_CONTENT,
    tags::CONTEXT_GROUP_EXTENSION_FLAG,
];

/// The engine, built once per run and shared by all workers.
#[derive(Debug)]
pub struct Deidentifier {
    policy: Policy,
    rules: Rules,
    key: Key,
    patient_map: Option<PatientMap>,
    method_values: Vec<String>,
    method_codes: Vec<(&'static str, &'static str)>,
    /// Free-text allowlist: the built-in vocabulary plus the policy's `[free_text] allow`.
    vocabulary: freetext::Vocabulary,
    fault: Option<Fault>,
}

fn tag_u32(t: Tag) -> u32 {
    ((t.group() as u32) << 16) | t.element() as u32
}

fn keyword(t: Tag) -> String {
    StandardDataDictionary
        .by_tag(t)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| format!("({:04X},{:04X})", t.group(), t.element()))
}

fn strings(elem: &InMemElement) -> Option<Vec<String>> {
    match elem.value() {
        Value::Primitive(PrimitiveValue::Empty) => Some(Vec::new()),
        Value::Primitive(p) => Some(p.to_multi_str().iter().map(|s| s.to_string()).collect()),
        _ => None,
    }
}

/// The trimmed text of an attribute, `None` when absent or empty. Identifying: for decisions and
/// derivations only, never for logs.
pub fn text_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string()
        })
        .filter(|s| !s.is_empty())
}

fn with_strings(tag: Tag, vr: VR, values: Vec<String>) -> InMemElement {
    if values.is_empty() {
        return DataElement::new(tag, vr, PrimitiveValue::Empty);
    }
    DataElement::new(tag, vr, PrimitiveValue::Strs(values.into_iter().collect()))
}

fn empty_like(elem: &InMemElement) -> InMemElement {
    if elem.vr() == VR::SQ {
        DataElement::new(
            elem.tag(),
            VR::SQ,
            Value::Sequence(DataSetSequence::empty()),
        )
    } else {
        DataElement::new(elem.tag(), elem.vr(), PrimitiveValue::Empty)
    }
}

fn is_empty_value(elem: &InMemElement) -> bool {
    match elem.value() {
        Value::Primitive(PrimitiveValue::Empty) => true,
        Value::Primitive(p) => p.to_str().trim_matches(['\0', ' ']).is_empty(),
        Value::Sequence(s) => s.items().is_empty(),
        Value::PixelSequence(_) => false,
    }
}

/// Is this a UID by PS3.5 9.1's syntax (digits in dot-separated components, at most 64
/// characters)? Leading zeros, which some vendors write, are tolerated.
fn is_valid_uid(s: &str) -> bool {
    s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// UIDs that name classes, syntaxes or coding schemes rather than instances: they identify no
/// one and must stay as they are for the file to mean anything. Under the DICOM root only what
/// PS3.6 registers (a made-up `1.2.840.10008.…` UID can carry anything); outside it, vendors'
/// private class and syntax UIDs by the attribute that holds them (the caller also checks them
/// for the dataset's identifier digits).
fn is_class_like_uid(tag: Tag, value: &str) -> bool {
    let standard = veil_profile::standard::standard();
    if standard.is_registered_uid(value) {
        return true;
    }
    if value.starts_with(veil_profile::standard::DICOM_ROOT) {
        return false;
    }
    let kw = keyword(tag);
    kw.ends_with("ClassUID") || kw.ends_with("SyntaxUID") || kw.contains("CodingScheme")
}

/// Bulk sample data released byte-identical or not at all (waveform samples, audio).
fn is_sample_data(tag: Tag) -> bool {
    tag == tags::WAVEFORM_DATA
}

impl Deidentifier {
    /// Builds the engine for a policy and key.
    pub fn new(policy: Policy, key: Key, patient_map: Option<PatientMap>) -> Deidentifier {
        let rules = Rules::new(&policy);
        let applied: Vec<ProfileOption> = policy
            .options
            .iter()
            .copied()
            .filter(|o| o.table_column().is_some())
            .collect();
        let mut method_codes = vec![veil_profile::BASIC_PROFILE_CODE];
        method_codes.extend(applied.iter().map(|o| o.cid7050()));
        let mut method_values = vec![
            format!("Veil {}", env!("CARGO_PKG_VERSION")),
            format!("policy sha256:{}", &policy.digest[..16]),
            veil_profile::BASIC_PROFILE_CODE.1.to_string(),
        ];
        method_values.extend(applied.iter().map(|o| o.cid7050().1.to_string()));
        let vocabulary =
            freetext::Vocabulary::with_terms(policy.free_text_allow.iter().map(String::as_str));
        Deidentifier {
            policy,
            rules,
            key,
            patient_map,
            method_values,
            method_codes,
            vocabulary,
            fault: None,
        }
    }

    /// The same engine with a deliberate defect, for verifier mutation tests only.
    #[cfg(feature = "fault-injection")]
    pub fn with_fault(mut self, fault: Fault) -> Deidentifier {
        self.fault = Some(fault);
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The effective rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The key in use (the pipeline derives keyed file references from it).
    pub fn key(&self) -> &Key {
        &self.key
    }

    fn faulty(&self, f: Fault) -> bool {
        self.fault == Some(f)
    }

    /// The pseudonyms of the patient a dataset belongs to.
    pub fn patient_of(&self, obj: &InMemDicomObject) -> PatientPseudonyms {
        patient::pseudonyms(&self.key, &self.policy, self.patient_map.as_ref(), obj)
    }

    /// De-identifies one file. The input object is consumed; the output carries a new file meta.
    pub fn deidentify(
        &self,
        file: FileDicomObject<InMemDicomObject>,
    ) -> Result<(FileDicomObject<InMemDicomObject>, Outcome), DeidError> {
        self.deidentify_with(file, false)
    }

    /// As [`Deidentifier::deidentify`], for a file whose pixel data a pixel stage has already
    /// cleaned: the markers then also list Clean Pixel Data (113101) and Burned In Annotation
    /// becomes NO.
    pub fn deidentify_with(
        &self,
        file: FileDicomObject<InMemDicomObject>,
        pixels_cleaned: bool,
    ) -> Result<(FileDicomObject<InMemDicomObject>, Outcome), DeidError> {
        let cleaned = Cleaned {
            pixel_text: pixels_cleaned,
            ..Cleaned::default()
        };
        self.deidentify_cleaned(file, cleaned)
    }

    /// As [`Deidentifier::deidentify`], for a file whose pixel data stages have cleaned (text,
    /// faces): the markers say what was done (see [`Cleaned`]).
    pub fn deidentify_cleaned(
        &self,
        file: FileDicomObject<InMemDicomObject>,
        cleaned: Cleaned,
    ) -> Result<(FileDicomObject<InMemDicomObject>, Outcome), DeidError> {
        let file = {
            let meta = file.meta().clone();
            let obj = charset::to_utf8(normalize::normalize_un(file.into_inner()))
                .map_err(|e| DeidError::CannotClean(e.to_string()))?;
            obj.with_exact_meta(meta)
        };
        let original = InstanceUids {
            study: text_of(&file, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
            series: text_of(&file, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
            sop_instance: text_of(&file, tags::SOP_INSTANCE_UID)
                .ok_or(DeidError::MissingSopInstanceUid)?,
        };
        let sop_class = text_of(&file, tags::SOP_CLASS_UID)
            .or_else(|| {
                let m = file.meta().media_storage_sop_class_uid();
                (!m.is_empty()).then(|| m.to_string())
            })
            .ok_or(DeidError::MissingSopClassUid)?;
        // Both go into the new file meta: a wrong VR or a corrupt value would make the output
        // unreadable (found by veil-fuzz), or leave the original instance UID in place.
        let class_vr_ok = file
            .get(tags::SOP_CLASS_UID)
            .is_none_or(|e| e.vr() == VR::UI);
        if !class_vr_ok || !is_valid_uid(&sop_class) {
            return Err(DeidError::InvalidSopClassUid);
        }
        if let Some(e) = file.get(tags::SOP_INSTANCE_UID) {
            // As the engine will read it: an undecodable byte becomes a "\\377" escape that
            // splits the value in two (found by veil-fuzz, ISO 2022 IR 87 and a 0xFF byte).
            let values = strings(e).map_or(0, |v| v.len());
            if e.vr() != VR::UI || values != 1 {
                return Err(DeidError::InvalidSopInstanceUid {
                    vr: e.vr().to_string().into(),
                    values,
                });
            }
        }
        let patient = self.patient_of(&file);

        let mut ids = Identifiers::default();
        self.collect_identifiers(&file, &mut ids);
        let mut walk = Walk {
            engine: self,
            patient: &patient,
            screen: ids.build(),
            counts: ActionCounts::default(),
            sop_class: sop_class.clone(),
            hold: None,
            nested: false,
        };
        let mut meta = file.meta().clone();
        let obj = file.into_inner();
        let birth_date = text_of(&obj, tags::PATIENT_BIRTH_DATE);
        let age_on = text_of(&obj, tags::STUDY_DATE)
            .or_else(|| text_of(&obj, tags::ACQUISITION_DATE))
            .or_else(|| text_of(&obj, tags::CONTENT_DATE));
        let had_age = obj
            .get(tags::PATIENT_AGE)
            .is_some_and(|e| !is_empty_value(e));
        let mut out = walk.dataset(obj, Mode::Normal, true);
        if let Some(reason) = walk.hold {
            return Err(DeidError::CannotClean(reason));
        }
        let mut counts = walk.counts;
        self.file_under_pseudonym(&mut out, &patient, &mut counts);

        // Patient Age derived from the birth date (which is removed) when characteristics are kept.
        if self.policy.has(ProfileOption::RetainPatientCharacteristics) && !had_age {
            if let (Some(b), Some(on)) = (birth_date, age_on) {
                if let Some(age) = values::age_between(&b, &on) {
                    out.put(DataElement::new(
                        tags::PATIENT_AGE,
                        VR::AS,
                        PrimitiveValue::from(age),
                    ));
                }
            }
        }
        self.add_markers(&mut out, cleaned);

        let mut suppressed = false;
        if let Some(spec) = &self.policy.generalize {
            let g = generalize::apply(&mut out, spec);
            suppressed = g.suppressed;
        }

        let released = InstanceUids {
            study: text_of(&out, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
            series: text_of(&out, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
            sop_instance: text_of(&out, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        };
        meta.media_storage_sop_instance_uid = released.sop_instance.clone();
        meta.media_storage_sop_class_uid = sop_class;
        meta.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_string();
        meta.implementation_version_name = Some(IMPLEMENTATION_VERSION_NAME.to_string());
        meta.source_application_entity_title = None;
        meta.sending_application_entity_title = None;
        meta.receiving_application_entity_title = None;
        meta.private_information_creator_uid = None;
        meta.private_information = None;
        counts.uids_replaced += 1; // Media Storage SOP Instance UID
        let mut file = out.with_exact_meta(meta);
        file.update_meta(|_| {});
        Ok((
            file,
            Outcome {
                patient_pseudonym: patient.id.clone(),
                original,
                released,
                counts,
                suppressed,
            },
        ))
    }

    /// Every output carries the patient pseudonyms it is filed under (`OUT/<Patient ID>/...`),
    /// also when the source had no Patient ID or Patient's Name: a recipient must be able to
    /// group instances by patient from the header alone, and the folder and the header must
    /// agree. An override on either attribute is the policy's word and wins.
    fn file_under_pseudonym(
        &self,
        out: &mut InMemDicomObject,
        patient: &PatientPseudonyms,
        counts: &mut ActionCounts,
    ) {
        let overridden = |tag: Tag| {
            self.rules()
                .for_tag(tag_u32(tag))
                .is_some_and(|r| r.source == veil_profile::RuleSource::Override)
        };
        for (tag, vr, value) in [
            (tags::PATIENT_ID, VR::LO, &patient.id),
            (tags::PATIENT_NAME, VR::PN, &patient.name),
        ] {
            if overridden(tag) || text_of(out, tag).as_deref() == Some(value.as_str()) {
                continue;
            }
            out.put(DataElement::new(
                tag,
                vr,
                PrimitiveValue::from(value.clone()),
            ));
            counts.pseudonymised += 1;
        }
    }

    fn add_markers(&self, out: &mut InMemDicomObject, cleaned: Cleaned) {
        out.put(DataElement::new(
            tags::PATIENT_IDENTITY_REMOVED,
            VR::CS,
            PrimitiveValue::from("YES"),
        ));
        let mut method_values = self.method_values.clone();
        let mut method_codes = self.method_codes.clone();
        if cleaned.faces && !method_codes.iter().any(|c| c.0 == "113102") {
            let code = ProfileOption::CleanRecognizableVisualFeatures.cid7050();
            method_values.push(code.1.to_string());
            method_codes.push(code);
        }
        if cleaned.faces || cleaned.faces_examined {
            out.put(DataElement::new(
                tags::RECOGNIZABLE_VISUAL_FEATURES,
                VR::CS,
                PrimitiveValue::from("NO"),
            ));
        }
        if cleaned.pixel_text {
            let code = ProfileOption::CleanPixelData.cid7050();
            method_values.push(code.1.to_string());
            method_codes.push(code);
            out.put(DataElement::new(
                tags::BURNED_IN_ANNOTATION,
                VR::CS,
                PrimitiveValue::from("NO"),
            ));
        }
        out.put(with_strings(
            tags::DEIDENTIFICATION_METHOD,
            VR::LO,
            method_values,
        ));
        let items: Vec<InMemDicomObject> = method_codes
            .iter()
            .map(|(code, meaning)| {
                InMemDicomObject::from_element_iter([
                    DataElement::new(tags::CODE_VALUE, VR::SH, PrimitiveValue::from(*code)),
                    DataElement::new(
                        tags::CODING_SCHEME_DESIGNATOR,
                        VR::SH,
                        PrimitiveValue::from("DCM"),
                    ),
                    DataElement::new(tags::CODE_MEANING, VR::LO, PrimitiveValue::from(*meaning)),
                ])
            })
            .collect();
        out.put(DataElement::new(
            tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
            VR::SQ,
            Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED)),
        ));
        let temporal = if self.policy.has(ProfileOption::RetainLongitudinalFullDates) {
            "UNMODIFIED"
        } else if self.policy.shifts_dates() {
            "MODIFIED"
        } else {
            "REMOVED"
        };
        out.put(DataElement::new(
            tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED,
            VR::CS,
            PrimitiveValue::from(temporal),
        ));
    }

    /// Gathers the dataset's own identifying values (at any depth) to screen text against.
    fn collect_identifiers(&self, obj: &InMemDicomObject, ids: &mut Identifiers) {
        for elem in obj.iter() {
            let tag = elem.tag();
            if let Value::Sequence(seq) = elem.value() {
                for item in seq.items() {
                    self.collect_identifiers(item, ids);
                }
                continue;
            }
            let vr = elem.vr();
            if vr == VR::PN {
                for v in strings(elem).unwrap_or_default() {
                    ids.add_person_name(&v);
                }
                continue;
            }
            if tag.group() & 1 == 1 {
                continue;
            }
            let removed = match self.rules.for_tag(tag_u32(tag)) {
                Some(r) => !r.action.retains(),
                None => false,
            };
            if vr == VR::DA {
                // Every original date as digits: a number holding it reveals the true date.
                for v in strings(elem).unwrap_or_default() {
                    ids.add_digits(v.trim());
                }
            }
            if !removed {
                continue;
            }
            if values::is_text_vr(vr) {
                // Digit strings of removed identifying values (MRNs, phone numbers, accession
                // and other IDs): a number or a code holding them is that identifier.
                for v in strings(elem).unwrap_or_default() {
                    ids.add_digits(&v);
                }
            }
            match vr {
                VR::LO | VR::SH | VR::AE | VR::UI => {
                    for v in strings(elem).unwrap_or_default() {
                        ids.add_value(&v);
                    }
                }
                VR::DA => {
                    for v in strings(elem).unwrap_or_default() {
                        ids.add_date(&v);
                    }
                }
                _ => {}
            }
        }
        // Dates that are shifted rather than removed still must not appear in free text.
        if let Some(b) = text_of(obj, tags::PATIENT_BIRTH_DATE) {
            ids.add_date(&b);
        }
    }
}

/// State of one dataset's walk.
struct Walk<'a> {
    engine: &'a Deidentifier,
    patient: &'a PatientPseudonyms,
    screen: Screen,
    counts: ActionCounts,
    /// The instance's SOP class: which attributes its IOD requires (Type 1) decides whether a
    /// value may be emptied.
    sop_class: String,
    /// Set when something cannot be cleaned and the whole instance must be held back.
    hold: Option<String>,
    /// Walking a sequence item (not the top-level data set): the IOD tables do not say which
    /// nested attributes are required.
    nested: bool,
}

impl Walk<'_> {
    fn rules(&self) -> &Rules {
        &self.engine.rules
    }

    fn dataset(&mut self, obj: InMemDicomObject, mode: Mode, top: bool) -> InMemDicomObject {
        let outer = std::mem::replace(&mut self.nested, !top);
        let out = self.dataset_items(obj, mode, top);
        self.nested = outer;
        out
    }

    fn dataset_items(&mut self, obj: InMemDicomObject, mode: Mode, top: bool) -> InMemDicomObject {
        // Private creators of this dataset level: (group, block) -> creator.
        let creators: HashMap<(u16, u8), String> = obj
            .iter()
            .filter(|e| e.tag().group() & 1 == 1 && (0x10..=0xFF).contains(&e.tag().element()))
            .filter_map(|e| {
                let c = e.value().to_str().ok()?;
                Some((
                    (e.tag().group(), e.tag().element() as u8),
                    c.trim_end_matches([' ', '\0']).to_string(),
                ))
            })
            .collect();
        let mut used_blocks: HashSet<(u16, u8)> = HashSet::new();
        let mut creator_elems = Vec::new();
        let mut out: Vec<InMemElement> = Vec::new();

        // Overlays are removed as whole groups: leaving (60xx,0010) Rows etc. without Overlay
        // Data would make an invalid Overlay Plane module. Kept only when the rules keep the data.
        let drop_overlays = !self.engine.faulty(Fault::KeepRemovedAttributes)
            && self
                .rules()
                .for_tag(0x6000_3000)
                .is_none_or(|r| r.action != Action::K);
        for elem in obj {
            let tag = elem.tag();
            if drop_overlays && (0x6000..=0x601E).contains(&tag.group()) && tag.group() % 2 == 0 {
                self.counts.removed += 1;
                continue;
            }
            if tag.element() == 0x0000 {
                // Group lengths are deprecated and would be wrong after any change.
                self.counts.group_lengths_removed += 1;
                continue;
            }
            if tag.group() == 0x0002 || tag.group() == 0xFFFE {
                // File meta does not belong in a dataset; item tags are structure.
                self.counts.unknown_removed += 1;
                continue;
            }
            if tag.group() & 1 == 1 {
                let el = tag.element();
                if (0x10..=0xFF).contains(&el) {
                    creator_elems.push(elem);
                    continue;
                }
                if el < 0x1000 || tag.group() <= 0x0007 {
                    // (gggg,0001-000F) and (gggg,0100-0FFF) are not valid private data elements.
                    self.counts.private_removed += 1;
                    continue;
                }
                let block = (el >> 8) as u8;
                let keep = self.engine.faulty(Fault::KeepPrivate)
                    || match creators.get(&(tag.group(), block)) {
                        Some(c) => matches!(
                            self.rules().for_private(tag.group(), c, el as u8),
                            PrivateDecision::Keep(_)
                        ),
                        None => false,
                    };
                if keep {
                    used_blocks.insert((tag.group(), block));
                    self.counts.private_kept += 1;
                    out.push(elem);
                } else {
                    self.counts.private_removed += 1;
                }
                continue;
            }
            if let Some(e) = self.element(elem, mode, top) {
                out.push(e);
            }
        }
        for c in creator_elems {
            let key = (c.tag().group(), c.tag().element() as u8);
            if used_blocks.contains(&key) || self.engine.faulty(Fault::KeepPrivate) {
                out.push(c);
            } else {
                self.counts.private_removed += 1;
            }
        }
        InMemDicomObject::from_element_iter(out)
    }

    fn items(&mut self, elem: InMemElement, mode: Mode) -> InMemElement {
        if self.engine.faulty(Fault::SkipNestedSequences) {
            return elem;
        }
        let (header, value) = elem.into_parts();
        match value {
            Value::Sequence(seq) => {
                let items: Vec<InMemDicomObject> = seq
                    .into_items()
                    .into_iter()
                    .map(|item| self.dataset(item, mode, false))
                    .collect();
                DataElement::new(
                    header.tag,
                    VR::SQ,
                    Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED)),
                )
            }
            other => DataElement::new(header.tag, header.vr, other),
        }
    }

    /// Applies the rule for one public attribute; `None` removes it.
    fn element(&mut self, elem: InMemElement, mode: Mode, top: bool) -> Option<InMemElement> {
        let tag = elem.tag();
        let rule = self.rules().for_tag(tag_u32(tag));
        let overridden = rule.is_some_and(|r| r.source == veil_profile::RuleSource::Override);

        // Patient identity: pseudonyms, not blanks, so studies of one patient stay linked.
        if !overridden && top {
            if tag == tags::PATIENT_ID {
                self.counts.pseudonymised += 1;
                return Some(DataElement::new(
                    tag,
                    VR::LO,
                    PrimitiveValue::from(self.patient.id.clone()),
                ));
            }
            if tag == tags::PATIENT_NAME {
                self.counts.pseudonymised += 1;
                return Some(DataElement::new(
                    tag,
                    VR::PN,
                    PrimitiveValue::from(self.patient.name.clone()),
                ));
            }
        }

        let Some(rule) = rule else {
            return self.unlisted(elem, mode);
        };
        self.apply(elem, rule, mode, top)
    }

    fn apply(
        &mut self,
        elem: InMemElement,
        rule: Rule,
        mode: Mode,
        top: bool,
    ) -> Option<InMemElement> {
        let vr = elem.vr();
        let action = match rule.action {
            Action::XZ => Action::Z,
            Action::XD | Action::ZD | Action::XZD => {
                if is_empty_value(&elem) {
                    Action::Z
                } else {
                    Action::D
                }
            }
            Action::XZU => Action::U,
            a => a,
        };
        let action = if self.engine.faulty(Fault::KeepRemovedAttributes)
            && matches!(action, Action::X | Action::Z)
        {
            Action::K
        } else {
            action
        };
        match action {
            Action::X => {
                self.counts.removed += 1;
                None
            }
            Action::Z => Some(self.empty_or_dummy(elem)),
            Action::D => Some(self.dummy(elem, mode)),
            Action::K => {
                if vr == VR::SQ {
                    return Some(self.items(elem, Mode::Normal));
                }
                if elem.tag() == tags::PATIENT_AGE {
                    self.counts.kept += 1;
                    return Some(self.age(elem));
                }
                Some(self.keep(elem))
            }
            Action::C => Some(self.clean(elem)),
            Action::U => {
                if vr == VR::SQ {
                    return Some(self.items(elem, Mode::Normal));
                }
                if vr != VR::UI {
                    return Some(self.dummy(elem, mode));
                }
                if !top && self.engine.faulty(Fault::SkipUidReferences) {
                    return Some(elem);
                }
                Some(self.uid(elem))
            }
            _ => unreachable!("compound actions are resolved above"),
        }
    }

    /// Keeps a value the rules keep as it is (a number, a binary value), unless it hides text
    /// ([`Screen::hides_text`]: a name in a numeric element, an identifier in a binary one):
    /// then it is emptied. Pixel Data is the pixel stage's.
    fn keep(&mut self, elem: InMemElement) -> InMemElement {
        let vr = elem.vr();
        if matches!(vr, VR::IS | VR::DS) || values::is_binary_number_vr(vr) {
            return self.keep_numbers(elem);
        }
        if vr == VR::CS {
            return self.keep_codes(elem);
        }
        if elem.tag() != tags::PIXEL_DATA {
            if let Value::Primitive(p) = elem.value() {
                if self.screen.hides_text(vr, p) {
                    if is_sample_data(elem.tag()) {
                        // Samples are released byte-identical or not at all.
                        self.hold = Some(format!(
                            "{} holds one of the instance's identifiers in its samples; samples are never altered, so the instance is held back",
                            keyword(elem.tag())
                        ));
                        return elem;
                    }
                    self.counts.unparseable_values_emptied += 1;
                    return self.empty_or_dummy(elem);
                }
            }
        }
        self.counts.kept += 1;
        elem
    }

    /// Numbers kept as they are, except a value that is not a number of its VR (text hidden in
    /// IS or DS, or binary numbers whose bytes read as words) or that carries one of the
    /// dataset's identifier digit strings (an MRN stored as Acquisition Number): that value
    /// becomes 0, the others stay.
    fn keep_numbers(&mut self, elem: InMemElement) -> InMemElement {
        let tag = elem.tag();
        let vr = elem.vr();
        let Value::Primitive(p) = elem.value() else {
            return elem;
        };
        if matches!(vr, VR::IS | VR::DS) {
            let vals = strings(&elem).unwrap_or_default();
            let mut changed = 0;
            let out: Vec<String> = vals
                .iter()
                .map(|v| {
                    let t = v.trim_matches(|c: char| c == ' ' || c == '\0');
                    if t.is_empty() {
                        return String::new();
                    }
                    let numeric = !self.screen.hides_text(vr, &PrimitiveValue::from(t));
                    let carries = screen::whole_number_digits(t)
                        .is_some_and(|d| self.screen.number_carries_identifier(&d));
                    if numeric && !carries {
                        t.to_string()
                    } else {
                        changed += 1;
                        "0".to_string()
                    }
                })
                .collect();
            if changed == 0 {
                self.counts.kept += 1;
                return elem;
            }
            self.counts.numbers_replaced += changed;
            return with_strings(tag, vr, out);
        }
        // Binary numbers: bytes that read as words make the whole value text in disguise.
        if self.screen.hides_text(vr, p)
            && !values::numbers_carry(p, |d| self.screen.number_carries_identifier(d))
        {
            self.counts.unparseable_values_emptied += 1;
            return self.empty_or_dummy(elem);
        }
        match values::replace_numbers(p, |d| self.screen.number_carries_identifier(d)) {
            Some((replaced, n)) => {
                self.counts.numbers_replaced += n;
                DataElement::new(tag, vr, replaced)
            }
            None => {
                self.counts.kept += 1;
                elem
            }
        }
    }

    /// Code strings: each value must be a term of its attribute (PS3.3's enumerated values and
    /// defined terms) when the standard lists any, and must not carry one of the dataset's
    /// identifiers. A value that fails is dropped — or, where the position has enumerated
    /// values, replaced with the first of them — and the other values stay.
    fn keep_codes(&mut self, elem: InMemElement) -> InMemElement {
        let tag = elem.tag();
        let Some(vals) = strings(&elem) else {
            return elem;
        };
        let standard = veil_profile::standard::standard();
        let terms = standard.cs_terms(tag_u32(tag));
        let mut out: Vec<Option<String>> = Vec::with_capacity(vals.len());
        let mut dropped = 0;
        for (i, v) in vals.iter().enumerate() {
            let t = v.trim_matches(|c: char| c == ' ' || c == '\0');
            // hides_text also refuses characters outside printable ASCII.
            let identifying = self.screen.text_carries_identifier_digits(t)
                || self.screen.hides_text(VR::CS, &PrimitiveValue::from(t));
            // The character set and the pixel module's codes are read by every decoder: they
            // are screened for identifiers but not cut to the term lists.
            let structural = tag == tags::SPECIFIC_CHARACTER_SET || tag.group() == 0x0028;
            // Term lists are checked in multi-valued codes, where a word rides along with
            // real terms ("CT\SMITH"); a single value is screened for identifiers only, since
            // the standard's lists are incomplete for some attributes (Body Part Examined's
            // is in PS3.16). Any term of the standard's vocabulary is accepted too.
            let allowed = t.is_empty()
                || structural
                || vals.len() < 2
                || standard.is_vocabulary(t)
                || terms.is_none_or(|terms| terms.allows(i + 1, t));
            if allowed && !identifying {
                out.push(Some(t.to_string()));
                continue;
            }
            dropped += 1;
            // A value at a position with enumerated values gets the first of them (Image
            // Type value 2: PRIMARY or SECONDARY); any other is dropped.
            // (A position with enumerated values is one the attribute's VM counts on.)
            let replacement = terms.and_then(|terms| terms.enumerated_at(i + 1));
            out.push(replacement.map(str::to_string));
        }
        if dropped == 0 {
            self.counts.kept += 1;
            return elem;
        }
        self.counts.code_values_dropped += dropped;
        while out.last().is_some_and(Option::is_none) {
            out.pop();
        }
        let out: Vec<String> = out.into_iter().map(Option::unwrap_or_default).collect();
        if out.is_empty() {
            return self.empty_or_dummy(elem);
        }
        with_strings(tag, VR::CS, out)
    }

    /// An emptied value, unless the instance's IOD requires the attribute (Type 1): then a
    /// dummy of its VR (a code's first enumerated value), which PS3.15's Z allows ("or a
    /// dummy value") and keeps the output a valid instance. The types table lists top-level
    /// attributes; one that is Type 1 there gets a dummy at any depth (harmless where it is not
    /// required).
    /// Is the attribute Type 1 in the instance's IOD (top level)?
    fn required(&self, tag: Tag) -> bool {
        veil_profile::standard::standard().attribute_type(&self.sop_class, tag_u32(tag)) == Some(1)
    }

    fn empty_or_dummy(&mut self, elem: InMemElement) -> InMemElement {
        let tag = elem.tag();
        let required = self.required(tag);
        if required && elem.vr() != VR::SQ {
            let code = (elem.vr() == VR::CS)
                .then(|| {
                    veil_profile::standard::standard()
                        .cs_terms(tag_u32(tag))
                        .and_then(|t| t.first_enumerated(1))
                })
                .flatten();
            if let Some(d) = code.or_else(|| values::dummy_text(elem.vr())) {
                self.counts.dummied += 1;
                return DataElement::new(tag, elem.vr(), PrimitiveValue::from(d));
            }
        }
        self.counts.emptied += 1;
        empty_like(&elem)
    }

    fn uid(&mut self, elem: InMemElement) -> InMemElement {
        let tag = elem.tag();
        let Some(vals) = strings(&elem) else {
            self.counts.emptied += 1;
            return empty_like(&elem);
        };
        self.counts.uids_replaced += vals.len() as u64;
        let mapped = vals
            .iter()
            .map(|v| self.engine.key.derive_uid(v.trim_end_matches(['\0', ' '])))
            .collect();
        with_strings(tag, VR::UI, mapped)
    }

    fn dummy(&mut self, elem: InMemElement, mode: Mode) -> InMemElement {
        let tag = elem.tag();
        let vr = elem.vr();
        match vr {
            VR::SQ => self.items(elem, Mode::Dummy),
            VR::UI => self.uid(elem),
            VR::LO | VR::SH if is_identifier_keyword(tag) => {
                let vals = strings(&elem).unwrap_or_default();
                self.counts.pseudonymised += 1;
                let mapped = vals
                    .iter()
                    .map(|v| patient::other_id(&self.engine.key, v.trim()))
                    .collect();
                with_strings(tag, vr, mapped)
            }
            _ => match values::dummy_text(vr) {
                Some(d) => {
                    let _ = mode;
                    self.counts.dummied += 1;
                    DataElement::new(tag, vr, PrimitiveValue::from(d))
                }
                None => {
                    self.counts.emptied += 1;
                    empty_like(&elem)
                }
            },
        }
    }

    fn age(&mut self, elem: InMemElement) -> InMemElement {
        let tag = elem.tag();
        match strings(&elem).and_then(|v| v.first().cloned()) {
            Some(v) if v.trim().is_empty() => elem,
            Some(v) => match values::cap_age(&v) {
                Some(a) => DataElement::new(tag, VR::AS, PrimitiveValue::from(a)),
                None => {
                    self.counts.unparseable_values_emptied += 1;
                    empty_like(&elem)
                }
            },
            None => elem,
        }
    }

    fn shift_dates(&mut self, elem: InMemElement) -> InMemElement {
        if self.engine.faulty(Fault::SkipDateShift) {
            return elem;
        }
        let tag = elem.tag();
        let vr = elem.vr();
        let Some(vals) = strings(&elem) else {
            self.counts.unparseable_values_emptied += 1;
            return empty_like(&elem);
        };
        let days = self.patient.offset_days;
        let mut out = Vec::with_capacity(vals.len());
        for v in &vals {
            let v = v.trim();
            if v.is_empty() {
                out.push(String::new());
                continue;
            }
            let shifted = if vr == VR::DA {
                values::shift_da(v, days)
            } else {
                values::shift_dt(v, days)
            };
            match shifted {
                Some(s) => out.push(s),
                None => {
                    // A date Veil cannot read could be anything: it does not leave unshifted.
                    self.counts.unparseable_values_emptied += 1;
                    return empty_like(&elem);
                }
            }
        }
        self.counts.dates_shifted += out.len() as u64;
        if out.iter().all(|s| s.is_empty()) {
            return empty_like(&elem);
        }
        with_strings(tag, vr, out)
    }

    /// Cleans a text value: by allowlist when it is free text (`free`: action C, or an attribute
    /// people type prose or labels into), else the data set's identifiers and the recognisers'
    /// spans only (technical values such as model names and software versions).
    fn clean_text(&mut self, elem: InMemElement, free: bool) -> InMemElement {
        if self.engine.faulty(Fault::SkipDescriptorCleaning) {
            return elem;
        }
        let tag = elem.tag();
        let vr = elem.vr();
        let Some(vals) = strings(&elem) else {
            self.counts.unparseable_values_emptied += 1;
            return empty_like(&elem);
        };
        if vals.iter().any(|v| screen::is_corrupt_text(v)) {
            // Other elements swallowed by a wrong length: cleaning cannot know what is in it.
            self.counts.unparseable_values_emptied += 1;
            return empty_like(&elem);
        }
        let mut changed = false;
        let out: Vec<String> = vals
            .into_iter()
            .map(|v| match self.clean_value(&v, free) {
                Some(c) => {
                    changed = true;
                    c
                }
                None => v,
            })
            .collect();
        if changed && out.iter().all(|v| v.trim().is_empty()) && (self.nested || self.required(tag))
        {
            // Nothing survived in a value that must not be empty (Type 1 here, or an attribute
            // of a sequence item, where 1C text such as Segment Algorithm Name is common).
            self.counts.dummied += 1;
            let d = values::dummy_text(vr).unwrap_or("ANONYMIZED");
            DataElement::new(tag, vr, PrimitiveValue::from(d))
        } else if changed {
            self.counts.text_cleaned += 1;
            with_strings(tag, vr, out)
        } else {
            self.counts.kept += 1;
            elem
        }
    }

    fn clean_value(&self, v: &str, free: bool) -> Option<String> {
        if free {
            self.screen.clean_free_text(v, &self.engine.vocabulary)
        } else {
            self.screen.clean_kept_text(v)
        }
    }

    /// Action C: shift dates, clean text, recurse into sequences, keep the rest.
    fn clean(&mut self, elem: InMemElement) -> InMemElement {
        let tag = elem.tag();
        match elem.vr() {
            VR::SQ => self.items(elem, Mode::Normal),
            VR::DA | VR::DT => {
                if self
                    .engine
                    .policy
                    .has(ProfileOption::RetainLongitudinalFullDates)
                {
                    self.keep(elem)
                } else {
                    self.shift_dates(elem)
                }
            }
            VR::AS => {
                self.counts.kept += 1;
                self.age(elem)
            }
            VR::PN => {
                self.counts.dummied += 1;
                DataElement::new(tag, VR::PN, PrimitiveValue::from("ANONYMIZED"))
            }
            vr if values::is_text_vr(vr) => self.clean_text(elem, true),
            VR::OB | VR::OW | VR::UN => {
                // Overlay bitmaps and curve data cannot be cleaned without the pixel stage:
                // removing them is the safe form of "clean" until it exists.
                self.counts.removed += 1;
                empty_like(&elem)
            }
            _ => self.keep(elem),
        }
    }

    /// Attributes the table does not list: standard ones are kept (the standard deems them
    /// safe) with their text screened; attributes the dictionary does not know are removed.
    fn unlisted(&mut self, elem: InMemElement, mode: Mode) -> Option<InMemElement> {
        let tag = elem.tag();
        if StandardDataDictionary.by_tag(tag).is_none() {
            self.counts.unknown_removed += 1;
            return None;
        }
        let vr = elem.vr();
        Some(match vr {
            VR::SQ => self.items(elem, mode),
            VR::UI => {
                let vals = strings(&elem).unwrap_or_default();
                if vals.iter().all(|v| {
                    let v = v.trim_end_matches(['\0', ' ']);
                    v.is_empty()
                        || (is_class_like_uid(tag, v)
                            && !self.screen.text_carries_identifier_digits(v))
                }) {
                    self.counts.kept += 1;
                    elem
                } else if self.engine.faulty(Fault::SkipUidReferences) {
                    elem
                } else {
                    self.uid(elem)
                }
            }
            VR::DA | VR::DT => {
                if self
                    .engine
                    .policy
                    .has(ProfileOption::RetainLongitudinalFullDates)
                {
                    self.keep(elem)
                } else if self.engine.policy.shifts_dates() {
                    self.shift_dates(elem)
                } else {
                    self.counts.emptied += 1;
                    empty_like(&elem)
                }
            }
            VR::PN => {
                self.counts.dummied += 1;
                DataElement::new(tag, VR::PN, PrimitiveValue::from("ANONYMIZED"))
            }
            // Code values, scheme designators and SR structure are terminology: screening them
            // for digit runs would break codes such as 121071. Code Meaning is still screened.
            _ if CODE_ATTRIBUTES.contains(&tag) && tag != tags::CODE_MEANING => {
                self.counts.kept += 1;
                elem
            }
            vr if values::is_text_vr(vr) => {
                if mode == Mode::Dummy && !CODE_ATTRIBUTES.contains(&tag) {
                    self.counts.dummied += 1;
                    DataElement::new(tag, vr, PrimitiveValue::from("ANONYMIZED"))
                } else {
                    self.clean_text(elem, is_free_text(tag, vr))
                }
            }
            _ => self.keep(elem),
        })
    }
}

/// Attributes the table does not list whose values are prose or labels people type (cleaned by
/// allowlist): the free-text VRs, and short texts whose keyword says so (Beam Description, Segment
/// Algorithm Name, ROI Name, Derivation Description...). Code meanings are terminology.
fn is_free_text(tag: Tag, vr: VR) -> bool {
    const WORDS: [&str; 11] = [
        "Description",
        "Comment",
        "History",
        "Diagnos",
        "Label",
        "Reason",
        "Text",
        "Note",
        "Annotation",
        "AlgorithmName",
        "ROIName",
    ];
    if matches!(vr, VR::ST | VR::LT | VR::UT) {
        return true;
    }
    if !matches!(vr, VR::LO | VR::SH | VR::UC) || tag == tags::CODE_MEANING {
        return false;
    }
    let kw = keyword(tag);
    WORDS.iter().any(|w| kw.contains(w))
}

/// Attributes whose dummy is a keyed pseudonym of the value (so the same ID stays linked across
/// attributes and files) rather than a fixed dummy.
fn is_identifier_keyword(tag: Tag) -> bool {
    let kw = keyword(tag);
    kw.ends_with("ID")
        || kw.ends_with("IDs")
        || kw.ends_with("Number")
        || kw.ends_with("Identifier")
}

#[cfg(test)]
mod tests;
