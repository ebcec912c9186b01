//! Synthetic burned-in text: names, MRNs and dates rendered onto real CT, MR and ultrasound
//! pixel data (grey and colour, single and multi-frame) at varied positions, sizes (8–40 px),
//! contrast and fonts, then encoded in each syntax Veil writes or reads lossily. Asserts that
//! at least 99 % of the rendered text boxes are fully removed (RECALL_FLOOR, issue 5), and
//! reports the area removed that held
//! no rendered text (beyond what the same image without the synthetic text already loses).

mod common;

use ab_glyph::FontRef;
use common::{
    covered, draw_texts, enlarge, fonts, need, reopen, Lcg, TextSet, LEVELS, SIZES, TEXTS,
};
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::entries;
use veil_pixels::{Cleaner, Config, Pixels, Rect};

/// Recall of rendered boxes required by issue 5.
const RECALL_FLOOR: f64 = 0.99;

fn mask_area(rects: &[Rect], exclude: &[Rect], cols: u32, rows: u32) -> u64 {
    let mut n = 0;
    for y in 0..rows {
        for x in 0..cols {
            let inside = |rs: &[Rect]| {
                rs.iter()
                    .any(|r| x >= r.x && x < r.right() && y >= r.y && y < r.bottom())
            };
            if inside(rects) && !inside(exclude) {
                n += 1;
            }
        }
    }
    n
}

struct Case {
    label: &'static str,
    path: &'static str,
    seed: u64,
    items: usize,
    /// Keep only the first N frames (bounds test time on long cines).
    frames: Option<u32>,
}

