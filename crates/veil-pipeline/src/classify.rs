//! The classify stage: decides, from the header alone, whether an instance can be released by
//! header de-identification, or must be held back (burned-in text risk, encapsulated documents,
//! DICOMDIR). Reasons name attributes and categories, never values.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Why an instance is held back before de-identification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// May carry identifying text in its pixels, and no pixel stage is configured.
    BurnedInRisk(String),
    /// Carries a whole document (PDF, CDA, 3-D model...) Veil cannot clean.
    EncapsulatedDocument(String),
    /// A media directory: it indexes patients by name and is never copied.
    Dicomdir,
    /// A photograph of a slide's label (whole-slide imaging LABEL or OVERVIEW image, or any
    /// image whose Image Type says LABEL): the label carries the patient's name and number,
    /// often as a barcode that text detection cannot find.
    SlideLabel(String),
}

impl Hold {
    /// Stable reason code for reports.
    pub fn code(&self) -> &'static str {
        match self {
            Hold::BurnedInRisk(_) => "burned_in_risk",
            Hold::EncapsulatedDocument(_) => "encapsulated_document",
            Hold::Dicomdir => "dicomdir",
            Hold::SlideLabel(_) => "slide_label",
        }
    }

    /// Explanation for reports (no identifying values).
    pub fn detail(&self) -> String {
        match self {
            Hold::BurnedInRisk(why) => format!(
                "{why}: the pixels may show identifying text and the pixel-cleaning stage is not enabled; held back until it is"
            ),
            Hold::EncapsulatedDocument(why) => format!("{why}: an encapsulated document cannot be cleaned by header rules"),
            Hold::Dicomdir => "DICOMDIR media directory: it indexes patient names and IDs; not copied (Veil writes its own tree)".into(),
            Hold::SlideLabel(what) => format!("{what}: a photograph of the slide label, which carries the patient's name and number (as text and as a barcode); held back"),
        }
    }
}

/// Modalities whose images often carry burned-in annotations (ultrasound, angiography and
/// fluoroscopy, endoscopy and photography, document and secondary capture modalities).
const RISKY_MODALITIES: &[&str] = &[
    "US", "IVUS", "XA", "RF", "ES", "XC", "GM", "OP", "DOC", "SC", "OT", "SM", "ECG",
];

/// SOP Class UID prefixes of secondary captures, video and photographic classes, where text is
/// commonly part of the image.
const RISKY_SOP_PREFIXES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture SOP class"),
    (
        "1.2.840.10008.5.1.4.1.1.77.1",
        "visible light / video SOP class",
    ),
    ("1.2.840.10008.5.1.4.1.1.6", "ultrasound SOP class"),
    (
        "1.2.840.10008.5.1.4.1.1.3",
        "ultrasound multi-frame (retired) SOP class",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.12",
        "X-ray angiography / fluoroscopy SOP class",
    ),
];

const DOCUMENT_SOP_PREFIX: &str = "1.2.840.10008.5.1.4.1.1.104";
const DICOMDIR_SOP: &str = "1.2.840.10008.1.3.10";

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    veil_deid::text_of(obj, tag)
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// Whole-slide imaging's label and overview images (Image Type value 3 LABEL or OVERVIEW, PS3.3
/// C.8.12.4.1.1), and any image whose Image Type names LABEL.
fn slide_label(obj: &InMemDicomObject) -> Option<String> {
    let values: Vec<String> = obj
        .get(tags::IMAGE_TYPE)?
        .to_multi_str()
        .ok()?
        .iter()
        .map(|v| v.trim().to_ascii_uppercase())
        .collect();
    if values.iter().any(|v| v == "LABEL") {
        return Some("Image Type names LABEL".into());
    }
    (values.get(2).map(String::as_str) == Some("OVERVIEW"))
        .then(|| "Image Type value 3 is OVERVIEW (whole-slide imaging)".into())
}

/// Classifies one instance.
/// `pixel_data_elsewhere`: the instance has Pixel Data that was left out of `obj` (carried as bytes).
pub fn classify(
    obj: &InMemDicomObject,
    media_sop_class: &str,
    pixel_data_elsewhere: bool,
) -> Option<Hold> {
    let sop_class = {
        let s = text(obj, tags::SOP_CLASS_UID);
        if s.is_empty() {
            media_sop_class.trim_end_matches('\0').to_string()
        } else {
            s
        }
    };
    if sop_class == DICOMDIR_SOP || obj.get(tags::DIRECTORY_RECORD_SEQUENCE).is_some() {
        return Some(Hold::Dicomdir);
    }
    if sop_class.starts_with(DOCUMENT_SOP_PREFIX) || obj.get(tags::ENCAPSULATED_DOCUMENT).is_some()
    {
        return Some(Hold::EncapsulatedDocument(
            "encapsulated document SOP class".into(),
        ));
    }
    if let Some(what) = slide_label(obj) {
        return Some(Hold::SlideLabel(what));
    }
    let has_pixels = pixel_data_elsewhere
        || obj.get(tags::PIXEL_DATA).is_some()
        || obj.get(tags::FLOAT_PIXEL_DATA).is_some()
        || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some();
    if text(obj, tags::BURNED_IN_ANNOTATION) == "YES" {
        return Some(Hold::BurnedInRisk(
            "Burned In Annotation (0028,0301) is YES".into(),
        ));
    }
    if !has_pixels {
        return None;
    }
    let modality = text(obj, tags::MODALITY);
    if RISKY_MODALITIES.contains(&modality.as_str()) {
        return Some(Hold::BurnedInRisk(format!("modality {modality}")));
    }
    if let Some((_, what)) = RISKY_SOP_PREFIXES
        .iter()
        .find(|(p, _)| sop_class == *p || sop_class.starts_with(&format!("{p}.")))
    {
        return Some(Hold::BurnedInRisk((*what).to_string()));
    }
    None
}
