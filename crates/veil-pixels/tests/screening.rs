//! The screen every image goes through (issue 19): text burned into a CT or MR that declares
//! nothing (not a risky modality, Burned In Annotation absent) is found and removed, and real
//! clean CT/MR images pass the screen with their pixels untouched.
//!
//! Rendered text: names, record numbers and dates of several fonts, sizes (8–40 px) and levels
//! drawn at random places into real CT and MR pixel data, native and JPEG-LS lossless; the
//! cleaner is told the image is not flagged, so only the screen can send it to OCR.

mod common;

use ab_glyph::FontRef;
use common::{
    covered, draw_texts, enlarge, fonts, need, reopen, Lcg, TextSet, LEVELS, SIZES, TEXTS,
};
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::entries;
use veil_pixels::{Cleaner, Config, Pixels, Templates};

/// Share of rendered boxes the screen and OCR must remove in unflagged images.
const RECALL_FLOOR: f64 = 0.95;

fn cleaner() -> Cleaner {
    Cleaner::new(Config {
        templates: Templates::default(),
        ..Config::default()
    })
}

/// The file as native Explicit VR Little Endian, enlarged `k`× so that 8–40 px text fits on a
/// small image.
fn native(path: &std::path::Path, k: usize) -> (FileDicomObject<InMemDicomObject>, Pixels) {
    let mut file = OpenFileOptions::new().open_file(path).expect("open");
    file.transcode(&entries::EXPLICIT_VR_LITTLE_ENDIAN.erased())
        .expect("to native");
    let mut px = Pixels::decode(&file).expect("decode");
    if k > 1 {
        enlarge(&mut file, &mut px, k);
        px.clone().write_back(&mut file).expect("enlarge");
    }
    (file, px)
}

#[test]
fn text_in_images_nobody_flagged_is_found_and_removed() {
    let cases = [
        ("CT 16-bit 128²", "pydicom/CT_small.dcm", 1),
        ("CT 16-bit 512², from JPEG 2000", "pydicom/693_J2KI.dcm", 1),
        ("MR 16-bit 64² enlarged 4×", "pydicom/MR_small.dcm", 4),
        ("MR 16-bit 484×300", "pydicom/examples_overlay.dcm", 1),
    ];
    let fonts = fonts();
    let fonts: Vec<FontRef> = fonts
        .iter()
        .map(|b| FontRef::try_from_slice(b).unwrap())
        .collect();
    if veil_pixels::ocr::available().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Tesseract missing"
        );
        return;
    }
    let cleaner = cleaner();
    let seeds: u64 = std::env::var("VEIL_TEST_SCREEN_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (mut boxes, mut removed) = (0usize, 0usize);
    let mut lines = Vec::new();
    for (label, rel, k) in cases {
        let Some(path) = need(rel) else { return };
        let (file, clean_px) = native(&path, k);
        for seed in 0..seeds {
            let mut px = clean_px.clone();
            let mut rng = Lcg(seed * 7919 + k as u64);
            let set = TextSet {
                texts: TEXTS,
                sizes: SIZES,
                levels: LEVELS,
            };
            let gt = draw_texts(&mut px, &fonts, &mut rng, 3, &set, &[]);
            let mut marked = file.clone();
            px.clone().write_back(&mut marked).expect("write back");
            let marked = reopen(&marked);
            let mut jls = marked.clone();
            jls.transcode(&entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased())
                .expect("to JPEG-LS");
            for (enc, f) in [("native", marked), ("JPEG-LS lossless", reopen(&jls))] {
                let mut f = f;
                assert!(
                    cleaner.screen(&Pixels::decode(&f).unwrap()),
                    "{label} seed {seed} {enc}: the screen cleared an image with text"
                );
                let (outcome, a) = cleaner.redact(&mut f, false).expect("redact");
                let a = a.expect("analysis");
                assert!(
                    outcome.modified,
                    "{label} seed {seed} {enc}: nothing removed"
                );
                let hit = gt.iter().filter(|b| covered(&a.redaction, b)).count();
                boxes += gt.len();
                removed += hit;
                lines.push(format!(
                    "{label:<34} seed {seed} {enc:<17} {hit}/{} boxes removed, {:.1}% of the frame blanked",
                    gt.len(),
                    a.redacted_fraction * 100.0
                ));
                for b in gt.iter().filter(|b| !covered(&a.redaction, b)) {
                    lines.push(format!("    missed {b:?}"));
                }
            }
        }
    }
    println!("{}", lines.join("\n"));
    let recall = removed as f64 / boxes.max(1) as f64;
    println!(
        "screen + OCR recall {removed}/{boxes} = {:.1}%",
        recall * 100.0
    );
    assert!(
        recall >= RECALL_FLOOR,
        "recall {recall:.3}\n{}",
        lines.join("\n")
    );
}

