//! The profile and its options (PS3.15 E.3) with their CID 7050 codes.

use serde::Serialize;

/// An option of the Application Level Confidentiality Profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ProfileOption {
    RetainSafePrivate,
    RetainUids,
    RetainDeviceIdentity,
    RetainInstitutionIdentity,
    RetainPatientCharacteristics,
    RetainLongitudinalFullDates,
    RetainLongitudinalModifiedDates,
    CleanDescriptors,
    CleanStructuredContent,
    CleanGraphics,
    /// Applied by the pixel stage; listed so policies can name it.
    CleanPixelData,
    /// Applied by the defacing stage; listed so policies can name it.
    CleanRecognizableVisualFeatures,
}

impl ProfileOption {
    /// Every option, in the order the table's columns list them.
    pub const ALL: [ProfileOption; 12] = [
        ProfileOption::RetainSafePrivate,
        ProfileOption::RetainUids,
        ProfileOption::RetainDeviceIdentity,
        ProfileOption::RetainInstitutionIdentity,
        ProfileOption::RetainPatientCharacteristics,
        ProfileOption::RetainLongitudinalFullDates,
        ProfileOption::RetainLongitudinalModifiedDates,
        ProfileOption::CleanDescriptors,
        ProfileOption::CleanStructuredContent,
        ProfileOption::CleanGraphics,
        ProfileOption::CleanPixelData,
        ProfileOption::CleanRecognizableVisualFeatures,
    ];

    /// The option's name in policy files (same as the table's column name).
    pub fn name(self) -> &'static str {
        match self {
            ProfileOption::RetainSafePrivate => "retain_safe_private",
            ProfileOption::RetainUids => "retain_uids",
            ProfileOption::RetainDeviceIdentity => "retain_device_identity",
            ProfileOption::RetainInstitutionIdentity => "retain_institution_identity",
            ProfileOption::RetainPatientCharacteristics => "retain_patient_characteristics",
            ProfileOption::RetainLongitudinalFullDates => "retain_longitudinal_full_dates",
            ProfileOption::RetainLongitudinalModifiedDates => "retain_longitudinal_modified_dates",
            ProfileOption::CleanDescriptors => "clean_descriptors",
            ProfileOption::CleanStructuredContent => "clean_structured_content",
            ProfileOption::CleanGraphics => "clean_graphics",
            ProfileOption::CleanPixelData => "clean_pixel_data",
            ProfileOption::CleanRecognizableVisualFeatures => "clean_recognizable_visual_features",
        }
    }

    /// The Table E.1-1 column this option changes actions in, if any.
    pub fn table_column(self) -> Option<&'static str> {
        match self {
            ProfileOption::CleanPixelData | ProfileOption::CleanRecognizableVisualFeatures => None,
            other => Some(other.name()),
        }
    }

    /// Looks an option up by its policy name.
    pub fn from_name(name: &str) -> Option<ProfileOption> {
        ProfileOption::ALL
            .iter()
            .copied()
            .find(|o| o.name() == name)
    }

    /// CID 7050 code value and meaning for De-identification Method Code Sequence.
    pub fn cid7050(self) -> (&'static str, &'static str) {
        match self {
            ProfileOption::CleanPixelData => ("113101", "Clean Pixel Data Option"),
            ProfileOption::CleanRecognizableVisualFeatures => {
                ("113102", "Clean Recognizable Visual Features Option")
            }
            ProfileOption::CleanGraphics => ("113103", "Clean Graphics Option"),
            ProfileOption::CleanStructuredContent => ("113104", "Clean Structured Content Option"),
            ProfileOption::CleanDescriptors => ("113105", "Clean Descriptors Option"),
            ProfileOption::RetainLongitudinalFullDates => (
                "113106",
                "Retain Longitudinal Temporal Information Full Dates Option",
            ),
            ProfileOption::RetainLongitudinalModifiedDates => (
                "113107",
                "Retain Longitudinal Temporal Information Modified Dates Option",
            ),
            ProfileOption::RetainPatientCharacteristics => {
                ("113108", "Retain Patient Characteristics Option")
            }
            ProfileOption::RetainDeviceIdentity => ("113109", "Retain Device Identity Option"),
            ProfileOption::RetainUids => ("113110", "Retain UIDs Option"),
            ProfileOption::RetainSafePrivate => ("113111", "Retain Safe Private Option"),
            ProfileOption::RetainInstitutionIdentity => {
                ("113112", "Retain Institution Identity Option")
            }
        }
    }
}

/// CID 7050 code of the Basic Application Level Confidentiality Profile.
pub const BASIC_PROFILE_CODE: (&str, &str) =
    ("113100", "Basic Application Confidentiality Profile");
