//! The decision of what text to remove from one instance ([`Cleaner::analyze`]), as named
//! steps: read each frame (OCR, pixel lines, closer looks), fit OCR's boxes to the pixel lines,
//! decide word by word, then turn removed words and lines into rectangles.

use std::collections::{BTreeMap, BTreeSet};

use dicom_object::InMemDicomObject;

use crate::{
    covered_area, detect, glyphs, identifiers, merge, overlap, width_covered, Analysis, Cleaner,
    Identifiers, LineBox, PixelError, Pixels, Rect, TextBox,
};

/// Bounds on the work spent per frame and on what counts as annotation text. Defaults were
/// set on the ultrasound and secondary-capture samples (docs/pixels.md); raising the look
/// budgets finds more on busy images at more OCR time per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// At most this many second-look crops (text-like blocks no confident word covers) per
    /// OCR'd frame.
    pub max_second_looks: usize,
    /// At most this many glyph lines read on their own per OCR'd frame.
    pub max_line_looks: usize,
    /// Of which at most this many weak lines (mostly texture that lines up by chance).
    pub max_weak_line_looks: usize,
    /// Taller word boxes are not rendered annotation text (the usual fonts are 8–40 px).
    pub max_text_height: u32,
    /// Glyph lines are upscaled for their closer look until glyphs are about this tall.
    pub line_look_glyph_height: u32,
    /// In a cine, an unmatched word seen in one OCR'd frame only is removed only at this
    /// confidence or more (moving speckle reads as letters now and then).
    pub cine_single_frame_confidence: f32,
    /// A word on a removed line with at least this confidence goes with the line.
    pub line_neighbour_confidence: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_second_looks: 16,
            max_line_looks: 24,
            max_weak_line_looks: 8,
            max_text_height: 64,
            line_look_glyph_height: 32,
            cine_single_frame_confidence: 85.0,
            line_neighbour_confidence: 10.0,
        }
    }
}

/// A line of glyphs reliable enough to stand for text: strong, or three glyphs or more in a box
/// at most twice their height.
fn is_text_line(l: &glyphs::GlyphLine) -> bool {
    l.strong || (l.glyphs >= 3 && l.rect.h <= 2 * l.height)
}

/// Glyphs a screen line needs to be removed in an unflagged image without OCR's word.
const SCREEN_LINE_GLYPHS: u32 = 7;

/// A line the screen sends to OCR in an image nobody flagged: strong, and shaped like a run
/// of text (wider than two and a half times its height), not like a bone septum or a vessel
/// crossing that lines up a few glyph-sized blobs.
fn screens_as_text(l: &glyphs::GlyphLine) -> bool {
    l.strong && 2 * l.rect.w >= 5 * l.rect.h
}

/// What reading the frames gave: words with their frame, and pixel text lines with theirs.
#[derive(Default)]
struct Reading {
    words: Vec<(u32, detect::FoundWord)>,
    lines: Vec<(u32, glyphs::GlyphLine)>,
    frames_ocr: Vec<u32>,
    frames_with_text_like_blocks: u32,
    /// Frames identical to the one before, not looked at again.
    frames_repeated: u32,
    /// Regions the screen of an unflagged image found text-like.
    screen_candidates: Vec<crate::ScreenCandidate>,
    /// Next line key: each OCR call's lines are numbered from its own base.
    line_base: u32,
}

impl Reading {
    fn next_base(&mut self) -> u32 {
        let b = self.line_base;
        self.line_base += 10_000;
        b
    }
}

/// One instance being analysed.
struct Frames<'a> {
    cleaner: &'a Cleaner,
    px: &'a Pixels,
    cols: u32,
    rows: u32,
    flagged: bool,
    scale: u32,
}

