//! The pixel stage contract on real files: untouched when nothing is found or nothing is
//! flagged (Pixel Data byte-identical), fail closed on what it cannot decode, and the shipped
//! templates parse and match the layouts they were measured on.

mod common;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use veil_pipeline::PixelStage;
use veil_pixels::{identifiers::Identifiers, Cleaner, Config, Kind, PixelCleaner, Templates};

fn pixel_bytes(f: &dicom_object::DefaultDicomObject) -> Vec<u8> {
    f.element(tags::PIXEL_DATA)
        .unwrap()
        .value()
        .to_bytes()
        .unwrap()
        .into_owned()
}

#[test]
fn unflagged_clean_images_are_screened_and_left_untouched() {
    let Some(p) = common::need("pydicom/CT_small.dcm") else {
        return;
    };
    let mut f = OpenFileOptions::new().open_file(&p).unwrap();
    let before = pixel_bytes(&f);
    let stage = PixelCleaner {
        cleaner: Cleaner::default(),
    };
    let o = stage.clean(&mut f, None).unwrap();
    assert!(!o.modified);
    assert_eq!(o.frames_scanned, 1);
    assert_eq!(before, pixel_bytes(&f));
    // With the screen off, an unflagged image is not even decoded.
    let stage = PixelCleaner {
        cleaner: Cleaner::new(Config {
            screen_unflagged: false,
            ..Config::default()
        }),
    };
    let o = stage.clean(&mut f, None).unwrap();
    assert_eq!((o.modified, o.frames_scanned), (false, 0));
}

#[test]
fn flagged_image_without_text_keeps_identical_pixels() {
    // A real CT without burned-in text, flagged as if it were risky: scanned, nothing removed.
    let Some(p) = common::need("pydicom/CT_small.dcm") else {
        return;
    };
    if veil_pixels::ocr::available().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Tesseract missing"
        );
        return;
    }
    let mut f = OpenFileOptions::new().open_file(&p).unwrap();
    let before = pixel_bytes(&f);
    let stage = PixelCleaner {
        cleaner: Cleaner::default(),
    };
    let o = stage.clean(&mut f, Some("test")).unwrap();
    assert_eq!(o.frames_scanned, 1);
    assert!(!o.modified, "no text in this CT");
    assert_eq!(before, pixel_bytes(&f));
}

#[test]
fn flagged_image_that_cannot_be_decoded_is_refused() {
    let Some(p) = common::need("pydicom/JPGExtended.dcm") else {
        return;
    };
    let mut f = OpenFileOptions::new().open_file(&p).unwrap();
    let stage = PixelCleaner {
        cleaner: Cleaner::default(),
    };
    let e = stage.clean(&mut f, Some("modality US")).unwrap_err();
    assert!(e.to_string().contains("cannot decode"), "{e}");
}

#[test]
fn builtin_templates_parse_and_match_their_layouts() {
    let t = Templates::builtin();
    assert!(t.list.len() >= 3);
    let Some(p) = common::need("deid-data/ultrasounds/GREYSCALE_IMAGE.dcm") else {
        return;
    };
    let f = OpenFileOptions::new().open_file(&p).unwrap();
    let (rects, names) = t.regions_for(&f, 768, 1024);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(rects[0].y, 0);
    // Another size: no match.
    assert!(t.regions_for(&f, 600, 800).0.is_empty());
    let mut bad = Templates::default();
    assert!(bad
        .add_toml("x.toml", "[[template]]\nname = \"n\"\nregions = []\n")
        .is_err());
    assert!(bad
        .add_toml(
            "x.toml",
            "[[template]]\nname = \"n\"\nfoo = 1\nregions = [[0,0,1,1]]\n"
        )
        .is_err());
}

