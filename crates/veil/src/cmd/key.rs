//! `veil key`: key files.

use std::path::PathBuf;

use veil_keys::Key;

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Write a new random 256-bit key to FILE (mode 0600). Refuses to overwrite.
    New {
        /// Where to write the key.
        file: PathBuf,
    },
    /// Print a key's fingerprint (safe to share; reveals nothing about the key).
    Fingerprint {
        /// The key file.
        file: PathBuf,
    },
}

pub fn run(cmd: KeyCommand) -> anyhow::Result<u8> {
    match cmd {
        KeyCommand::New { file } => {
            let key = Key::write_new(&file).map_err(|e| crate::exit::usage(e.to_string()))?;
            println!(
                "wrote a new key to {} (mode 0600, fingerprint {})",
                file.display(),
                key.fingerprint()
            );
            println!("keep it secret and backed up: the same key gives the same pseudonyms and UIDs in every run");
            Ok(crate::exit::OK)
        }
        KeyCommand::Fingerprint { file } => {
            let key = Key::load(&file).map_err(|e| crate::exit::usage(e.to_string()))?;
            println!("{}", key.fingerprint());
            Ok(crate::exit::OK)
        }
    }
}

/// Loads the key from `--key FILE`, else from `VEIL_KEY`; usage error if neither.
pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Key> {
    if let Some(p) = path {
        return Key::load(p).map_err(|e| crate::exit::usage(e.to_string()));
    }
    match Key::from_env() {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(crate::exit::usage(
            "no key: pass --key FILE (create one with `veil key new FILE`) or set VEIL_KEY",
        )),
        Err(e) => Err(crate::exit::usage(e.to_string())),
    }
}