impl<'a> Frames<'a> {
    fn new(cleaner: &'a Cleaner, px: &'a Pixels, flagged: bool) -> Frames<'a> {
        Frames {
            cleaner,
            px,
            cols: px.cols,
            rows: px.rows,
            flagged,
            scale: cleaner.scale_for(px.cols),
        }
    }

    fn limits(&self) -> &Limits {
        &self.cleaner.config.limits
    }

    fn whole(&self) -> Rect {
        Rect {
            x: 0,
            y: 0,
            w: self.cols,
            h: self.rows,
        }
    }

    /// Where an image nobody flagged may hold text: groups of text-like blocks in which the
    /// pixels also hold a line of glyphs (the screen's two cheap tests, no OCR). Empty means
    /// the frame is cleared. More groups than the look budget: the whole frame is a candidate
    /// (a busy frame is read in full rather than partly).
    fn candidates(&self, grey: &[u8], blocks: &[u32]) -> Vec<Rect> {
        let (cols, rows) = (self.cols, self.rows);
        let groups = detect::uncovered_regions(blocks, cols, rows, &[]);
        if groups.len() > self.limits().max_second_looks.max(1) * 2 {
            return vec![self.whole()];
        }
        let mut out: Vec<Rect> = Vec::new();
        for g in groups {
            let roi = g.grown(detect::BLOCK, cols, rows);
            let lines = glyphs::glyph_lines(grey, cols, rows, Some(roi));
            if let Some(r) = lines
                .iter()
                .filter(|l| screens_as_text(l))
                .map(|l| l.rect)
                .reduce(|a, b| a.union(&b))
            {
                out.push(r.grown(detect::BLOCK / 2, cols, rows));
            }
        }
        merge(out)
    }

    /// One frame's first look: its grey, its text-like blocks, and the regions to read (the
    /// whole frame when flagged, else the screen's candidates, empty when it clears the frame).
    /// None for a frame identical to the one before (a still cine).
    fn look(&self, f: u32) -> Option<(Vec<u8>, Vec<u32>, Vec<Rect>)> {
        if f > 0 && self.px.frame(f) == self.px.frame(f - 1) {
            return None;
        }
        let grey = self.px.grey(f);
        let blocks = detect::text_blocks(&grey, self.cols, self.rows);
        let regions = match self.flagged {
            true => vec![self.whole()],
            false if blocks.is_empty() => Vec::new(),
            false => self.candidates(&grey, &blocks),
        };
        Some((grey, blocks, regions))
    }

    /// Reads every frame that is worth it, skipping frames identical to the one before (a
    /// still cine): a flagged instance's first frame, then frames whose text-like blocks are
    /// mostly new, up to `max_ocr_frames`. Frames nobody flagged are screened first and read
    /// only where the screen finds candidate text, in those regions.
    fn read(&self) -> Result<Reading, PixelError> {
        let mut reading = Reading::default();
        let mut seen: BTreeSet<u32> = BTreeSet::new();
        let config = &self.cleaner.config;
        for f in 0..self.px.frames {
            let Some((grey, blocks, regions)) = self.look(f) else {
                reading.frames_repeated += 1;
                continue;
            };
            if !blocks.is_empty() {
                reading.frames_with_text_like_blocks += 1;
            }
            if !self.flagged && !regions.is_empty() {
                reading.screen_candidates.extend(
                    regions
                        .iter()
                        .map(|&rect| crate::ScreenCandidate { frame: f, rect }),
                );
            }
            let novel = blocks.iter().filter(|b| !seen.contains(b)).count();
            let first = f == 0 && self.flagged;
            let go = config.ocr
                && !regions.is_empty()
                && (reading.frames_ocr.len() as u32) < config.max_ocr_frames
                && (first || novel >= 3 || (!self.flagged && novel >= 1));
            if !go {
                continue;
            }
            seen.extend(blocks.iter().copied());
            reading.frames_ocr.push(f);
            self.read_frame(f, &grey, &blocks, &regions, &mut reading)?;
        }
        Ok(reading)
    }

    /// One frame: OCR over the regions, then closer looks at pixel lines and text-like blocks
    /// that the first pass left unread.
    fn read_frame(
        &self,
        f: u32,
        grey: &[u8],
        blocks: &[u32],
        regions: &[Rect],
        reading: &mut Reading,
    ) -> Result<(), PixelError> {
        let (cols, rows) = (self.cols, self.rows);
        let first_word = reading.words.len();
        for region in regions {
            let base = reading.next_base();
            for w in detect::ocr_region(grey, cols, rows, *region, self.scale, base, false)
                .map_err(PixelError::Ocr)?
            {
                reading.words.push((f, w));
            }
        }
        // Only confidently read words count as covering: a block read as garbage gets a
        // second look too.
        let min = self.cleaner.config.min_confidence;
        let found: Vec<Rect> = reading.words[first_word..]
            .iter()
            .filter(|(_, w)| w.confidence >= min && w.rect.h <= self.limits().max_text_height)
            .map(|(_, w)| w.rect.grown(2, cols, rows))
            .collect();
        let first_line = reading.lines.len();
        for region in regions.iter().filter(|_| self.cleaner.config.pixel_lines) {
            for l in glyphs::glyph_lines(grey, cols, rows, Some(*region)) {
                reading.lines.push((f, l));
            }
        }
        self.look_at_lines(f, grey, first_line, &found, reading)?;
        self.look_at_blocks(f, grey, blocks, regions, &found, reading)
    }

    /// Text lines from the pixels that no confident word covers get a closer look of their
    /// own, upscaled until glyphs are about `line_look_glyph_height` tall.
    fn look_at_lines(
        &self,
        f: u32,
        grey: &[u8],
        first_line: usize,
        found: &[Rect],
        reading: &mut Reading,
    ) -> Result<(), PixelError> {
        let limits = self.limits();
        let mut looks: Vec<glyphs::GlyphLine> = reading.lines[first_line..]
            .iter()
            .map(|(_, l)| l)
            .filter(|l| is_text_line(l) && width_covered(&l.rect, found) * 10 < l.rect.w * 9)
            .cloned()
            .collect();
        looks.sort_by_key(|l| (!l.strong, std::cmp::Reverse(l.glyphs), l.rect.y, l.rect.x));
        let mut weak = 0;
        looks.retain(|l| {
            weak += !l.strong as usize;
            l.strong || weak <= limits.max_weak_line_looks
        });
        let (cols, rows) = (self.cols, self.rows);
        for l in looks.into_iter().take(limits.max_line_looks) {
            let k = limits
                .line_look_glyph_height
                .div_ceil(l.height.max(1))
                .clamp(2, 4);
            let crop = l.rect.grown((l.height / 2).max(4), cols, rows);
            let base = reading.next_base();
            for w in detect::ocr_line(grey, cols, rows, crop, k, base, l.bright)
                .map_err(PixelError::Ocr)?
            {
                // Only words on the line itself (not texture around it read as letters).
                if w.rect.intersects(&l.rect) && w.rect.h <= 2 * l.height + 4 {
                    reading.words.push((f, w));
                }
            }
        }
        Ok(())
    }

    /// Text-like areas the full pass left unread (dark text on light banners, text over
    /// texture), each cropped on its own, plain and inverted, within half the frame's area.
    fn look_at_blocks(
        &self,
        f: u32,
        grey: &[u8],
        blocks: &[u32],
        regions: &[Rect],
        found: &[Rect],
        reading: &mut Reading,
    ) -> Result<(), PixelError> {
        let (cols, rows) = (self.cols, self.rows);
        let mut budget = cols as u64 * rows as u64 / 2;
        for region in detect::uncovered_regions(blocks, cols, rows, found)
            .into_iter()
            .take(self.limits().max_second_looks)
        {
            if region.area() > budget || !regions.iter().any(|r| r.intersects(&region)) {
                continue;
            }
            budget -= region.area();
            let k = if region.h < 48 { 3 } else { self.scale.max(2) };
            let base = reading.next_base();
            for w in detect::ocr_region(grey, cols, rows, region, k, base, true)
                .map_err(PixelError::Ocr)?
            {
                reading.words.push((f, w));
            }
        }
        Ok(())
    }
}

