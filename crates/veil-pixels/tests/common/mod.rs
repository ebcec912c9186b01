#![allow(dead_code)]
//! Shared helpers: locating the real test data, rendering text into real pixel data.

use std::path::PathBuf;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use veil_pixels::{Pixels, Rect};

pub fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

/// The file, or a test failure in CI / a skip message elsewhere.
pub fn need(rel: &str) -> Option<PathBuf> {
    let p = testdata().join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "test data {} is missing: run scripts/fetch-testdata.sh",
            p.display()
        );
    }
    eprintln!(
        "skipping: {} missing (run scripts/fetch-testdata.sh)",
        p.display()
    );
    None
}

pub const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
];

pub fn fonts() -> Vec<Vec<u8>> {
    FONTS
        .iter()
        .map(|f| {
            std::fs::read(f).unwrap_or_else(|e| {
                panic!("font {f}: {e} (install fonts-dejavu-core: scripts/setup.d/pixels.sh)")
            })
        })
        .collect()
}

/// A small deterministic generator (no test depends on the clock).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Text extent (width, height) in pixels at `size`.
pub fn measure(font: &FontRef, size: f32, text: &str) -> (u32, u32) {
    let sf = font.as_scaled(PxScale::from(size));
    let w: f32 = text.chars().map(|c| sf.h_advance(font.glyph_id(c))).sum();
    (
        w.ceil() as u32 + 2,
        (sf.ascent() - sf.descent()).ceil() as u32 + 2,
    )
}

/// Renders `text` at (x, y) (top-left) with `level` (0–1 of the sample range) into every frame.
/// Returns the tight box of the pixels drawn.
pub fn render(
    px: &mut Pixels,
    font: &FontRef,
    size: f32,
    text: &str,
    x: u32,
    y: u32,
    level: f32,
) -> Option<Rect> {
    let sf = font.as_scaled(PxScale::from(size));
    let mut pen = x as f32;
    let base = y as f32 + sf.ascent();
    let (cols, rows) = (px.cols, px.rows);
    let spp = px.samples as usize;
    let bps = px.bytes_per_sample as usize;
    let max = if bps == 1 {
        255.0
    } else {
        ((1u32 << px.bits_stored.min(16)) - 1) as f32
    };
    let signed_off = if px.signed && bps == 2 {
        (1u32 << (px.bits_stored - 1)) as f32
    } else {
        0.0
    };
    let frame_len = cols as usize * rows as usize * spp * bps;
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0u32, 0u32);
    let mut hits: Vec<(u32, u32, f32)> = Vec::new();
    for c in text.chars() {
        let id = font.glyph_id(c);
        let g = id.with_scale_and_position(PxScale::from(size), ab_glyph::point(pen, base));
        pen += sf.h_advance(id);
        if let Some(o) = font.outline_glyph(g) {
            let b = o.px_bounds();
            o.draw(|gx, gy, cov| {
                let px_x = b.min.x as i64 + gx as i64;
                let px_y = b.min.y as i64 + gy as i64;
                if cov > 0.05
                    && px_x >= 0
                    && px_y >= 0
                    && (px_x as u32) < cols
                    && (px_y as u32) < rows
                {
                    hits.push((px_x as u32, px_y as u32, cov));
                }
            });
        }
    }
    for (hx, hy, cov) in hits {
        if cov > 0.25 {
            x0 = x0.min(hx);
            y0 = y0.min(hy);
            x1 = x1.max(hx + 1);
            y1 = y1.max(hy + 1);
        }
        for f in 0..px.frames as usize {
            for s in 0..spp {
                let i =
                    f * frame_len + ((hy as usize * cols as usize + hx as usize) * spp + s) * bps;
                let old = if bps == 1 {
                    px.data[i] as f32
                } else {
                    u16::from_le_bytes([px.data[i], px.data[i + 1]]) as i16 as f32
                        * if px.signed { 1.0 } else { 0.0 }
                        + if px.signed {
                            0.0
                        } else {
                            u16::from_le_bytes([px.data[i], px.data[i + 1]]) as f32
                        }
                };
                let target = level * max - signed_off;
                let v = old + (target - old) * cov.min(1.0);
                if bps == 1 {
                    px.data[i] = v.round().clamp(0.0, 255.0) as u8;
                } else {
                    let b = (v.round() as i32 as u16).to_le_bytes();
                    px.data[i] = b[0];
                    px.data[i + 1] = b[1];
                }
            }
        }
    }
    (x1 > x0).then(|| Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    })
}

/// Every pixel of `b` lies in some rectangle of `rects`.
pub fn covered(rects: &[Rect], b: &Rect) -> bool {
    (b.y..b.bottom()).all(|y| {
        (b.x..b.right()).all(|x| {
            rects
                .iter()
                .any(|r| x >= r.x && x < r.right() && y >= r.y && y < r.bottom())
        })
    })
}

