//! Veil's pixel stage (DICOM PS3.15 Clean Pixel Data Option): finds identifying text burned
//! into pixel data and removes it, for every encoding dicom-rs decodes.
//!
//! This crate owns: decoding frames of any supported transfer syntax into one working form
//! ([`image::Pixels`]); detection by region templates ([`templates`]) and by Tesseract OCR
//! ([`ocr`], loaded at run time) behind a cheap text-likeness pre-filter ([`detect`]), and text
//! lines found from the pixels alone ([`glyphs`]) that OCR reads partly or not at all; the
//! decision of which text to remove ([`Cleaner::analyze`]); redaction with a margin on every
//! frame and re-encoding that keeps native native and never adds a lossy pass
//! ([`image::Pixels::write_back`]); human-review previews ([`preview`]). [`PixelCleaner`] plugs it
//! into `veil-pipeline` as its [`veil_pipeline::PixelStage`].
//!
//! Fail closed: an instance flagged for burned-in text that cannot be decoded, OCR'd or
//! re-encoded is an `Err` (the pipeline quarantines it); an instance with nothing to remove is
//! not touched (its Pixel Data stays byte-identical).

pub mod detect;
pub mod glyphs;
pub mod identifiers;
pub mod image;
pub mod ocr;
pub mod preview;
pub mod templates;

use std::collections::BTreeSet;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use serde::Serialize;
use veil_pipeline::{PixelOutcome, PixelStage};

pub use identifiers::{Identifiers, Kind};
pub use image::{Pixels, Rect};
pub use templates::Templates;

/// How the cleaner looks for text.
#[derive(Debug, Clone)]
pub struct Config {
    /// Region templates applied unconditionally when they match.
    pub templates: Templates,
    /// Run OCR (off: templates only).
    pub ocr: bool,
    /// OCR upscale factor; 0 = automatic (2× up to 1024 columns, else 1×).
    pub ocr_scale: u32,
    /// Words below this confidence are removed only when they match an identifier or sit on a
    /// line with removed words.
    pub min_confidence: f32,
    /// Extra pixels around each removed word (plus a quarter of its height).
    pub margin: u32,
    /// Also look at images nobody flagged (not a risky modality, Burned In Annotation not YES):
    /// only their top and bottom margin bands, and only where the pre-filter sees text.
    pub scan_unflagged: bool,
    /// Fraction of rows forming each margin band for unflagged images.
    pub margin_band: f32,
    /// At most this many frames of one multi-frame instance go to OCR (frame 0 always; then the
    /// frames whose text-like blocks are new).
    pub max_ocr_frames: u32,
    /// Also find text lines from the pixels alone ([`glyphs`]) on OCR'd frames: read them
    /// closely, grow removed words to whole lines, and in flagged instances remove strong lines
    /// OCR did not read. Off: OCR's words only (for comparison).
    pub pixel_lines: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            templates: Templates::builtin(),
            ocr: true,
            ocr_scale: 0,
            min_confidence: 60.0,
            margin: 4,
            scan_unflagged: false,
            margin_band: 0.15,
            max_ocr_frames: 6,
            pixel_lines: true,
        }
    }
}

/// A word found in a frame.
#[derive(Debug, Clone, Serialize)]
pub struct TextBox {
    pub frame: u32,
    pub rect: Rect,
    pub confidence: f32,
    /// The file's own identifier this text matches (the kind, never the value).
    pub matches: Option<Kind>,
    /// Looks like a date or number even if it matches nothing in the header.
    pub identifying_pattern: bool,
    /// Will be (or was) removed.
    pub redact: bool,
    /// The recognised text: only when asked for (`--show-text`), since it may be identifying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A text line found from the pixels alone (no OCR): glyphs of one height on one baseline.
#[derive(Debug, Clone, Serialize)]
pub struct LineBox {
    pub frame: u32,
    pub rect: Rect,
    pub glyphs: u32,
    /// Enough glyphs of one height, baseline and ink to be text without OCR's word.
    pub strong: bool,
    /// Will be (or was) removed: it holds a removed word, or it is strong in a flagged image.
    pub redact: bool,
}

/// What was found in one instance.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub photometric: String,
    pub flagged: bool,
    /// Frames the pre-filter found text-like blocks in.
    pub frames_with_text_like_blocks: u32,
    /// Frames that went to OCR.
    pub frames_ocr: Vec<u32>,
    pub words: Vec<TextBox>,
    /// Text lines found from the pixels alone ([`glyphs`]) on the OCR'd frames.
    pub glyph_lines: Vec<LineBox>,
    pub templates: Vec<String>,
    pub template_regions: Vec<Rect>,
    /// Text was found that the cleaner removes (a removed word or line, or text inside a
    /// template region). False for an image whose text was already blanked.
    pub text_to_remove: bool,
    /// Rectangles blanked on every frame.
    pub redaction: Vec<Rect>,
    /// Share of the frame area blanked.
    pub redacted_fraction: f64,
}