/// Tesseract's box of a word over texture or crossed by a curve often takes in what is above
/// and below (and then fails the glyph-height test, and margins scale with it): where a text
/// line from the pixels runs through the word, the word is as tall as the line.
fn fit_words_to_lines(reading: &mut Reading) {
    let lines = &reading.lines;
    for (f, w) in reading.words.iter_mut() {
        let cx = w.rect.x + w.rect.w / 2;
        if let Some((_, l)) = lines.iter().find(|(g, l)| {
            g == f
                && is_text_line(l)
                && l.rect.x <= cx
                && cx < l.rect.right()
                && l.rect.y >= w.rect.y
                && l.rect.bottom() <= w.rect.bottom()
                && 3 * l.rect.h < 2 * w.rect.h
        }) {
            w.rect.y = l.rect.y;
            w.rect.h = l.rect.h;
        }
    }
}

impl Cleaner {
    /// The screen alone (no OCR): whether some frame of an image nobody flagged holds
    /// candidate text. False clears the image: the pixel stage leaves it as it is.
    pub fn screen(&self, px: &Pixels) -> bool {
        let frames = Frames::new(self, px, false);
        (0..px.frames).any(|f| {
            frames
                .look(f)
                .is_some_and(|(_, _, regions)| !regions.is_empty())
        })
    }

