//! Developer tool: for each DICOM file, the share of the frame `veil deid` would blank (the
//! file treated as flagged for burned-in text), frames OCR'd and words removed.
//! Usage: cargo run -p veil-pixels --example redacted_area -- FILE.dcm…

use dicom_object::OpenFileOptions;
use veil_pixels::Cleaner;

fn main() {
    let cleaner = Cleaner::default();
    for f in std::env::args().skip(1) {
        let file = OpenFileOptions::new().open_file(&f).expect("open");
        let t = std::time::Instant::now();
        let (_, a) = cleaner.scan(&file, true, false).expect("scan");
        println!(
            "{f}: {:.1}% of the frame blanked; {} frame(s) OCR'd; {} of {} words removed; {:.2}s",
            a.redacted_fraction * 100.0,
            a.frames_ocr.len(),
            a.words.iter().filter(|w| w.redact).count(),
            a.words.len(),
            t.elapsed().as_secs_f64()
        );
    }
}
