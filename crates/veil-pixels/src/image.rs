//! Pixel data in a form the detectors and the redactor can work on, and back.
//!
//! Decoding goes through `dicom-pixeldata` (native, deflate, RLE, JPEG baseline/extended/
//! lossless, JPEG-LS, JPEG 2000). Samples are held interleaved, little-endian, 8 or 16 bits.
//! Writing back follows one rule: native stays native in its own transfer syntax and layout;
//! JPEG-LS lossless is re-encoded as JPEG-LS lossless; every other encapsulated syntax (lossless
//! ones without an encoder in dicom-rs, and every lossy one — never a second lossy pass) becomes
//! Explicit VR Little Endian, with Photometric Interpretation and Lossy Image Compression kept
//! truthful.

use crate::PixelError;
use std::borrow::Cow;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::{PixelDecoder, Transcode};
use dicom_transfer_syntax_registry::entries;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Decoded frames of one instance.
#[derive(Debug, Clone)]
pub struct Pixels {
    pub rows: u32,
    pub cols: u32,
    pub frames: u32,
    pub samples: u16,
    /// 1 or 2.
    pub bytes_per_sample: u8,
    pub signed: bool,
    pub bits_stored: u16,
    /// Photometric interpretation of `data` (after decoding; e.g. JPEG YBR becomes RGB).
    pub photometric: String,
    /// Interleaved samples, little-endian, frame after frame.
    pub data: Vec<u8>,
    /// Palette colour: grey level (0–255) of each palette index, and the darkest index.
    palette: Option<(Vec<u8>, u16)>,
    /// Where the samples came from (decides how to write them back).
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    /// Native pixel data: original VR was OW (16-bit words) or not, planar configuration,
    /// and whether it was YBR_FULL_422 packed.
    Native {
        words: bool,
        planar: bool,
        packed_422: bool,
    },
    /// Encapsulated in this transfer syntax.
    Encapsulated { ts: String },
    /// Native samples the stage reads but does not write (1-bit masks unpacked to 0/255,
    /// 32-bit samples scaled to 16): screened like any image, and held back if text is found.
    ReadOnly { bits_allocated: u16 },
}

/// A rectangle in frame coordinates (inclusive left/top, exclusive right/bottom).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub fn right(&self) -> u32 {
        self.x + self.w
    }
    pub fn bottom(&self) -> u32 {
        self.y + self.h
    }
    pub fn area(&self) -> u64 {
        self.w as u64 * self.h as u64
    }
    /// Grown by `m` on every side, clipped to `cols`×`rows`.
    pub fn grown(&self, m: u32, cols: u32, rows: u32) -> Rect {
        let x = self.x.saturating_sub(m);
        let y = self.y.saturating_sub(m);
        let r = (self.right() + m).min(cols);
        let b = (self.bottom() + m).min(rows);
        Rect {
            x,
            y,
            w: r.saturating_sub(x),
            h: b.saturating_sub(y),
        }
    }
    pub fn intersects(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
    pub fn union(&self, o: &Rect) -> Rect {
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        Rect {
            x,
            y,
            w: self.right().max(o.right()) - x,
            h: self.bottom().max(o.bottom()) - y,
        }
    }
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x && o.y >= self.y && o.right() <= self.right() && o.bottom() <= self.bottom()
    }
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_ascii_uppercase()))
        .unwrap_or_default()
}

/// Why text found in 1-bit or 32-bit samples holds the instance back.
fn read_only_refusal(bits_allocated: u16) -> String {
    format!("text was found in {bits_allocated}-bit pixel data, which the pixel stage reads but does not rewrite; remove it with another tool or release the instance without its pixels")
}

