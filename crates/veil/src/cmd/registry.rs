//! Consent registry, recipients, releases and the disclosure ledger (being built: issue 6).

#[derive(clap::Subcommand)]
pub enum RegistryCommand {}

pub fn run(cmd: RegistryCommand) -> anyhow::Result<u8> {
    match cmd {}
}
