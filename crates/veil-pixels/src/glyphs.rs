//! Text lines found from the pixels alone, without OCR: glyph-sized, high-contrast blobs in a
//! row, with a common height, baseline and ink level.
//!
//! Why: Tesseract misses or half-reads small text (8–10 px) over ultrasound speckle and text
//! crossed by strong edges; what it does read gives only part of a line. Rendered text has a
//! geometry that anatomy rarely has: strokes narrower than a few pixels, standing out from the
//! local background (a morphological top-hat finds them for bright text, a black-hat for dark
//! text), grouped into glyphs of one height that sit on one baseline, all drawn in the same
//! ink. The lines found here are used three ways by [`crate::Cleaner`]: to grow a removed word
//! to the whole line it belongs to, to propose crops for a closer OCR look, and — in instances
//! flagged for burned-in text — to blank lines that look like text even when OCR reads nothing.

use crate::image::Rect;

/// Half-width of the structuring element: strokes up to about 2·R pixels wide stand out
/// (bold 40 px fonts have 6–7 px stems).
const R: usize = 5;
/// Minimum stroke contrast (grey levels above/below the local background).
const MIN_CONTRAST: u8 = 40;
/// Glyph heights considered (pixels).
const MIN_H: u32 = 5;
const MAX_H: u32 = 64;
/// [`extend_along_row`] reaches at most this many glyph heights each way.
const MAX_RUN: u32 = 20;

/// A connected blob of stroke pixels.
#[derive(Debug, Clone, Copy)]
pub struct Glyph {
    pub rect: Rect,
    pub pixels: u32,
    /// Ink level: the extreme grey value inside the blob (max for bright text, min for dark).
    pub ink: u8,
    pub bright: bool,
}

/// A row of glyphs that looks like a line of text.
#[derive(Debug, Clone)]
pub struct GlyphLine {
    pub rect: Rect,
    pub glyphs: u32,
    /// Median glyph height.
    pub height: u32,
    /// Bright text on a darker background (else dark text on a lighter one).
    pub bright: bool,
    /// Strong evidence: enough glyphs of one height, on one baseline, in one ink.
    pub strong: bool,
}

/// Sliding minimum (or maximum) over a window of 2·r+1, borders padded with the neutral value
/// (van Herk / Gil–Werman: three comparisons per sample whatever the window).
fn filter_1d(
    src: &[u8],
    dst: &mut [u8],
    r: usize,
    max: bool,
    buf: &mut Vec<u8>,
    g: &mut Vec<u8>,
    h: &mut Vec<u8>,
) {
    let k = 2 * r + 1;
    let n = src.len();
    let neutral = if max { 0u8 } else { 255u8 };
    let padded = n + 2 * r;
    let total = padded.div_ceil(k) * k;
    buf.clear();
    buf.resize(total, neutral);
    buf[r..r + n].copy_from_slice(src);
    g.clear();
    g.resize(total, neutral);
    h.clear();
    h.resize(total, neutral);
    let pick = |a: u8, b: u8| if max { a.max(b) } else { a.min(b) };
    for start in (0..total).step_by(k) {
        g[start] = buf[start];
        for i in start + 1..start + k {
            g[i] = pick(g[i - 1], buf[i]);
        }
        h[start + k - 1] = buf[start + k - 1];
        for i in (start..start + k - 1).rev() {
            h[i] = pick(h[i + 1], buf[i]);
        }
    }
    // Window of output i in padded coordinates: [i, i + 2r].
    for (i, d) in dst.iter_mut().enumerate().take(n) {
        *d = pick(h[i], g[i + 2 * r]);
    }
}

/// Square (2r+1)² erosion (`max` false) or dilation (`max` true).
fn filter_2d(img: &[u8], cols: usize, rows: usize, r: usize, max: bool) -> Vec<u8> {
    let mut tmp = vec![0u8; img.len()];
    let (mut buf, mut g, mut h) = (Vec::new(), Vec::new(), Vec::new());
    for y in 0..rows {
        let s = &img[y * cols..(y + 1) * cols];
        filter_1d(
            s,
            &mut tmp[y * cols..(y + 1) * cols],
            r,
            max,
            &mut buf,
            &mut g,
            &mut h,
        );
    }
    let mut out = vec![0u8; img.len()];
    let mut col = vec![0u8; rows];
    let mut res = vec![0u8; rows];
    for x in 0..cols {
        for y in 0..rows {
            col[y] = tmp[y * cols + x];
        }
        filter_1d(&col, &mut res, r, max, &mut buf, &mut g, &mut h);
        for y in 0..rows {
            out[y * cols + x] = res[y];
        }
    }
    out
}

