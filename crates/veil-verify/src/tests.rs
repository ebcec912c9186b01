use super::*;

/// A tiny explicit VR little endian Part 10 writer for tests.
struct W(Vec<u8>);

impl W {
    fn part10(ts: &str) -> W {
        let mut w = W(vec![0u8; 128]);
        w.0.extend(b"DICM");
        w.el(0x0002_0010, b"UI", ts.as_bytes());
        w
    }
    fn el(&mut self, tag: u32, vr: &[u8; 2], v: &[u8]) -> &mut W {
        let mut v = v.to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        self.0.extend(((tag >> 16) as u16).to_le_bytes());
        self.0.extend((tag as u16).to_le_bytes());
        self.0.extend(vr);
        if walk_short(vr) {
            self.0.extend((v.len() as u16).to_le_bytes());
        } else {
            self.0.extend([0, 0]);
            self.0.extend((v.len() as u32).to_le_bytes());
        }
        self.0.extend(v);
        self
    }
    fn seq(&mut self, tag: u32, items: &[Vec<u8>]) -> &mut W {
        let mut body = Vec::new();
        for it in items {
            body.extend(0xFFFEu16.to_le_bytes());
            body.extend(0xE000u16.to_le_bytes());
            body.extend((it.len() as u32).to_le_bytes());
            body.extend(it);
        }
        self.el(tag, b"SQ", &body)
    }
    fn item() -> W {
        W(Vec::new())
    }
}

fn walk_short(vr: &[u8; 2]) -> bool {
    !matches!(
        vr,
        b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"OV" | b"SQ" | b"UC" | b"UR" | b"UT" | b"UN"
    )
}

const TS: &str = "1.2.840.10008.1.2.1";

fn marked(w: &mut W) -> &mut W {
    let mut code = W::item();
    code.el(0x0008_0100, b"SH", b"113100");
    w.el(0x0012_0062, b"CS", b"YES")
        .el(0x0012_0063, b"LO", b"test tool")
        .seq(0x0012_0064, &[code.0])
}

fn source() -> Vec<u8> {
    let mut req = W::item();
    req.el(0x0008_0050, b"SH", b"ACC778812")
        .el(0x0032_1060, b"LO", b"Biopsy for Quixley");
    let mut w = W::part10(TS);
    w.el(0x0008_0018, b"UI", b"1.2.826.0.1.3680043.10.1137.1.1")
        .el(0x0008_0020, b"DA", b"20190305")
        .el(0x0008_0080, b"LO", b"St Elsewhere General")
        .el(0x0008_1030, b"LO", b"CT CHEST")
        .el(0x0010_0010, b"PN", b"Quixley^Bernadette")
        .el(0x0010_0020, b"LO", b"MRN40071233")
        .el(0x0010_0030, b"DA", b"19610417")
        .el(0x0010_0040, b"CS", b"F")
        .el(0x0020_0013, b"IS", b"7")
        .seq(0x0040_0275, &[req.0])
        .el(0x7FE0_0010, b"OW", &[1, 2, 3, 4]);
    w.0
}

fn clean_output() -> Vec<u8> {
    let mut w = W::part10(TS);
    w.el(0x0008_0018, b"UI", b"2.25.99887766554433221100")
        .el(0x0008_0020, b"DA", b"20180101")
        .el(0x0008_1030, b"LO", b"CT CHEST")
        .el(0x0010_0010, b"PN", b"VEIL-0a1b2c3d4e5f")
        .el(0x0010_0020, b"LO", b"VEIL-0a1b2c3d4e5f")
        .el(0x0010_0040, b"CS", b"F");
    marked(&mut w);
    w.el(0x0020_0013, b"IS", b"7")
        .el(0x7FE0_0010, b"OW", &[1, 2, 3, 4]);
    w.0
}

fn categories(c: &Checked) -> Vec<&str> {
    let mut v: Vec<&str> = c.findings.iter().map(|f| f.category.as_str()).collect();
    v.dedup();
    v
}

fn basic() -> Verifier {
    Verifier::new(PolicySpec::default(), false)
}

#[test]
fn clean_output_has_no_findings() {
    let v = Verifier::new(PolicySpec::veil_default(), false);
    let known = v.prepare(&source());
    let c = v.check(&clean_output(), Some(&known));
    assert!(c.findings.is_empty(), "{:?}", c.findings);
    assert!(c.date_shift_days.is_some());
}

