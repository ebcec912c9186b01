//! Finding text in frames: a cheap pre-filter (text-like edge density in blocks) decides which
//! frames go to Tesseract, and for unflagged images it is the first test of the screen (which
//! regions may hold text at all).

use crate::image::Rect;
use crate::ocr;

/// Block size of the pre-filter grid.
pub const BLOCK: u32 = 16;

/// Text-like blocks of a grey frame: blocks with many strong, short horizontal transitions
/// (strokes of glyphs), the signature of rendered text against smooth or speckled anatomy.
pub fn text_blocks(grey: &[u8], cols: u32, rows: u32) -> Vec<u32> {
    let bx = cols.div_ceil(BLOCK);
    let by = rows.div_ceil(BLOCK);
    let mut counts = vec![0u32; (bx * by) as usize];
    for y in 0..rows {
        let row = &grey[(y * cols) as usize..((y + 1) * cols) as usize];
        let counts_row = &mut counts[((y / BLOCK) * bx) as usize..][..bx as usize];
        // Transitions between x and x + 1 count in the block of x: one tight loop per block.
        for (k, c) in counts_row.iter_mut().enumerate() {
            let x0 = k * BLOCK as usize;
            let x1 = (x0 + BLOCK as usize).min(row.len().saturating_sub(1));
            if x0 >= x1 {
                continue;
            }
            *c += row[x0..x1]
                .iter()
                .zip(&row[x0 + 1..=x1])
                .filter(|(a, b)| a.abs_diff(**b) >= 48)
                .count() as u32;
        }
    }
    let area = BLOCK * BLOCK;
    counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c * 100 >= area * 6 && c * 100 <= area * 60)
        .map(|(i, _)| i as u32)
        .collect()
}

