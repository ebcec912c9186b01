//! What the stage reads from an instance's header: which instances it must see whole (CT and
//! MR images), which it holds back at once (photographs, localizers), and each slice's
//! geometry.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Enhanced, legacy-converted enhanced and other multi-frame CT and MR image classes.
const MULTI_FRAME_CT_MR: &[&str] = &[
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
    "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.4.4",
];
/// Photographs and video of the body surface (PS3.4 B.5): VL endoscopic and photographic
/// images and their video forms, dermoscopic photographs.
const PHOTOGRAPHIC: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.77.1.1", "VL endoscopic image"),
    ("1.2.840.10008.5.1.4.1.1.77.1.1.1", "video endoscopic image"),
    ("1.2.840.10008.5.1.4.1.1.77.1.4", "VL photographic image"),
    (
        "1.2.840.10008.5.1.4.1.1.77.1.4.1",
        "video photographic image",
    ),
    ("1.2.840.10008.5.1.4.1.1.77.1.7", "dermoscopic photograph"),
];
/// Words in Body Part Examined or the descriptions that say a series shows the head. Hints
/// only (they are often wrong or empty): they never decide that a series has no face, only
/// that one which cannot be checked is held back.
const HEAD_WORDS: &[&str] = &[
    "HEAD", "BRAIN", "SKULL", "NECK", "FACE", "ORBIT", "SINUS", "CRANI", "CEREB", "NEURO", "IAC",
    "PETROUS", "MANDIBLE", "MAXILLA", "DENTAL", "TMJ", "HEADNECK", "KOPF", "SCHAEDEL", "TETE",
    "CRANE", "CABEZA", "CRANEO",
];

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| {
            s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                .to_ascii_uppercase()
        })
        .unwrap_or_default()
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.get(tag)?.value().to_multi_float64().ok()
}

/// What the gate makes of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A CT or MR image: its series is collected under this key.
    Slice { key: String },
    /// Held back: (reason code, explanation).
    Hold(&'static str, String),
    /// Not the stage's business.
    Other,
}

/// Sorts an instance by its header (`hold_photographs`: the policy's setting).
pub fn kind(obj: &InMemDicomObject, media_class: &str, hold_photographs: bool) -> Kind {
    let class = {
        let c = text(obj, tags::SOP_CLASS_UID);
        if c.is_empty() {
            media_class.trim_end_matches('\0').to_string()
        } else {
            c
        }
    };
    let modality = text(obj, tags::MODALITY);
    if let Some((_, what)) = PHOTOGRAPHIC.iter().find(|(uid, _)| *uid == class) {
        if hold_photographs {
            return Kind::Hold("face_photograph", format!("{what}: a photograph or video of the body surface may show a face, and nothing yet proves it does not; held back (policy [faces] hold_photographs = false releases it)"));
        }
        return Kind::Other;
    }
    if hold_photographs && modality == "XC" {
        return Kind::Hold("face_photograph", "modality XC (external camera photograph): it may show a face, and nothing yet proves it does not; held back (policy [faces] hold_photographs = false releases it)".into());
    }
    let ct_or_mr =
        class == CT_IMAGE || class == MR_IMAGE || MULTI_FRAME_CT_MR.contains(&class.as_str());
    if !ct_or_mr {
        return Kind::Other;
    }
    let image_type = text(obj, tags::IMAGE_TYPE);
    if image_type.split('\\').any(|v| v.trim() == "LOCALIZER") {
        return Kind::Hold("face_localizer", "a CT or MR localizer: it shows the head's outline and cannot be checked for a face as a volume; held back".into());
    }
    if MULTI_FRAME_CT_MR.contains(&class.as_str()) {
        return Kind::Hold("face_unchecked", "an enhanced (multi-frame) CT or MR image: Veil cannot yet assemble it into a volume to look for a face; held back".into());
    }
    let series = text(obj, tags::SERIES_INSTANCE_UID);
    Kind::Slice {
        key: format!("{series}\u{1f}{modality}"),
    }
}

/// Does the header say the series shows the head (Body Part Examined, descriptions, protocol)?
pub fn says_head(obj: &InMemDicomObject) -> bool {
    [
        tags::BODY_PART_EXAMINED,
        tags::STUDY_DESCRIPTION,
        tags::SERIES_DESCRIPTION,
        tags::PROTOCOL_NAME,
    ]
    .iter()
    .any(|&t| {
        let v = text(obj, t);
        v.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| HEAD_WORDS.iter().any(|h| w.starts_with(h)))
    })
}

