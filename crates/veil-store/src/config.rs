//! Institution settings: purposes (built-in plus declared ones) and the default consent state of
//! each purpose when a patient has no record for it. Loaded from a TOML file:
//!
//! ```toml
//! extra_purposes = ["registry-linkage"]
//! [defaults]
//! internal-research = "granted"          # opt-out
//! commercial-ai-training = "refused"     # opt-in only (also the built-in default)
//! registry-linkage = "refused"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use crate::consent::{ConsentState, BUILTIN_PURPOSES};
use crate::StoreError;

/// Purposes and per-purpose defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub purposes: Vec<String>,
    pub defaults: BTreeMap<String, ConsentState>,
}

impl Default for Settings {
    /// Built-in institution defaults: care and quality improvement granted; research opt-out
    /// (granted unless refused); commercial AI training and public dataset release opt-in only
    /// (refused unless explicitly granted).
    fn default() -> Settings {
        let mut defaults = BTreeMap::new();
        for (p, _) in BUILTIN_PURPOSES {
            let state = match *p {
                "commercial-ai-training" | "public-dataset-release" => ConsentState::Refused,
                _ => ConsentState::Granted,
            };
            defaults.insert(p.to_string(), state);
        }
        Settings {
            purposes: BUILTIN_PURPOSES
                .iter()
                .map(|(p, _)| p.to_string())
                .collect(),
            defaults,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    extra_purposes: Vec<String>,
    #[serde(default)]
    defaults: BTreeMap<String, String>,
}

impl Settings {
    /// Parses settings; errors name the file and field.
    pub fn parse(text: &str, origin: &str) -> Result<Settings, StoreError> {
        let f: File = toml::from_str(text).map_err(|e| {
            StoreError::Usage(format!("{origin}: {}", e.to_string().replace('\n', " ")))
        })?;
        let mut s = Settings::default();
        for p in f.extra_purposes {
            if !valid_purpose_name(&p) {
                return Err(StoreError::Usage(format!(
                    "{origin}: extra_purposes: `{p}` is not a purpose name (lowercase letters, digits and '-')"
                )));
            }
            if !s.purposes.contains(&p) {
                s.defaults.insert(p.clone(), ConsentState::Refused);
                s.purposes.push(p);
            }
        }
        for (p, v) in f.defaults {
            if !s.purposes.contains(&p) {
                return Err(StoreError::Usage(format!(
                    "{origin}: defaults.{p}: unknown purpose (declare it in extra_purposes)"
                )));
            }
            let st = match v.as_str() {
                "granted" => ConsentState::Granted,
                "refused" => ConsentState::Refused,
                _ => {
                    return Err(StoreError::Usage(format!(
                        "{origin}: defaults.{p}: `{v}` must be \"granted\" or \"refused\""
                    )))
                }
            };
            s.defaults.insert(p, st);
        }
        Ok(s)
    }

    /// Loads settings from a file.
    pub fn load(path: &Path) -> Result<Settings, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::Usage(format!("config {}: {e}", path.display())))?;
        Settings::parse(&text, &format!("config {}", path.display()))
    }

    /// Checks a purpose name against the known purposes.
    pub fn check_purpose(&self, p: &str) -> Result<(), StoreError> {
        if self.purposes.iter().any(|x| x == p) {
            Ok(())
        } else {
            Err(StoreError::Usage(format!(
                "unknown purpose `{p}`; known: {} (declare others in the config's extra_purposes)",
                self.purposes.join(", ")
            )))
        }
    }

    /// The default state of a purpose.
    pub fn default_for(&self, p: &str) -> ConsentState {
        self.defaults
            .get(p)
            .copied()
            .unwrap_or(ConsentState::Refused)
    }
}

fn valid_purpose_name(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::default();
        assert_eq!(
            s.default_for("commercial-ai-training"),
            ConsentState::Refused
        );
        assert_eq!(s.default_for("internal-research"), ConsentState::Granted);
        let s = Settings::parse(
            "extra_purposes = [\"registry-linkage\"]\n[defaults]\ninternal-research = \"refused\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.default_for("internal-research"), ConsentState::Refused);
        assert_eq!(s.default_for("registry-linkage"), ConsentState::Refused);
        let e = Settings::parse("[defaults]\nbogus = \"granted\"\n", "cfg")
            .unwrap_err()
            .to_string();
        assert!(e.contains("defaults.bogus"), "{e}");
        let e = Settings::parse("[defaults]\ninternal-research = \"maybe\"\n", "cfg")
            .unwrap_err()
            .to_string();
        assert!(e.contains("internal-research"), "{e}");
    }
}
