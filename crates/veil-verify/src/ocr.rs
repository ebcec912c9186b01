//! The verifier's own reading of burned-in text: its own pixel reader (native little-endian
//! encodings, which the pixel stage writes for native input) and the Tesseract command-line
//! program — not the pixel stage's decoder, detector or OCR binding, so a blind spot there is
//! not repeated here. Compressed pixel data is reported as not checked, never as clean.

use std::process::Command;

use crate::walk::Parsed;
use crate::Known;

/// One frame as 8-bit grey.
pub struct Frame {
    pub index: u32,
    pub cols: u32,
    pub rows: u32,
    pub grey: Vec<u8>,
}

fn top_level<'a>(p: &Parsed, bytes: &'a [u8], tag: u32) -> Option<&'a [u8]>
where
    Parsed: 'a,
{
    let e = p
        .elems
        .iter()
        .find(|e| e.tag == tag && e.parent.is_none())?;
    match e.buf {
        crate::walk::Buf::File => bytes.get(e.value.clone()),
        crate::walk::Buf::Inflated => None,
    }
}

fn us(p: &Parsed, bytes: &[u8], tag: u32) -> Option<u32> {
    let b = top_level(p, bytes, tag)?;
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]) as u32)
}

fn text(p: &Parsed, bytes: &[u8], tag: u32) -> String {
    top_level(p, bytes, tag)
        .map(|b| {
            String::from_utf8_lossy(b)
                .trim_matches([' ', '\0'])
                .to_string()
        })
        .unwrap_or_default()
}

/// Up to `max` frames (the first, then spread over the rest), or why they cannot be read.
pub fn frames(p: &Parsed, bytes: &[u8], max: usize) -> Result<Vec<Frame>, String> {
    if !matches!(
        p.transfer_syntax.as_str(),
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1"
    ) {
        return Err(format!(
            "pixel data in transfer syntax {} is not read by the verifier's own decoder",
            p.transfer_syntax
        ));
    }
    let need = |v: Option<u32>, what: &str| v.filter(|v| *v > 0).ok_or(format!("no {what}"));
    let rows = need(us(p, bytes, 0x0028_0010), "Rows")?;
    let cols = need(us(p, bytes, 0x0028_0011), "Columns")?;
    let bits = need(us(p, bytes, 0x0028_0100), "Bits Allocated")?;
    let samples = us(p, bytes, 0x0028_0002).unwrap_or(1);
    let planar = us(p, bytes, 0x0028_0006).unwrap_or(0) == 1;
    let signed = us(p, bytes, 0x0028_0103).unwrap_or(0) == 1;
    let inverted = text(p, bytes, 0x0028_0004) == "MONOCHROME1";
    let n: usize = text(p, bytes, 0x0028_0008).parse().unwrap_or(1).max(1);
    let data = top_level(p, bytes, 0x7FE0_0010).ok_or("no native Pixel Data")?;
    if !matches!((bits, samples), (8, 1) | (16, 1) | (8, 3)) {
        return Err(format!("{bits}-bit, {samples}-sample pixels are not read"));
    }
    let pixels = (rows * cols) as usize;
    let frame_len = pixels * samples as usize * bits as usize / 8;
    if data.len() < frame_len * n {
        return Err("Pixel Data is shorter than its frames".into());
    }
    let mut picks: Vec<usize> = vec![0, n / 2, n - 1];
    picks.dedup();
    picks.truncate(max);
    Ok(picks
        .into_iter()
        .map(|f| {
            let raw = &data[f * frame_len..(f + 1) * frame_len];
            let values: Vec<i32> = (0..pixels)
                .map(|i| match (bits, samples) {
                    (8, 1) => raw[i] as i32,
                    (16, _) => {
                        let v = u16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]);
                        if signed {
                            v as i16 as i32
                        } else {
                            v as i32
                        }
                    }
                    _ if planar => {
                        raw[i] as i32 + raw[pixels + i] as i32 + raw[2 * pixels + i] as i32
                    }
                    _ => raw[3 * i] as i32 + raw[3 * i + 1] as i32 + raw[3 * i + 2] as i32,
                })
                .collect();
            let (lo, hi) = values
                .iter()
                .fold((i32::MAX, i32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            let span = (hi - lo).max(1) as f64;
            let grey = values
                .iter()
                .map(|v| {
                    let g = ((v - lo) as f64 * 255.0 / span) as u8;
                    if inverted {
                        255 - g
                    } else {
                        g
                    }
                })
                .collect();
            Frame {
                index: f as u32,
                cols,
                rows,
                grey,
            }
        })
        .collect())
}

