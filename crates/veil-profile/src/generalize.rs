//! The `[generalize]` section of a policy: generalisation of quasi-identifiers and record
//! suppression chosen by `veil risk` (owned by the risk work, issue 7).

use serde::Deserialize;

/// Generalisation applied by `veil deid` after the Annex E rules.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneralizeSpec {}