    /// Finds text in the decoded frames and decides what to remove.
    pub fn analyze(
        &self,
        obj: &InMemDicomObject,
        px: &Pixels,
        ids: &Identifiers,
        flagged: bool,
        keep_text: bool,
    ) -> Result<Analysis, PixelError> {
        let (cols, rows) = (px.cols, px.rows);
        let (template_regions, template_names) = self.config.templates.regions_for(obj, rows, cols);
        let mut reading = Frames::new(self, px, flagged).read()?;
        fit_words_to_lines(&mut reading);
        let mut boxes = self.decide_words(&reading, ids, flagged, keep_text);
        self.take_line_neighbours(&mut boxes, &reading);
        let mut greys: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut redaction = self.word_redactions(&boxes, &reading, px, &mut greys);
        let glyph_lines =
            self.decide_lines(&boxes, &reading, flagged, px, &mut greys, &mut redaction);
        // Template regions are blanked whatever OCR read there (a banner known to hold the
        // patient's name); they count as text to remove only where text is seen in them, so a
        // cleaned image, whose banner is already blank, scans clean.
        let min = self.config.min_confidence;
        let template_text = template_regions.iter().any(|t| {
            boxes
                .iter()
                .any(|b| b.rect.intersects(t) && b.confidence >= min / 2.0)
                || glyph_lines.iter().any(|l| l.rect.intersects(t))
        });
        let text_to_remove =
            template_text || boxes.iter().any(|b| b.redact) || glyph_lines.iter().any(|l| l.redact);
        redaction.extend(template_regions.iter().copied());
        let redaction = merge(redaction);
        let redacted_fraction =
            covered_area(&redaction, cols, rows) as f64 / (cols as f64 * rows as f64);
        Ok(Analysis {
            rows,
            columns: cols,
            frames: px.frames,
            photometric: px.photometric.clone(),
            flagged,
            frames_with_text_like_blocks: reading.frames_with_text_like_blocks,
            frames_repeated: reading.frames_repeated,
            screen_candidates: reading.screen_candidates,
            frames_ocr: reading.frames_ocr,
            words: boxes,
            glyph_lines,
            templates: template_names,
            template_regions,
            text_to_remove,
            redaction,
            redacted_fraction,
        })
    }

