//! Encryption at rest of identifying values: XChaCha20-Poly1305 with a random 192-bit nonce per
//! value, and the column's role as associated data (a ciphertext moved to another column does not
//! open). Stored as base64 of nonce ‖ ciphertext.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use veil_keys::Key;

use crate::StoreError;

/// Seals and opens identifying values.
pub struct Sealer(XChaCha20Poly1305);

impl Sealer {
    /// From the store's sub-key (`key.subkey("store", "aead")`).
    pub fn new(subkey: &Key) -> Sealer {
        Sealer(XChaCha20Poly1305::new(subkey.as_bytes().into()))
    }

    /// Encrypts `value` for the column `role`.
    pub fn seal(&self, role: &'static str, value: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: role.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    /// Decrypts a value sealed for `role`.
    pub fn open(&self, role: &'static str, sealed: &str) -> Result<String, StoreError> {
        let raw = B64.decode(sealed).map_err(|_| StoreError::Decrypt(role))?;
        if raw.len() < 24 + 16 {
            return Err(StoreError::Decrypt(role));
        }
        let (nonce, ct) = raw.split_at(24);
        let pt = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: role.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Decrypt(role))?;
        String::from_utf8(pt).map_err(|_| StoreError::Decrypt(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_role_binding() {
        let k = Key::from_bytes([7; 32]);
        let s = Sealer::new(&k.subkey("store", "aead"));
        let a = s.seal("patient_id", "MRN-123");
        let b = s.seal("patient_id", "MRN-123");
        assert_ne!(a, b, "random nonce per value");
        assert!(!a.contains("MRN"));
        assert_eq!(s.open("patient_id", &a).unwrap(), "MRN-123");
        assert!(s.open("issuer", &a).is_err(), "wrong role must not open");
        let other = Sealer::new(&Key::from_bytes([8; 32]).subkey("store", "aead"));
        assert!(
            other.open("patient_id", &a).is_err(),
            "wrong key must not open"
        );
    }
}
