//! `veil key` (being built).

#[derive(clap::Subcommand)]
pub enum KeyCommand {}

pub fn run(cmd: KeyCommand) -> anyhow::Result<u8> {
    match cmd {}
}