    /// Word by word: identifier matches always; confident words with three or more letters or
    /// digits; identifier-like patterns at half the confidence.
    fn decide_words(
        &self,
        reading: &Reading,
        ids: &Identifiers,
        flagged: bool,
        keep_text: bool,
    ) -> Vec<TextBox> {
        let limits = &self.config.limits;
        let words = &reading.words;
        let cine = reading.frames_ocr.len() >= 2;
        let mut boxes: Vec<TextBox> = Vec::with_capacity(words.len());
        for (f, w) in words {
            let chars = w.text.chars().filter(|c| !c.is_whitespace()).count();
            let alnum = w.text.chars().filter(|c| c.is_alphanumeric()).count();
            // Where the pre-filter also saw glyph strokes, or the word lies on a text line found
            // from the pixels, half the confidence will do (not in cines, where moving speckle
            // looks like strokes).
            let on_line = reading
                .lines
                .iter()
                .any(|(g, l)| g == f && is_text_line(l) && overlap(&l.rect, &w.rect) >= 0.5);
            // One or two characters read from speckle ("1", "SS", "Ae") are noise unless they
            // sit on a text line: a short patient ID then matches anatomy, and a cine's moving
            // texture yields such "words" on every frame.
            let short_needs_line = alnum >= 3 || on_line;
            let matches = ids.matches(&w.text).filter(|_| short_needs_line);
            let pattern = identifiers::looks_identifying(&w.text);
            // Glyph-sized boxes only: Tesseract also "reads" speckle and anatomy as big,
            // low-confidence, mostly-punctuation words.
            let text_shaped = w.rect.h <= limits.max_text_height && alnum * 2 > chars;
            // In a cine, burned-in text stays put while anatomy moves: an unmatched word seen
            // in one OCR'd frame only must be very confident.
            let steady = !cine
                || w.confidence >= limits.cine_single_frame_confidence
                || words
                    .iter()
                    .any(|(g, o)| g != f && overlap(&o.rect, &w.rect) >= 0.5);
            let min = match (w.second_look || on_line) && !cine && flagged {
                true => self.config.min_confidence / 2.0,
                false => self.config.min_confidence,
            };
            // In an image nobody flagged, anatomy the screen took for text is read as words
            // now and then: a word goes only where the pixels hold a text line under it.
            let located = flagged || on_line;
            // One or two characters identify no one on their own ("CF", "2D", or speckle read
            // as "Zz"): they go only as part of a line with a removed word.
            let redact = matches.is_some()
                || (located && text_shaped && steady && w.confidence >= min && alnum >= 3)
                || (located && text_shaped && steady && pattern && w.confidence >= min / 2.0);
            boxes.push(TextBox {
                frame: *f,
                rect: w.rect,
                confidence: w.confidence,
                matches,
                identifying_pattern: pattern,
                redact,
                text: keep_text.then(|| w.text.clone()),
            });
        }
        boxes
    }

    /// Neighbours on a removed line of about the same height go too (a name's second half read
    /// with low confidence).
    fn take_line_neighbours(&self, boxes: &mut [TextBox], reading: &Reading) {
        let words = &reading.words;
        let line_height: BTreeMap<u32, u32> = boxes
            .iter()
            .zip(words)
            .filter(|(b, _)| b.redact)
            .map(|(b, (_, w))| (w.line, b.rect.h))
            .collect();
        for (b, (_, w)) in boxes.iter_mut().zip(words) {
            if b.redact || !w.text.chars().any(|c| c.is_alphanumeric()) {
                continue;
            }
            let Some(&h) = line_height.get(&w.line) else {
                continue;
            };
            if b.rect.h <= h * 2
                && b.rect.h * 2 >= h
                && b.confidence >= self.config.limits.line_neighbour_confidence
            {
                b.redact = true;
            }
        }
    }

