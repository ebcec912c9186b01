//! The de-identification rules as data.
//!
//! This crate owns DICOM PS3.15 Table E.1-1 (every profile option column) and the Safe Private
//! Attributes table, embedded at build time from `reference/`; policy files (TOML) that choose
//! options, pseudonym formats, the date-shift range, per-attribute overrides and generalisation; and
//! the resolution of all that into one effective action per attribute ([`Rules`]). It applies
//! nothing to data: that is `veil-deid`'s job.

pub mod action;
pub mod generalize;
pub mod options;
pub mod policy;
pub mod standard;
pub mod table;

use std::collections::{HashMap, HashSet};

pub use action::Action;
pub use options::{ProfileOption, BASIC_PROFILE_CODE};
pub use policy::{
    FaceSettings, Override, OverrideTarget, PixelSettings, Policy, PolicyError, PolicyIssue,
    Template, TemplatePart,
};

/// Where an effective action came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RuleSource {
    /// The Basic Profile column.
    Basic,
    /// An option column changed the basic action.
    Option(ProfileOption),
    /// A policy override.
    Override,
}

impl std::fmt::Display for RuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleSource::Basic => f.write_str("basic profile"),
            RuleSource::Option(o) => f.write_str(o.name()),
            RuleSource::Override => f.write_str("policy override"),
        }
    }
}

/// An effective action and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub source: RuleSource,
}

/// What to do with one private attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateDecision {
    /// Keep it: it is on the safe list (Retain Safe Private) or an override keeps it.
    Keep(RuleSource),
    /// Remove it (the default for every private attribute).
    Remove(RuleSource),
}

/// The policy resolved into one effective action per attribute.
#[derive(Debug, Clone)]
pub struct Rules {
    exact: HashMap<u32, Rule>,
    masked: Vec<(table::TagPattern, Rule)>,
    private_default: Rule,
    safe_private: HashSet<(u16, String, u8)>,
    private_overrides: HashMap<(u16, String, u8), Action>,
    keep_safe_private: bool,
}

/// Resolves a table row under a set of options: options that give an action replace the basic
/// one; when two enabled options disagree, C (clean) wins over K (keep), because cleaning is the
/// more protective of two actions that both retain the attribute (e.g. a calibration date under
/// Retain Device Identity *and* Modified Dates must still be shifted).
pub fn resolve_row(
    row: &table::TableRow,
    options: &std::collections::BTreeSet<ProfileOption>,
) -> Rule {
    let mut chosen: Option<Rule> = None;
    for (opt, action) in &row.option_actions {
        if !options.contains(opt) {
            continue;
        }
        chosen = match chosen {
            Some(prev) if prev.action == Action::C => Some(prev),
            _ => Some(Rule {
                action: *action,
                source: RuleSource::Option(*opt),
            }),
        };
    }
    chosen.unwrap_or(Rule {
        action: row.basic,
        source: RuleSource::Basic,
    })
}

impl Rules {
    /// Compiles a policy.
    pub fn new(policy: &Policy) -> Rules {
        let mut exact = HashMap::new();
        let mut masked = Vec::new();
        let mut private_default = Rule {
            action: Action::X,
            source: RuleSource::Basic,
        };
        for row in table::table_e1_1().iter().chain(table::veil_additions()) {
            let rule = resolve_row(row, &policy.options);
            match row.pattern {
                table::TagPattern::Exact(t) => {
                    exact.insert(t, rule);
                }
                table::TagPattern::Masked { .. } => masked.push((row.pattern, rule)),
                table::TagPattern::Private => private_default = rule,
            }
        }
        let mut private_overrides = HashMap::new();
        for o in &policy.overrides {
            match &o.target {
                OverrideTarget::Tag(t) => {
                    exact.insert(
                        *t,
                        Rule {
                            action: o.action,
                            source: RuleSource::Override,
                        },
                    );
                }
                OverrideTarget::Private {
                    group,
                    creator,
                    element_low,
                } => {
                    private_overrides.insert((*group, creator.clone(), *element_low), o.action);
                }
            }
        }
        let safe_private = table::safe_private_table()
            .iter()
            .map(|r| (r.group, r.creator.clone(), r.element_low))
            .collect();
        Rules {
            exact,
            masked,
            private_default,
            safe_private,
            private_overrides,
            keep_safe_private: policy.has(ProfileOption::RetainSafePrivate),
        }
    }

