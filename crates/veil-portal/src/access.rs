//! Who may sign in: one-time access codes for patients, password + TOTP accounts for the privacy
//! office. The rules live here (code alphabet and length, expiry, lockout limits); the store
//! keeps only a keyed hash of each code, an argon2 hash of each password and sealed TOTP
//! secrets.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::Rng;
use subtle::ConstantTimeEq;
use veil_store::Store;

use crate::PortalError;

/// Code symbols: no 0/O or 1/I, so a code read from a letter is typed right. 32 symbols.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Symbols in a code: 12 × 5 bits = 60 bits, far beyond what the sign-in limits let anyone try.
const CODE_LEN: usize = 12;
/// Failed officer sign-ins before the account is locked, and for how long.
pub const OFFICER_FAILURE_LIMIT: i64 = 5;
pub const OFFICER_LOCK_SECS: i64 = 15 * 60;
/// The name the TOTP app shows for the account.
const TOTP_ISSUER: &str = "Veil privacy office";

/// A newly issued code, to print once.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    /// `ABCD-EFGH-JKLM`.
    pub code: String,
    pub expires_at: String,
    /// The patient's short keyed reference (for audit rows).
    pub patient_ref: String,
}

/// A new privacy-office account's second factor, shown once.
#[derive(Debug, Clone)]
pub struct NewOfficer {
    pub totp_secret_base32: String,
    pub otpauth_uri: String,
}

/// The outcome of an officer's sign-in attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfficerCheck {
    Accepted,
    Refused,
    /// Too many failures: the account is locked until the stored time.
    Locked,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The normalised UTC time `secs` from now.
pub fn time_in(secs: i64) -> String {
    veil_store::time::format_unix(now_secs() + secs, 0)
}

fn new_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let symbols: String = (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    format!("{}-{}-{}", &symbols[..4], &symbols[4..8], &symbols[8..])
}

/// A code as typed (any case, spaces or dashes anywhere) in its stored form, or `None` when it
/// cannot be a code (then nothing is looked up).
pub fn normalise_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let well_formed = code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b));
    well_formed.then_some(code)
}

/// Issues a one-time access code for a patient the store knows (a consent record or a release
/// names them), valid for `valid_days`, and records who issued it in the audit log.
pub fn issue_code(
    store: &Store,
    patient_id: &str,
    issuer: &str,
    issued_by: &str,
    valid_days: u32,
) -> Result<IssuedCode, PortalError> {
    if !(1..=90).contains(&valid_days) {
        return Err(PortalError::Usage(format!(
            "--valid-days {valid_days}: between 1 and 90"
        )));
    }
    veil_app::registry::require_known_patient(store, patient_id, issuer)?;
    let code = new_code();
    let expires_at = time_in(i64::from(valid_days) * 86_400);
    let stored = normalise_code(&code).expect("a new code is well formed");
    let holder = store.portal_store_code(&stored, patient_id, issuer, issued_by, &expires_at)?;
    store.portal_audit(
        issued_by,
        "issue-code",
        &format!("patient {} until {expires_at}", holder.short_ref),
    )?;
    Ok(IssuedCode {
        code,
        expires_at,
        patient_ref: holder.short_ref,
    })
}

fn valid_officer_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn totp(secret: &[u8], name: &str) -> Result<totp_rs::TOTP, PortalError> {
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret.to_vec(),
        Some(TOTP_ISSUER.to_string()),
        name.to_string(),
    )
    .map_err(|e| PortalError::Usage(format!("TOTP: {e}")))
}

/// Adds a privacy-office account with an argon2 hash of `password` and a new TOTP secret.
pub fn add_officer(store: &Store, name: &str, password: &str) -> Result<NewOfficer, PortalError> {
    if !valid_officer_name(name) {
        return Err(PortalError::Usage(format!(
            "officer name `{name}`: 1 to 64 letters, digits, dots, dashes or underscores"
        )));
    }
    if password.chars().count() < 12 {
        return Err(PortalError::Usage(
            "password: at least 12 characters (give it on stdin or in VEIL_OFFICER_PASSWORD)"
                .into(),
        ));
    }
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .map_err(|e| PortalError::Usage(format!("password: {e}")))?
        .to_string();
    let secret: [u8; 20] = rand::random();
    let t = totp(&secret, name)?;
    store.portal_add_officer(name, &hash, &secret)?;
    store.portal_audit("operator", "add-officer", name)?;
    Ok(NewOfficer {
        totp_secret_base32: t.get_secret_base32(),
        otpauth_uri: t.get_url(),
    })
}

/// A fixed argon2 hash to verify against when the name is unknown, so that an unknown name
/// takes as long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"decoy password", &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The TOTP time step (now − 1, now or now + 1, for clocks a little apart) whose code is `code`.
fn totp_step(secret: &[u8], name: &str, code: &str, now: i64) -> Option<i64> {
    let t = totp(secret, name).ok()?;
    let step = now / 30;
    (step - 1..=step + 1).find(|s| {
        let expected = t.generate((*s * 30) as u64);
        bool::from(expected.as_bytes().ct_eq(code.trim().as_bytes()))
    })
}

/// Checks an officer's password and TOTP code; counts failures and locks the account at
/// [`OFFICER_FAILURE_LIMIT`]. A locked account is refused without looking at what was typed;
/// a TOTP code is accepted once.
pub fn check_officer(
    store: &Store,
    name: &str,
    password: &str,
    code: &str,
) -> Result<OfficerCheck, PortalError> {
    let Some(officer) = store.portal_officer(name)? else {
        password_matches(decoy_hash(), password);
        return Ok(OfficerCheck::Refused);
    };
    let now = now_secs();
    if !officer.locked_until.is_empty()
        && officer.locked_until > veil_store::time::format_unix(now, 0)
    {
        return Ok(OfficerCheck::Locked);
    }
    let password_ok = password_matches(&officer.password_hash, password);
    let step = totp_step(&officer.totp_secret, name, code, now);
    if let (true, Some(step)) = (password_ok, step) {
        if store.portal_officer_signed_in(name, step)? {
            return Ok(OfficerCheck::Accepted);
        }
    }
    let locked =
        store.portal_officer_failed(name, OFFICER_FAILURE_LIMIT, &time_in(OFFICER_LOCK_SECS))?;
    Ok(if locked {
        OfficerCheck::Locked
    } else {
        OfficerCheck::Refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_well_formed_and_typing_variants_normalise() {
        let c = new_code();
        assert_eq!(c.len(), 14, "{c}");
        let n = normalise_code(&c).unwrap();
        assert_eq!(normalise_code(&c.to_lowercase().replace('-', " ")), Some(n));
        assert_eq!(
            normalise_code("ABCD-EFGH-JKL0"),
            None,
            "0 is not a code symbol"
        );
        assert_eq!(normalise_code("ABCD"), None);
        assert_ne!(new_code(), new_code());
    }

    #[test]
    fn totp_accepts_the_current_code_and_not_a_wrong_one() {
        let secret = [7u8; 20];
        let t = totp(&secret, "ann").unwrap();
        let now = now_secs();
        let code = t.generate(now as u64);
        assert_eq!(totp_step(&secret, "ann", &code, now), Some(now / 30));
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(totp_step(&secret, "ann", &wrong, now), None);
    }

    #[test]
    fn passwords_check_against_argon2_hashes() {
        let h = Argon2::default()
            .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches(&h, "correct horse battery"));
        assert!(!password_matches(&h, "correct horse battery!"));
        assert!(!password_matches("not a hash", "x"));
    }
}
