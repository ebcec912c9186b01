//! `veil key`: key files.

use std::path::PathBuf;

use veil_keys::Key;

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Write a new random 256-bit key to FILE (mode 0600). Refuses to overwrite.
    #[command(
        after_help = "Exit codes: 0 written; 2 the file exists already or cannot be written."
    )]
    New {
        /// Where to write the key.
        file: PathBuf,
    },
    /// Print a key's fingerprint (safe to share; reveals nothing about the key).
    #[command(
        after_help = "Exit codes: 0 printed; 2 the key file is missing, readable by others or malformed."
    )]
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

/// Loads the key from `--key FILE`, else `VEIL_KEY_FILE`, else `VEIL_KEY`; usage error if none.
pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Key> {
    if let Some(p) = path {
        return Key::load(p).map_err(|e| crate::exit::usage(e.to_string()));
    }
    match Key::from_env() {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(crate::exit::usage(
            "no key: pass --key FILE (create one with `veil key new FILE`), or set VEIL_KEY_FILE=FILE, or VEIL_KEY to the key's 64 hex digits",
        )),
        Err(e) => Err(crate::exit::usage(e.to_string())),
    }
}
