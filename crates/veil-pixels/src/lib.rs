//! Veil's pixel stage (DICOM PS3.15 Clean Pixel Data Option): finds identifying text burned
//! into pixel data and removes it, for every encoding dicom-rs decodes.
//!
//! This crate owns: decoding frames of any supported transfer syntax into one working form
//! ([`image::Pixels`]); detection by region templates ([`templates`]) and by Tesseract OCR
//! ([`ocr`], loaded at run time) behind a cheap text-likeness pre-filter ([`detect`]), and text
//! lines found from the pixels alone ([`glyphs`]) that OCR reads partly or not at all; the
//! decision of which text to remove ([`Cleaner::analyze`], its bounds in [`Limits`]); redaction with a margin on every
//! frame and re-encoding that keeps native native and never adds a lossy pass
//! ([`image::Pixels::write_back`]); human-review previews ([`preview`]). [`PixelCleaner`] plugs it
//! into `veil-pipeline` as its [`veil_pipeline::PixelStage`].
//!
//! Every other image goes through a screen ([`Cleaner::screen`]: text-like blocks, then a
//! strong run of glyphs in them) and is read by OCR only where the screen finds candidates.
//!
//! Fail closed: an instance flagged for burned-in text, or an image whose screen finds text,
//! that cannot be decoded, OCR'd or re-encoded is an `Err` (the pipeline quarantines it); an
//! instance with nothing to remove is not touched (its Pixel Data stays byte-identical).

mod analyze;
pub mod detect;
mod error;
pub mod glyphs;
pub mod identifiers;
pub mod image;
pub mod ocr;
pub mod preview;
pub mod templates;

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use serde::Serialize;
use veil_pipeline::{PixelOutcome, PixelStage};

pub use analyze::Limits;
pub use error::PixelError;
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
    /// Screen images nobody flagged (not a risky modality, Burned In Annotation not YES) for
    /// burned-in text: every frame goes through the cheap screen (text-like blocks, then glyph
    /// lines in them), and only the regions it finds go to OCR. A frame the screen clears is
    /// not read, and an image with nothing to remove keeps its Pixel Data byte for byte.
    pub screen_unflagged: bool,
    /// At most this many frames of one multi-frame instance go to OCR (frame 0 always; then the
    /// frames whose text-like blocks are new).
    pub max_ocr_frames: u32,
    /// Also find text lines from the pixels alone ([`glyphs`]) on OCR'd frames: read them
    /// closely, grow removed words to whole lines, and in flagged instances remove strong lines
    /// OCR did not read. Off: OCR's words only (for comparison).
    pub pixel_lines: bool,
    /// Work bounds and text-shape thresholds of the analysis.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            templates: Templates::builtin(),
            ocr: true,
            ocr_scale: 0,
            min_confidence: 60.0,
            margin: 4,
            screen_unflagged: true,
            max_ocr_frames: 6,
            pixel_lines: true,
            limits: Limits::default(),
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

/// A region of an unflagged image the screen sent to OCR.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScreenCandidate {
    pub frame: u32,
    pub rect: Rect,
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
    /// Frames identical to the frame before, skipped (still cines).
    pub frames_repeated: u32,
    /// In an unflagged image, the regions the screen found text-like (read by OCR, up to
    /// `max_ocr_frames` frames). Empty: the screen cleared every frame.
    pub screen_candidates: Vec<ScreenCandidate>,
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

/// The pixel cleaner.
#[derive(Debug, Clone, Default)]
pub struct Cleaner {
    pub config: Config,
}