/// The frame with its local background taken away: each pixel minus the mean of the
/// (2·`LOCAL_RADIUS`+1)² box around it (for bright text; the reverse for dark), amplified and
/// shown as dark text on white. Text drawn in a grey close to the tissue around it, which a
/// global threshold merges with that tissue, stands out like print.
fn local_contrast(frame: &Frame, bright: bool) -> Vec<u8> {
    const LOCAL_RADIUS: i64 = 8;
    const GAIN: i64 = 4;
    let (w, h) = (frame.cols as i64, frame.rows as i64);
    // Summed-area table with a zero row and column in front.
    let mut sat = vec![0i64; ((w + 1) * (h + 1)) as usize];
    for y in 0..h {
        let mut row = 0i64;
        for x in 0..w {
            row += frame.grey[(y * w + x) as usize] as i64;
            sat[((y + 1) * (w + 1) + x + 1) as usize] = sat[(y * (w + 1) + x + 1) as usize] + row;
        }
    }
    let at = |x: i64, y: i64| sat[(y * (w + 1) + x) as usize];
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        let (y0, y1) = ((y - LOCAL_RADIUS).max(0), (y + LOCAL_RADIUS + 1).min(h));
        for x in 0..w {
            let (x0, x1) = ((x - LOCAL_RADIUS).max(0), (x + LOCAL_RADIUS + 1).min(w));
            let sum = at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0);
            let mean = sum / ((x1 - x0) * (y1 - y0));
            let v = frame.grey[(y * w + x) as usize] as i64;
            let d = if bright { v - mean } else { mean - v };
            out.push(255 - (d * GAIN).clamp(0, 255) as u8);
        }
    }
    out
}

/// The words Tesseract's command-line program reads in a frame, upscaled twice: as read,
/// inverted, and with the local background taken away for bright and for dark text.
pub fn words(frame: &Frame) -> Result<Vec<String>, String> {
    let (w, h) = (frame.cols * 2, frame.rows * 2);
    let inverted: Vec<u8> = frame.grey.iter().map(|g| 255 - g).collect();
    let views = [
        frame.grey.clone(),
        inverted,
        local_contrast(frame, true),
        local_contrast(frame, false),
    ];
    let mut out = Vec::new();
    for (k, view) in views.iter().enumerate() {
        let mut pgm = format!("P5\n{w} {h}\n255\n").into_bytes();
        for y in 0..h {
            let row = &view[((y / 2) * frame.cols) as usize..][..frame.cols as usize];
            for x in 0..w {
                pgm.push(row[(x / 2) as usize]);
            }
        }
        let path = std::env::temp_dir().join(format!(
            "veil-verify-ocr-{}-{}-{}.pgm",
            std::process::id(),
            frame.index,
            k
        ));
        std::fs::write(&path, &pgm).map_err(|e| format!("cannot write a frame for OCR: {e}"))?;
        let run = Command::new("tesseract")
            .arg(&path)
            .arg("stdout")
            .args(["--psm", "11", "-l", "eng"])
            .output();
        let _ = std::fs::remove_file(&path);
        let run = run.map_err(|e| {
            format!("the tesseract program cannot be run ({e}): install tesseract-ocr")
        })?;
        if !run.status.success() {
            return Err(format!(
                "tesseract failed: {}",
                String::from_utf8_lossy(&run.stderr).trim()
            ));
        }
        out.extend(
            String::from_utf8_lossy(&run.stdout)
                .split_whitespace()
                .map(|w| {
                    w.chars()
                        .filter(|c| c.is_alphanumeric())
                        .collect::<String>()
                })
                .filter(|w| w.chars().count() >= 3),
        );
    }
    Ok(out)
}

/// Why an output's pixels were not read.
#[derive(Debug)]
pub enum OcrError {
    /// This reader does not decode the output's pixel data (compressed, big endian, 12-bit...):
    /// the output is not proven free of burned-in text.
    Unreadable(String),
    /// The tesseract program is missing or failed.
    Tool(String),
}

/// The sources' identifiers read in the output's pixels: (frame, kind of identifier).
pub fn surviving(p: &Parsed, bytes: &[u8], known: &Known) -> Result<Vec<(u32, String)>, OcrError> {
    let mut found = Vec::new();
    for frame in frames(p, bytes, 3).map_err(OcrError::Unreadable)? {
        for word in words(&frame).map_err(OcrError::Tool)? {
            if let Some(kind) = known.word_kind(&word) {
                found.push((frame.index, kind.to_string()));
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}
