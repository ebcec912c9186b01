//! Developer tool: draws the OCR-free text lines (`veil_pixels::glyphs`) of frame 0 of each
//! DICOM file given, for tuning the detector: green = strong lines, cyan = weak lines, and,
//! when FILE.gt exists (one `x y w h` per line, written by the synthetic test with
//! VEIL_TEST_DUMP), magenta = the rendered text boxes.
//! Usage: cargo run -p veil-pixels --example glyph_lines -- OUT_DIR FILE.dcm…

use std::path::Path;

use dicom_object::OpenFileOptions;
use veil_pixels::{glyphs, Pixels, Rect};

fn outline(rgb: &mut [u8], cols: u32, rows: u32, r: &Rect, c: [u8; 3]) {
    let r = r.grown(1, cols, rows);
    for x in r.x..r.right() {
        for y in [r.y, r.bottom().saturating_sub(1)] {
            let i = ((y * cols + x) * 3) as usize;
            rgb[i..i + 3].copy_from_slice(&c);
        }
    }
    for y in r.y..r.bottom() {
        for x in [r.x, r.right().saturating_sub(1)] {
            let i = ((y * cols + x) * 3) as usize;
            rgb[i..i + 3].copy_from_slice(&c);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = Path::new(&args[0]);
    std::fs::create_dir_all(out).unwrap();
    for f in &args[1..] {
        let file = OpenFileOptions::new().open_file(f).expect("open");
        let px = Pixels::decode(&file).expect("decode");
        let grey = px.grey(0);
        let t = std::time::Instant::now();
        let lines = glyphs::glyph_lines(&grey, px.cols, px.rows, None);
        let dt = t.elapsed();
        let mut rgb: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g]).collect();
        let gt_path = format!("{f}.gt");
        let mut gt = Vec::new();
        if let Ok(s) = std::fs::read_to_string(&gt_path) {
            for l in s.lines() {
                let v: Vec<u32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                gt.push(Rect {
                    x: v[0],
                    y: v[1],
                    w: v[2],
                    h: v[3],
                });
            }
        }
        for g in &gt {
            outline(&mut rgb, px.cols, px.rows, g, [255, 0, 255]);
        }
        let (mut strong, mut weak) = (0, 0);
        for l in &lines {
            let c = if l.strong {
                strong += 1;
                [0, 255, 0]
            } else {
                weak += 1;
                [0, 200, 255]
            };
            outline(&mut rgb, px.cols, px.rows, &l.rect, c);
        }
        if std::env::var_os("SCAN").is_some() {
            let cleaner = veil_pixels::Cleaner::default();
            let (_, a) = cleaner.scan(&file, true, true).expect("scan");
            for w in &a.words {
                println!(
                    "  word {:?} conf {:.0} {:?} {:?} redact {}",
                    w.rect, w.confidence, w.text, w.matches, w.redact
                );
            }
            for l in &a.glyph_lines {
                println!(
                    "  line {:?} glyphs {} strong {} redact {}",
                    l.rect, l.glyphs, l.strong, l.redact
                );
            }
            for r in &a.redaction {
                outline(&mut rgb, px.cols, px.rows, r, [255, 0, 0]);
            }
            println!("  redacted {:.1}%", a.redacted_fraction * 100.0);
        }
        let hit = gt
            .iter()
            .filter(|g| lines.iter().any(|l| l.strong && l.rect.intersects(g)))
            .count();
        println!(
            "{f}: {strong} strong, {weak} weak lines; gt boxes touched by a strong line {hit}/{}; {dt:?}",
            gt.len()
        );
        let name = out.join(format!(
            "{}.png",
            Path::new(f).file_stem().unwrap().to_string_lossy()
        ));
        let fh = std::fs::File::create(&name).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(fh), px.cols, px.rows);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(&rgb).unwrap();
    }
}