#[test]
fn clean_real_images_pass_the_screen_untouched() {
    // Real CT, MR, NM and segmentation images without burned-in text, in several syntaxes:
    // whatever the screen sends to OCR, nothing may be removed, and the pixel data of each
    // stays as it was.
    let files = [
        "pydicom/CT_small.dcm",
        "pydicom/693_J2KI.dcm",
        "pydicom/J2K_pixelrep_mismatch.dcm",
        "pydicom/MR_small.dcm",
        "pydicom/MR_small_RLE.dcm",
        "pydicom/MR_small_jpeg_ls_lossless.dcm",
        "pydicom/MR_small_jp2klossless.dcm",
        "pydicom/examples_overlay.dcm",
        "pydicom/JPEG2000.dcm",
        "pydicom/liver_1frame.dcm",
    ];
    let cleaner = cleaner();
    let (mut frames, mut candidates) = (0u32, 0usize);
    for rel in files {
        let Some(path) = need(rel) else { return };
        let mut f = OpenFileOptions::new().open_file(&path).expect("open");
        let before = Pixels::decode(&f).expect("decode").data;
        let (outcome, a) = cleaner.redact(&mut f, false).expect("redact");
        let a = a.expect("analysis");
        frames += a.frames;
        candidates += a.screen_candidates.len();
        assert!(!outcome.modified, "{rel}: removed {:?}", a.redaction);
        assert_eq!(Pixels::decode(&f).unwrap().data, before, "{rel}");
    }
    println!("{frames} frames screened, {candidates} candidate regions sent to OCR");
}

/// The Pixel Data element as the source file holds it (tag, VR, length, value), which the
/// pipeline carries as bytes.
fn element_bytes(file: &FileDicomObject<InMemDicomObject>) -> Vec<u8> {
    use dicom_dictionary_std::tags;
    let el = file.element(tags::PIXEL_DATA).expect("pixel data");
    let value = el.value().to_bytes().expect("native").into_owned();
    let mut out = vec![0xE0, 0x7F, 0x10, 0x00];
    if file.meta().transfer_syntax().trim_end_matches('\0') == "1.2.840.10008.1.2" {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(el.vr().to_string().as_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(&value);
    out
}

/// The pipeline cleans native Pixel Data it carries as bytes (`clean_carried`) instead of parsing
/// it into the instance: on real ultrasounds (grey, RGB, a planar 30-frame cine; flagged) and on a
/// CT and an implicit-VR MR with drawn text (unflagged), the new value equals what the parsed
/// path (`clean`) writes, and the outcome is the same.
#[test]
fn carried_pixel_data_is_cleaned_like_parsed_pixel_data() {
    use dicom_dictionary_std::tags;
    use veil_pipeline::PixelStage;
    if veil_pixels::ocr::available().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Tesseract missing"
        );
        return;
    }
    let fonts = fonts();
    let fonts: Vec<FontRef> = fonts
        .iter()
        .map(|b| FontRef::try_from_slice(b).unwrap())
        .collect();
    let mut cases: Vec<(String, FileDicomObject<InMemDicomObject>, Option<&str>)> = Vec::new();
    for rel in [
        "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
        "deid-data/ultrasounds/RGB_IMAGE.dcm",
        "deid-data/ultrasounds/ultrasound-multiframe.dcm",
    ] {
        let Some(p) = need(rel) else { return };
        let f = OpenFileOptions::new().open_file(&p).unwrap();
        cases.push((rel.into(), f, Some("ultrasound")));
    }
    for (rel, k, ts) in [
        (
            "pydicom/CT_small.dcm",
            1,
            entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        ),
        (
            "pydicom/MR_small_implicit.dcm",
            4,
            entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        ),
    ] {
        let Some(p) = need(rel) else { return };
        let (file, mut px) = native(&p, k);
        let set = TextSet {
            texts: TEXTS,
            sizes: SIZES,
            levels: LEVELS,
        };
        draw_texts(&mut px, &fonts, &mut Lcg(11), 3, &set, &[]);
        let mut marked = file.clone();
        px.write_back(&mut marked).expect("write back");
        marked.transcode(&ts).expect("transcode");
        cases.push((rel.into(), reopen(&marked), None));
    }
    let stage = veil_pixels::PixelCleaner { cleaner: cleaner() };
    let mut modified = 0;
    for (label, whole, risk) in cases {
        let element = element_bytes(&whole);
        let mut without = whole.clone();
        without.remove_element(tags::PIXEL_DATA);
        let mut parsed = whole.clone();
        let expected = stage.clean(&mut parsed, risk).expect("parsed path");
        let (outcome, value) = stage
            .clean_carried(&without, risk, &element)
            .unwrap_or_else(|| panic!("{label}: native pixel data not cleaned as bytes"))
            .expect("carried path");
        assert_eq!(outcome, expected, "{label}");
        let parsed_value = parsed
            .element(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap()
            .into_owned();
        match value {
            Some(v) => {
                assert!(v == parsed_value, "{label}: new values differ");
                modified += 1;
            }
            None => assert!(!expected.modified, "{label}: nothing returned"),
        }
    }
    assert!(modified >= 4, "only {modified} cases had text removed");
}
