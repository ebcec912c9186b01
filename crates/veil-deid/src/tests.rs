//! Engine tests on datasets built in memory (the binary's tests cover real files end to end).

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use proptest::prelude::*;
use veil_keys::Key;
use veil_profile::Policy;

use super::*;

fn el(tag: Tag, vr: VR, v: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(
        tag,
        VR::SQ,
        Value::Sequence(DataSetSequence::new(items, Length::UNDEFINED)),
    )
}

fn file(elements: Vec<InMemElement>) -> FileDicomObject<InMemDicomObject> {
    let mut base = vec![
        el(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        el(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.9.1.1.1",
        ),
        el(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.9.1"),
        el(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.9.1.1",
        ),
        el(tags::MODALITY, VR::CS, "CT"),
        el(tags::PATIENT_ID, VR::LO, "MRN0048213"),
        el(tags::PATIENT_NAME, VR::PN, "Quixley^Bernadette^M"),
        el(tags::PATIENT_BIRTH_DATE, VR::DA, "19440512"),
        el(tags::STUDY_DATE, VR::DA, "20210307"),
    ];
    base.extend(elements);
    let obj = InMemDicomObject::from_element_iter(base);
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
        .media_storage_sop_instance_uid("1.2.826.0.1.3680043.9.1.1.1")
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .source_application_entity_title("BERNADETTE_PC")
        .build()
        .unwrap();
    obj.with_exact_meta(meta)
}

fn engine(policy: &str) -> Deidentifier {
    Deidentifier::new(
        Policy::from_toml_str(policy, "test").unwrap(),
        Key::from_bytes([42; 32]),
        None,
    )
}

fn run(
    d: &Deidentifier,
    f: FileDicomObject<InMemDicomObject>,
) -> (FileDicomObject<InMemDicomObject>, Outcome) {
    d.deidentify(f).unwrap()
}

fn bytes_of(f: &FileDicomObject<InMemDicomObject>) -> Vec<u8> {
    let mut v = Vec::new();
    f.write_all(&mut v).unwrap();
    v
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.to_ascii_lowercase();
    hay.to_ascii_lowercase()
        .windows(n.len())
        .any(|w| w == n.as_bytes())
}

#[test]
fn patient_identity_becomes_keyed_pseudonyms() {
    let d = engine("");
    let (out, o) = run(&d, file(vec![]));
    let id = text_of(&out, tags::PATIENT_ID).unwrap();
    assert!(id.starts_with("VEIL-") && id.len() == 17, "{id}");
    assert_eq!(text_of(&out, tags::PATIENT_NAME).unwrap(), id);
    assert_eq!(o.patient_pseudonym, id);
    assert_eq!(
        text_of(&out, tags::PATIENT_BIRTH_DATE),
        None,
        "birth date is emptied (Z)"
    );
    // Retain Patient Characteristics: age derived from the removed birth date at the study date.
    assert_eq!(text_of(&out, tags::PATIENT_AGE).unwrap(), "076Y");
    let b = bytes_of(&out);
    for v in [
        "MRN0048213",
        "Quixley",
        "Bernadette",
        "19440512",
        "20210307",
        "BERNADETTE_PC",
    ] {
        assert!(!contains(&b, v), "{v} survived");
    }
    assert_eq!(out.meta().source_application_entity_title, None);
    assert_eq!(
        out.meta().implementation_class_uid(),
        IMPLEMENTATION_CLASS_UID
    );
    assert_eq!(
        out.meta().media_storage_sop_instance_uid(),
        o.released.sop_instance
    );
}

#[test]
fn private_blocks_follow_their_creator() {
    let d = engine("[profile]\noptions = [\"retain_safe_private\"]\n");
    let f = file(vec![
        // A safe attribute (GEMS_ACQU_01 0019,xx27) at block 0x10 and an unknown creator at 0x11.
        el(Tag(0x0019, 0x0010), VR::LO, "GEMS_ACQU_01"),
        DataElement::new(Tag(0x0019, 0x1027), VR::DS, PrimitiveValue::from("1.5")),
        el(Tag(0x0019, 0x0011), VR::LO, "ACME HOSPITAL TOOLS"),
        el(Tag(0x0019, 0x1110), VR::LO, "Quixley home phone"),
        DataElement::new(
            Tag(0x0029, 0x1010),
            VR::UN,
            PrimitiveValue::from(b"orphan Bernadette".to_vec()),
        ),
    ]);
    let (out, o) = run(&d, f);
    assert_eq!(text_of(&out, Tag(0x0019, 0x0010)).unwrap(), "GEMS_ACQU_01");
    assert!(out.get(Tag(0x0019, 0x1027)).is_some());
    assert!(
        out.get(Tag(0x0019, 0x0011)).is_none(),
        "unused creator kept"
    );
    assert!(out.get(Tag(0x0019, 0x1110)).is_none());
    assert!(out.get(Tag(0x0029, 0x1010)).is_none());
    assert_eq!(o.counts.private_kept, 1);
    // Without the option, everything private goes.
    let (out, _) = run(
        &engine(""),
        file(vec![
            el(Tag(0x0019, 0x0010), VR::LO, "GEMS_ACQU_01"),
            el(Tag(0x0019, 0x1027), VR::DS, "1.5"),
        ]),
    );
    assert!(out.iter().all(|e| e.tag().group() & 1 == 0));
}

#[test]
fn nested_sequences_are_cleaned_at_every_depth() {
    let deep = InMemDicomObject::from_element_iter([
        el(tags::PATIENT_NAME, VR::PN, "Quixley^Bernadette"),
        el(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.9.1.1.7",
        ),
        el(tags::ACCESSION_NUMBER, VR::SH, "ACC99817"),
        el(Tag(0x0011, 0x0010), VR::LO, "X"),
        el(Tag(0x0011, 0x1001), VR::LO, "Bernadette"),
    ]);
    let mid =
        InMemDicomObject::from_element_iter([seq(tags::REFERENCED_STUDY_SEQUENCE, vec![deep])]);
    let top = seq(tags::REQUEST_ATTRIBUTES_SEQUENCE, vec![mid]);
    let d = engine("");
    let (out, _) = run(&d, file(vec![top]));
    let b = bytes_of(&out);
    for v in [
        "Quixley",
        "Bernadette",
        "1.2.826.0.1.3680043.9.1.1.7",
        "ACC99817",
    ] {
        assert!(!contains(&b, v), "{v} survived in a nested sequence");
    }
}

#[test]
fn descriptors_are_cleaned_not_dropped() {
    let d = engine("");
    let f = file(vec![
        el(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            "CT CHEST for Bernadette Quixley MRN0048213",
        ),
        el(tags::SERIES_DESCRIPTION, VR::LO, "AX 2.5mm lung 12/03/2021"),
        el(
            tags::IMAGE_COMMENTS,
            VR::LT,
            "call 617-555-0199 re: pt born 1944-05-12",
        ),
        el(tags::INSTITUTION_NAME, VR::LO, "Quillfeather General"),
        // Unlisted standard attribute: kept, but screened for this dataset's identifiers.
        el(tags::CONVOLUTION_KERNEL, VR::SH, "B30f"),
    ]);
    let (out, o) = run(&d, f);
    assert_eq!(
        text_of(&out, tags::STUDY_DESCRIPTION).unwrap(),
        "CT CHEST for"
    );
    assert_eq!(
        text_of(&out, tags::SERIES_DESCRIPTION).unwrap(),
        "AX 2.5mm lung"
    );
    assert_eq!(
        text_of(&out, tags::IMAGE_COMMENTS).unwrap(),
        "call re: pt born"
    );
    assert_eq!(text_of(&out, tags::CONVOLUTION_KERNEL).unwrap(), "B30f");
    assert!(o.counts.text_cleaned >= 3);
    // Institution Name is X/Z/D: present and non-empty, so it becomes a dummy (valid for Type 1).
    assert_eq!(text_of(&out, tags::INSTITUTION_NAME).unwrap(), "ANONYMIZED");
}

#[test]
fn unknown_and_group_length_attributes_are_removed() {
    let d = engine("");
    let f = file(vec![
        DataElement::new(Tag(0x0008, 0x0000), VR::UL, PrimitiveValue::from(10u32)),
        el(
            Tag(0x0024, 0xFFF0),
            VR::LO,
            "unknown standard-group attribute",
        ),
    ]);
    let (out, o) = run(&d, f);
    assert!(out.get(Tag(0x0008, 0x0000)).is_none());
    assert!(out.get(Tag(0x0024, 0xFFF0)).is_none());
    assert_eq!(o.counts.unknown_removed, 1);
}

#[test]
fn markers_name_the_options_applied() {
    let (out, _) = run(
        &engine("[profile]\noptions = [\"retain_uids\", \"retain_longitudinal_full_dates\"]\n"),
        file(vec![]),
    );
    assert_eq!(
        text_of(&out, tags::PATIENT_IDENTITY_REMOVED).unwrap(),
        "YES"
    );
    assert_eq!(
        text_of(&out, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).unwrap(),
        "UNMODIFIED"
    );
    assert_eq!(text_of(&out, tags::STUDY_DATE).unwrap(), "20210307");
    assert_eq!(
        text_of(&out, tags::SOP_INSTANCE_UID).unwrap(),
        "1.2.826.0.1.3680043.9.1.1.1"
    );
    let codes: Vec<String> = out
        .get(tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .iter()
        .map(|i| text_of(i, tags::CODE_VALUE).unwrap())
        .collect();
    assert_eq!(codes, ["113100", "113110", "113106"]);
    let (out, _) = run(&engine("[profile]\noptions = []\n"), file(vec![]));
    assert_eq!(
        text_of(&out, tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED).unwrap(),
        "REMOVED"
    );
    assert_eq!(text_of(&out, tags::STUDY_DATE), None);
    assert!(
        out.get(tags::PATIENT_AGE).is_none(),
        "no age without Retain Patient Characteristics"
    );
}

#[test]
fn structured_content_without_the_option_keeps_codes_and_drops_text() {
    let item = InMemDicomObject::from_element_iter([
        el(tags::VALUE_TYPE, VR::CS, "TEXT"),
        el(tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS"),
        seq(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                el(tags::CODE_VALUE, VR::SH, "121071"),
                el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
                el(tags::CODE_MEANING, VR::LO, "Finding"),
            ])],
        ),
        el(
            tags::TEXT_VALUE,
            VR::UT,
            "Mrs Quixley reports pain since the fall",
        ),
    ]);
    let (out, _) = run(
        &engine(""),
        file(vec![seq(tags::CONTENT_SEQUENCE, vec![item.clone()])]),
    );
    let content = out.get(tags::CONTENT_SEQUENCE).unwrap().items().unwrap();
    assert_eq!(
        text_of(&content[0], tags::TEXT_VALUE).unwrap(),
        "ANONYMIZED"
    );
    assert_eq!(text_of(&content[0], tags::VALUE_TYPE).unwrap(), "TEXT");
    let code = &content[0]
        .get(tags::CONCEPT_NAME_CODE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    assert_eq!(text_of(code, tags::CODE_MEANING).unwrap(), "Finding");
    // With Clean Structured Content the text is kept, cleaned.
    let (out, _) = run(
        &engine("[profile]\noptions = [\"clean_structured_content\"]\n"),
        file(vec![seq(tags::CONTENT_SEQUENCE, vec![item])]),
    );
    let content = out.get(tags::CONTENT_SEQUENCE).unwrap().items().unwrap();
    assert_eq!(
        text_of(&content[0], tags::TEXT_VALUE).unwrap(),
        "Mrs reports pain since the fall"
    );
}

#[test]
fn overrides_by_keyword_and_private_creator() {
    let policy = "[[override]]\nkeyword = \"AccessionNumber\"\naction = \"D\"\n\n[[override]]\ncreator = \"ACME 1.0\"\ngroup = \"0009\"\nelement = \"xx10\"\naction = \"K\"\n";
    let f = file(vec![
        el(tags::ACCESSION_NUMBER, VR::SH, "ACC99817"),
        el(Tag(0x0009, 0x0012), VR::LO, "ACME 1.0"),
        el(Tag(0x0009, 0x1210), VR::LO, "kept value"),
        el(Tag(0x0009, 0x1211), VR::LO, "dropped value"),
    ]);
    let (out, _) = run(&engine(policy), f);
    let acc = text_of(&out, tags::ACCESSION_NUMBER).unwrap();
    assert_eq!(acc.len(), 16);
    assert_ne!(acc, "ACC99817");
    assert_eq!(text_of(&out, Tag(0x0009, 0x1210)).unwrap(), "kept value");
    assert!(out.get(Tag(0x0009, 0x1211)).is_none());
    assert_eq!(text_of(&out, Tag(0x0009, 0x0012)).unwrap(), "ACME 1.0");
}

#[test]
fn old_ages_are_capped() {
    let (out, _) = run(
        &engine(""),
        file(vec![el(tags::PATIENT_AGE, VR::AS, "094Y")]),
    );
    assert_eq!(text_of(&out, tags::PATIENT_AGE).unwrap(), "090Y");
}

#[test]
fn output_is_deterministic() {
    let d = engine("");
    let a = bytes_of(&run(&d, file(vec![el(tags::STUDY_DESCRIPTION, VR::LO, "x")])).0);
    let b = bytes_of(&run(&d, file(vec![el(tags::STUDY_DESCRIPTION, VR::LO, "x")])).0);
    assert_eq!(a, b);
}

fn uid_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(1u32..999_999, 3..12).prop_map(|parts| {
        let mut s = String::from("1.2.826.0.1");
        for p in parts {
            s.push('.');
            s.push_str(&p.to_string());
        }
        s.truncate(64);
        s.trim_end_matches('.').to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Same key → same UID; a different key → a different, valid UID.
    #[test]
    fn uids_are_keyed_and_valid(uid in uid_strategy(), k1 in any::<[u8; 32]>(), k2 in any::<[u8; 32]>()) {
        prop_assume!(k1 != k2);
        let (a, b) = (Key::from_bytes(k1), Key::from_bytes(k2));
        let u = a.derive_uid(&uid);
        prop_assert_eq!(&u, &a.derive_uid(&uid));
        prop_assert_ne!(&u, &b.derive_uid(&uid));
        prop_assert!(u.len() <= 64 && u.starts_with("2.25.") && !u[5..].starts_with('0'));
    }

    /// The interval between any two dates of one patient is preserved exactly.
    #[test]
    fn date_intervals_are_preserved(d1 in 0i64..20000, d2 in 0i64..20000, key in any::<[u8; 32]>()) {
        let base = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap();
        let (a, b) = (base + chrono::Duration::days(d1), base + chrono::Duration::days(d2));
        let fmt = |d: chrono::NaiveDate| d.format("%Y%m%d").to_string();
        let d = Deidentifier::new(Policy::default_policy(), Key::from_bytes(key), None);
        let first = file(vec![]);
        let offset = d.patient_of(&first).offset_days;
        let (sa, sb) = (values::shift_da(&fmt(a), offset).unwrap(), values::shift_da(&fmt(b), offset).unwrap());
        let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y%m%d").unwrap();
        prop_assert_eq!((parse(&sb) - parse(&sa)).num_days(), d2 - d1);
        prop_assert!((-3650..=-365).contains(&offset));
    }

    /// Different keys give pseudonyms that share nothing.
    #[test]
    fn pseudonyms_differ_across_keys(k1 in any::<[u8; 32]>(), k2 in any::<[u8; 32]>()) {
        prop_assume!(k1 != k2);
        let p = Policy::default_policy();
        let a = Deidentifier::new(p.clone(), Key::from_bytes(k1), None).patient_of(&file(vec![]));
        let b = Deidentifier::new(p, Key::from_bytes(k2), None).patient_of(&file(vec![]));
        prop_assert_ne!(a.id, b.id);
    }
}

proptest! {
    #[test]
    fn token_matcher_finds_what_an_automaton_finds(
        tokens in proptest::collection::vec("[abAB1é ]{1,4}", 1..12),
        hay in "[abAB1é ,]{0,60}",
    ) {
        let mut tokens = tokens;
        tokens.sort();
        tokens.dedup();
        let ours: Vec<(std::ops::Range<usize>, usize)> = screen::TokenMatcher::new(&tokens)
            .find_iter(hay.as_bytes())
            .map(|h| (h.range, tokens[h.pattern].len()))
            .collect();
        let automaton = aho_corasick::AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&tokens)
            .unwrap();
        let theirs: Vec<(std::ops::Range<usize>, usize)> = automaton
            .find_iter(hay.as_bytes())
            .map(|m| (m.range(), tokens[m.pattern().as_usize()].len()))
            .collect();
        prop_assert_eq!(ours, theirs);
    }
}