/// Is this transfer syntax lossy?
pub fn is_lossy_ts(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.52"
            | "1.2.840.10008.1.2.4.53"
            | "1.2.840.10008.1.2.4.54"
            | "1.2.840.10008.1.2.4.55"
            | "1.2.840.10008.1.2.4.56"
            | "1.2.840.10008.1.2.4.59"
            | "1.2.840.10008.1.2.4.60"
            | "1.2.840.10008.1.2.4.61"
            | "1.2.840.10008.1.2.4.62"
            | "1.2.840.10008.1.2.4.63"
            | "1.2.840.10008.1.2.4.64"
            | "1.2.840.10008.1.2.4.81"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.203"
    ) || ts.starts_with("1.2.840.10008.1.2.4.10") // MPEG-2/4, HEVC video
}

fn lossy_method(ts: &str) -> &'static str {
    if ts == "1.2.840.10008.1.2.4.81" {
        "ISO_14495_1"
    } else if ts.starts_with("1.2.840.10008.1.2.4.9") || ts == "1.2.840.10008.1.2.4.203" {
        "ISO_15444_1"
    } else {
        "ISO_10918_1"
    }
}

fn palette_grey(obj: &InMemDicomObject) -> Option<(Vec<u8>, u16)> {
    let lut = |desc: Tag, data: Tag| -> Option<(Vec<u16>, i64, u16)> {
        let d = obj.get(desc)?;
        let dv: Vec<i64> = d.to_multi_int::<i64>().ok()?;
        if dv.len() < 3 {
            return None;
        }
        let entries = if dv[0] == 0 { 65536 } else { dv[0] as usize };
        let first = dv[1];
        let bits = dv[2] as u16;
        let raw = obj.get(data)?.to_bytes().ok()?;
        let vals: Vec<u16> = if bits <= 8 && raw.len() >= entries && raw.len() < entries * 2 {
            raw.iter().map(|&b| b as u16).collect()
        } else {
            raw.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .map(|v| if bits <= 8 { v & 0xff } else { v >> 8 })
                .collect()
        };
        Some((vals, first, bits))
    };
    let (r, first, _) = lut(
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )?;
    let (g, _, _) = lut(
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )?;
    let (b, _, _) = lut(
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )?;
    let n = r.len().min(g.len()).min(b.len());
    if n == 0 {
        return None;
    }
    // Grey of each possible stored index (indices below `first` map to the first entry).
    let max_index = 65536usize;
    let span = (first.max(0) as usize + n).min(max_index);
    let mut grey = Vec::with_capacity(span);
    let mut darkest = (u32::MAX, 0u16);
    for idx in 0..span {
        let i = idx.saturating_sub(first.max(0) as usize).min(n - 1);
        let v = (r[i] as u32).max(g[i] as u32).max(b[i] as u32).min(255);
        let lum = (r[i] as u32 * 77 + g[i] as u32 * 150 + b[i] as u32 * 29) >> 8;
        if lum < darkest.0 {
            darkest = (lum, idx as u16);
        }
        grey.push(v as u8);
    }
    Some((grey, darkest.1))
}

