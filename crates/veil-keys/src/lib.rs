//! Veil's secret key and everything derived from it.
//!
//! This crate owns the key file format (64 hex digits, mode 0600, refused when readable by others),
//! the `VEIL_KEY` environment variable, and every keyed derivation Veil makes: patient pseudonyms,
//! UIDs under the `2.25` arc, per-patient date offsets, pseudonyms of other identifiers, and
//! sub-keys (one per release recipient, one for the store's encryption, ...).
//!
//! Every derivation is HMAC-SHA-256 under the key with a *domain label* that says what the
//! output is for, so the same input in two roles never yields related outputs. There is no unkeyed
//! hash of an identifier anywhere: without the key, a guessed MRN or UID cannot be confirmed.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// Name of the environment variable that may carry the key itself, as 64 hex digits.
pub const KEY_ENV: &str = "VEIL_KEY";

/// Name of the environment variable that may name a key file (as `--key FILE` does).
pub const KEY_FILE_ENV: &str = "VEIL_KEY_FILE";

/// What went wrong with a key. Messages name the file and what to do, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is readable or writable by group or others (mode {mode:04o}); run `chmod 600 {path}` and retry")]
    LoosePermissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {path}: expected 64 hexadecimal digits (a 256-bit key written by `veil key new`)"
    )]
    Malformed { path: PathBuf },
    #[error("{KEY_ENV} holds the key itself: 64 hexadecimal digits (the contents of a file written by `veil key new`), not a file name; to name a key file use --key FILE or {KEY_FILE_ENV}=FILE")]
    MalformedEnv,
    #[error("key file {path} already exists; refusing to overwrite a key (outputs made with it would become unlinkable)")]
    Exists { path: PathBuf },
    #[error("key file {path}: cannot write it: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A 256-bit secret key. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

impl Key {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Key {
        use rand::RngCore;
        let mut bytes = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Key(bytes)
    }

