//! The pixel stage every pipeline gets (`veil-pixels`): instances flagged for burned-in text
//! (risky modality or SOP class, Burned In Annotation YES) are cleaned instead of quarantined,
//! and every other image is screened (unless the policy's `[pixels] screen = false`): text the
//! screen finds is read and removed like a flagged image's. Without Tesseract on the machine,
//! flagged instances and images whose screen finds text are quarantined with a reason saying so.

use veil_pixels::{Cleaner, Config, Limits};

/// The stage's settings under a policy: its defaults, changed by the policy's `[pixels]`.
pub fn pixel_config(policy: &veil_profile::Policy) -> Config {
    let d = Config::default();
    let p = &policy.pixels;
    Config {
        screen_unflagged: p.screen.unwrap_or(d.screen_unflagged),
        min_confidence: p.min_confidence.unwrap_or(d.min_confidence),
        margin: p.margin.unwrap_or(d.margin),
        max_ocr_frames: p.max_ocr_frames.unwrap_or(d.max_ocr_frames),
        ocr_scale: p.ocr_scale.unwrap_or(d.ocr_scale),
        limits: Limits {
            max_second_looks: p
                .max_second_looks
                .map_or(d.limits.max_second_looks, |n| n as usize),
            max_line_looks: p
                .max_line_looks
                .map_or(d.limits.max_line_looks, |n| n as usize),
            max_text_height: p.max_text_height.unwrap_or(d.limits.max_text_height),
            ..d.limits.clone()
        },
        ..d
    }
}

/// The stage for a policy.
pub fn pixel_stage(policy: &veil_profile::Policy) -> Box<dyn veil_pipeline::PixelStage> {
    Box::new(veil_pixels::PixelCleaner {
        cleaner: Cleaner::new(pixel_config(policy)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_sets_the_stage() {
        let policy = veil_profile::Policy::from_toml_str(
            "[pixels]\nscreen = false\nmin_confidence = 75\nmargin = 8\nmax_line_looks = 40\nmax_text_height = 96\n",
            "t",
        )
        .unwrap();
        let c = pixel_config(&policy);
        assert_eq!(
            (c.min_confidence, c.margin, c.screen_unflagged),
            (75.0, 8, false)
        );
        assert_eq!(
            (c.limits.max_line_looks, c.limits.max_text_height),
            (40, 96)
        );
        assert_eq!(c.limits.max_second_looks, 16);
        let d = pixel_config(&veil_profile::Policy::default_policy());
        assert_eq!(
            (d.min_confidence, d.screen_unflagged, d.max_ocr_frames),
            (60.0, true, 6)
        );
    }
}
