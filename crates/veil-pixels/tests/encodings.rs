//! Every encoding in pydicom's test files: decoded, a box filled on every frame, written back,
//! re-read and decoded again. Lossless sources must keep every pixel outside the box; the
//! transfer syntax follows the rule (native stays native, JPEG-LS lossless stays, others become
//! Explicit VR Little Endian); lossy sources say Lossy Image Compression 01. Files that cannot
//! be decoded are listed: the pixel stage refuses them (quarantine), never passes them through.

mod common;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use veil_pixels::image::is_lossy_ts;
use veil_pixels::{Pixels, Rect};

#[test]
fn decode_fill_and_write_back_in_every_encoding() {
    let Some(dir) = common::need("pydicom") else {
        return;
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    names.sort();
    let (mut ok, mut refused) = (0, Vec::new());
    let mut syntaxes = std::collections::BTreeMap::<String, (u32, u32)>::new();
    for path in names {
        let Ok(file) = OpenFileOptions::new().open_file(&path) else {
            continue;
        };
        if file.element(tags::PIXEL_DATA).is_err() {
            continue;
        }
        let ts = file
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let px = match Pixels::decode(&file) {
            Ok(p) => p,
            Err(e) => {
                refused.push(format!("{name} ({ts}): {e}"));
                syntaxes.entry(ts).or_default().1 += 1;
                continue;
            }
        };
        if px.is_read_only() {
            // 1-bit and 32-bit samples are screened, never rewritten.
            assert!(px.clone().write_back(&mut file.clone()).is_err(), "{name}");
            refused.push(format!("{name} ({ts}): read for the screen only"));
            continue;
        }
        let mut changed = px.clone();
        let rect = Rect {
            x: px.cols / 4,
            y: px.rows / 4,
            w: (px.cols / 4).max(1),
            h: (px.rows / 4).max(1),
        };
        changed.fill(&[rect]);
        let mut out = file.clone();
        changed
            .clone()
            .write_back(&mut out)
            .unwrap_or_else(|e| panic!("{name}: write back: {e}"));
        let mut buf = Vec::new();
        out.write_all(&mut buf)
            .unwrap_or_else(|e| panic!("{name}: encode: {e}"));
        let back = OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Always)
            .from_reader(&buf[..])
            .unwrap();
        let out_ts = back
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let encapsulated = ts.starts_with("1.2.840.10008.1.2.4") || ts == "1.2.840.10008.1.2.5";
        if !encapsulated {
            assert_eq!(out_ts, ts, "{name}: native must stay in its syntax");
        } else if ts == "1.2.840.10008.1.2.4.80" {
            assert_eq!(
                out_ts, ts,
                "{name}: JPEG-LS lossless must stay JPEG-LS lossless"
            );
        } else {
            assert_eq!(
                out_ts, "1.2.840.10008.1.2.1",
                "{name}: re-encoded to Explicit VR Little Endian"
            );
        }
        if is_lossy_ts(&ts) {
            let l = back
                .element(tags::LOSSY_IMAGE_COMPRESSION)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string();
            assert_eq!(l, "01", "{name}: lossy history must be kept");
        }
        let again =
            Pixels::decode(&back).unwrap_or_else(|e| panic!("{name}: output does not decode: {e}"));
        assert_eq!(
            (again.rows, again.cols, again.frames, again.samples),
            (px.rows, px.cols, px.frames, px.samples),
            "{name}"
        );
        // Lossless round trip: every sample equals the filled working copy.
        assert!(
            again.data == changed.data,
            "{name} ({ts} → {out_ts}): pixels differ after the round trip"
        );
        ok += 1;
        syntaxes.entry(ts).or_default().0 += 1;
    }
    for (ts, (a, b)) in &syntaxes {
        println!("{ts:<28} {a} round-tripped, {b} refused");
    }
    for r in &refused {
        println!("refused: {r}");
    }
    println!("{ok} files round-tripped, {} refused", refused.len());
    assert!(ok >= 40, "too few images round-tripped: {ok}");
    // Every syntax dicom-rs decodes appears among the round-tripped ones.
    for ts in [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
    ] {
        assert!(
            syntaxes.get(ts).is_some_and(|(a, _)| *a > 0),
            "no file in {ts} round-tripped"
        );
    }
}
