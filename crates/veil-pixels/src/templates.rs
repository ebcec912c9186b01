//! Region templates: rectangles known to hold text on given devices/layouts, redacted on every
//! frame whatever OCR says. Keyed on header values the way RSNA CTP's pixel anonymizer scripts
//! are. Veil ships a starter set (templates/*.toml, embedded at build time); sites add their own
//! files with `--templates FILE`.
//!
//! ```toml
//! [[template]]
//! name = "Vendor model 1024x768 header band"
//! modality = "US"                 # every key optional; text keys match case-insensitively,
//! manufacturer = "philips"        # as a substring of the attribute
//! model = "epiq"
//! rows = 768
//! columns = 1024
//! regions = [[0, 0, 1024, 60]]    # x, y, width, height; clipped to the image
//! ```

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Deserialize;

use crate::image::Rect;

/// The starter set shipped with Veil.
pub const BUILTIN: &[(&str, &str)] = &[(
    "templates/pixels-starter.toml",
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../templates/pixels-starter.toml"
    )),
)];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    #[serde(default)]
    pub modality: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub sop_class: Option<String>,
    #[serde(default)]
    pub image_type: Option<String>,
    #[serde(default)]
    pub rows: Option<u32>,
    #[serde(default)]
    pub columns: Option<u32>,
    pub regions: Vec<[u32; 4]>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    template: Vec<Template>,
}

/// A set of templates.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub list: Vec<Template>,
}

fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    obj.get(tag)
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_ascii_lowercase()))
        .unwrap_or_default()
}

impl Templates {
    /// The built-in starter set.
    pub fn builtin() -> Templates {
        let mut t = Templates::default();
        for (name, body) in BUILTIN {
            t.add_toml(name, body)
                .expect("built-in templates parse (checked by tests)");
        }
        t
    }

    /// Adds the templates of one TOML document; `Err` names the file, line and problem.
    pub fn add_toml(&mut self, origin: &str, body: &str) -> Result<(), crate::PixelError> {
        self.parse_toml(origin, body)
            .map_err(crate::PixelError::Template)
    }

    fn parse_toml(&mut self, origin: &str, body: &str) -> Result<(), String> {
        let f: File = toml::from_str(body).map_err(|e| format!("{origin}: {e}"))?;
        for t in &f.template {
            if t.regions.is_empty() {
                return Err(format!("{origin}: template '{}' has no regions", t.name));
            }
            if t.regions.iter().any(|r| r[2] == 0 || r[3] == 0) {
                return Err(format!(
                    "{origin}: template '{}' has an empty region",
                    t.name
                ));
            }
        }
        self.list.extend(f.template);
        Ok(())
    }

    /// Loads a user template file.
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), crate::PixelError> {
        let body = std::fs::read_to_string(path).map_err(|e| {
            crate::PixelError::Template(format!(
                "cannot read template file {}: {e}",
                path.display()
            ))
        })?;
        self.add_toml(&path.display().to_string(), &body)
    }

    /// Regions of every template that matches the instance, clipped; and the templates' names.
    pub fn regions_for(
        &self,
        obj: &InMemDicomObject,
        rows: u32,
        cols: u32,
    ) -> (Vec<Rect>, Vec<String>) {
        let mut rects = Vec::new();
        let mut names = Vec::new();
        let modality = text(obj, tags::MODALITY);
        let manufacturer = text(obj, tags::MANUFACTURER);
        let model = text(obj, tags::MANUFACTURER_MODEL_NAME);
        let sop = text(obj, tags::SOP_CLASS_UID);
        let image_type = text(obj, tags::IMAGE_TYPE);
        let has = |want: &Option<String>, got: &str| {
            want.as_ref()
                .is_none_or(|w| got.contains(&w.to_ascii_lowercase()))
        };
        for t in &self.list {
            let ok = t
                .modality
                .as_ref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&modality))
                && has(&t.manufacturer, &manufacturer)
                && has(&t.model, &model)
                && t.sop_class.as_ref().is_none_or(|s| *s == sop)
                && has(&t.image_type, &image_type)
                && t.rows.is_none_or(|r| r == rows)
                && t.columns.is_none_or(|c| c == cols);
            if !ok {
                continue;
            }
            names.push(t.name.clone());
            for r in &t.regions {
                let rect = Rect {
                    x: r[0].min(cols),
                    y: r[1].min(rows),
                    w: r[2],
                    h: r[3],
                }
                .grown(0, cols, rows);
                if rect.area() > 0 {
                    rects.push(rect);
                }
            }
        }
        (rects, names)
    }
}