/// One slice's geometry and value mapping.
#[derive(Debug, Clone)]
pub struct SliceHeader {
    pub sop_uid: String,
    pub ct: bool,
    pub rows: usize,
    pub cols: usize,
    /// Row direction (along a row, increasing column) then column direction (down a column).
    pub orientation: [f64; 6],
    /// Patient position of the first pixel's centre (mm, LPS).
    pub position: [f64; 3],
    /// Spacing between rows, then between columns (mm).
    pub spacing: [f64; 2],
    pub slope: f64,
    pub intercept: f64,
    pub frames: u32,
}

/// Why a slice's geometry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("an instance has no {0}")]
    Missing(&'static str),
    #[error("an instance has an invalid {0}")]
    Invalid(&'static str),
}

impl SliceHeader {
    /// Reads the geometry of one CT or MR image.
    pub fn of(obj: &InMemDicomObject) -> Result<SliceHeader, GeometryError> {
        let num = |tag, name| {
            obj.get(tag)
                .and_then(|e| e.value().to_int::<i64>().ok())
                .ok_or(GeometryError::Missing(name))
        };
        let iop = floats(obj, tags::IMAGE_ORIENTATION_PATIENT)
            .ok_or(GeometryError::Missing("Image Orientation (Patient)"))?;
        let ipp = floats(obj, tags::IMAGE_POSITION_PATIENT)
            .ok_or(GeometryError::Missing("Image Position (Patient)"))?;
        let ps = floats(obj, tags::PIXEL_SPACING).ok_or(GeometryError::Missing("Pixel Spacing"))?;
        if iop.len() != 6 || iop.iter().any(|v| !v.is_finite()) {
            return Err(GeometryError::Invalid("Image Orientation (Patient)"));
        }
        if ipp.len() != 3 || ipp.iter().any(|v| !v.is_finite()) {
            return Err(GeometryError::Invalid("Image Position (Patient)"));
        }
        if ps.len() != 2
            || ps
                .iter()
                .any(|v| !(v.is_finite() && *v > 0.01 && *v < 50.0))
        {
            return Err(GeometryError::Invalid("Pixel Spacing"));
        }
        let norm = |a: &[f64]| (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
        let dot = iop[0] * iop[3] + iop[1] * iop[4] + iop[2] * iop[5];
        if (norm(&iop[..3]) - 1.0).abs() > 0.01
            || (norm(&iop[3..]) - 1.0).abs() > 0.01
            || dot.abs() > 0.01
        {
            return Err(GeometryError::Invalid("Image Orientation (Patient)"));
        }
        let rows = num(tags::ROWS, "Rows")?;
        let cols = num(tags::COLUMNS, "Columns")?;
        if !(1..=8192).contains(&rows) || !(1..=8192).contains(&cols) {
            return Err(GeometryError::Invalid("Rows or Columns"));
        }
        let frames = obj
            .get(tags::NUMBER_OF_FRAMES)
            .and_then(|e| e.value().to_int::<u32>().ok())
            .unwrap_or(1);
        let slope = floats(obj, tags::RESCALE_SLOPE)
            .and_then(|v| v.first().copied())
            .unwrap_or(1.0);
        let intercept = floats(obj, tags::RESCALE_INTERCEPT)
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        if !slope.is_finite() || slope == 0.0 || !intercept.is_finite() {
            return Err(GeometryError::Invalid("Rescale Slope or Intercept"));
        }
        let mut orientation = [0.0; 6];
        orientation.copy_from_slice(&iop);
        Ok(SliceHeader {
            sop_uid: text(obj, tags::SOP_INSTANCE_UID),
            ct: text(obj, tags::MODALITY) == "CT",
            rows: rows as usize,
            cols: cols as usize,
            orientation,
            position: [ipp[0], ipp[1], ipp[2]],
            spacing: [ps[0], ps[1]],
            slope,
            intercept,
            frames,
        })
    }

    /// The unit normal of the slice plane (row direction × column direction).
    pub fn normal(&self) -> [f64; 3] {
        let o = &self.orientation;
        cross([o[0], o[1], o[2]], [o[3], o[4], o[5]])
    }

    /// Patient position of pixel (column `c`, row `r`).
    pub fn at(&self, c: f64, r: f64) -> [f64; 3] {
        let o = &self.orientation;
        let (dc, dr) = (self.spacing[1], self.spacing[0]);
        [
            self.position[0] + c * dc * o[0] + r * dr * o[3],
            self.position[1] + c * dc * o[1] + r * dr * o[4],
            self.position[2] + c * dc * o[2] + r * dr * o[5],
        ]
    }
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