    /// The effective rule for a public attribute, or `None` when neither the table nor an
    /// override lists it (the engine then keeps standard attributes, screening their text, and
    /// removes attributes the dictionary does not know).
    pub fn for_tag(&self, tag: u32) -> Option<Rule> {
        if let Some(r) = self.exact.get(&tag) {
            return Some(*r);
        }
        self.masked
            .iter()
            .find(|(p, _)| p.matches(tag))
            .map(|(_, r)| *r)
    }

    /// The decision for a private attribute identified by its creator, never by raw tag.
    pub fn for_private(&self, group: u16, creator: &str, element_low: u8) -> PrivateDecision {
        let creator = creator.trim_end_matches([' ', '\0']);
        if let Some(a) = self
            .private_overrides
            .get(&(group, creator.to_string(), element_low))
        {
            return if a.retains() {
                PrivateDecision::Keep(RuleSource::Override)
            } else {
                PrivateDecision::Remove(RuleSource::Override)
            };
        }
        if self.keep_safe_private
            && self
                .safe_private
                .contains(&(group, creator.to_string(), element_low))
        {
            return PrivateDecision::Keep(RuleSource::Option(ProfileOption::RetainSafePrivate));
        }
        PrivateDecision::Remove(self.private_default.source)
    }

    /// The rule for private attributes in general (for `policy show`).
    pub fn private_default(&self) -> Rule {
        self.private_default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kw: &str) -> u32 {
        policy::tag_for_keyword(kw).unwrap()
    }

    #[test]
    fn default_policy_resolves_options() {
        let rules = Rules::new(&Policy::default_policy());
        assert_eq!(rules.for_tag(tag("PatientName")).unwrap().action, Action::Z);
        assert_eq!(rules.for_tag(tag("StudyDate")).unwrap().action, Action::C);
        assert_eq!(rules.for_tag(tag("PatientAge")).unwrap().action, Action::K);
        assert_eq!(
            rules.for_tag(tag("StudyDescription")).unwrap().action,
            Action::C
        );
        assert_eq!(
            rules.for_tag(tag("SOPInstanceUID")).unwrap().action,
            Action::U
        );
        assert_eq!(
            rules.for_tag(tag("InstitutionName")).unwrap().action,
            Action::XZD
        );
        assert!(rules.for_tag(tag("Rows")).is_none());
        assert_eq!(rules.for_tag(0x6000_3000).unwrap().action, Action::X);
    }

    #[test]
    fn basic_only_and_retain_options() {
        let basic = Policy::from_toml_str("[profile]\noptions = []\n", "t").unwrap();
        let rules = Rules::new(&basic);
        assert_eq!(rules.for_tag(tag("StudyDate")).unwrap().action, Action::Z);
        assert_eq!(
            rules.for_tag(tag("StudyDescription")).unwrap().action,
            Action::X
        );
        let p = Policy::from_toml_str(
            "[profile]\noptions = [\"retain_uids\", \"retain_device_identity\", \"retain_longitudinal_modified_dates\"]\n",
            "t",
        )
        .unwrap();
        let rules = Rules::new(&p);
        assert_eq!(
            rules.for_tag(tag("SOPInstanceUID")).unwrap().action,
            Action::K
        );
        assert_eq!(rules.for_tag(tag("StationName")).unwrap().action, Action::K);
        // Device identity says K, modified dates says C: the date is still shifted.
        assert_eq!(
            rules.for_tag(tag("DateOfLastCalibration")).unwrap().action,
            Action::C
        );
    }

    #[test]
    fn overrides_win() {
        let p = Policy::from_toml_str(
            "[[override]]\nkeyword = \"StudyDescription\"\naction = \"X\"\n",
            "t",
        )
        .unwrap();
        let r = Rules::new(&p).for_tag(tag("StudyDescription")).unwrap();
        assert_eq!(r.action, Action::X);
        assert_eq!(r.source, RuleSource::Override);
    }

    #[test]
    fn safe_private_needs_the_option_and_the_creator() {
        let rules = Rules::new(&Policy::default_policy());
        assert!(matches!(
            rules.for_private(0x0019, "GEMS_ACQU_01", 0x27),
            PrivateDecision::Remove(_)
        ));
        let p =
            Policy::from_toml_str("[profile]\noptions = [\"retain_safe_private\"]\n", "t").unwrap();
        let rules = Rules::new(&p);
        assert!(matches!(
            rules.for_private(0x0019, "GEMS_ACQU_01 ", 0x27),
            PrivateDecision::Keep(_)
        ));
        assert!(matches!(
            rules.for_private(0x0019, "ACME", 0x27),
            PrivateDecision::Remove(_)
        ));
    }
}