#[test]
fn finds_each_family_and_never_shows_the_value() {
    let v = basic();
    let known = v.prepare(&source());
    // The source itself, unmarked, checked against itself under the basic profile.
    let c = v.check(&source(), Some(&known));
    let cats = categories(&c);
    // (A value left in its own attribute is reported there, as removed_attribute, not again
    // as a known identifier.)
    for cat in ["removed_attribute", "marker", "uid", "date"] {
        assert!(cats.contains(&cat), "{cat} missing from {:?}", c.findings);
    }
    let json = serde_json::to_string(&c.findings).unwrap();
    for secret in ["Quixley", "MRN40071233", "19610417", "3680043", "Elsewhere"] {
        assert!(!json.contains(secret), "{secret} shown: {json}");
    }
    // The nested sequence the basic profile removes is reported once, with its path.
    assert!(c
        .findings
        .iter()
        .any(|f| f.path == "RequestAttributesSequence" && f.category == "removed_attribute"));
}

#[test]
fn private_elements_and_safe_list() {
    let mut w = W::part10(TS);
    marked(&mut w);
    w.el(0x7053_0010, b"LO", b"Philips PET Private Group")
        .el(0x7053_1000, b"DS", b"1.5")
        .el(0x7053_1001, b"LO", b"something");
    let c = basic().check(&w.0, None);
    assert_eq!(
        c.findings
            .iter()
            .filter(|f| f.category == "private")
            .count(),
        2,
        "{:?}",
        c.findings
    );
    let mut spec = PolicySpec::default();
    spec.options.insert("retain_safe_private".into());
    let c = Verifier::new(spec, false).check(&w.0, None);
    let private: Vec<&Finding> = c
        .findings
        .iter()
        .filter(|f| f.category == "private")
        .collect();
    assert_eq!(private.len(), 1, "{private:?}");
    assert_eq!(private[0].path, "(7053,xx01)");
}

#[test]
fn known_values_in_private_un_and_pixels_are_found() {
    let v = basic();
    let known = v.prepare(&source());
    let mut w = W::part10(TS);
    marked(&mut w);
    // Name in an implicit VR data set inside an OB value the table does not list.
    let mut hidden = Vec::new();
    hidden.extend(0x0010u16.to_le_bytes());
    hidden.extend(0x0010u16.to_le_bytes());
    hidden.extend(18u32.to_le_bytes());
    hidden.extend(b"QUIXLEY^BERNADETTE");
    w.el(0x0042_0011, b"OB", &hidden);
    let mut pixels = vec![0u8; 64];
    pixels.extend(b"xx:MRN40071233:");
    w.el(0x7FE0_0010, b"OB", &pixels);
    let c = v.check(&w.0, Some(&known));
    let known_hits: Vec<&Finding> = c
        .findings
        .iter()
        .filter(|f| f.category == "known_identifier")
        .collect();
    // The name inside the embedded data set is found where it is (a Patient's Name there is
    // the source's, kept).
    assert!(
        c.findings
            .iter()
            .any(|f| f.path.ends_with("[0].PatientName")),
        "{:?}",
        c.findings
    );
    assert!(
        known_hits.iter().any(|f| f.path == "PixelData"),
        "{known_hits:?}"
    );
    // Without pixel scanning, the pixel hit goes.
    let v2 = basic().scan_pixel_data(false);
    let known2 = v2.prepare(&source());
    let c2 = v2.check(&w.0, Some(&known2));
    assert!(!c2.findings.iter().any(|f| f.path == "PixelData"));
}

#[test]
fn marker_codes_match_options_when_policy_is_explicit() {
    let mut w = W::part10(TS);
    marked(&mut w);
    assert!(basic().check(&w.0, None).findings.is_empty());
    let explicit = Verifier::new(PolicySpec::veil_default(), true);
    let c = explicit.check(&w.0, None);
    assert_eq!(
        c.findings
            .iter()
            .filter(|f| f.rule.starts_with("marker:code_missing"))
            .count(),
        3,
        "{:?}",
        c.findings
    );
}