/// Top-hat (bright strokes) and black-hat (dark strokes) of a grey image.
fn stroke_contrast(grey: &[u8], cols: usize, rows: usize) -> (Vec<u8>, Vec<u8>) {
    let eroded = filter_2d(grey, cols, rows, R, false);
    let opened = filter_2d(&eroded, cols, rows, R, true);
    drop(eroded);
    let dilated = filter_2d(grey, cols, rows, R, true);
    let closed = filter_2d(&dilated, cols, rows, R, false);
    let bright = grey
        .iter()
        .zip(&opened)
        .map(|(&g, &o)| g.saturating_sub(o))
        .collect();
    let dark = grey
        .iter()
        .zip(&closed)
        .map(|(&c, &g)| g.saturating_sub(c))
        .collect();
    (bright, dark)
}

/// Connected (8-neighbour) blobs of a mask with glyph geometry.
fn glyphs_of(mask: &[bool], grey: &[u8], cols: usize, rows: usize, bright: bool) -> Vec<Glyph> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        let mut n = 0u32;
        let mut ink = if bright { 0u8 } else { 255u8 };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % cols, i / cols);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            n += 1;
            ink = if bright {
                ink.max(grey[i])
            } else {
                ink.min(grey[i])
            };
            for dy in [-1i64, 0, 1] {
                for dx in [-1i64, 0, 1] {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= cols as i64 || ny >= rows as i64 {
                        continue;
                    }
                    let j = ny as usize * cols + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (w, h) = ((x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32);
        let fill = n as f32 / (w * h) as f32;
        // Glyphs (or a few touching glyphs of small text): glyph height, not a long thin
        // line or curve (low fill), not a solid patch (high fill).
        let bar = w * 3 <= h; // I, l, 1, |: solid but narrow
        if (MIN_H..=MAX_H).contains(&h) && w <= 12 * h && fill >= 0.12 && (fill <= 0.85 || bar) {
            out.push(Glyph {
                rect: Rect {
                    x: x0 as u32,
                    y: y0 as u32,
                    w,
                    h,
                },
                pixels: n,
                ink,
                bright,
            });
        }
    }
    out
}

fn median(v: &mut [u32]) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Groups glyphs into lines: neighbours on one row (vertical centres within half a glyph
/// height, gap under one glyph height, heights within 2.5×).
fn lines_of(glyphs: &[Glyph], bright: bool) -> Vec<GlyphLine> {
    let n = glyphs.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| glyphs[i].rect.x);
    for (oi, &i) in order.iter().enumerate() {
        let a = glyphs[i].rect;
        for &j in &order[oi + 1..] {
            let b = glyphs[j].rect;
            let hmax = a.h.max(b.h);
            if b.x > a.right() + hmax {
                break;
            }
            let hmin = a.h.min(b.h);
            let ca = 2 * a.y + a.h;
            let cb = 2 * b.y + b.h;
            // Centres within half the taller height, or bottoms aligned (a baseline).
            let centred = ca.abs_diff(cb) <= hmax;
            let based = a.bottom().abs_diff(b.bottom()) * 5 <= hmax;
            if hmin * 5 >= hmax * 2 && (centred || based) {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri] = rj;
                }
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out = Vec::new();
    for members in groups.values() {
        let rect = members
            .iter()
            .map(|&i| glyphs[i].rect)
            .reduce(|a, b| a.union(&b))
            .expect("non-empty group");
        let mut hs: Vec<u32> = members.iter().map(|&i| glyphs[i].rect.h).collect();
        let height = median(&mut hs);
        if members.len() < 2 || rect.w < 2 * height || rect.h > 3 * height {
            continue;
        }
        let mut bottoms: Vec<u32> = members.iter().map(|&i| glyphs[i].rect.bottom()).collect();
        let base = median(&mut bottoms);
        let mut inks: Vec<u32> = members.iter().map(|&i| glyphs[i].ink as u32).collect();
        let ink = median(&mut inks);
        let tol = (height / 6).max(1);
        let on_base = members
            .iter()
            .filter(|&&i| glyphs[i].rect.bottom().abs_diff(base) <= tol)
            .count();
        let same_h = members
            .iter()
            .filter(|&&i| glyphs[i].rect.h.abs_diff(height) <= tol.max(height / 4))
            .count();
        let same_ink = members
            .iter()
            // Small glyphs' thin strokes rarely reach the full ink (anti-aliasing).
            .filter(|&&i| (glyphs[i].ink as u32).abs_diff(ink) <= if height < 12 { 28 } else { 12 })
            .count();
        let m = members.len();
        let strong = m >= 3
            && rect.h * 2 <= height * 3 + 4
            && on_base * 10 >= m * 7
            && same_h * 10 >= m * 6
            && same_ink * 10 >= m * 8;
        out.push(GlyphLine {
            rect,
            glyphs: m as u32,
            height,
            bright,
            strong,
        });
    }
    out
}

/// Adds a line found at one ink level to those found at others: a strong line replaces the
/// weak ones it overlaps; a weak line is dropped where a line already covers it.
fn add_line(out: &mut Vec<GlyphLine>, l: GlyphLine) {
    let meets = |o: &GlyphLine| {
        let i = Rect {
            x: o.rect.x.max(l.rect.x),
            y: o.rect.y.max(l.rect.y),
            w: 0,
            h: 0,
        };
        let r = o.rect.right().min(l.rect.right());
        let b = o.rect.bottom().min(l.rect.bottom());
        r > i.x
            && b > i.y
            && ((r - i.x) as u64 * (b - i.y) as u64) * 2 >= l.rect.area().min(o.rect.area())
    };
    if l.strong {
        out.retain(|o| o.strong || !meets(o));
        if !out
            .iter()
            .any(|o| o.strong && meets(o) && o.rect.contains(&l.rect))
        {
            out.push(l);
        }
    } else if !out.iter().any(meets) {
        out.push(l);
    }
}

/// Text-like lines of a grey frame (both polarities), restricted to `roi` when given.
pub fn glyph_lines(grey: &[u8], cols: u32, rows: u32, roi: Option<Rect>) -> Vec<GlyphLine> {
    let roi = roi
        .unwrap_or(Rect {
            x: 0,
            y: 0,
            w: cols,
            h: rows,
        })
        .grown(0, cols, rows);
    if roi.w < 8 || roi.h < 8 {
        return Vec::new();
    }
    let (c, r) = (roi.w as usize, roi.h as usize);
    let mut crop = Vec::with_capacity(c * r);
    for y in roi.y..roi.bottom() {
        crop.extend_from_slice(
            &grey[(y * cols + roi.x) as usize..(y * cols + roi.right()) as usize],
        );
    }
    let (tophat, blackhat) = stroke_contrast(&crop, c, r);
    let mut out: Vec<GlyphLine> = Vec::new();
    // Text over texture: its strokes touch brighter (darker) speckle at low thresholds and
    // separate from it at higher ones; lines are looked for at several ink levels.
    for bright in [true, false] {
        let hat = if bright { &tophat } else { &blackhat };
        for level in [0u8, 96, 160, 208] {
            let mask: Vec<bool> = crop
                .iter()
                .zip(hat)
                .map(|(&g, &t)| {
                    t >= MIN_CONTRAST && if bright { g >= level } else { 255 - g >= level }
                })
                .collect();
            if level > 0 && !mask.iter().any(|m| *m) {
                break;
            }
            for l in lines_of(&glyphs_of(&mask, &crop, c, r, bright), bright) {
                add_line(&mut out, l);
            }
        }
    }
    for l in &mut out {
        l.rect.x += roi.x;
        l.rect.y += roi.y;
    }
    out
}

/// Grows a box of text (a removed word or line) along its row to the whole run of text it
/// belongs to: columns to the left and right holding strokes of the same polarity and about the
/// same ink, with gaps under a glyph height, at most `MAX_RUN` glyph heights each way.
///
/// Why: OCR reads part of a line crossed by a curve or over speckle ("773" of "ID: 7730021455"),
/// and the line detector loses glyphs that touch an edge. Ink level and polarity come from the
/// box itself, so dimmer texture next to the text does not count.
pub fn extend_along_row(grey: &[u8], cols: u32, rows: u32, b: Rect) -> Rect {
    let b = b.grown(0, cols, rows);
    let h = b.h.max(1);
    if b.w == 0 || !(MIN_H..=MAX_H).contains(&h) {
        return b;
    }
    let reach = MAX_RUN * h;
    let area = Rect {
        x: b.x.saturating_sub(reach + R as u32),
        y: b.y.saturating_sub(R as u32 + 1),
        w: 0,
        h: 0,
    };
    let right = (b.right() + reach + R as u32).min(cols);
    let bottom = (b.bottom() + R as u32 + 1).min(rows);
    let area = Rect {
        w: right - area.x,
        h: bottom - area.y,
        ..area
    };
    let (c, r) = (area.w as usize, area.h as usize);
    let mut crop = Vec::with_capacity(c * r);
    for y in area.y..area.bottom() {
        crop.extend_from_slice(
            &grey[(y * cols + area.x) as usize..(y * cols + area.right()) as usize],
        );
    }
    let (top, black) = stroke_contrast(&crop, c, r);
    let at = |x: u32, y: u32| ((y - area.y) as usize) * c + (x - area.x) as usize;
    // Polarity and ink of the text in the box.
    let (mut nb, mut nd) = (0u32, 0u32);
    for y in b.y..b.bottom() {
        for x in b.x..b.right() {
            let i = at(x, y);
            nb += (top[i] >= MIN_CONTRAST) as u32;
            nd += (black[i] >= MIN_CONTRAST) as u32;
        }
    }
    if nb.max(nd) < 3 {
        return b;
    }
    let bright = nb >= nd;
    let hat = if bright { &top } else { &black };
    let mut inks: Vec<u32> = Vec::new();
    for y in b.y..b.bottom() {
        for x in b.x..b.right() {
            let i = at(x, y);
            if hat[i] >= MIN_CONTRAST {
                inks.push(if bright {
                    crop[i] as u32
                } else {
                    255 - crop[i] as u32
                });
            }
        }
    }
    inks.sort_unstable();
    // The text's ink: its brightest (darkest) strokes; anti-aliased edges and thin strokes of
    // small glyphs fall short of it, texture usually falls further.
    let ink = inks[inks.len() * 9 / 10];
    let floor = ink.saturating_sub(if h < 12 { 64 } else { 40 });
    let need = if h < 10 { 1 } else { 2 };
    // Ink of the text's kind on the box's rows, without horizontal lines (a stroke run longer
    // than two glyph heights is a rule, a border or a bright tissue layer, not a letter).
    let mut ink_px = vec![false; c * b.h as usize];
    for y in b.y..b.bottom() {
        let row = &mut ink_px[(y - b.y) as usize * c..(y - b.y + 1) as usize * c];
        for (xi, p) in row.iter_mut().enumerate() {
            let i = at(area.x + xi as u32, y);
            let v = if bright {
                crop[i] as u32
            } else {
                255 - crop[i] as u32
            };
            *p = hat[i] >= MIN_CONTRAST && v >= floor;
        }
        let long = (2 * h).max(12) as usize;
        let mut start = 0;
        while start < c {
            if !row[start] {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < c && row[end] {
                end += 1;
            }
            if end - start > long {
                row[start..end].iter_mut().for_each(|p| *p = false);
            }
            start = end;
        }
    }
    let inky = |x: u32| {
        let xi = (x - area.x) as usize;
        (0..b.h as usize).filter(|&yi| ink_px[yi * c + xi]).count() >= need
    };
    let max_gap = h.max(6);
    let (mut x0, mut x1) = (b.x, b.right());
    let mut gap = 0;
    let mut x = b.right();
    while x < (b.right() + reach).min(cols) && gap <= max_gap {
        if inky(x) {
            x1 = x + 1;
            gap = 0;
        } else {
            gap += 1;
        }
        x += 1;
    }
    gap = 0;
    let mut x = b.x;
    while x > b.x.saturating_sub(reach) && gap <= max_gap {
        x -= 1;
        if inky(x) {
            x0 = x;
            gap = 0;
        } else {
            gap += 1;
        }
    }
    Rect {
        x: x0,
        y: b.y,
        w: x1 - x0,
        h: b.h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_min_and_max_match_the_naive_filter() {
        let src: Vec<u8> = (0..37u32).map(|i| ((i * 97 + 13) % 251) as u8).collect();
        for r in [1usize, 2, 5] {
            for max in [false, true] {
                let mut dst = vec![0u8; src.len()];
                let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
                filter_1d(&src, &mut dst, r, max, &mut a, &mut b, &mut c);
                for (i, got) in dst.iter().enumerate() {
                    let lo = i.saturating_sub(r);
                    let hi = (i + r).min(src.len() - 1);
                    let w = src[lo..=hi].iter();
                    let want = if max {
                        *w.max().unwrap()
                    } else {
                        *w.min().unwrap()
                    };
                    assert_eq!(*got, want, "r={r} max={max} i={i}");
                }
            }
        }
    }
}
