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