#[test]
fn shift_consistency_flags_the_odd_one() {
    let s = vec![
        (Some("P1".to_string()), Some(-400)),
        (Some("P1".to_string()), Some(-400)),
        (Some("P1".to_string()), Some(-12)),
        (Some("P2".to_string()), Some(-12)),
    ];
    let f = shift_consistency(&s);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].0, 2);
}

#[test]
fn masks() {
    assert_eq!(mask("Quixley"), "Q******");
    assert_eq!(mask("1.2.826.0.1.3680043"), "1*******");
    assert_eq!(mask(""), "");
    assert_eq!(days_from_civil("19700101"), Some(0));
    assert_eq!(days_from_civil("20000301"), Some(11017));
    assert_eq!(days_from_civil("20190230"), None);
}

#[test]
fn latin1_names_are_found_in_latin1_bytes() {
    let mut src = W::part10(TS);
    src.el(0x0010_0010, b"PN", b"M\xfcller^J\xf6rg");
    let mut out = W::part10(TS);
    marked(&mut out);
    // Case folding is ASCII only: "MüLLER" matches "Müller", "MÜLLER" would not.
    out.el(0x0008_1030, b"LO", b"CT for M\xfcLLER");
    {
        let v = Verifier::new(PolicySpec::veil_default(), false);
        // One source (the pipeline's searcher) and a source set (the CLI's automaton).
        let single = v.prepare(&src.0);
        let mut set = v.sources();
        set.add(&src.0);
        let many = set.finish();
        for known in [&single, &many] {
            let c = v.check(&out.0, Some(known));
            assert!(
                c.findings.iter().any(|f| f.category == "known_identifier"),
                "{:?}",
                c.findings
            );
        }
    }
}

#[test]
fn dummy_dates_of_the_basic_profile_are_not_read_as_shifts() {
    // Under the basic profile Study Date (Z) and Content Date (Z/D) get a dummy: compared with
    // the source, that looks like two different shifts, which it is not.
    let v = basic();
    let mut src = W::part10(TS);
    src.el(0x0008_0018, b"UI", b"1.2.826.0.1.3680043.10.1137.1.2")
        .el(0x0008_0020, b"DA", b"20190305")
        .el(0x0008_0023, b"DA", b"20190411");
    let known = v.prepare(&src.0);
    let mut out = W::part10(TS);
    out.el(0x0008_0018, b"UI", b"2.25.1234567890123")
        .el(0x0008_0020, b"DA", b"19000101")
        .el(0x0008_0023, b"DA", b"19000101");
    marked(&mut out);
    let c = v.check(&out.0, Some(&known));
    assert!(
        !c.findings.iter().any(|f| f.category == "date"),
        "{:?}",
        c.findings
    );
    // With dates the policy shifts, two different offsets in one instance are still caught.
    let v = Verifier::new(PolicySpec::veil_default(), false);
    let known = v.prepare(&src.0);
    let mut out = W::part10(TS);
    out.el(0x0008_0018, b"UI", b"2.25.1234567890123")
        .el(0x0008_0020, b"DA", b"20180305")
        .el(0x0008_0023, b"DA", b"20180412");
    marked(&mut out);
    let c = v.check(&out.0, Some(&known));
    assert!(
        c.findings
            .iter()
            .any(|f| f.rule.starts_with("date:inconsistent")),
        "{:?}",
        c.findings
    );
}

#[test]
fn the_sending_sites_ae_titles_in_the_file_meta_are_known_identifiers() {
    let v = Verifier::new(PolicySpec::veil_default(), false);
    let mut src = W::part10(TS);
    src.el(0x0002_0016, b"AE", b"STELSEWHERE_CT4");
    let mut body = W(source()[132..].to_vec());
    src.0.append(&mut body.0);
    let known = v.prepare(&src.0);
    let clean = clean_output();
    assert!(v.check(&clean, Some(&known)).findings.is_empty());
    let mut leaky = W::part10(TS);
    leaky.el(0x0002_0016, b"AE", b"STELSEWHERE_CT4");
    leaky
        .0
        .extend_from_slice(&clean[132 + 8 + TS.len() + TS.len() % 2..]);
    let c = v.check(&leaky.0, Some(&known));
    assert!(
        c.findings.iter().any(|f| f.category == "known_identifier"),
        "{:?}",
        c.findings
    );
    assert!(!serde_json::to_string(&c.findings)
        .unwrap()
        .contains("ELSEWHERE"));
}
