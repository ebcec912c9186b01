//! `veil policy` (being built).

#[derive(clap::Subcommand)]
pub enum PolicyCommand {}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<u8> {
    match cmd {}
}