fn upper(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.get(tag)
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

    /// Decodes and analyses an instance without changing it.
    pub fn scan(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        flagged: bool,
        keep_text: bool,
    ) -> Result<(Pixels, Analysis), PixelError> {
        // Unflagged images need Tesseract only where the screen finds candidate text (reading
        // them fails then, and the instance is held back).
        if self.config.ocr && flagged {
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
    ) -> Result<(PixelOutcome, Option<Analysis>), PixelError> {
        if file.get(tags::PIXEL_DATA).is_none() {
            return Ok((PixelOutcome::default(), None));
        }
        let file_ref: &FileDicomObject<InMemDicomObject> = file;
        match self.clean_decoded(file_ref, flagged, || Pixels::decode(file_ref))? {
            None => Ok((PixelOutcome::default(), None)),
            Some((outcome, a, None)) => Ok((outcome, Some(a))),
            Some((outcome, a, Some(px))) => {
                px.write_back(file)?;
                Ok((outcome, Some(a)))
            }
        }
    }

    /// What [`Cleaner::redact`] and [`Cleaner::redact_value`] share: whether to look at all
    /// (None: not flagged and the screen is off), then the pixels `decode` gives analysed, and
    /// filled where text is to be removed (Some pixels to write back; None: left as they are).
    #[allow(clippy::type_complexity)]
    fn clean_decoded(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        flagged: bool,
        decode: impl FnOnce() -> Result<Pixels, PixelError>,
    ) -> Result<Option<(PixelOutcome, Analysis, Option<Pixels>)>, PixelError> {
        let flagged = flagged || header_flagged(file);
        if !flagged && !self.config.screen_unflagged {
            return Ok(None);
        }
        // Unflagged images need Tesseract only where the screen finds candidate text (reading
        // them fails then, and the instance is held back).
        if self.config.ocr && flagged {
            ocr::available()?;
        }
        let mut px = decode()?;
        let a = self.analyze(file, &px, &Identifiers::of(file), flagged, false)?;
        let outcome = PixelOutcome {
            frames_scanned: px.frames as u64,
            regions_redacted: a.redaction.len() as u64,
            modified: !a.redaction.is_empty(),
        };
        if a.redaction.is_empty() {
            return Ok(Some((outcome, a, None)));
        }
        px.fill(&a.redaction);
        Ok(Some((outcome, a, Some(px))))
    }
}

impl Cleaner {
    /// [`Cleaner::redact`] for native little-endian Pixel Data held as its value bytes (`value`)
    /// beside a `file` parsed without it: the new value (same length and layout) when text was
    /// removed, None when the pixels stay as they are. The instance is never parsed whole, so a
    /// worker holds the source, one decoded copy and the output, not two more copies of a cine.
    pub fn redact_value(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        flagged: bool,
        value: &[u8],
    ) -> Result<(PixelOutcome, Option<Vec<u8>>), PixelError> {
        match self.clean_decoded(file, flagged, || Pixels::from_native_value(file, value))? {
            None => Ok((PixelOutcome::default(), None)),
            Some((outcome, _, None)) => Ok((outcome, None)),
            Some((outcome, _, Some(px))) => Ok((outcome, Some(px.into_native_value(value)?))),
        }
    }
}

/// For an output verifier: OCRs a released instance and returns where text matching the
/// *source's* identifiers survives (frame, box, kind; never the value). Empty means clean.
pub fn surviving_identifiers(
    source_identifiers: &Identifiers,
    output: &FileDicomObject<InMemDicomObject>,
) -> Result<Vec<(u32, Rect, Kind)>, PixelError> {
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

/// The value of a carried top-level Pixel Data element (tag, VR, length, value as in the
/// source) when it is native and little-endian; None otherwise.
fn native_value<'a>(
    file: &FileDicomObject<InMemDicomObject>,
    element: &'a [u8],
) -> Option<&'a [u8]> {
    let ts = file.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    let header = match ts {
        "1.2.840.10008.1.2" => 8,
        "1.2.840.10008.1.2.1" => 12,
        _ => return None,
    };
    let len = u32::from_le_bytes(element.get(header - 4..header)?.try_into().ok()?);
    if len == u32::MAX {
        return None;
    }
    element.get(header..header + len as usize)
}

/// The `veil-pipeline` pixel stage: removes burned-in text from flagged instances and (with
/// `screen_unflagged`, the default) from every other image where the screen finds it.
pub struct PixelCleaner {
    pub cleaner: Cleaner,
}

impl PixelStage for PixelCleaner {
    fn clean_carried(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        risk: Option<&str>,
        element: &[u8],
    ) -> Option<Result<(PixelOutcome, Option<Vec<u8>>), veil_pipeline::PixelRefusal>> {
        let value = native_value(file, element)?;
        Some(
            self.cleaner
                .redact_value(file, risk.is_some(), value)
                .map_err(|e| veil_pipeline::PixelRefusal(format!("pixel stage: {e}"))),
        )
    }

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

    fn needs_pixels(
        &self,
        file: &FileDicomObject<InMemDicomObject>,
        risk: Option<&str>,
        carried: Option<&[u8]>,
    ) -> bool {
        // `redact` reads the pixels of flagged instances, and of the others where the screen
        // finds candidate text: screened here on the carried bytes when they are native
        // little-endian, else (compressed, big endian) after the parser decodes them.
        if risk.is_some() || header_flagged(file) {
            return true;
        }
        if !self.cleaner.config.screen_unflagged {
            return false;
        }
        match carried.and_then(|el| native_value(file, el)) {
            Some(value) => match Pixels::from_native_value(file, value) {
                Ok(px) => self.cleaner.screen(&px),
                // Undecodable here: the full path decides (and holds it back with the reason).
                Err(_) => true,
            },
            None => true,
        }
    }
}