/// At most this many second-look crops per OCR'd frame.
const MAX_SECOND_LOOKS: usize = 16;

/// At most this many glyph lines read on their own per OCR'd frame.
const MAX_LINE_LOOKS: usize = 24;

/// Of which at most this many weak lines (mostly texture that lines up by chance).
const MAX_WEAK_LINE_LOOKS: usize = 8;

/// Taller word boxes are not rendered annotation text (at the usual 8–40 px font sizes).
const MAX_TEXT_HEIGHT: u32 = 64;

/// The pixel cleaner.
#[derive(Debug, Clone, Default)]
pub struct Cleaner {
    pub config: Config,
}

fn upper(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_ascii_uppercase()))
        .unwrap_or_default()
}

/// Is the instance flagged for burned-in text from its header (Burned In Annotation YES)?
pub fn header_flagged(obj: &InMemDicomObject) -> bool {
    upper(obj, tags::BURNED_IN_ANNOTATION) == "YES"
}

impl Cleaner {
    pub fn new(config: Config) -> Cleaner {
        Cleaner { config }
    }

    fn scale_for(&self, cols: u32) -> u32 {
        match self.config.ocr_scale {
            0 if cols <= 1024 => 2,
            0 => 1,
            k => k.min(4),
        }
    }

    /// Finds text in the decoded frames and decides what to remove.
    pub fn analyze(
        &self,
        obj: &InMemDicomObject,
        px: &Pixels,
        ids: &Identifiers,
        flagged: bool,
        keep_text: bool,
    ) -> Result<Analysis, String> {
        let (cols, rows) = (px.cols, px.rows);
        let (template_regions, template_names) = self.config.templates.regions_for(obj, rows, cols);
        let mut words: Vec<(u32, detect::FoundWord)> = Vec::new();
        let mut frames_ocr = Vec::new();
        let mut text_like = 0u32;
        let bx = cols.div_ceil(detect::BLOCK);
        let band = ((rows as f32 * self.config.margin_band).ceil() as u32).max(detect::BLOCK);
        let in_band = |b: u32| {
            let y = (b / bx) * detect::BLOCK;
            y < band || y + detect::BLOCK > rows.saturating_sub(band)
        };
        let mut seen: BTreeSet<u32> = BTreeSet::new();
        let scale = self.scale_for(cols);
        let mut line_base = 0u32;
        let mut text_lines: Vec<(u32, glyphs::GlyphLine)> = Vec::new();
        for f in 0..px.frames {
            let grey = px.grey(f);
            let mut blocks = detect::text_blocks(&grey, cols, rows);
            if !flagged {
                blocks.retain(|b| in_band(*b));
            }
            if !blocks.is_empty() {
                text_like += 1;
            }
            let novel = blocks.iter().filter(|b| !seen.contains(b)).count();
            let first = f == 0 && flagged;
            let go = self.config.ocr
                && (frames_ocr.len() as u32) < self.config.max_ocr_frames
                && (first || novel >= 3);
            if !go {
                continue;
            }
            seen.extend(blocks.iter().copied());
            frames_ocr.push(f);
            let regions = if flagged {
                vec![Rect {
                    x: 0,
                    y: 0,
                    w: cols,
                    h: rows,
                }]
            } else {
                vec![
                    Rect {
                        x: 0,
                        y: 0,
                        w: cols,
                        h: band.min(rows),
                    },
                    Rect {
                        x: 0,
                        y: rows.saturating_sub(band),
                        w: cols,
                        h: band.min(rows),
                    },
                ]
            };
            let first_word = words.len();
            for region in &regions {
                for w in detect::ocr_region(&grey, cols, rows, *region, scale, line_base, false)? {
                    words.push((f, w));
                }
                line_base += 10_000;
            }
            // Second look at text-like areas the full pass left unread (dark text on light
            // banners, text over texture), each cropped on its own, plain and inverted.
            // Only confidently read words count as covering: a block read as garbage gets a
            // second look too.
            let found: Vec<Rect> = words[first_word..]
                .iter()
                .filter(|(_, w)| {
                    w.confidence >= self.config.min_confidence && w.rect.h <= MAX_TEXT_HEIGHT
                })
                .map(|(_, w)| w.rect.grown(2, cols, rows))
                .collect();
            // Text lines from the pixels alone; those no confident word covers get a closer
            // look of their own, upscaled until glyphs are about 32 px tall.
            let first_line = text_lines.len();
            for region in regions.iter().filter(|_| self.config.pixel_lines) {
                for l in glyphs::glyph_lines(&grey, cols, rows, Some(*region)) {
                    text_lines.push((f, l));
                }
            }
            let mut looks: Vec<&glyphs::GlyphLine> = text_lines[first_line..]
                .iter()
                .map(|(_, l)| l)
                .filter(|l| {
                    (l.strong || (l.glyphs >= 3 && l.rect.h <= 2 * l.height))
                        && width_covered(&l.rect, &found) * 10 < l.rect.w * 9
                })
                .collect();
            looks.sort_by_key(|l| (!l.strong, std::cmp::Reverse(l.glyphs), l.rect.y, l.rect.x));
            let mut weak = 0;
            looks.retain(|l| {
                weak += !l.strong as usize;
                l.strong || weak <= MAX_WEAK_LINE_LOOKS
            });
            for l in looks.into_iter().take(MAX_LINE_LOOKS) {
                let k = 32u32.div_ceil(l.height.max(1)).clamp(2, 4);
                let crop = l.rect.grown((l.height / 2).max(4), cols, rows);
                for w in detect::ocr_line(&grey, cols, rows, crop, k, line_base, l.bright)? {
                    // Only words on the line itself (not texture around it read as letters).
                    if w.rect.intersects(&l.rect) && w.rect.h <= 2 * l.height + 4 {
                        words.push((f, w));
                    }
                }
                line_base += 10_000;
            }
            let frame_area = cols as u64 * rows as u64;
            let mut budget = frame_area / 2;
            for region in detect::uncovered_regions(&blocks, cols, rows, &found)
                .into_iter()
                .take(MAX_SECOND_LOOKS)
            {
                if region.area() > budget || !regions.iter().any(|r| r.intersects(&region)) {
                    continue;
                }
                budget -= region.area();
                let k = if region.h < 48 { 3 } else { scale.max(2) };
                for w in detect::ocr_region(&grey, cols, rows, region, k, line_base, true)? {
                    words.push((f, w));
                }
                line_base += 10_000;
            }
        }

        // Tesseract's box of a word over texture or crossed by a curve often takes in what is
        // above and below (and then fails the glyph-height test, and margins scale with it):
        // where a text line from the pixels runs through the word, the word is as tall as the line.
        for (f, w) in words.iter_mut() {
            let cx = w.rect.x + w.rect.w / 2;
            if let Some((_, l)) = text_lines.iter().find(|(g, l)| {
                g == f
                    && (l.strong || (l.glyphs >= 3 && l.rect.h <= 2 * l.height))
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
        // Decide: identifier matches always; confident words with two or more letters/digits;
        // identifier-like patterns at half the confidence; then whole lines of removed words.
        let min = self.config.min_confidence;
        let mut boxes: Vec<TextBox> = Vec::with_capacity(words.len());
        let mut lines: BTreeSet<u32> = BTreeSet::new();
        let cine = frames_ocr.len() >= 2;
        for (f, w) in &words {
            let chars = w.text.chars().filter(|c| !c.is_whitespace()).count();
            let alnum = w.text.chars().filter(|c| c.is_alphanumeric()).count();
            // Where the pre-filter also saw glyph strokes, or the word lies on a text line found
            // from the pixels, half the confidence will do (not in cines, where moving speckle
            // looks like strokes).
            let on_line = text_lines.iter().any(|(g, l)| {
                g == f
                    && (l.strong || (l.glyphs >= 3 && l.rect.h <= 2 * l.height))
                    && overlap(&l.rect, &w.rect) >= 0.5
            });
            // One or two characters read from speckle ("1", "SS", "Ae") are noise unless they
            // sit on a text line: a short patient ID then matches anatomy, and a cine's moving
            // texture yields such "words" on every frame.
            let short_needs_line = alnum >= 3 || on_line;
            let matches = ids.matches(&w.text).filter(|_| short_needs_line);
            let pattern = identifiers::looks_identifying(&w.text);
            // Glyph-sized boxes only: Tesseract also "reads" speckle and anatomy as big,
            // low-confidence, mostly-punctuation words.
            let text_shaped = w.rect.h <= MAX_TEXT_HEIGHT && alnum * 2 > chars;
            // In a cine, burned-in text stays put while anatomy moves: an unmatched word seen
            // in one OCR'd frame only must be very confident.
            let steady = frames_ocr.len() < 2
                || w.confidence >= 85.0
                || words
                    .iter()
                    .any(|(g, o)| g != f && overlap(&o.rect, &w.rect) >= 0.5);
            let min = if (w.second_look || on_line) && !cine {
                min / 2.0
            } else {
                min
            };
            // One or two characters identify no one on their own ("CF", "2D", or speckle read
            // as "Zz"): they go only as part of a line with a removed word (below).
            let redact = matches.is_some()
                || (text_shaped && steady && w.confidence >= min && alnum >= 3)
                || (text_shaped && steady && pattern && w.confidence >= min / 2.0);
            if redact {
                lines.insert(w.line);
            }
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
        // Neighbours on a removed line (a name's second half read with low confidence).
        let line_height: std::collections::BTreeMap<u32, u32> = boxes
            .iter()
            .zip(&words)
            .filter(|(b, _)| b.redact)
            .map(|(b, (_, w))| (w.line, b.rect.h))
            .collect();
        for (b, (_, w)) in boxes.iter_mut().zip(&words) {
            if b.redact || !lines.contains(&w.line) || !w.text.chars().any(|c| c.is_alphanumeric())
            {
                continue;
            }
            let h = line_height.get(&w.line).copied().unwrap_or(0);
            if b.rect.h <= h * 2 && b.rect.h * 2 >= h && b.confidence >= 10.0 {
                b.redact = true;
            }
        }
        // Each removed line as one box (covers the gaps between its words, where OCR may have
        // split or dropped a character), plus a margin.
        let mut line_boxes: std::collections::BTreeMap<(u32, u32), Rect> =
            std::collections::BTreeMap::new();
        for (b, (f, w)) in boxes.iter().zip(&words) {
            if b.redact {
                line_boxes
                    .entry((*f, w.line))
                    .and_modify(|r| *r = r.union(&b.rect))
                    .or_insert(b.rect);
            }
        }
        let mut redaction: Vec<Rect> = Vec::new();
        for b in boxes.iter().filter(|b| b.redact) {
            let m = self.config.margin + b.rect.h / 4;
            let mut r = b.rect.grown(m, cols, rows);
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
        // Each removed word grown along its row over strokes of its own ink: the rest of a line
        // OCR read only part of.
        let mut greys: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        for b in boxes.iter().filter(|b| b.redact && self.config.pixel_lines) {
            let grey = greys.entry(b.frame).or_insert_with(|| px.grey(b.frame));
            let e = glyphs::extend_along_row(grey, cols, rows, b.rect);
            if e.w > b.rect.w {
                let m = self.config.margin + b.rect.h / 4;
                redaction.push(e.grown(m, cols, rows));
            }
        }
        for r in line_boxes.values() {
            // A line box's height can exceed a word's; use the margin of its smallest word.
            let m = self.config.margin + r.h.min(MAX_TEXT_HEIGHT) / 6;
            redaction.push(r.grown(m, cols, rows));
        }
        // Whole text lines from the pixels: a line holding a removed word goes entirely (OCR
        // often reads only part of a line over speckle or across an edge); in a flagged image a
        // strong line goes even if OCR read nothing in it (in a cine only where it stays put).
        let mut glyph_lines = Vec::with_capacity(text_lines.len());
        for (f, l) in &text_lines {
            let holds_removed = l.strong
                && boxes.iter().any(|b| {
                    b.redact
                        && b.frame == *f
                        && b.rect.intersects(&l.rect)
                        && b.rect.h <= 3 * l.height
                        && l.height <= 3 * b.rect.h
                });
            // Burned-in text stays in place from frame to frame; speckle that happens to line
            // up does not. Same rows and one end within 2 px on another OCR'd frame (texture
            // touching the other end changes how far a line seems to reach).
            let steady = frames_ocr.len() < 2
                || text_lines.iter().any(|(g, o)| {
                    g != f
                        && o.rect.y.abs_diff(l.rect.y) <= 2
                        && o.rect.bottom().abs_diff(l.rect.bottom()) <= 2
                        && (o.rect.x.abs_diff(l.rect.x) <= 2
                            || o.rect.right().abs_diff(l.rect.right()) <= 2)
                });
            let redact = holds_removed || (flagged && l.strong && steady);
            if redact {
                let m = self.config.margin + l.height / 4;
                let grey = greys.entry(*f).or_insert_with(|| px.grey(*f));
                let e = glyphs::extend_along_row(grey, cols, rows, l.rect);
                redaction.push(e.grown(m, cols, rows));
            }
            glyph_lines.push(LineBox {
                frame: *f,
                rect: l.rect,
                glyphs: l.glyphs,
                strong: l.strong,
                redact,
            });
        }
        // Template regions are blanked whatever OCR read there (a banner known to hold the
        // patient's name); they count as text to remove only where text is seen in them, so a
        // cleaned image, whose banner is already blank, scans clean.
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
            frames_with_text_like_blocks: text_like,
            frames_ocr,
            words: boxes,
            glyph_lines,
            templates: template_names,
            template_regions,
            text_to_remove,
            redaction,
            redacted_fraction,
        })
    }

    /// Decodes and analyses an instance without changing it.
    pub fn scan(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        flagged: bool,
        keep_text: bool,
    ) -> Result<(Pixels, Analysis), String> {
        if self.config.ocr {
            ocr::available()?;
        }
        let px = Pixels::decode(file)?;
        let ids = Identifiers::of(file);
        let a = self.analyze(file, &px, &ids, flagged, keep_text)?;
        Ok((px, a))
    }

    /// Removes the text found; returns what was done and the analysis. Leaves the instance
    /// untouched when nothing is to be removed.
    pub fn redact(
        &self,
        file: &mut FileDicomObject<InMemDicomObject>,
        flagged: bool,
    ) -> Result<(PixelOutcome, Option<Analysis>), String> {
        if file.element(tags::PIXEL_DATA).is_err() {
            return Ok((PixelOutcome::default(), None));
        }
        let flagged = flagged || header_flagged(file);
        if !flagged && !self.config.scan_unflagged {
            return Ok((PixelOutcome::default(), None));
        }
        let (mut px, a) = self.scan(file, flagged, false)?;
        let mut outcome = PixelOutcome {
            frames_scanned: px.frames as u64,
            regions_redacted: a.redaction.len() as u64,
            modified: false,
        };
        if a.redaction.is_empty() {
            return Ok((outcome, Some(a)));
        }
        px.fill(&a.redaction);
        px.write_back(file)?;
        outcome.modified = true;
        Ok((outcome, Some(a)))
    }
}

/// For an output verifier: OCRs a released instance and returns where text matching the
/// *source's* identifiers survives (frame, box, kind; never the value). Empty means clean.
pub fn surviving_identifiers(
    source_identifiers: &Identifiers,
    output: &FileDicomObject<InMemDicomObject>,
) -> Result<Vec<(u32, Rect, Kind)>, String> {
    let cleaner = Cleaner::new(Config {
        templates: Templates::default(),
        ..Config::default()
    });
    let (_, a) = cleaner.scan(output, true, true)?;
    Ok(a.words
        .iter()
        .filter_map(|w| {
            let text = w.text.as_deref().unwrap_or("");
            // Three or four letters read out of speckle with low confidence match short
            // tokens by chance; demand a confident reading for those.
            if identifiers::normalize(text).chars().count() < 5 && w.confidence < 50.0 {
                return None;
            }
            let kind = source_identifiers.matches(text)?;
            Some((w.frame, w.rect, kind))
        })
        .collect())
}

/// Intersection over the smaller area.
fn overlap(a: &Rect, b: &Rect) -> f64 {
    let x = a.x.max(b.x);
    let y = a.y.max(b.y);
    let r = a.right().min(b.right());
    let bt = a.bottom().min(b.bottom());
    if r <= x || bt <= y {
        return 0.0;
    }
    ((r - x) as f64 * (bt - y) as f64) / (a.area().min(b.area()).max(1) as f64)
}

/// Columns of `r` under some rectangle of `by` that spans its vertical middle.
fn width_covered(r: &Rect, by: &[Rect]) -> u32 {
    let mid = r.y + r.h / 2;
    let mut cols = vec![false; r.w as usize];
    for b in by.iter().filter(|b| b.y <= mid && mid < b.bottom()) {
        for x in b.x.max(r.x)..b.right().min(r.right()) {
            cols[(x - r.x) as usize] = true;
        }
    }
    cols.iter().filter(|c| **c).count() as u32
}

/// Two boxes on one text row with a gap under a glyph height (the words of one label that OCR
/// split apart).
fn same_row_near(a: &Rect, b: &Rect) -> bool {
    let top = a.y.max(b.y);
    let bottom = a.bottom().min(b.bottom());
    let h = a.h.min(b.h);
    if h == 0 || bottom <= top || (bottom - top) * 10 < h * 6 || a.h.max(b.h) > 2 * h {
        return false;
    }
    let gap = if a.right() <= b.x {
        b.x - a.right()
    } else if b.right() <= a.x {
        a.x - b.right()
    } else {
        0
    };
    gap <= h
}

/// Merges overlapping (or same-row, nearly touching) rectangles, repeatedly, where the union
/// is at most a quarter larger than their areas together: fewer regions in reports, little more
/// blanked.
fn merge(mut rects: Vec<Rect>) -> Vec<Rect> {
    rects.retain(|r| r.area() > 0);
    loop {
        let mut merged = false;
        let mut out: Vec<Rect> = Vec::with_capacity(rects.len());
        for r in rects {
            // Merged only where the union adds little: two boxes forming an L (a label column
            // and a line) stay apart rather than blanking the square they span.
            if let Some(o) = out.iter_mut().find(|o| {
                (o.intersects(&r) || same_row_near(o, &r))
                    && o.union(&r).area() * 4 <= (o.area() + r.area()) * 5
            }) {
                *o = o.union(&r);
                merged = true;
            } else {
                out.push(r);
            }
        }
        rects = out;
        if !merged {
            break;
        }
    }
    rects.sort_by_key(|r| (r.y, r.x, r.w, r.h));
    rects
}

fn covered_area(rects: &[Rect], cols: u32, rows: u32) -> u64 {
    let mut mask = vec![false; cols as usize * rows as usize];
    for r in rects {
        let r = r.grown(0, cols, rows);
        for y in r.y..r.bottom() {
            for m in &mut mask[(y * cols + r.x) as usize..(y * cols + r.right()) as usize] {
                *m = true;
            }
        }
    }
    mask.iter().filter(|m| **m).count() as u64
}

/// The `veil-pipeline` pixel stage: removes burned-in text from flagged instances (and, with
/// `scan_unflagged`, from the margins of the others).
pub struct PixelCleaner {
    pub cleaner: Cleaner,
}

impl PixelStage for PixelCleaner {
    fn clean(
        &self,
        file: &mut FileDicomObject<InMemDicomObject>,
        risk: Option<&str>,
    ) -> Result<PixelOutcome, veil_pipeline::PixelRefusal> {
        self.cleaner
            .redact(file, risk.is_some())
            .map(|(o, _)| o)
            .map_err(|e| veil_pipeline::PixelRefusal(format!("pixel stage: {e}")))
    }

    fn needs_pixels(&self, file: &FileDicomObject<InMemDicomObject>, risk: Option<&str>) -> bool {
        // `redact` looks at the pixels of exactly these instances.
        risk.is_some() || self.cleaner.config.scan_unflagged || header_flagged(file)
    }
}