    /// A key from raw bytes (tests, and sub-keys).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// The raw bytes, for crates that need key material for an AEAD or a signature seed. Derive
    /// a sub-key with [`Key::subkey`] first; never use the master key directly for another purpose.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn parse_hex(text: &str) -> Option<Key> {
        let text = text.trim();
        if text.len() != KEY_LEN * 2 {
            return None;
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Key(bytes))
    }

    /// Reads a key file written by [`Key::write_new`]. Refuses files that group or others can
    /// read or write.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(path).map_err(|source| KeyError::Read {
                path: path.to_owned(),
                source,
            })?;
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyError::LoosePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Key::parse_hex(&text).ok_or_else(|| KeyError::Malformed {
            path: path.to_owned(),
        })
    }

    /// Reads the key from the environment, if set there: `VEIL_KEY_FILE` names a key file (read
    /// as [`Key::load`] does), `VEIL_KEY` holds the key's 64 hex digits. `VEIL_KEY_FILE` wins
    /// when both are set.
    pub fn from_env() -> Result<Option<Key>, KeyError> {
        if let Some(path) = std::env::var_os(KEY_FILE_ENV).filter(|p| !p.is_empty()) {
            return Key::load(Path::new(&path)).map(Some);
        }
        match std::env::var(KEY_ENV) {
            Ok(text) => Key::parse_hex(&text)
                .map(Some)
                .ok_or(KeyError::MalformedEnv),
            Err(_) => Ok(None),
        }
    }

    /// Writes a new random key to `path` with mode 0600, atomically, refusing to overwrite.
    pub fn write_new(path: &Path) -> Result<Key, KeyError> {
        if path.exists() {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            });
        }
        let key = Key::generate();
        let write_err = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
            std::process::id()
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&tmp).map_err(write_err)?;
        let body = format!("{}\n", hex::encode(key.0));
        let written = file
            .write_all(body.as_bytes())
            .and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        // A hard link refuses to replace an existing file, so two concurrent `key new` calls
        // cannot overwrite each other.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyError::Exists {
                path: path.to_owned(),
            }),
            Err(e) => Err(write_err(e)),
        }
    }

    /// HMAC-SHA-256 of `value` under this key, separated by `domain`.
    pub fn mac(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Length-prefix the domain so that ("ab", "c") and ("a", "bc") never collide.
        mac.update(&(domain.len() as u64).to_be_bytes());
        mac.update(domain.as_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// A sub-key for a named purpose, e.g. `subkey("recipient", "acme-ai")`. Sub-keys of different
    /// labels are unrelated; nothing derived under one can be linked to another without the master.
    pub fn subkey(&self, purpose: &str, label: &str) -> Key {
        let mut input = Vec::with_capacity(label.len() + 8);
        input.extend_from_slice(&(label.len() as u64).to_be_bytes());
        input.extend_from_slice(label.as_bytes());
        Key(self.mac(&format!("veil/subkey/{purpose}"), &input))
    }

    /// A short identifier of the key that reveals nothing about it: lets reports and ledgers say
    /// which key was used.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.mac("veil/key-fingerprint", b"")[..8])
    }

    /// Keyed pseudonymous reference of an identifier in a domain: the same value and key give the
    /// same reference on any machine.
    pub fn keyed_ref(&self, domain: &str, value: &str) -> [u8; 32] {
        self.mac(domain, value.as_bytes())
    }

    /// A new UID under the `2.25` arc (an integer form of a UUID, PS3.5 B.2) derived from
    /// `original`: the same UID and key give the same new UID on any machine in any run.
    ///
    /// The 128 bits are shaped as an RFC 9562 version-8 UUID (vendor-specific), so the result is a
    /// valid `2.25` UID of at most 44 characters.
    pub fn derive_uid(&self, original: &str) -> String {
        let mac = self.mac(
            "veil/uid",
            original.trim_end_matches(['\0', ' ']).as_bytes(),
        );
        let mut b = [0u8; 16];
        b.copy_from_slice(&mac[..16]);
        b[6] = (b[6] & 0x0f) | 0x80; // version 8
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122/9562 variant
        format!("2.25.{}", u128::from_be_bytes(b))
    }

    /// A uniformly distributed integer in `[min, max]` derived from `value` in `domain`.
    pub fn derive_in_range(&self, domain: &str, value: &[u8], min: i64, max: i64) -> i64 {
        assert!(min <= max, "empty range");
        let span = (max as i128 - min as i128 + 1) as u128;
        let mac = self.mac(domain, value);
        let mut wide = [0u8; 16];
        wide.copy_from_slice(&mac[..16]);
        // 128 bits reduced modulo a span below 2^64: the bias is below 2^-64.
        let r = u128::from_be_bytes(wide) % span;
        (min as i128 + r as i128) as i64
    }

    /// `n` characters from `alphabet` derived from `value` in `domain`.
    pub fn derive_chars(&self, domain: &str, value: &[u8], alphabet: &[u8], n: usize) -> String {
        assert!(!alphabet.is_empty());
        let mut out = String::with_capacity(n);
        let mut counter: u32 = 0;
        while out.len() < n {
            let mut input = value.to_vec();
            input.extend_from_slice(&counter.to_be_bytes());
            let block = self.mac(domain, &input);
            // Rejection sampling keeps every symbol equally likely.
            let limit = 256 - (256 % alphabet.len());
            for &byte in block.iter() {
                if (byte as usize) < limit && out.len() < n {
                    out.push(alphabet[byte as usize % alphabet.len()] as char);
                }
            }
            counter += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_valid_and_stable() {
        let k = Key::from_bytes([7; 32]);
        let a = k.derive_uid("1.2.840.113619.2.55.3.604688119.969.1268071029.320");
        let b = k.derive_uid("1.2.840.113619.2.55.3.604688119.969.1268071029.320");
        assert_eq!(a, b);
        assert!(a.starts_with("2.25."));
        assert!(a.len() <= 64);
        let digits = &a[5..];
        assert!(digits.chars().all(|c| c.is_ascii_digit()));
        assert!(!digits.starts_with('0'));
        let other = Key::from_bytes([8; 32])
            .derive_uid("1.2.840.113619.2.55.3.604688119.969.1268071029.320");
        assert_ne!(a, other);
    }

    #[test]
    fn padding_does_not_change_uid() {
        let k = Key::from_bytes([1; 32]);
        assert_eq!(k.derive_uid("1.2.3\0"), k.derive_uid("1.2.3"));
    }

    #[test]
    fn range_is_respected() {
        let k = Key::from_bytes([3; 32]);
        for i in 0..2000u32 {
            let v = k.derive_in_range("t", &i.to_be_bytes(), -10, 10);
            assert!((-10..=10).contains(&v));
        }
    }

    #[test]
    fn subkeys_differ_by_label() {
        let k = Key::from_bytes([9; 32]);
        assert_ne!(k.subkey("recipient", "a"), k.subkey("recipient", "b"));
        assert_ne!(k.subkey("recipient", "a"), k.subkey("store", "a"));
        assert_eq!(k.subkey("recipient", "a"), k.subkey("recipient", "a"));
    }

    #[test]
    fn key_file_roundtrip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.key");
        let key = Key::write_new(&path).unwrap();
        assert_eq!(Key::load(&path).unwrap(), key);
        assert!(matches!(
            Key::write_new(&path),
            Err(KeyError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = Key::load(&path).unwrap_err();
            assert!(matches!(err, KeyError::LoosePermissions { .. }));
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(Key::load(&path), Err(KeyError::Malformed { .. })));
    }

    #[test]
    fn debug_hides_key() {
        let k = Key::from_bytes([0xab; 32]);
        assert!(!format!("{k:?}").contains("ab"));
    }
}
