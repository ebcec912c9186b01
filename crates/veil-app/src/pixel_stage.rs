//! The pixel stage every pipeline gets (`veil-pixels`): instances flagged for burned-in text
//! (risky modality or SOP class, Burned In Annotation YES) are cleaned instead of quarantined;
//! with the policy option `clean_pixel_data`, every other image's margins are checked too.
//! Without Tesseract on the machine, flagged instances are quarantined with a reason saying so.

use veil_pixels::{Cleaner, Config};

/// The stage for a policy.
pub fn pixel_stage(policy: &veil_profile::Policy) -> Box<dyn veil_pipeline::PixelStage> {
    let config = Config {
        scan_unflagged: policy.has(veil_profile::ProfileOption::CleanPixelData),
        ..Config::default()
    };
    Box::new(veil_pixels::PixelCleaner {
        cleaner: Cleaner::new(config),
    })
}
