//! Applies a policy's `[generalize]` section to a de-identified dataset (owned by the risk work,
//! issue 7).

use dicom_object::InMemDicomObject;
use veil_profile::generalize::GeneralizeSpec;

/// What generalisation did to one dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneralizeOutcome {
    /// The record falls in a class the policy suppresses: it must not be released.
    pub suppressed: bool,
    /// How many attribute values were generalised.
    pub fields_generalized: usize,
}

/// Generalises quasi-identifiers of `obj` in place according to `spec`.
pub fn apply(_obj: &mut InMemDicomObject, _spec: &GeneralizeSpec) -> GeneralizeOutcome {
    GeneralizeOutcome::default()
}