#[test]
fn rendered_identifiers_are_removed_in_every_encoding() {
    let cases = [
        Case {
            label: "CT 16-bit (128² ×4)",
            path: "pydicom/CT_small.dcm",
            seed: 1,
            items: 8,
            frames: None,
        },
        Case {
            label: "drawing, JPEG YBR_FULL_422 source",
            path: "deid-data/humans/ctbrain1.dcm",
            seed: 6,
            items: 6,
            frames: None,
        },
        Case {
            label: "MR 16-bit (64² ×4)",
            path: "pydicom/MR_small.dcm",
            seed: 2,
            items: 6,
            frames: None,
        },
        Case {
            label: "US 8-bit MONOCHROME2",
            path: "deid-data/ultrasounds/GREYSCALE_IMAGE.dcm",
            seed: 3,
            items: 8,
            frames: None,
        },
        Case {
            label: "US 8-bit RGB",
            path: "deid-data/ultrasounds/RGB_IMAGE.dcm",
            seed: 4,
            items: 8,
            frames: None,
        },
        Case {
            label: "US RGB multi-frame (4 frames)",
            path: "deid-data/ultrasounds/ultrasound-multiframe.dcm",
            seed: 5,
            items: 6,
            frames: Some(4),
        },
    ];
    let fonts = fonts();
    let fonts: Vec<FontRef> = fonts
        .iter()
        .map(|b| FontRef::try_from_slice(b).unwrap())
        .collect();
    // VEIL_TEST_NO_PIXEL_LINES=1: OCR's words only, for comparison (the assertion then fails).
    let cleaner = Cleaner::new(Config {
        pixel_lines: std::env::var_os("VEIL_TEST_NO_PIXEL_LINES").is_none(),
        ..Config::default()
    });
    let (mut boxes, mut removed) = (0usize, 0usize);
    let mut lines = Vec::new();
    for case in &cases {
        let Some(path) = need(case.path) else {
            continue;
        };
        let mut file = OpenFileOptions::new().open_file(&path).expect("open");
        let mut px = Pixels::decode(&file).expect("decode");
        if px.samples == 3
            && file
                .element(dicom_dictionary_std::tags::PLANAR_CONFIGURATION)
                .ok()
                .and_then(|e| e.to_int::<u16>().ok())
                == Some(1)
        {
            // Fixture: store colour interleaved (dicom-rs' encoders expect PlanarConfiguration 0).
            let words = matches!(
                file.element(dicom_dictionary_std::tags::PIXEL_DATA)
                    .unwrap()
                    .value(),
                dicom_core::value::Value::Primitive(dicom_core::PrimitiveValue::U16(_))
            );
            let value = if words {
                dicom_core::PrimitiveValue::U16(
                    px.data
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                )
            } else {
                dicom_core::PrimitiveValue::U8(px.data.clone().into())
            };
            let vr = file
                .element(dicom_dictionary_std::tags::PIXEL_DATA)
                .unwrap()
                .vr();
            file.put(dicom_core::DataElement::new(
                dicom_dictionary_std::tags::PIXEL_DATA,
                vr,
                value,
            ));
            file.put(dicom_core::DataElement::new(
                dicom_dictionary_std::tags::PLANAR_CONFIGURATION,
                dicom_core::VR::US,
                dicom_core::PrimitiveValue::from(0u16),
            ));
            px = Pixels::decode(&file).expect("decode interleaved");
        }
        if let Some(n) = case.frames {
            if px.frames > n {
                let fl = px.data.len() / px.frames as usize;
                px.data.truncate(fl * n as usize);
                px.frames = n;
                file.put(dicom_core::DataElement::new(
                    dicom_dictionary_std::tags::NUMBER_OF_FRAMES,
                    dicom_core::VR::IS,
                    dicom_core::PrimitiveValue::from(n.to_string()),
                ));
            }
        }
        if px.cols < 200 {
            // Small real MR: enlarged 4× (nearest) so that 8–40 px text fits on it.
            enlarge(&mut file, &mut px, 4);
        }
        // The file's own identifiers are among the rendered texts (the others are names and
        // numbers of other people, found by OCR confidence alone).
        for (tag, vr, v) in [
            (
                dicom_dictionary_std::tags::PATIENT_NAME,
                dicom_core::VR::PN,
                "JOHNSON^MARY",
            ),
            (
                dicom_dictionary_std::tags::PATIENT_ID,
                dicom_core::VR::LO,
                "48213957",
            ),
            (
                dicom_dictionary_std::tags::PATIENT_BIRTH_DATE,
                dicom_core::VR::DA,
                "19620314",
            ),
            (
                dicom_dictionary_std::tags::ACCESSION_NUMBER,
                dicom_core::VR::SH,
                "55102938",
            ),
        ] {
            file.put(dicom_core::DataElement::new(
                tag,
                vr,
                dicom_core::PrimitiveValue::from(v),
            ));
        }
        // Baseline: what the image alone loses (real burned-in text, template regions).
        let base_file = {
            let mut f = file.clone();
            px.clone().write_back(&mut f).unwrap();
            f
        };
        let (_, base) = cleaner
            .scan(&base_file, true, false)
            .expect("baseline scan");
        // VEIL_TEST_SEED_OFFSET draws other placements, sizes and fonts (held-out check of the
        // detector beyond the fixed set; the assertion below holds for the default 0).
        let offset: u64 = std::env::var("VEIL_TEST_SEED_OFFSET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rng = Lcg(case.seed + offset * 1000);
        let set = TextSet {
            texts: TEXTS,
            sizes: SIZES,
            levels: LEVELS,
        };
        let gt = draw_texts(&mut px, &fonts, &mut rng, case.items, &set, &base.redaction);
        px.clone().write_back(&mut file).expect("write back");
        let native = reopen(&file);
        if let Ok(dir) = std::env::var("VEIL_TEST_DUMP") {
            // For tuning the detectors (examples/glyph_lines.rs): the image and its text boxes.
            let base = format!("{dir}/synthetic-{}.dcm", case.seed);
            native.write_to_file(&base).expect("dump");
            let gt_lines: String = gt
                .iter()
                .map(|b| format!("{} {} {} {}\n", b.x, b.y, b.w, b.h))
                .collect();
            std::fs::write(format!("{base}.gt"), gt_lines).expect("dump");
        }
        let mut encodings: Vec<(&str, FileDicomObject<InMemDicomObject>)> =
            vec![("native", native.clone())];
        let mut jls = native.clone();
        jls.transcode(&entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased())
            .expect("to JPEG-LS");
        encodings.push(("JPEG-LS lossless", reopen(&jls)));
        if px.bytes_per_sample == 1 {
            let mut jpg = native.clone();
            let mut opts = dicom_encoding::adapters::EncodeOptions::new();
            opts.quality = Some(90);
            jpg.transcode_with_options(&entries::JPEG_BASELINE.erased(), opts)
                .expect("to JPEG baseline");
            encodings.push(("JPEG baseline (lossy)", reopen(&jpg)));
        }
        for (enc, f) in encodings {
            let mut f = f;
            let ts_before = f.meta().transfer_syntax().to_string();
            if let Ok(dir) = std::env::var("VEIL_TEST_DUMP") {
                let name = format!(
                    "{dir}/synthetic-{}-{}.dcm",
                    case.seed,
                    enc.split(' ').next().unwrap()
                );
                f.write_to_file(&name).expect("dump");
                std::fs::copy(
                    format!("{dir}/synthetic-{}.dcm.gt", case.seed),
                    format!("{name}.gt"),
                )
                .expect("dump");
            }
            let (outcome, a) = cleaner.redact(&mut f, true).expect("redact");
            let a = a.expect("analysis");
            if let Ok(dir) = std::env::var("VEIL_TEST_PREVIEWS") {
                let name = format!(
                    "{}/{}-{}.png",
                    dir,
                    case.seed,
                    enc.split(' ').next().unwrap()
                );
                let (before_px, _) = cleaner.scan(&native, true, false).unwrap();
                veil_pixels::preview::write(std::path::Path::new(&name), &before_px, 0, &a)
                    .unwrap();
            }
            assert!(outcome.modified, "{}: {enc}: nothing redacted", case.label);
            let hit = gt.iter().filter(|b| covered(&a.redaction, b)).count();
            boxes += gt.len();
            removed += hit;
            let grown: Vec<Rect> = gt
                .iter()
                .map(|b| b.grown(4 + b.h / 2, px.cols, px.rows))
                .collect();
            let mut exclude = grown.clone();
            exclude.extend(base.redaction.iter().copied());
            let false_area = mask_area(&a.redaction, &exclude, px.cols, px.rows);
            let frame_area = px.cols as u64 * px.rows as u64;
            // The output re-reads and decodes, and the removed boxes hold no text any more.
            let out = reopen(&f);
            let out_px = Pixels::decode(&out).expect("decode output");
            assert_eq!(out_px.frames, px.frames);
            let ts_after = out
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string();
            lines.push(format!(
                "{:<32} {:<22} {:>2}/{:<2} boxes removed; false-redacted {:>5.2}% of the frame; {} → {}",
                case.label,
                enc,
                hit,
                gt.len(),
                100.0 * false_area as f64 / frame_area as f64,
                ts_before.trim_end_matches('\0'),
                ts_after
            ));
            for b in gt.iter().filter(|b| !covered(&a.redaction, b)) {
                lines.push(format!("    missed {b:?}"));
            }
        }
    }
    for l in &lines {
        println!("{l}");
    }
    if boxes == 0 {
        return;
    }
    let recall = removed as f64 / boxes as f64;
    println!("recall {removed}/{boxes} = {:.2}%", recall * 100.0);
    // Issue 5 requires 99 %. With the pixel-only text lines (glyphs.rs) the set reaches 112/112;
    // OCR alone read 100/112 (8–10 px text over speckle, text crossed by curves). Held-out
    // draws (VEIL_TEST_SEED_OFFSET=1..4) are reported in docs/pixels.md.
    assert!(
        recall >= RECALL_FLOOR,
        "recall {:.3} below {RECALL_FLOOR}\n{}",
        recall,
        lines.join("\n")
    );
}