/// 1-bit or 32-bit grey native samples as the stage's working form: bits unpacked to 0/255
/// (frames follow each other bit by bit, least significant bit first), 32-bit values scaled
/// linearly into 16 bits.
fn read_only(
    value: &[u8],
    (rows, cols, frames): (usize, usize, usize),
    bits_allocated: u16,
    signed: bool,
    photometric: String,
) -> Result<Pixels, String> {
    let n = rows * cols * frames;
    let need = if bits_allocated == 1 {
        n.div_ceil(8)
    } else {
        n * 4
    };
    if value.len() < need {
        return Err(format!(
            "Pixel Data is shorter ({} bytes) than the header needs ({need} bytes)",
            value.len()
        ));
    }
    let (data, bps) = if bits_allocated == 1 {
        let data = (0..n)
            .map(|i| {
                if value[i / 8] >> (i % 8) & 1 == 1 {
                    255
                } else {
                    0
                }
            })
            .collect();
        (data, 1u8)
    } else {
        let v: Vec<i64> = value[..n * 4]
            .chunks_exact(4)
            .map(|c| {
                let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if signed {
                    u as i32 as i64
                } else {
                    u as i64
                }
            })
            .collect();
        let (lo, hi) = v
            .iter()
            .fold((i64::MAX, i64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
        let span = (hi - lo).max(1);
        let data = v
            .iter()
            .flat_map(|x| (((x - lo) * 65535 / span) as u16).to_le_bytes())
            .collect();
        (data, 2u8)
    };
    Ok(Pixels {
        rows: rows as u32,
        cols: cols as u32,
        frames: frames as u32,
        samples: 1,
        bytes_per_sample: bps,
        signed: false,
        bits_stored: if bps == 1 { 8 } else { 16 },
        photometric,
        data,
        palette: None,
        source: Source::ReadOnly { bits_allocated },
    })
}

/// Sample values min–max stretched to 0–255 (inverted for MONOCHROME1), in two passes over
/// the samples; with more pixels than values, one division per value (a table) instead of one
/// per pixel.
fn stretched(values: impl Iterator<Item = i32> + Clone, n: usize, invert: bool) -> Vec<u8> {
    let (lo, hi) = values
        .clone()
        .fold((i32::MAX, i32::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return vec![0; n];
    }
    let span = (hi - lo).max(1) as i64;
    let stretch = |v: i32| {
        let g = ((v - lo) as i64 * 255 / span) as u8;
        if invert {
            255 - g
        } else {
            g
        }
    };
    if (span as usize) < n {
        let table: Vec<u8> = (lo..=hi).map(stretch).collect();
        values.map(|v| table[(v - lo) as usize]).collect()
    } else {
        values.map(stretch).collect()
    }
}

/// How native Pixel Data lays out its samples.
struct Layout {
    rows: usize,
    cols: usize,
    samples: usize,
    bps: usize,
    frames: usize,
    planar: bool,
    packed_422: bool,
}

impl Layout {
    /// The frames as the pixel stage works on them: colour interleaved, YBR_FULL_422 unpacked.
    fn interleave(&self, raw: &[u8]) -> Result<Vec<u8>, String> {
        let (rows, cols, bps) = (self.rows, self.cols, self.bps);
        let frame_len = rows * cols * self.samples * bps;
        let stored_frame = if self.packed_422 {
            rows * cols * 2 * bps
        } else {
            frame_len
        };
        if raw.len() < stored_frame * self.frames {
            return Err(format!(
                "Pixel Data is shorter ({} bytes) than Rows × Columns × Samples × Frames needs ({} bytes)",
                raw.len(),
                stored_frame * self.frames
            ));
        }
        if !self.packed_422 && !self.planar {
            return Ok(raw[..frame_len * self.frames].to_vec());
        }
        let mut data = Vec::with_capacity(frame_len * self.frames);
        for f in 0..self.frames {
            let src = &raw[f * stored_frame..(f + 1) * stored_frame];
            if self.packed_422 {
                if bps != 1 || cols % 2 != 0 {
                    return Err("YBR_FULL_422 native pixel data with 16-bit samples or odd columns is not supported".into());
                }
                // Y0 Y1 Cb Cr → Y0 Cb Cr Y1 Cb Cr
                for c in src.chunks_exact(4) {
                    data.extend_from_slice(&[c[0], c[2], c[3], c[1], c[2], c[3]]);
                }
            } else {
                let plane = rows * cols * bps;
                for p in 0..rows * cols {
                    for s in 0..3 {
                        data.extend_from_slice(
                            &src[s * plane + p * bps..s * plane + (p + 1) * bps],
                        );
                    }
                }
            }
        }
        Ok(data)
    }
}

impl Pixels {
    /// Decodes all frames. `Err` names what could not be decoded.
    pub fn decode(file: &FileDicomObject<InMemDicomObject>) -> Result<Pixels, PixelError> {
        Self::decode_frames(file, None).map_err(PixelError::Decode)
    }

    /// The frames of native (uncompressed, little-endian) Pixel Data given as its value bytes,
    /// the header from `file` (which need not hold the element): how the pipeline's screen reads
    /// pixels it carries over as bytes without parsing them. Encapsulated syntaxes are an `Err`.
    pub fn from_native_value(
        file: &FileDicomObject<InMemDicomObject>,
        value: &[u8],
    ) -> Result<Pixels, PixelError> {
        Self::decode_frames(file, Some(value)).map_err(PixelError::Decode)
    }

    fn decode_frames(
        file: &FileDicomObject<InMemDicomObject>,
        native_value: Option<&[u8]>,
    ) -> Result<Pixels, String> {
        let ts = file
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let registered = TransferSyntaxRegistry
            .get(&ts)
            .ok_or_else(|| format!("transfer syntax {ts} is unknown to Veil; its pixels cannot be checked for burned-in text"))?;
        let rows = int(file, tags::ROWS).unwrap_or(0);
        let cols = int(file, tags::COLUMNS).unwrap_or(0);
        let samples = int(file, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        let bits_allocated = int(file, tags::BITS_ALLOCATED).unwrap_or(0);
        let bits_stored = int(file, tags::BITS_STORED).unwrap_or(bits_allocated);
        let signed = int(file, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
        let frames = int(file, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
        let photometric = text(file, tags::PHOTOMETRIC_INTERPRETATION);
        if rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535 {
            return Err(
                "Rows/Columns missing or invalid; the pixel data cannot be interpreted".into(),
            );
        }
        if !(samples == 1 || samples == 3) {
            return Err(format!(
                "Samples per Pixel {samples} is not supported (1 or 3)"
            ));
        }
        if (bits_allocated == 1 || bits_allocated == 32)
            && samples == 1
            && !registered.is_encapsulated_pixel_data()
        {
            let shape = (rows as usize, cols as usize, frames as usize);
            let value = match native_value {
                Some(v) => Cow::Borrowed(v),
                None => match file.get(tags::PIXEL_DATA).map(|e| e.value()) {
                    Some(Value::Primitive(p)) => p.to_bytes(),
                    _ => return Err("no native Pixel Data element".into()),
                },
            };
            return read_only(&value, shape, bits_allocated as u16, signed, photometric);
        }
        if bits_allocated != 8 && bits_allocated != 16 {
            return Err(format!(
                "Bits Allocated {bits_allocated} is not supported by the pixel stage (1, 8, 16 or 32)"
            ));
        }
        let bps = (bits_allocated / 8) as usize;
        let frame_len = rows as usize * cols as usize * samples as usize * bps;
        let palette = if photometric == "PALETTE COLOR" {
            Some(palette_grey(file).ok_or("PALETTE COLOR image without a readable palette")?)
        } else {
            None
        };
        let (data, photometric, source) = if registered.is_encapsulated_pixel_data() {
            if native_value.is_some() {
                return Err(format!(
                    "{ts} is encapsulated: its pixels are decoded from the parsed element"
                ));
            }
            let decoded = file
                .decode_pixel_data()
                .map_err(|e| format!("cannot decode the pixel data ({ts}): {e}"))?;
            let pi = if samples == 3
                && !(ts == "1.2.840.10008.1.2.5" || ts.starts_with("1.2.840.10008.1.2.4.8"))
            {
                // JPEG and JPEG 2000 decoders return RGB.
                "RGB".to_string()
            } else {
                photometric
            };
            (
                decoded.into_data(),
                pi,
                Source::Encapsulated { ts: ts.clone() },
            )
        } else {
            let (raw, words): (Cow<[u8]>, bool) = match native_value {
                Some(v) => (Cow::Borrowed(v), bps == 2),
                None => {
                    let elem = file
                        .get(tags::PIXEL_DATA)
                        .ok_or_else(|| "no Pixel Data element".to_string())?;
                    let words = matches!(elem.value(), Value::Primitive(PrimitiveValue::U16(_)));
                    match elem.value() {
                        Value::Primitive(p) => (p.to_bytes(), words),
                        _ => return Err("native Pixel Data that is not a plain value".into()),
                    }
                }
            };
            let layout = Layout {
                rows: rows as usize,
                cols: cols as usize,
                samples: samples as usize,
                bps,
                frames: frames as usize,
                planar: samples == 3 && int(file, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1,
                packed_422: photometric == "YBR_FULL_422",
            };
            let data = layout.interleave(&raw)?;
            let pi = if layout.packed_422 {
                "YBR_FULL".to_string()
            } else {
                photometric
            };
            (
                data,
                pi,
                Source::Native {
                    words,
                    planar: layout.planar,
                    packed_422: layout.packed_422,
                },
            )
        };
        if data.len() < frame_len * frames as usize {
            return Err("decoded pixel data is shorter than the header says".into());
        }
        Ok(Pixels {
            rows: rows as u32,
            cols: cols as u32,
            frames: frames as u32,
            samples: samples as u16,
            bytes_per_sample: bps as u8,
            signed,
            bits_stored: bits_stored as u16,
            photometric,
            data,
            palette,
            source,
        })
    }

    fn frame_len(&self) -> usize {
        self.rows as usize
            * self.cols as usize
            * self.samples as usize
            * self.bytes_per_sample as usize
    }

    fn sample(&self, frame: &[u8], i: usize) -> i32 {
        if self.bytes_per_sample == 1 {
            frame[i] as i32
        } else {
            let v = u16::from_le_bytes([frame[2 * i], frame[2 * i + 1]]);
            let bits = self.bits_stored.clamp(1, 16);
            let masked = if bits < 16 {
                v & ((1u16 << bits) - 1)
            } else {
                v
            };
            if self.signed {
                let shift = 16 - bits;
                ((masked << shift) as i16 >> shift) as i32
            } else {
                masked as i32
            }
        }
    }

    /// Read for screening only (1-bit or 32-bit samples): [`Pixels::write_back`] refuses.
    pub fn is_read_only(&self) -> bool {
        matches!(self.source, Source::ReadOnly { .. })
    }

    /// The stored samples of one frame.
    pub fn frame(&self, frame: u32) -> &[u8] {
        let fl = self.frame_len();
        &self.data[frame as usize * fl..(frame as usize + 1) * fl]
    }

    /// One frame as 8-bit grey for detection and previews: min–max stretched for grey images,
    /// the brightest channel for colour (coloured text on dark backgrounds stays visible),
    /// the palette's grey for palette colour; MONOCHROME1 inverted so text reads as on a display.
    pub fn grey(&self, frame: u32) -> Vec<u8> {
        let fl = self.frame_len();
        let f = &self.data[frame as usize * fl..(frame as usize + 1) * fl];
        let n = self.rows as usize * self.cols as usize;
        if self.samples == 3 {
            let mut out = vec![0u8; n];
            let ybr = self.photometric.starts_with("YBR");
            for (p, o) in out.iter_mut().enumerate() {
                let s = |k: usize| {
                    let v = self.sample(f, p * 3 + k);
                    if self.bytes_per_sample == 2 {
                        (v >> 8).clamp(0, 255)
                    } else {
                        v.clamp(0, 255)
                    }
                };
                *o = if ybr {
                    s(0) as u8
                } else {
                    s(0).max(s(1)).max(s(2)) as u8
                };
            }
            return out;
        }
        if let Some((grey, _)) = &self.palette {
            let mut out = vec![0u8; n];
            for (p, o) in out.iter_mut().enumerate() {
                let idx = self.sample(f, p).max(0) as usize;
                *o = grey.get(idx).copied().unwrap_or(255);
            }
            return out;
        }
        let invert = self.photometric == "MONOCHROME1";
        if self.bytes_per_sample == 1 {
            return stretched(f.iter().map(|b| *b as i32), n, invert);
        }
        // One loop per layout rather than a branch per sample: the screen runs this on every
        // CT and MR slice.
        let bits = self.bits_stored.clamp(1, 16) as u32;
        let words = f.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
        match (self.signed, bits) {
            (false, 16) => stretched(words.map(|v| v as i32), n, invert),
            (true, 16) => stretched(words.map(|v| v as i16 as i32), n, invert),
            (false, b) => {
                let mask = (1u16 << b) - 1;
                stretched(words.map(move |v| (v & mask) as i32), n, invert)
            }
            (true, b) => {
                let shift = 16 - b;
                stretched(
                    words.map(move |v| ((v << shift) as i16 >> shift) as i32),
                    n,
                    invert,
                )
            }
        }
    }

    /// The value written into redacted areas of a frame, per sample: the darkest value the
    /// frame holds (minimum for MONOCHROME2, maximum for MONOCHROME1, black for colour).
    fn fill_value(&self, frame: &[u8]) -> [i32; 3] {
        if self.samples == 3 {
            if self.photometric.starts_with("YBR") {
                let mid = if self.bytes_per_sample == 2 {
                    32768
                } else {
                    128
                };
                return [0, mid, mid];
            }
            return [0, 0, 0];
        }
        if let Some((_, darkest)) = &self.palette {
            return [*darkest as i32, 0, 0];
        }
        let n = self.rows as usize * self.cols as usize;
        let it = (0..n).map(|p| self.sample(frame, p));
        let v = if self.photometric == "MONOCHROME1" {
            it.max()
        } else {
            it.min()
        };
        [v.unwrap_or(0), 0, 0]
    }

    /// Fills the rectangles on every frame. Returns the number of pixels filled per frame.
    pub fn fill(&mut self, rects: &[Rect]) -> u64 {
        let fl = self.frame_len();
        let (cols, rows) = (self.cols, self.rows);
        let mut mask = vec![false; rows as usize * cols as usize];
        let pairs = matches!(
            self.source,
            Source::Native {
                packed_422: true,
                ..
            }
        );
        for r in rects {
            let mut r = r.grown(0, cols, rows);
            if pairs {
                // 4:2:2 stores one chroma pair per two pixels: fill whole pairs.
                let x = r.x & !1;
                let right = (r.right() + 1).min(cols) & !1;
                r = Rect {
                    x,
                    y: r.y,
                    w: right.max(x) - x,
                    h: r.h,
                };
            }
            for y in r.y..r.bottom() {
                let row = &mut mask[(y * cols) as usize..((y + 1) * cols) as usize];
                for m in &mut row[r.x as usize..r.right() as usize] {
                    *m = true;
                }
            }
        }
        let filled = mask.iter().filter(|m| **m).count() as u64;
        let spp = self.samples as usize;
        let bps = self.bytes_per_sample as usize;
        for f in 0..self.frames as usize {
            let fill = self.fill_value(&self.data[f * fl..(f + 1) * fl]);
            let frame = &mut self.data[f * fl..(f + 1) * fl];
            for (p, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
                for (s, value) in fill.iter().enumerate().take(spp) {
                    let i = (p * spp + s) * bps;
                    if bps == 1 {
                        frame[i] = *value as u8;
                    } else {
                        let b = (*value as u16).to_le_bytes();
                        frame[i] = b[0];
                        frame[i + 1] = b[1];
                    }
                }
            }
        }
        filled
    }

    /// The frames of native Pixel Data in the source's own layout (planar or 4:2:2 packed
    /// again where the source was), without what followed the last frame.
    fn into_source_layout(self) -> Result<Vec<u8>, String> {
        let Source::Native {
            planar, packed_422, ..
        } = self.source
        else {
            return Err("not native pixel data".into());
        };
        let fl = self.frame_len();
        let (frames, bps) = (self.frames as usize, self.bytes_per_sample as usize);
        let n = self.rows as usize * self.cols as usize;
        // Memory: a cine's frames are large; the plain layout moves them, not copies.
        if !packed_422 && !planar {
            return Ok(self.data);
        }
        let mut out = Vec::with_capacity(self.data.len());
        for f in 0..frames {
            let src = &self.data[f * fl..(f + 1) * fl];
            if packed_422 {
                for c in src.chunks_exact(6) {
                    let cb = ((c[1] as u16 + c[4] as u16) / 2) as u8;
                    let cr = ((c[2] as u16 + c[5] as u16) / 2) as u8;
                    out.extend_from_slice(&[c[0], c[3], cb, cr]);
                }
            } else {
                for s in 0..3 {
                    for p in 0..n {
                        out.extend_from_slice(&src[(p * 3 + s) * bps..(p * 3 + s + 1) * bps]);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The (changed) frames as a new value for the native Pixel Data element whose value was
    /// `source` (what [`Pixels::from_native_value`] read): same length and layout, what followed
    /// the last frame kept. How the pipeline writes back pixels it carries as bytes.
    pub fn into_native_value(self, source: &[u8]) -> Result<Vec<u8>, PixelError> {
        if let Source::ReadOnly { bits_allocated } = self.source {
            return Err(PixelError::Encode(read_only_refusal(bits_allocated)));
        }
        let mut out = self.into_source_layout().map_err(PixelError::Encode)?;
        if out.len() > source.len() {
            return Err(PixelError::Encode(
                "the frames are longer than the Pixel Data they came from".into(),
            ));
        }
        out.extend_from_slice(&source[out.len()..]);
        Ok(out)
    }

    /// Writes the (changed) frames back into the instance, re-encoding as described in the
    /// module docs, and updates the file meta transfer syntax and image attributes.
    pub fn write_back(
        self,
        file: &mut FileDicomObject<InMemDicomObject>,
    ) -> Result<(), PixelError> {
        self.encode_into(file).map_err(PixelError::Encode)
    }

    fn encode_into(self, file: &mut FileDicomObject<InMemDicomObject>) -> Result<(), String> {
        match &self.source {
            Source::Native { words, .. } => {
                let words = *words;
                let mut out = self.into_source_layout()?;
                // Anything after the last frame (padding) is kept as it was.
                let old = file.get(tags::PIXEL_DATA).ok_or("no Pixel Data")?;
                let old_len = match old.value() {
                    Value::Primitive(p) => p.calculate_byte_len(),
                    _ => 0,
                };
                if old_len > out.len() {
                    let old_bytes = old.value().to_bytes().map_err(|e| e.to_string())?;
                    out.extend_from_slice(&old_bytes[out.len()..]);
                }
                let vr = old.vr();
                let value = if words {
                    let w: Vec<u16> = out
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    drop(out);
                    PrimitiveValue::U16(w.into())
                } else {
                    PrimitiveValue::U8(out.into())
                };
                file.put(DataElement::new(tags::PIXEL_DATA, vr, value));
                Ok(())
            }
            Source::ReadOnly { bits_allocated } => Err(read_only_refusal(*bits_allocated)),
            Source::Encapsulated { ts } => {
                let ts = ts.clone();
                let had_frames = file.get(tags::NUMBER_OF_FRAMES).is_some();
                let had_total = file
                    .get(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH)
                    .is_some();
                let (vr, value) = if self.bytes_per_sample == 2 {
                    let w: Vec<u16> = self
                        .data
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    (VR::OW, PrimitiveValue::U16(w.into()))
                } else {
                    (VR::OB, PrimitiveValue::U8(self.data.into()))
                };
                file.put(DataElement::new(tags::PIXEL_DATA, vr, value));
                file.put(DataElement::new(
                    tags::PHOTOMETRIC_INTERPRETATION,
                    VR::CS,
                    PrimitiveValue::from(even(&self.photometric)),
                ));
                if self.samples == 3 {
                    file.put(DataElement::new(
                        tags::PLANAR_CONFIGURATION,
                        VR::US,
                        PrimitiveValue::from(0u16),
                    ));
                }
                file.remove_element(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH);
                let native = entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
                file.update_meta(|m| m.set_transfer_syntax(&native));
                if ts == "1.2.840.10008.1.2.4.80" {
                    // JPEG-LS lossless has an encoder: stay in it.
                    let jls = entries::JPEG_LS_LOSSLESS_IMAGE_COMPRESSION.erased();
                    file.transcode(&jls)
                        .map_err(|e| format!("cannot re-encode as JPEG-LS lossless: {e}"))?;
                    if !had_frames {
                        file.remove_element(tags::NUMBER_OF_FRAMES);
                    }
                    if !had_total {
                        file.remove_element(tags::ENCAPSULATED_PIXEL_DATA_VALUE_TOTAL_LENGTH);
                    }
                }
                if is_lossy_ts(&ts) {
                    // The pixels were lossy-compressed once: say so, whatever the new syntax.
                    file.put(DataElement::new(
                        tags::LOSSY_IMAGE_COMPRESSION,
                        VR::CS,
                        PrimitiveValue::from("01"),
                    ));
                    if file.get(tags::LOSSY_IMAGE_COMPRESSION_METHOD).is_none() {
                        file.put(DataElement::new(
                            tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                            VR::CS,
                            PrimitiveValue::from(lossy_method(&ts)),
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

fn even(s: &str) -> String {
    if s.len() % 2 == 1 {
        format!("{s} ")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(bits_stored: u16, signed: bool, data: Vec<u8>, photometric: &str) -> Pixels {
        Pixels {
            rows: 1,
            cols: (data.len() / 2) as u32,
            frames: 1,
            samples: 1,
            bytes_per_sample: 2,
            signed,
            bits_stored,
            photometric: photometric.into(),
            data,
            palette: None,
            source: Source::ReadOnly { bits_allocated: 16 },
        }
    }

    #[test]
    fn grey_stretches_what_sample_reads() {
        // 256 pixels over the whole 16-bit range (a division per pixel), and 4,096 pixels over
        // fewer values than pixels (the table).
        let wide: Vec<u8> = (0..=255u8).flat_map(|b| [b.wrapping_mul(37), b]).collect();
        let narrow: Vec<u8> = (0..4096u32)
            .flat_map(|i| ((i * 7919 % 1000) as u16 | 0xF000).to_le_bytes())
            .collect();
        for (bits, signed, data) in [
            (16, false, &wide),
            (16, true, &wide),
            (12, false, &wide),
            (12, true, &wide),
            (10, true, &wide),
            (16, true, &narrow),
            (12, false, &narrow),
        ] {
            for pi in ["MONOCHROME2", "MONOCHROME1"] {
                let px = pixels(bits, signed, data.clone(), pi);
                let f = px.frame(0);
                let one_by_one: Vec<i32> = (0..data.len() / 2).map(|i| px.sample(f, i)).collect();
                // The stretch, by table or by division, of what `sample` reads.
                let (lo, hi) = (
                    *one_by_one.iter().min().unwrap(),
                    *one_by_one.iter().max().unwrap(),
                );
                let span = (hi - lo).max(1) as i64;
                let want: Vec<u8> = one_by_one
                    .iter()
                    .map(|v| {
                        let g = ((v - lo) as i64 * 255 / span) as u8;
                        if pi == "MONOCHROME1" {
                            255 - g
                        } else {
                            g
                        }
                    })
                    .collect();
                assert_eq!(px.grey(0), want, "{bits} {signed} {pi}");
            }
        }
    }
}
