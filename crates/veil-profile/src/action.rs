//! PS3.15 E.1.1 action codes.

use serde::Serialize;

/// An action code from Table E.1-1, including the compound codes, or an override's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    /// Replace with a non-zero-length dummy value consistent with the VR.
    D,
    /// Replace with a zero-length value (or a dummy where zero length is not allowed).
    Z,
    /// Remove.
    X,
    /// Keep (sequences are still cleaned item by item).
    K,
    /// Clean: keep what carries no identifying information (descriptor text cleaned, dates shifted).
    C,
    /// Replace a UID with an internally consistent new UID.
    U,
    /// X unless Z is needed to keep the IOD valid.
    XZ,
    /// X unless D is needed.
    XD,
    /// Z unless D is needed.
    ZD,
    /// X unless Z or D is needed.
    XZD,
    /// X unless Z is needed; U applies to the UIDs inside the sequence (X/Z/U*).
    XZU,
}

impl Action {
    /// Parses a code as written in the table or a policy (`X/Z`, `x/z/u*`, `K`, ...).
    pub fn parse(code: &str) -> Option<Action> {
        let norm: String = code
            .trim()
            .to_ascii_uppercase()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        Some(match norm.as_str() {
            "D" => Action::D,
            "Z" => Action::Z,
            "X" => Action::X,
            "K" => Action::K,
            "C" => Action::C,
            "U" => Action::U,
            "X/Z" => Action::XZ,
            "X/D" => Action::XD,
            "Z/D" => Action::ZD,
            "X/Z/D" => Action::XZD,
            "X/Z/U*" | "X/Z/U" => Action::XZU,
            _ => return None,
        })
    }

    /// The code as the standard writes it.
    pub fn code(self) -> &'static str {
        match self {
            Action::D => "D",
            Action::Z => "Z",
            Action::X => "X",
            Action::K => "K",
            Action::C => "C",
            Action::U => "U",
            Action::XZ => "X/Z",
            Action::XD => "X/D",
            Action::ZD => "Z/D",
            Action::XZD => "X/Z/D",
            Action::XZU => "X/Z/U*",
        }
    }

    /// What Veil does for this action, in words, with compound codes resolved the way the
    /// engine resolves them: X/Z empties a present attribute; X/D, Z/D and X/Z/D give a dummy
    /// to a non-empty value (an empty one stays empty); X/Z/U* replaces the UIDs inside.
    pub fn resolved(self) -> &'static str {
        match self {
            Action::D => "dummy",
            Action::Z | Action::XZ => "empty",
            Action::X => "remove",
            Action::K => "keep",
            Action::C => "clean",
            Action::U => "new UID",
            Action::XD | Action::ZD | Action::XZD => "dummy (empty stays empty)",
            Action::XZU => "new UIDs inside",
        }
    }

    /// Does the action keep the attribute's information (K or C)?
    pub fn retains(self) -> bool {
        matches!(self, Action::K | Action::C)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_code_and_round_trips() {
        for code in [
            "D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*",
        ] {
            assert_eq!(Action::parse(code).unwrap().code(), code);
        }
        assert_eq!(Action::parse(" x / z "), Some(Action::XZ));
        assert_eq!(Action::parse("Q"), None);
    }
}