/// The object as a file written and read back.
pub fn reopen(file: &FileDicomObject<InMemDicomObject>) -> FileDicomObject<InMemDicomObject> {
    let mut buf = Vec::new();
    file.write_all(&mut buf).expect("write");
    OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .from_reader(&buf[..])
        .expect("reread")
}

/// Enlarges the frames `k`× (nearest neighbour) and sets Rows and Columns: small real images
/// (a 64² MR) then hold 8–40 px text. The pixels are not written back.
pub fn enlarge(file: &mut FileDicomObject<InMemDicomObject>, px: &mut Pixels, k: usize) {
    let (c, r, bps) = (
        px.cols as usize,
        px.rows as usize,
        px.bytes_per_sample as usize * px.samples as usize,
    );
    let mut big = Vec::with_capacity(px.data.len() * k * k);
    for f in 0..px.frames as usize {
        let frame = &px.data[f * c * r * bps..(f + 1) * c * r * bps];
        for y in 0..r * k {
            for x in 0..c * k {
                let i = ((y / k) * c + x / k) * bps;
                big.extend_from_slice(&frame[i..i + bps]);
            }
        }
    }
    px.data = big;
    px.cols *= k as u32;
    px.rows *= k as u32;
    for (tag, v) in [
        (dicom_dictionary_std::tags::ROWS, px.rows),
        (dicom_dictionary_std::tags::COLUMNS, px.cols),
    ] {
        file.put(dicom_core::DataElement::new(
            tag,
            dicom_core::VR::US,
            dicom_core::PrimitiveValue::from(v as u16),
        ));
    }
}

/// Names, record numbers and dates as burned-in annotations show them.
pub const TEXTS: &[&str] = &[
    "JOHNSON, MARY",
    "MRN 48213957",
    "DOB 03/14/1962",
    "Garcia^Luis",
    "ID: 7730021455",
    "2019-11-02",
    "O'BRIEN PATRICK",
    "Acc 55102938",
    "12.08.1975",
    "NGUYEN THI",
];
/// Glyph sizes (px) the texts are drawn at.
pub const SIZES: &[f32] = &[8.0, 10.0, 12.0, 14.0, 18.0, 24.0, 32.0, 40.0];
/// Levels (share of the sample range) the texts are drawn in.
pub const LEVELS: &[f32] = &[1.0, 0.85, 0.7];

/// What [`draw_texts`] draws from.
pub struct TextSet<'a> {
    pub texts: &'a [&'a str],
    pub sizes: &'a [f32],
    pub levels: &'a [f32],
}

/// Draws up to `items` texts of `set` at random free places (500 tries), each at least 6 px
/// from the others and from `avoid`, bright on dark ground and dark on bright; returns their
/// boxes.
pub fn draw_texts(
    px: &mut Pixels,
    fonts: &[FontRef],
    rng: &mut Lcg,
    items: usize,
    set: &TextSet,
    avoid: &[Rect],
) -> Vec<Rect> {
    let mut gt: Vec<Rect> = Vec::new();
    let mut tries = 0;
    while gt.len() < items && tries < 500 {
        tries += 1;
        let text = set.texts[rng.below(set.texts.len() as u64) as usize];
        let size = set.sizes[rng.below(set.sizes.len() as u64) as usize]
            .min(px.rows as f32 / 6.0)
            .max(8.0);
        let font = &fonts[rng.below(fonts.len() as u64) as usize];
        let level = set.levels[rng.below(set.levels.len() as u64) as usize];
        let (w, h) = measure(font, size, text);
        if w + 4 >= px.cols || h + 4 >= px.rows {
            continue;
        }
        let x = 2 + rng.below((px.cols - w - 4) as u64) as u32;
        let y = 2 + rng.below((px.rows - h - 4) as u64) as u32;
        let slot = Rect { x, y, w, h }.grown(6, px.cols, px.rows);
        if gt
            .iter()
            .any(|g| g.grown(6, px.cols, px.rows).intersects(&slot))
            || avoid.iter().any(|r| r.intersects(&slot))
        {
            continue;
        }
        // Contrast against the local background (of the frame as drawn so far).
        let grey0 = px.grey(0);
        let bg: f64 = (y..y + h)
            .flat_map(|yy| (x..x + w).map(move |xx| (yy, xx)))
            .map(|(yy, xx)| grey0[(yy * px.cols + xx) as usize] as f64)
            .sum::<f64>()
            / (w * h) as f64;
        let level = if bg > 127.0 { 1.0 - level } else { level };
        if let Some(b) = render(px, font, size, text, x, y, level) {
            gt.push(b);
        }
    }
    gt
}