    /// Rectangles for removed words: each word with a margin (identifiers with a few glyph
    /// widths each side), grown along its row over its own ink, and each removed line as one
    /// box (covers the gaps where OCR split or dropped a character).
    fn word_redactions(
        &self,
        boxes: &[TextBox],
        reading: &Reading,
        px: &Pixels,
        greys: &mut BTreeMap<u32, Vec<u8>>,
    ) -> Vec<Rect> {
        let (cols, rows) = (px.cols, px.rows);
        let margin = self.config.margin;
        let mut line_boxes: BTreeMap<(u32, u32), Rect> = BTreeMap::new();
        for (b, (f, w)) in boxes.iter().zip(&reading.words).filter(|(b, _)| b.redact) {
            line_boxes
                .entry((*f, w.line))
                .and_modify(|r| *r = r.union(&b.rect))
                .or_insert(b.rect);
        }
        let mut redaction: Vec<Rect> = Vec::new();
        for b in boxes.iter().filter(|b| b.redact) {
            let mut r = b.rect.grown(margin + b.rect.h / 4, cols, rows);
            if b.matches.is_some() || b.identifying_pattern {
                // An identifier rarely stands alone ("DOB", a first name, the rest of an ID
                // that OCR dropped): take a few glyph widths on each side too.
                let side = 3 * b.rect.h;
                let x = r.x.saturating_sub(side);
                let right = (r.right() + side).min(cols);
                r = Rect {
                    x,
                    y: r.y,
                    w: right - x,
                    h: r.h,
                };
            }
            redaction.push(r);
        }
        for b in boxes.iter().filter(|b| b.redact && self.config.pixel_lines) {
            let grey = greys.entry(b.frame).or_insert_with(|| px.grey(b.frame));
            let e = glyphs::extend_along_row(grey, cols, rows, b.rect);
            if e.w > b.rect.w {
                redaction.push(e.grown(margin + b.rect.h / 4, cols, rows));
            }
        }
        for r in line_boxes.values() {
            // A line box's height can exceed a word's; use the margin of its smallest word.
            let m = margin + r.h.min(self.config.limits.max_text_height) / 6;
            redaction.push(r.grown(m, cols, rows));
        }
        redaction
    }

    /// Whole text lines from the pixels: a line holding a removed word goes entirely (OCR often
    /// reads only part of a line over speckle or across an edge); in a flagged image a strong
    /// line goes even if OCR read nothing in it (in a cine only where it stays put).
    fn decide_lines(
        &self,
        boxes: &[TextBox],
        reading: &Reading,
        flagged: bool,
        px: &Pixels,
        greys: &mut BTreeMap<u32, Vec<u8>>,
        redaction: &mut Vec<Rect>,
    ) -> Vec<LineBox> {
        let (cols, rows) = (px.cols, px.rows);
        let lines = &reading.lines;
        let cine = reading.frames_ocr.len() >= 2;
        let mut glyph_lines = Vec::with_capacity(lines.len());
        for (f, l) in lines {
            let holds_removed = l.strong
                && boxes.iter().any(|b| {
                    b.redact
                        && b.frame == *f
                        && b.rect.intersects(&l.rect)
                        && b.rect.h <= 3 * l.height
                        && l.height <= 3 * b.rect.h
                });
            // In an image nobody flagged, a long run of text-shaped glyphs goes even when OCR reads
            // nothing in it: on the real clean CT and MR series no screen line has more than six
            // glyphs (docs/pixels.md), a name, ID or date has seven or more.
            let long_run = !flagged && screens_as_text(l) && l.glyphs >= SCREEN_LINE_GLYPHS;
            let redact = holds_removed
                || long_run
                || (flagged && l.strong && (!cine || stays_put(*f, l, lines)));
            if redact {
                let grey = greys.entry(*f).or_insert_with(|| px.grey(*f));
                let e = glyphs::extend_along_row(grey, cols, rows, l.rect);
                redaction.push(e.grown(self.config.margin + l.height / 4, cols, rows));
            }
            glyph_lines.push(LineBox {
                frame: *f,
                rect: l.rect,
                glyphs: l.glyphs,
                strong: l.strong,
                redact,
            });
        }
        glyph_lines
    }
}

/// Burned-in text stays in place from frame to frame; speckle that happens to line up does
/// not. Same rows and one end within 2 px on another OCR'd frame (texture touching the other
/// end changes how far a line seems to reach).
fn stays_put(f: u32, l: &glyphs::GlyphLine, lines: &[(u32, glyphs::GlyphLine)]) -> bool {
    lines.iter().any(|(g, o)| {
        *g != f
            && o.rect.y.abs_diff(l.rect.y) <= 2
            && o.rect.bottom().abs_diff(l.rect.bottom()) <= 2
            && (o.rect.x.abs_diff(l.rect.x) <= 2 || o.rect.right().abs_diff(l.rect.right()) <= 2)
    })
}
