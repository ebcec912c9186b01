//! PNG previews for human review: a frame in grey with the boxes drawn — red: text to be
//! removed, yellow: text found and kept, blue: template regions.

use std::path::Path;

use crate::image::{Pixels, Rect};
use crate::Analysis;

const RED: [u8; 3] = [255, 40, 40];
const YELLOW: [u8; 3] = [255, 220, 0];
const BLUE: [u8; 3] = [60, 140, 255];

fn outline(rgb: &mut [u8], cols: u32, rows: u32, r: &Rect, colour: [u8; 3]) {
    let r = r.grown(0, cols, rows);
    if r.area() == 0 {
        return;
    }
    let mut put = |x: u32, y: u32| {
        let i = ((y * cols + x) * 3) as usize;
        rgb[i..i + 3].copy_from_slice(&colour);
    };
    for t in 0..2u32 {
        for x in r.x..r.right() {
            put(x, (r.y + t).min(rows - 1));
            put(x, r.bottom().saturating_sub(1 + t));
        }
        for y in r.y..r.bottom() {
            put((r.x + t).min(cols - 1), y);
            put(r.right().saturating_sub(1 + t), y);
        }
    }
}

/// Writes `frame` of `px` with the analysis' boxes as an RGB PNG (atomically: temp + rename).
pub fn write(path: &Path, px: &Pixels, frame: u32, a: &Analysis) -> Result<(), crate::PixelError> {
    render(path, px, frame, a).map_err(crate::PixelError::Preview)
}

fn render(path: &Path, px: &Pixels, frame: u32, a: &Analysis) -> Result<(), String> {
    let (cols, rows) = (px.cols, px.rows);
    let grey = px.grey(frame);
    let mut rgb = Vec::with_capacity(grey.len() * 3);
    for g in grey {
        rgb.extend_from_slice(&[g, g, g]);
    }
    for r in &a.template_regions {
        outline(&mut rgb, cols, rows, r, BLUE);
    }
    for w in a.words.iter().filter(|w| w.frame == frame && !w.redact) {
        outline(&mut rgb, cols, rows, &w.rect, YELLOW);
    }
    for r in &a.redaction {
        outline(&mut rgb, cols, rows, r, RED);
    }
    let tmp = path.with_extension("png.tmp");
    let f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), cols, rows);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(&rgb).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
