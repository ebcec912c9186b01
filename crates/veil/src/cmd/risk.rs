//! `veil risk` (being built: issue 7).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("veil risk is not built yet")
}