/// Bilinear upscale of a grey image by an integer factor (small text reads better for OCR).
pub fn upscale(grey: &[u8], cols: u32, rows: u32, k: u32) -> Vec<u8> {
    if k <= 1 {
        return grey.to_vec();
    }
    let (w, h) = (cols * k, rows * k);
    let mut out = vec![0u8; (w * h) as usize];
    for y in 0..h {
        let fy = ((y as f32 + 0.5) / k as f32 - 0.5).max(0.0);
        let y0 = (fy as u32).min(rows - 1);
        let y1 = (y0 + 1).min(rows - 1);
        let wy = fy - y0 as f32;
        for x in 0..w {
            let fx = ((x as f32 + 0.5) / k as f32 - 0.5).max(0.0);
            let x0 = (fx as u32).min(cols - 1);
            let x1 = (x0 + 1).min(cols - 1);
            let wx = fx - x0 as f32;
            let p = |xx: u32, yy: u32| grey[(yy * cols + xx) as usize] as f32;
            let v = p(x0, y0) * (1.0 - wx) * (1.0 - wy)
                + p(x1, y0) * wx * (1.0 - wy)
                + p(x0, y1) * (1.0 - wx) * wy
                + p(x1, y1) * wx * wy;
            out[(y * w + x) as usize] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A word found in a frame, in frame coordinates.
#[derive(Debug, Clone)]
pub struct FoundWord {
    pub text: String,
    pub confidence: f32,
    pub rect: Rect,
    /// Line key (unique within a frame).
    pub line: u32,
    /// Found in a second-look crop of text-like blocks (the pre-filter agrees it is text).
    pub second_look: bool,
}

/// OCRs a region of a grey frame at `scale` (and its negative too when asked), returning words
/// in frame coordinates.
pub fn ocr_region(
    grey: &[u8],
    cols: u32,
    rows: u32,
    region: Rect,
    scale: u32,
    line_base: u32,
    invert_too: bool,
) -> Result<Vec<FoundWord>, String> {
    ocr_crop(
        grey, cols, rows, region, scale, line_base, invert_too, false,
    )
}

/// OCRs a text line of known polarity (from [`crate::glyphs`]) once, as dark text on light —
/// what Tesseract reads best — instead of plain and inverted.
pub fn ocr_line(
    grey: &[u8],
    cols: u32,
    rows: u32,
    region: Rect,
    scale: u32,
    line_base: u32,
    bright_text: bool,
) -> Result<Vec<FoundWord>, String> {
    let mut words = ocr_crop(
        grey,
        cols,
        rows,
        region,
        scale,
        line_base,
        false,
        bright_text,
    )?;
    words.iter_mut().for_each(|w| w.second_look = true);
    Ok(words)
}

#[allow(clippy::too_many_arguments)]
fn ocr_crop(
    grey: &[u8],
    cols: u32,
    rows: u32,
    region: Rect,
    scale: u32,
    line_base: u32,
    invert_too: bool,
    invert_first: bool,
) -> Result<Vec<FoundWord>, String> {
    let region = region.grown(0, cols, rows);
    if region.w < 8 || region.h < 8 {
        return Ok(Vec::new());
    }
    let mut crop = Vec::with_capacity(region.area() as usize);
    for y in region.y..region.bottom() {
        crop.extend_from_slice(
            &grey[(y * cols + region.x) as usize..(y * cols + region.right()) as usize],
        );
    }
    let mut img = upscale(&crop, region.w, region.h, scale);
    if invert_first {
        img.iter_mut().for_each(|v| *v = 255 - *v);
    }
    let mut words = ocr::with_engine(|e| e.words(&img, region.w * scale, region.h * scale))?;
    if invert_too {
        // Tesseract's layout analysis can take dark text on a light banner for a picture;
        // inverted, it reads like any other text.
        for v in img.iter_mut() {
            *v = 255 - *v;
        }
        let inverted = ocr::with_engine(|e| e.words(&img, region.w * scale, region.h * scale))?;
        let lines_first = words.iter().map(|w| w.line + 1).max().unwrap_or(0);
        words.extend(inverted.into_iter().map(|mut w| {
            w.line += lines_first;
            w
        }));
    }
    Ok(words
        .into_iter()
        .map(|w| {
            let l = w.left / scale;
            let t = w.top / scale;
            let r = w.right.div_ceil(scale).max(l + 1);
            let b = w.bottom.div_ceil(scale).max(t + 1);
            FoundWord {
                text: w.text,
                confidence: w.confidence,
                rect: Rect {
                    x: region.x + l,
                    y: region.y + t,
                    w: r - l,
                    h: b - t,
                }
                .grown(0, cols, rows),
                line: line_base + w.line,
                second_look: invert_too,
            }
        })
        .collect())
}

/// Regions made of text-like blocks that no word found so far covers: connected groups of
/// blocks (8-neighbour), as pixel rectangles grown by half a block, largest first.
pub fn uncovered_regions(blocks: &[u32], cols: u32, rows: u32, found: &[Rect]) -> Vec<Rect> {
    let bx = cols.div_ceil(BLOCK);
    let by = rows.div_ceil(BLOCK);
    let mut live = vec![false; (bx * by) as usize];
    for &b in blocks {
        let r = Rect {
            x: (b % bx) * BLOCK,
            y: (b / bx) * BLOCK,
            w: BLOCK,
            h: BLOCK,
        }
        .grown(0, cols, rows);
        let centre = Rect {
            x: r.x + r.w / 4,
            y: r.y + r.h / 4,
            w: (r.w / 2).max(1),
            h: (r.h / 2).max(1),
        };
        if !found.iter().any(|f| f.intersects(&centre)) {
            live[b as usize] = true;
        }
    }
    let mut out: Vec<(u32, Rect)> = Vec::new();
    let mut seen = vec![false; live.len()];
    for start in 0..live.len() {
        if !live[start] || seen[start] {
            continue;
        }
        let mut stack = vec![start];
        seen[start] = true;
        let (mut x0, mut y0, mut x1, mut y1, mut n) = (u32::MAX, u32::MAX, 0, 0, 0u32);
        while let Some(i) = stack.pop() {
            let (x, y) = (i as u32 % bx, i as u32 / bx);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            n += 1;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= bx as i64 || ny >= by as i64 {
                        continue;
                    }
                    let j = (ny as u32 * bx + nx as u32) as usize;
                    if live[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let r = Rect {
            x: x0 * BLOCK,
            y: y0 * BLOCK,
            w: (x1 - x0 + 1) * BLOCK,
            h: (y1 - y0 + 1) * BLOCK,
        };
        out.push((n, r.grown(BLOCK / 2, cols, rows)));
    }
    out.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.y.cmp(&b.1.y))
            .then(a.1.x.cmp(&b.1.x))
    });
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-pixel form the block loops replace.
    fn text_blocks_naive(grey: &[u8], cols: u32, rows: u32) -> Vec<u32> {
        let bx = cols.div_ceil(BLOCK);
        let mut counts = vec![0u32; (bx * rows.div_ceil(BLOCK)) as usize];
        for y in 0..rows {
            for x in 0..cols.saturating_sub(1) {
                let (a, b) = (
                    grey[(y * cols + x) as usize],
                    grey[(y * cols + x + 1) as usize],
                );
                if a.abs_diff(b) >= 48 {
                    counts[((y / BLOCK) * bx + x / BLOCK) as usize] += 1;
                }
            }
        }
        let area = BLOCK * BLOCK;
        (0..counts.len() as u32)
            .filter(|&i| {
                let c = counts[i as usize];
                c * 100 >= area * 6 && c * 100 <= area * 60
            })
            .collect()
    }

    #[test]
    fn block_loops_count_what_the_pixel_loop_counts() {
        let mut seed = 7u64;
        for (cols, rows) in [(1, 1), (17, 5), (64, 64), (100, 37), (129, 130)] {
            let grey: Vec<u8> = (0..cols * rows)
                .map(|i: u32| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Runs of flat values with jumps, so some blocks pass and some do not.
                    if (seed >> 40).is_multiple_of(5) || i.is_multiple_of(7) {
                        (seed >> 33) as u8
                    } else {
                        100
                    }
                })
                .collect();
            assert_eq!(
                text_blocks(&grey, cols, rows),
                text_blocks_naive(&grey, cols, rows),
                "{cols}×{rows}"
            );
        }
    }
}