#[test]
fn identifiers_match_ocr_text_in_common_forms() {
    let Some(p) = common::need("pydicom/CT_small.dcm") else {
        return;
    };
    let mut f = OpenFileOptions::new().open_file(&p).unwrap();
    f.put(DataElement::new(
        tags::PATIENT_NAME,
        VR::PN,
        PrimitiveValue::from("DOWNTIME^MARY^ANN"),
    ));
    f.put(DataElement::new(
        tags::PATIENT_ID,
        VR::LO,
        PrimitiveValue::from("40404040404"),
    ));
    f.put(DataElement::new(
        tags::PATIENT_BIRTH_DATE,
        VR::DA,
        PrimitiveValue::from("19510829"),
    ));
    let ids = Identifiers::of(&f);
    assert_eq!(ids.matches("Downtime,"), Some(Kind::PatientName));
    assert_eq!(ids.matches("MARY"), Some(Kind::PatientName));
    assert_eq!(ids.matches("08/29/1951"), Some(Kind::Date));
    assert_eq!(ids.matches("1951-08-29"), Some(Kind::Date));
    assert_eq!(ids.matches("ID:40404040404"), Some(Kind::PatientId));
    assert_eq!(ids.matches("Liver"), None);
    assert_eq!(ids.matches("4.0cm"), None);
}

#[test]
fn an_unflagged_image_is_read_only_where_the_screen_finds_text() {
    let Some(p) = common::need("deid-data/ultrasounds/GREYSCALE_IMAGE.dcm") else {
        return;
    };
    if veil_pixels::ocr::available().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Tesseract missing"
        );
        return;
    }
    let f = OpenFileOptions::new().open_file(&p).unwrap();
    let cleaner = Cleaner::new(Config {
        templates: Templates::default(),
        ..Config::default()
    });
    let (px, a) = cleaner.scan(&f, false, false).unwrap();
    assert!(cleaner.screen(&px));
    assert!(!a.screen_candidates.is_empty());
    assert!(a.words.iter().any(|w| w.redact), "{:?}", a.words);
    for w in &a.words {
        assert!(
            a.screen_candidates
                .iter()
                .any(|c| c.rect.contains(&w.rect) || c.rect.intersects(&w.rect)),
            "{:?} outside every screened region",
            w.rect
        );
    }
    // Real CT and MR anatomy: the screen clears every frame, so nothing is read.
    for p in ["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"] {
        let Some(p) = common::need(p) else { return };
        let f = OpenFileOptions::new().open_file(&p).unwrap();
        let (px, a) = cleaner.scan(&f, false, false).unwrap();
        assert!(!cleaner.screen(&px), "{}", p.display());
        assert!(
            a.frames_ocr.is_empty() && a.redaction.is_empty(),
            "{}",
            p.display()
        );
    }
}

#[test]
fn glyph_lines_find_burned_in_text_and_not_anatomy() {
    // Real images: the deid-data ultrasound's burned-in annotations are text lines found from
    // the pixels alone (checked against what Tesseract reads confidently); real CT and MR
    // anatomy gives no strong line.
    let Some(us) = common::need("deid-data/ultrasounds/GREYSCALE_IMAGE.dcm") else {
        return;
    };
    for p in ["pydicom/CT_small.dcm", "pydicom/MR_small.dcm"] {
        let Some(p) = common::need(p) else { return };
        let f = OpenFileOptions::new().open_file(&p).unwrap();
        let px = veil_pixels::Pixels::decode(&f).unwrap();
        for frame in 0..px.frames {
            let lines = veil_pixels::glyphs::glyph_lines(&px.grey(frame), px.cols, px.rows, None);
            assert!(
                lines.iter().all(|l| !l.strong),
                "{}: strong line in anatomy: {lines:?}",
                p.display()
            );
        }
    }
    let f = OpenFileOptions::new().open_file(&us).unwrap();
    let px = veil_pixels::Pixels::decode(&f).unwrap();
    let lines = veil_pixels::glyphs::glyph_lines(&px.grey(0), px.cols, px.rows, None);
    let strong: Vec<_> = lines.iter().filter(|l| l.strong).collect();
    assert!(strong.len() >= 10, "{strong:?}");
    if veil_pixels::ocr::available().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Tesseract missing"
        );
        return;
    }
    let cleaner = Cleaner::new(Config {
        templates: Templates::default(),
        ..Config::default()
    });
    let (_, a) = cleaner.scan(&f, true, false).unwrap();
    let confident: Vec<_> = a
        .words
        .iter()
        .filter(|w| w.confidence >= 90.0 && w.rect.h >= 8)
        .collect();
    let on_line = confident
        .iter()
        .filter(|w| strong.iter().any(|l| l.rect.intersects(&w.rect)))
        .count();
    assert!(
        confident.len() >= 10 && on_line * 10 >= confident.len() * 8,
        "{on_line} of {} confidently read words on a strong line",
        confident.len()
    );
}
