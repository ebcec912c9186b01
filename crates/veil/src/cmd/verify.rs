//! `veil verify` (being built: issue 4).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("veil verify is not built yet")
}
