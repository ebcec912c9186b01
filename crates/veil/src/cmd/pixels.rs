//! `veil pixels` (being built: issue 5).

#[derive(clap::Subcommand)]
pub enum PixelsCommand {}

pub fn run(cmd: PixelsCommand) -> anyhow::Result<u8> {
    match cmd {}
}

/// The pixel stage `veil deid` uses (none until issue 5 lands).
pub fn pipeline_pixel_stage(
    _policy: &veil_profile::Policy,
) -> Option<Box<dyn veil_pipeline::PixelStage>> {
    None
}
